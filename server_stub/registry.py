"""Who may connect: miner registries.

A registry answers :meth:`MinerRegistry.check` for a hotkey. The metagraph registry
refreshes from the chain periodically and reports hotkeys that disappeared, so the
hub can close their connections with 4003.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
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

    async def start(self, on_removed: Callable[[set[str]], Awaitable[None]]) -> None: ...

    async def stop(self) -> None: ...


class _StaticRegistry:
    def __init__(self, allowed: Iterable[str] | None, denied: Iterable[str] = ()) -> None:
        self._allowed = None if allowed is None else frozenset(allowed)
        self._denied = frozenset(denied)

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
    """Only the listed hotkeys may connect."""

    def __init__(self, allowed: Iterable[str], denied: Iterable[str] = ()) -> None:
        super().__init__(allowed, denied)


def read_allowlist(path: str | Path) -> list[str]:
    """Hotkeys from a file: one per line, ``#`` comments and blank lines ignored."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read allowlist {file}: {exc.strerror or exc}") from None
    hotkeys = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            hotkeys.append(entry)
    return hotkeys


HotkeyFetch = Callable[[], Awaitable[Iterable[str]]]


def metagraph_fetch(netuid: int, network: str) -> HotkeyFetch:
    """The real fetch: every hotkey registered on ``netuid`` per the chain
    (:func:`sdk.metagraph.fetch_neurons`)."""

    async def fetch() -> list[str]:
        return [row.hotkey for row in await fetch_neurons(netuid, network)]

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

    async def refresh(self) -> set[str]:
        """Fetch now; returns the hotkeys that were removed since the last fetch."""
        hotkeys = frozenset(await self._fetch())
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
