"""The validator hub: the owner of its parts and of their lifecycle.

:class:`Hub` wires admission (:mod:`.admission`), the session table and broadcast
(:mod:`.session_table`), the miner WebSocket (:mod:`.miner_ws`) and the prediction
intake (:mod:`.intake`) around one game stream, store and clock. It publishes games,
runs the feed and heartbeat loops, reports health, and owns every long-lived task it
starts, stopping them in :meth:`Hub.stop`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from sdk.codes import CloseCode
from sdk.frames import Heartbeat
from sdk.models import Game
from sdk.signing import Signer
from sdk.validation import Rules

from .activity import PredictionActivity
from .admission import Admission
from .clock import HubClock
from .config import HubConfig
from .feed import GameFeed, feed_games
from .intake import PredictionIntake
from .miner_ws import MinerWSHandler
from .predictions import PredictionDesk, UidLookup
from .registry import MinerRegistry
from .session_table import SessionTable
from .stats import HubStats
from .store import HubStore, PredictionBook
from .stream import GameStream, UpdateRecord
from .wsframes import SharedFrame

log = logging.getLogger("server_stub.hub")


class Hub:
    """All state of one validator hub."""

    def __init__(self, config: HubConfig, *, signer: Signer, registry: MinerRegistry,
                 store: HubStore, feed: GameFeed | None = None,
                 clock: HubClock | None = None, book: PredictionBook | None = None,
                 uid_of: UidLookup | None = None) -> None:
        """``book``: where accepted predictions are recorded (default: ``store``);
        ``uid_of``: the miners' UIDs, when the book needs them (every prediction of a
        hotkey without one is then rejected)."""
        self.config = config
        self.signer = signer
        self.validator_hotkey: str = signer.ss58_address
        self.registry = registry
        self.store = store
        self.book: PredictionBook = book if book is not None else store
        self.feed = feed
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
                                   registry=registry, sessions=self.sessions)
        self.intake = PredictionIntake(desk=self.desk, admission=self.admission,
                                       stats=self.stats)
        self.miner_ws = MinerWSHandler(
            config, validator_hotkey=self.validator_hotkey, admission=self.admission,
            sessions=self.sessions, stream=self.stream, intake=self.intake, clock=self.clock,
            stats=self.stats)
        self._tasks: set[asyncio.Task[None]] = set()
        self._update_event = asyncio.Event()

    @property
    def shutting_down(self) -> bool:
        """True once :meth:`stop` has begun (admission answers 503 from then on)."""
        return self.admission.closed

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        stored = await self.store.load_games()
        if stored:
            self.stream.apply(stored)
        if self.feed is not None:
            self.publish(await feed_games(self.feed.initial_games()))
        await self.registry.start(self.sessions.close_deregistered)
        self._spawn(self._heartbeat_loop(), "heartbeats")
        if self.feed is not None:
            self._spawn(self._feed_loop(), "feed")

    async def stop(self) -> None:
        """Graceful shutdown: refuse new miners (503), deliver what is committed,
        close everyone with 1001, flush the store."""
        if self.shutting_down:
            return
        self.admission.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.registry.stop()
        if self.book is not self.store:
            await self.book.close()  # what is in flight reaches it (and the store)
        await self.store.close()  # commits everything queued; confirmations get queued
        await self.sessions.close_all(CloseCode.GOING_AWAY, "hub shutting down", drain=True)
        self._update_event.set()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("hub task %s died", task.get_name(), exc_info=task.exception())

    async def _feed_loop(self) -> None:
        assert self.feed is not None
        while True:
            await asyncio.sleep(self.config.tick_interval_s)
            try:
                changes = await feed_games(self.feed.step(self.clock.now()))
            except Exception:  # feeds are pluggable: one bad tick must not stop the hub
                log.exception("game feed failed; skipping this tick")
                continue
            if changes:
                self.publish(changes)

    async def _heartbeat_loop(self) -> None:
        interval = self.config.heartbeat_interval_s
        while True:
            await asyncio.sleep(interval)
            deadline = time.monotonic() - 3 * interval
            self.stream.prune(self.clock.now())
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

    def publish(self, games: Iterable[Game]) -> UpdateRecord | None:
        """Upsert games; broadcast the changes as one game_update. None: nothing changed."""
        record = self.stream.apply(games)
        if record is None:
            return None
        # Broadcast first: the store's writer thread would otherwise wake up during the
        # broadcast and contend for the GIL at every socket write (bench/fanout.py).
        self.sessions.broadcast(record)
        self.store.save_games(record.games).add_done_callback(_log_failure)
        event, self._update_event = self._update_event, asyncio.Event()
        event.set()
        return record

    async def wait_for_update(self, after_seq: int, timeout: float) -> None:
        """Return when ``seq`` passes ``after_seq`` or ``timeout`` elapses (long-poll)."""
        deadline = time.monotonic() + timeout
        while self.stream.seq <= after_seq and not self.shutting_down:
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


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("store write failed: %r", future.exception())
