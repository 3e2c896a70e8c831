"""One connection per hotkey across the hubs of a validator.

Every WebSocket that a hub upgrades *claims* its hotkey: one Lua script gives it a
generation and publishes ``<hub id> <hotkey> <generation>`` on ``<prefix>:presence``.
Every hub listens there and closes its own session of that hotkey with 4001 when the
session's generation is lower; the claim with the highest generation is the one
connection left, whichever hub serves it and in whatever order the messages arrive.

The generation is the Redis server's clock in microseconds, raised above the last one
handed out for the hotkey (``<prefix>:conn:<hotkey>``) when needed. A plain ``INCR``
would start again at 1 after Redis restarts empty, and every connection made after
that would look older than the ones made before; the clock keeps going.

Presence is best effort: when Redis does not answer, a connection is admitted without
a generation (the hub still keeps one session per hotkey itself), claims made while a
hub's subscription is down are missed by it, and on resubscribing the hub compares its
sessions with the last generation stored for their hotkeys to close the ones
superseded meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .base import BackplaneUnavailable
from .redis_link import SOCKET_TIMEOUT_S, redis_errors

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = ["Presence", "PresenceClaim"]

log = logging.getLogger("server_stub.hub")

CLAIM_TTL_MS = 24 * 3600 * 1000
"""How long the last generation of a hotkey is kept (it only breaks ties of the clock)."""

RESUBSCRIBE_BACKOFF_S = (0.1, 0.5, 1.0, 2.0)
"""Waits between attempts to subscribe again after losing Redis (the last repeats)."""

_CLAIM_SCRIPT = """
local now = redis.call('TIME')
local generation = tonumber(now[1]) * 1000000 + tonumber(now[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if generation <= last then generation = last + 1 end
local text = string.format('%d', generation)
redis.call('SET', KEYS[1], text, 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. text)
return text
"""


@dataclass(frozen=True, slots=True)
class PresenceClaim:
    """A connection of ``hotkey`` made at hub ``hub_id`` with ``generation``
    (``hub_id`` is None when read back from the stored generation)."""

    hotkey: str
    generation: int
    hub_id: str | None


def parse_claim(data: bytes | str) -> PresenceClaim | None:
    """A presence message, or None when it is not one (ignored, never fatal)."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    parts = text.split(" ")
    if len(parts) != 3 or not (parts[2].isascii() and parts[2].isdigit()):
        return None
    return PresenceClaim(hotkey=parts[1], generation=int(parts[2]), hub_id=parts[0])


class Presence:
    """The presence protocol of one hub: :meth:`claim` on each upgrade, and the
    claims of every hub delivered to ``on_claim`` (given to :meth:`start`)."""

    def __init__(self, client: Redis, prefix: str, *, hub_id: str | None = None,
                 timeout_s: float = SOCKET_TIMEOUT_S, remember: int = 100_000) -> None:
        self.client = client
        self.prefix = prefix
        self.channel = f"{prefix}:presence"
        self.hub_id = hub_id or uuid.uuid4().hex[:12]
        self.timeout_s = timeout_s
        self.remember = remember
        self.claims = 0
        self.failures = 0
        self.subscribed = False
        self._script = client.register_script(_CLAIM_SCRIPT)
        self._errors = redis_errors()
        self._newest: OrderedDict[str, int] = OrderedDict()
        self._on_claim: Callable[[PresenceClaim], None] = lambda claim: None
        self._local_hotkeys: Callable[[], Iterable[str]] = tuple
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    def key(self, hotkey: str) -> str:
        return f"{self.prefix}:conn:{hotkey}"

    # -- lifecycle --------------------------------------------------------------------

    async def start(self, on_claim: Callable[[PresenceClaim], None],
                    local_hotkeys: Callable[[], Iterable[str]]) -> None:
        """Subscribe, then listen in a task of our own until :meth:`stop`.

        Raises :class:`BackplaneUnavailable` when Redis cannot be reached now: a hub
        configured with a backplane it cannot reach should not start."""
        self._on_claim = on_claim
        self._local_hotkeys = local_hotkeys
        try:
            self._pubsub = await self._subscribe()
            await self._reconcile()  # sessions open before a restart of the presence
        except self._errors as exc:
            await self._drop_pubsub()
            raise BackplaneUnavailable(f"cannot subscribe to {self.channel}: {exc!r}") from exc
        self._task = asyncio.create_task(self._listen(), name="presence")
        self._task.add_done_callback(_log_death)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._drop_pubsub()

    # -- claims ---------------------------------------------------------------------

    async def claim(self, hotkey: str) -> int | None:
        """Announce a new connection of ``hotkey`` to every hub; its generation, or
        None when Redis did not answer (the connection goes on without one)."""
        try:
            raw = await asyncio.wait_for(
                self._script(keys=[self.key(hotkey)],
                             args=[self.hub_id, hotkey, CLAIM_TTL_MS, self.channel]),
                self.timeout_s)
        except self._errors as exc:
            self.failures += 1
            log.warning("presence claim of %s failed (%r): one connection per hotkey is "
                        "kept on this hub only", hotkey, exc)
            return None
        generation = int(raw)
        self.claims += 1
        self._note(hotkey, generation)
        return generation

    def newest(self, hotkey: str) -> int | None:
        """The highest generation of ``hotkey`` this hub has seen (claimed or heard)."""
        return self._newest.get(hotkey)

    def _note(self, hotkey: str, generation: int) -> None:
        if generation > self._newest.get(hotkey, -1):
            self._newest[hotkey] = generation
            self._newest.move_to_end(hotkey)
            while len(self._newest) > self.remember:
                self._newest.popitem(last=False)

    def _deliver(self, claim: PresenceClaim) -> None:
        self._note(claim.hotkey, claim.generation)
        try:
            self._on_claim(claim)
        except Exception:  # a bug in the handler must not end the subscription
            log.exception("presence handler failed for %s", claim.hotkey)

    # -- the subscription ---------------------------------------------------------------

    async def _subscribe(self) -> PubSub:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            await asyncio.wait_for(pubsub.subscribe(self.channel), self.timeout_s)
        except BaseException:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        self.subscribed = True
        return pubsub

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self.subscribed = False
        if pubsub is not None:
            with contextlib.suppress(*self._errors):  # the connection is gone already
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _listen(self) -> None:
        failures = 0
        while True:
            try:
                if self._pubsub is None:
                    self._pubsub = await self._subscribe()
                    await self._reconcile()
                    log.warning("presence subscription restored")
                    failures = 0
                message: dict[str, Any] | None = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=1.0)
            except self._errors as exc:
                if failures == 0:
                    log.warning("presence subscription lost (%r); retrying", exc)
                await self._drop_pubsub()
                delay = RESUBSCRIBE_BACKOFF_S[min(failures, len(RESUBSCRIBE_BACKOFF_S) - 1)]
                failures += 1
                await asyncio.sleep(delay)
                continue
            if message is not None and message.get("type") == "message":
                claim = parse_claim(message["data"])
                if claim is not None:
                    self._deliver(claim)

    async def _reconcile(self) -> None:
        """After a gap in the subscription: the stored generation of each hotkey this
        hub serves, delivered as a claim (a newer one closes the local session)."""
        hotkeys = list(self._local_hotkeys())
        if not hotkeys:
            return
        values = await asyncio.wait_for(
            self.client.mget([self.key(hotkey) for hotkey in hotkeys]), self.timeout_s)
        for hotkey, value in zip(hotkeys, values, strict=True):
            if value is not None and value.isdigit():
                self._deliver(PresenceClaim(hotkey=hotkey, generation=int(value),
                                            hub_id=None))


def _log_death(task: asyncio.Task[None]) -> None:
    """The listener only ends by cancellation; anything else is a bug worth a traceback
    (one connection per hotkey is then kept per hub only)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("presence listener died", exc_info=task.exception())
