"""Who may connect: miner registries.

A registry answers :meth:`MinerRegistry.check` for a hotkey, and knows the miner's
UID where it can (the metagraph, or an allowlist line ``HOTKEY UID``). The metagraph
registry refreshes from the chain periodically, follows each hotkey's UID, and reports
hotkeys that disappeared, so the hub can close their connections with 4003.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Protocol

from sdk.metagraph import fetch_neurons

log = logging.getLogger("server_stub.registry")


class Decision(Enum):
    ALLOWED = "allowed"
    NOT_REGISTERED = "not_registered"
    BLACKLISTED = "blacklisted"
    UNAVAILABLE = "unavailable"  # registry not loaded yet: refuse with 503


class MinerRegistry(Protocol):
    def check(self, hotkey: str) -> Decision: ...

    def registered_count(self) -> int | None:
        """How many miners the registry knows (None: unbounded, e.g. open)."""
        ...

    def is_registered(self, hotkey: str) -> bool: ...

    def uid(self, hotkey: str) -> int | None:
        """The miner's UID on the subnet (None: unknown)."""
        ...

    async def start(self, on_removed: Callable[[set[str]], Awaitable[None]]) -> None: ...

    async def stop(self) -> None: ...


class _StaticRegistry:
    def __init__(self, allowed: Iterable[str] | Mapping[str, int | None] | None,
                 denied: Iterable[str] = ()) -> None:
        self._uids: dict[str, int] = {}
        if isinstance(allowed, Mapping):
            self._uids = {hotkey: uid for hotkey, uid in allowed.items() if uid is not None}
        self._allowed = None if allowed is None else frozenset(allowed)
        self._denied = frozenset(denied)

    def uid(self, hotkey: str) -> int | None:
        return self._uids.get(hotkey)

    @property
    def known_uids(self) -> int:
        """How many of the hotkeys have a UID."""
        return len(self._uids)

    def check(self, hotkey: str) -> Decision:
        if hotkey in self._denied:
            return Decision.BLACKLISTED
        if self._allowed is not None and hotkey not in self._allowed:
            return Decision.NOT_REGISTERED
        return Decision.ALLOWED

    def is_registered(self, hotkey: str) -> bool:
        return self._allowed is not None and hotkey in self._allowed

    def registered_count(self) -> int | None:
        return None if self._allowed is None else len(self._allowed)

    async def start(self, on_removed: Callable[[set[str]], Awaitable[None]]) -> None:
        return None

    async def stop(self) -> None:
        return None


class OpenRegistry(_StaticRegistry):
    """Any valid signature may connect (development), except denied hotkeys."""

    def __init__(self, denied: Iterable[str] = ()) -> None:
        super().__init__(None, denied)


class AllowListRegistry(_StaticRegistry):
    """Only the listed hotkeys may connect (a mapping also gives their UIDs)."""

    def __init__(self, allowed: Iterable[str] | Mapping[str, int | None],
                 denied: Iterable[str] = ()) -> None:
        super().__init__(allowed, denied)


