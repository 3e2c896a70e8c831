"""The validator hub: the owner of its parts and of their lifecycle.

:class:`Hub` wires admission (:mod:`.admission`), the session table and broadcast
(:mod:`.session_table`), the miner WebSocket (:mod:`.miner_ws`) and the prediction
intake (:mod:`.intake`) around one game stream, store and clock. It publishes games
(committed to the store, then appended to its backplane, :mod:`.backplane`), runs the
feed (while it holds the feed lease) and heartbeat loops, reports health, and owns
every long-lived task it starts, stopping them in :meth:`Hub.stop`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from sdk.codes import CloseCode
from sdk.frames import Heartbeat
from sdk.models import Game
from sdk.signing import Signer
from sdk.tasks import TaskSet
from sdk.validation import Rules

from .activity import PredictionActivity
from .admission import Admission
from .backplane import Backplane, LocalBackplane
from .backplane.nonces import SharedNonces
from .backplane.presence import Presence, PresenceClaim
from .clock import HubClock
from .config import HubConfig
from .feed import GameFeed, feed_games
from .intake import PredictionIntake
from .miner_ws import MinerWSHandler
from .predictions import PredictionDesk, UidLookup
from .registry import MinerRegistry
from .session_table import SessionTable
from .stats import HubStats
from .store import HubStore, PredictionBook, StoreClosed
from .stream import GameStream, UpdateRecord
from .wsframes import SharedFrame

log = logging.getLogger("server_stub.hub")


class Hub:
    """All state of one validator hub."""

    def __init__(self, config: HubConfig, *, signer: Signer, registry: MinerRegistry,
                 store: HubStore, feed: GameFeed | None = None,
                 clock: HubClock | None = None, book: PredictionBook | None = None,
                 uid_of: UidLookup | None = None, backplane: Backplane | None = None,
                 nonce_guard: SharedNonces | None = None,
                 presence: Presence | None = None) -> None:
        """``book``: where accepted predictions are recorded (default: ``store``);
        ``uid_of``: the miners' UIDs, when the book needs them (every prediction of a
        hotkey without one is then rejected); ``backplane``: the stream games are
        published on (default: :class:`LocalBackplane`, this hub alone);
        ``nonce_guard`` and ``presence``: replay protection and one connection per
        hotkey across the hubs of this validator (None: this hub alone)."""
        self.config = config
        self.signer = signer
        self.validator_hotkey: str = signer.ss58_address
        self.registry = registry
        self.store = store
        self.book: PredictionBook = book if book is not None else store
        self.feed = feed
        self.backplane: Backplane = backplane if backplane is not None else LocalBackplane()
        self.health_sections: dict[str, Callable[[], dict[str, Any]]] = {}
        """Extra parts of ``GET /ws/health`` by name (e.g. the Bettensor database)."""
        self.clock = clock or HubClock()
        self.stats = HubStats(activity=PredictionActivity(
            now=lambda: self.clock.now_ns() / 1e9))  # "today" is the wager day's
        self.stream = GameStream(config.history_size)
        self.rules = Rules(odds_tolerance=config.odds_tolerance,
                           daily_wager_limit=config.daily_wager_limit)
        self.desk = PredictionDesk(signer=signer, store=self.book, stream=self.stream,
                                   clock=self.clock, rules=self.rules, uid_of=uid_of)
        self.sessions = SessionTable(stream=self.stream, stats=self.stats,
                                     close_timeout_s=config.close_timeout_s)
        self.admission = Admission(config, validator_hotkey=self.validator_hotkey,
                                   registry=registry, sessions=self.sessions,
                                   nonce_guard=nonce_guard)
        self.presence = presence
        self.intake = PredictionIntake(desk=self.desk, admission=self.admission,
                                       stats=self.stats)
        self.miner_ws = MinerWSHandler(
            config, validator_hotkey=self.validator_hotkey, admission=self.admission,
            sessions=self.sessions, stream=self.stream, intake=self.intake, clock=self.clock,
            stats=self.stats, presence=presence)
        self._tasks = TaskSet(log, "hub")
        self._update_event = asyncio.Event()
        self._feeding = False  # the feed's initial games are published (by this hub)

    @property
    def shutting_down(self) -> bool:
        """True once :meth:`stop` has begun (admission answers 503 from then on)."""
        return self.admission.closed

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        await self.backplane.start(self)
        if self.feed is not None and self.backplane.holds_feed():
            await self.publish(await feed_games(self.feed.initial_games()))
            self._feeding = True
        if self.presence is not None:
            await self.presence.start(self._on_presence, lambda: list(self.sessions))
        await self.registry.start(self.sessions.close_deregistered)
        self._tasks.spawn(self._heartbeat_loop(), "heartbeats")
        if self.feed is not None:
            self._tasks.spawn(self._feed_loop(), "feed")

    async def stop(self) -> None:
        """Graceful shutdown: refuse new miners (503), deliver what is committed,
        close everyone with 1001, flush the store."""
        if self.shutting_down:
            return
        self.admission.close()
        await self._tasks.cancel()
        # Redis may be half gone while the hub stops: its parts get a bounded time, so
        # the store is still flushed and the miners still get 1001.
        if self.presence is not None:
            await _bounded(self.presence.stop(), "presence")
        await _bounded(self.backplane.stop(), "backplane")
        await self.registry.stop()
        if self.book is not self.store:
            await self.book.close()  # what is in flight reaches it (and the store)
        await self.store.close()  # commits everything queued; confirmations get queued
        await self.sessions.close_all(CloseCode.GOING_AWAY, "hub shutting down", drain=True)
        self._update_event.set()

    def _on_presence(self, claim: PresenceClaim) -> None:
        """A connection was made at some hub: close ours of that hotkey if older."""
        assert self.presence is not None
        self.sessions.close_superseded(claim.hotkey, claim.generation,
                                       elsewhere=claim.hub_id != self.presence.hub_id)

    async def _feed_loop(self) -> None:
        """Every tick, while this hub holds the feed lease (always, alone): the feed's
        changes are published; its initial games first when the lease was just taken.
        Changes that could not be published are offered again with the next tick's."""
        feed = self.feed
        assert feed is not None
        unpublished: list[Game] = []
        while True:
            await asyncio.sleep(self.config.tick_interval_s)
            if not self.backplane.holds_feed():
                self._feeding = False
                continue
            try:
                if self._feeding:
                    changes = await feed_games(feed.step(self.clock.now()))
                else:
                    changes = await feed_games(feed.initial_games())
                    self._feeding = True
                    log.info("running the game feed")
            except Exception:  # feeds are pluggable: one bad tick must not stop the hub
                log.exception("game feed failed; skipping this tick")
                continue
            changes = unpublished + changes
            if not changes:
                continue
            try:
                await self.publish(changes)
                unpublished = []
            except Exception:  # the store or Redis: try again at the next tick
                log.exception("feed update not published; retrying at the next tick")
                unpublished = changes

    async def _heartbeat_loop(self) -> None:
        interval = self.config.heartbeat_interval_s
        while True:
            await asyncio.sleep(interval)
            deadline = time.monotonic() - 3 * interval
            self.backplane.forget(self.stream.prune(self.clock.now()))
            alive = []
            for session in list(self.sessions.values()):
                if session.last_received < deadline:
                    self.sessions.close(session, CloseCode.POLICY_VIOLATION,
                                        "heartbeat timeout")
                else:
                    alive.append(session)
            self.sessions.send_to(alive, SharedFrame(Heartbeat(time_ns=self.clock.now_ns())
                                                     .encode()))
            ping_ns = time.monotonic_ns()  # the dashboard's RTT (MinerSession.ping)
            for session in alive:
                session.ping(ping_ns)

    # -- games ------------------------------------------------------------------------

    async def publish(self, games: Iterable[Game]) -> UpdateRecord | None:
        """Upsert games and broadcast the changes as one game_update; None: nothing
        changed. Returns once the changes are committed to the store and appended to
        the stream, in that order: what is acknowledged survives a crash, and no miner
        ever sees a game the store could lose. Raises the store's errors and
        :class:`~server_stub.backplane.base.BackplaneUnavailable`."""
        changes = self.stream.changes(games)
        if not changes:
            return None
        await self.store.save_games(changes)
        return await self.backplane.append(changes)

    # -- what the backplane calls (StreamSink) ---------------------------------------------

    def deliver(self, record: UpdateRecord) -> None:
        """An update reached :attr:`stream`: broadcast it, wake the long-polls."""
        self.sessions.broadcast(record)
        event, self._update_event = self._update_event, asyncio.Event()
        event.set()

    def resynced(self) -> None:
        """The stream was reset (a shared stream's new epoch): snapshots for all."""
        self.sessions.send_snapshots()
        event, self._update_event = self._update_event, asyncio.Event()
        event.set()

    def stored_games(self) -> asyncio.Future[list[Game]]:
        return self.store.load_games()

    def mirror(self, games: Sequence[Game]) -> None:
        try:
            self.store.save_games(games).add_done_callback(_log_failure)
        except StoreClosed:
            log.debug("store closed: %d mirrored games not saved", len(games))

    async def wait_for_update(self, after_seq: int, timeout: float) -> None:
        """Return when ``seq`` passes ``after_seq``, the epoch changes or ``timeout``
        elapses (long-poll)."""
        deadline = time.monotonic() + timeout
        epoch = self.stream.epoch
        while (self.stream.seq <= after_seq and self.stream.epoch == epoch
               and not self.shutting_down):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._update_event.wait(), remaining)
            except TimeoutError:
                return

    # -- health ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        registered = self.registry.registered_count()
        connected_registered = (
            sum(1 for hotkey in self.sessions if self.registry.is_registered(hotkey))
            if registered is not None else None)
        return {
            "status": "shutting_down" if self.shutting_down else "ok",
            "validator_hotkey": self.validator_hotkey,
            "connections": self.stats.connections_total,
            "active_connections": len(self.sessions),
            "registered_miners": registered,
            "connected_share": (round(connected_registered / registered, 4)
                                if registered and connected_registered is not None else None),
            "uptime_s": round(self.stats.uptime_s, 3),
            "epoch": self.stream.epoch,
            "seq": self.stream.seq,
            "games": len(self.stream.games),
            "messages_in": sum(self.stats.messages_in.values()),
            "messages_out": self.stats.messages_out,
            "errors": sum(self.stats.errors.values()),
            "errors_by_code": dict(self.stats.errors),
            "predictions": dict(self.stats.predictions),
            "store_commits": self.store.commits,
            **{name: section() for name, section in self.health_sections.items()},
        }


_STOP_PART_S = 10.0


async def _bounded(stopping: Coroutine[Any, Any, None], part: str) -> None:
    """Await a part's stop for at most ``_STOP_PART_S``; log, never raise, past it."""
    try:
        await asyncio.wait_for(stopping, _STOP_PART_S)
    except TimeoutError:
        log.warning("%s did not stop within %.0f s; going on without it", part,
                    _STOP_PART_S)


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("store write failed: %r", future.exception())