def read_allowlist(path: str | Path) -> dict[str, int | None]:
    """Hotkeys from a file, one per line as ``HOTKEY`` or ``HOTKEY UID``; ``#``
    comments and blank lines ignored. Raises ValueError naming a bad line."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read allowlist {file}: {exc.strerror or exc}") from None
    entries: dict[str, int | None] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) > 2 or (len(fields) == 2 and not fields[1].isdigit()):
            raise ValueError(f"allowlist {file} line {number}: expected 'HOTKEY' or "
                             f"'HOTKEY UID', got {line.strip()!r}")
        entries[fields[0]] = int(fields[1]) if len(fields) == 2 else None
    return entries


class RequireUid:
    """A registry that admits only hotkeys with a known UID (the rest: 403
    ``not_registered``), for a hub whose predictions are stored by UID."""

    def __init__(self, inner: MinerRegistry) -> None:
        self.inner = inner

    def check(self, hotkey: str) -> Decision:
        decision = self.inner.check(hotkey)
        if decision is Decision.ALLOWED and self.inner.uid(hotkey) is None:
            return Decision.NOT_REGISTERED
        return decision

    def uid(self, hotkey: str) -> int | None:
        return self.inner.uid(hotkey)

    def is_registered(self, hotkey: str) -> bool:
        return self.inner.is_registered(hotkey) and self.inner.uid(hotkey) is not None

    def registered_count(self) -> int | None:
        return self.inner.registered_count()

    async def start(self, on_removed: Callable[[set[str]], Awaitable[None]]) -> None:
        await self.inner.start(on_removed)

    async def stop(self) -> None:
        await self.inner.stop()


HotkeyFetch = Callable[[], Awaitable[Iterable[str] | Mapping[str, int | None]]]
"""The registered hotkeys, or a mapping of each to its UID."""


def metagraph_fetch(netuid: int, network: str) -> HotkeyFetch:
    """The real fetch: every hotkey registered on ``netuid`` with its UID, per the
    chain (:func:`sdk.metagraph.fetch_neurons`)."""

    async def fetch() -> dict[str, int | None]:
        return {row.hotkey: row.uid for row in await fetch_neurons(netuid, network)}

    return fetch


class MetagraphRegistry:
    """Hotkeys registered on a subnet, refreshed every ``refresh_interval`` seconds.

    Until the first successful fetch every check answers UNAVAILABLE (503), so a
    hub that cannot reach the chain refuses politely instead of admitting anyone.
    """

    def __init__(self, fetch: HotkeyFetch, *, refresh_interval: float = 300.0,
                 retry_interval: float = 10.0, denied: Iterable[str] = ()) -> None:
        self._fetch = fetch
        self.refresh_interval = refresh_interval
        self.retry_interval = retry_interval
        self._denied = frozenset(denied)
        self._hotkeys: frozenset[str] | None = None
        self._uids: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._on_removed: Callable[[set[str]], Awaitable[None]] | None = None
        self.refreshes = 0
        self.failures = 0

    def check(self, hotkey: str) -> Decision:
        if hotkey in self._denied:
            return Decision.BLACKLISTED
        if self._hotkeys is None:
            return Decision.UNAVAILABLE
        return Decision.ALLOWED if hotkey in self._hotkeys else Decision.NOT_REGISTERED

    def is_registered(self, hotkey: str) -> bool:
        return self._hotkeys is not None and hotkey in self._hotkeys

    def registered_count(self) -> int | None:
        return None if self._hotkeys is None else len(self._hotkeys)

    def uid(self, hotkey: str) -> int | None:
        """The hotkey's UID as of the last refresh (a re-registered hotkey's new one)."""
        return self._uids.get(hotkey)

    async def refresh(self) -> set[str]:
        """Fetch now; returns the hotkeys that were removed since the last fetch."""
        fetched = await self._fetch()
        if isinstance(fetched, Mapping):
            self._uids = {hotkey: uid for hotkey, uid in fetched.items() if uid is not None}
        hotkeys = frozenset(fetched)
        removed = set() if self._hotkeys is None else set(self._hotkeys - hotkeys)
        self._hotkeys = hotkeys
        self.refreshes += 1
        if removed and self._on_removed is not None:
            await self._on_removed(removed)
        return removed

    async def start(self, on_removed: Callable[[set[str]], Awaitable[None]]) -> None:
        self._on_removed = on_removed
        try:
            await self.refresh()
        except Exception as exc:  # noqa: BLE001 - a pluggable fetch from a remote chain
            self.failures += 1
            log.warning("metagraph fetch failed (will retry): %s", exc)
        self._task = asyncio.create_task(self._loop(), name="metagraph-refresh")

    async def _loop(self) -> None:
        while True:
            delay = self.refresh_interval if self._hotkeys is not None else self.retry_interval
            await asyncio.sleep(delay)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever failed, keep the last list
                self.failures += 1
                log.warning("metagraph refresh failed (keeping the last list): %s", exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
