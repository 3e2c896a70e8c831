"""Replaying a game stream to an agent through the real :class:`~agents.AgentRunner`.

:class:`ReplayConnection` is the part of a :class:`~sdk.ValidatorConnection` the runner
uses (:class:`~agents.runner.RunnerConnection`), fed by recorded or generated
``game_update`` frames instead of a socket, on a :class:`VirtualClock`:

* its game table is a real :class:`~sdk.tracker.StreamTracker`, changed only by
  :meth:`ReplayConnection.publish`: the agent sees the games as published up to the
  virtual now, never later odds or outcomes (no lookahead);
* :meth:`ReplayConnection.submit` judges a prediction as the hub does, with
  :func:`sdk.validation.check_prediction` and :class:`~sdk.validation.Rules` at the
  virtual hub time, against the game as currently published and the miner's wagers of
  that virtual UTC day, and answers with a hub-shaped (unsigned) confirmation.

:func:`replay_agent` moves the clock from one update to the next and waits, between
them, until the runner has reacted (:meth:`AgentRunner.wait_idle`) and read every
update and confirmation. The runner's periodic rescan runs on the real clock, which a
replay does not follow; in its place the whole table is offered again at every
virtual UTC midnight (when a new day's budget opens). Prediction ids come from a
seeded generator: the same input gives the same predictions.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Generic, TypeVar

from sdk.codes import OK_CODE, ConfirmationStatus
from sdk.connection import ConnectionState
from sdk.errors import LinkError, PredictionRejected
from sdk.frames import Confirmation, GameUpdate, Limits
from sdk.models import Game, Prediction
from sdk.options import ConnectionOptions
from sdk.outbox import OutboxEntry
from sdk.tracker import ApplyResult, StreamTracker
from sdk.validation import (
    DEFAULT_DAILY_WAGER_LIMIT,
    DEFAULT_ODDS_TOLERANCE,
    Rules,
    check_prediction,
    wager_day,
)

from ..base import Agent
from ..runner import AgentRunner
from ..stats import RunnerStats
from .recording import RecordedUpdate

__all__ = ["REPLAY_VALIDATOR", "AcceptedPrediction", "ReplayConnection", "ReplayRun",
           "VirtualClock", "replay_agent", "seeded_ids"]

REPLAY_VALIDATOR = "replay-validator"
REPLAY_MINER = "replay-miner"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

T = TypeVar("T")


class VirtualClock:
    """The replay's hub clock: it only moves when the replay moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now


class _Feed(Generic[T]):
    """One reader's queue that also tells whether the reader has taken everything and
    is waiting for more (:attr:`parked`)."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self.parked = asyncio.Event()

    @property
    def drained(self) -> bool:
        return not self._items and (self.parked.is_set() or self._closed)

    def push(self, item: T) -> None:
        if self._closed:
            return
        self._items.append(item)
        self.parked.clear()
        self._wakeup.set()

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    def __aiter__(self) -> _Feed[T]:
        return self

    async def __anext__(self) -> T:
        while not self._items:
            if self._closed:
                self.parked.set()
                raise StopAsyncIteration
            self._wakeup.clear()
            self.parked.set()
            await self._wakeup.wait()
        self.parked.clear()
        return self._items.popleft()


class _ReplayOutbox:
    """The outbox view the runner reads: nothing from earlier runs, and the wagers the
    replay hub accepted per virtual UTC day."""

    def __init__(self) -> None:
        self.wagers: dict[str, float] = {}

    @property
    def closed(self) -> bool:
        return False

    async def entries(self, validator_hotkey: str | None = None) -> list[OutboxEntry]:
        return []

    async def wagered(self, validator_hotkey: str, wager_day: str) -> float:
        return self.wagers.get(wager_day, 0.0)


@dataclass(frozen=True, slots=True)
class AcceptedPrediction:
    """A prediction the replay hub accepted, at virtual hub time ``accepted_at``."""

    prediction: Prediction
    accepted_at: datetime


class ReplayConnection:
    """A validator connection whose hub is the replay (see the module docstring)."""

    def __init__(self, clock: VirtualClock, *, limits: Limits | None = None,
                 cutoff_margin: timedelta | None = None,
                 validator_hotkey: str = REPLAY_VALIDATOR,
                 miner_hotkey: str = REPLAY_MINER) -> None:
        self.clock = clock
        self.validator_hotkey = validator_hotkey
        self.miner_hotkey = miner_hotkey
        self.limits: Limits | None = limits or Limits(
            max_frame_bytes=64 * 1024, messages_per_second=50.0,
            daily_wager_limit=DEFAULT_DAILY_WAGER_LIMIT, odds_tolerance=DEFAULT_ODDS_TOLERANCE)
        self.cutoff_margin = (cutoff_margin if cutoff_margin is not None
                              else ConnectionOptions().cutoff_margin)
        self.state = ConnectionState.OPEN
        self._outbox = _ReplayOutbox()
        self._tracker = StreamTracker()
        self._updates: list[_Feed[GameUpdate]] = []
        self._confirmations: list[_Feed[Confirmation]] = []
        self.accepted: list[AcceptedPrediction] = []
        self.rejected: Counter[str] = Counter()
        self._accepted_ids: dict[str, Confirmation] = {}

    # -- what the runner uses -------------------------------------------------------------

    @property
    def outbox(self) -> _ReplayOutbox:
        return self._outbox

    @property
    def games(self) -> Mapping[str, Game]:
        return self._tracker.games

    def server_now(self) -> datetime:
        return self.clock.now

    async def start(self) -> None:
        return None

    async def wait_ready(self, timeout: float | None = None) -> None:
        return None

    async def close(self) -> None:
        self.state = ConnectionState.CLOSED
        for feed in self._feeds():
            feed.close()

    def game_updates(self, buffer: int | None = None) -> AsyncIterator[GameUpdate]:
        feed: _Feed[GameUpdate] = _Feed()
        self._updates.append(feed)
        return feed

    def confirmations(self) -> AsyncIterator[Confirmation]:
        feed: _Feed[Confirmation] = _Feed()
        self._confirmations.append(feed)
        return feed

    async def submit(self, prediction: Prediction, *,
                     timeout: float | None = None) -> Confirmation:
        """Judge ``prediction`` with the hub's rules at the virtual hub time."""
        if self.state is ConnectionState.CLOSED:
            raise LinkError("the replay is over")
        now = self.clock.now
        pid = prediction.prediction_id
        original = self._accepted_ids.get(pid)
        if original is not None:
            return self._answer(original.model_copy(
                update={"status": ConfirmationStatus.DUPLICATE}))
        day = wager_day(now).isoformat()
        limits = self.limits
        assert limits is not None
        rules = Rules(odds_tolerance=limits.odds_tolerance,
                      daily_wager_limit=limits.daily_wager_limit)
        rejection = check_prediction(prediction, self._tracker.games.get(prediction.game_id),
                                     now=now, wagered_today=self._outbox.wagers.get(day, 0.0),
                                     rules=rules)
        if rejection is not None:
            self.rejected[str(rejection.code)] += 1
            confirmation = self._confirmation(pid, ConfirmationStatus.REJECTED,
                                              str(rejection.code), rejection.message)
            self._answer(confirmation)
            raise PredictionRejected(rejection.message, code=rejection.code,
                                     prediction_id=pid, confirmation=confirmation)
        self._outbox.wagers[day] = self._outbox.wagers.get(day, 0.0) + prediction.wager
        self.accepted.append(AcceptedPrediction(prediction, now))
        confirmation = self._confirmation(pid, ConfirmationStatus.ACCEPTED, OK_CODE, "accepted")
        self._accepted_ids[pid] = confirmation
        return self._answer(confirmation)

    # -- what the replay drives -----------------------------------------------------------

    def publish(self, update: GameUpdate) -> bool:
        """Apply ``update`` to the table at the virtual now and hand it to the readers;
        False when the table could not take it (stale, or a gap before a snapshot)."""
        self._tracker.prune(self.clock.now)
        if self._tracker.apply(update) is not ApplyResult.APPLIED:
            return False
        for feed in self._updates:
            feed.push(update)
        return True

    def offer_all(self) -> None:
        """Hand the readers the whole table again (the runner's rescan)."""
        tracker = self._tracker
        if tracker.epoch is None or tracker.seq is None:
            return
        update = GameUpdate(epoch=tracker.epoch, seq=tracker.seq, prev_seq=tracker.seq,
                            games=list(tracker.games.values()), snapshot=True)
        for feed in self._updates:
            feed.push(update)

    def unread(self) -> list[asyncio.Event]:
        """The parked-events of readers that have not taken everything yet."""
        return [feed.parked for feed in self._feeds() if not feed.drained]

    def _feeds(self) -> list[_Feed[GameUpdate] | _Feed[Confirmation]]:
        return [*self._updates, *self._confirmations]

    def _confirmation(self, pid: str, status: ConfirmationStatus, code: str,
                      message: str) -> Confirmation:
        received_at_ns = (self.clock.now - _EPOCH) // timedelta(microseconds=1) * 1000
        return Confirmation(prediction_id=pid, status=status, code=code, message=message,
                            received_at_ns=received_at_ns, miner_hotkey=self.miner_hotkey,
                            validator_hotkey=self.validator_hotkey)

    def _answer(self, confirmation: Confirmation) -> Confirmation:
        for feed in self._confirmations:
            feed.push(confirmation)
        return confirmation


def seeded_ids(seed: str) -> Callable[[], str]:
    """A generator of UUID4 strings from ``seed``: the same seed, the same ids."""
    source = random.Random(seed)
    return lambda: str(uuid.UUID(int=source.getrandbits(128), version=4))


@dataclass
class ReplayRun:
    """What one agent did in a replay."""

    agent: str
    accepted: list[AcceptedPrediction]
    rejected: Counter[str]
    stats: RunnerStats
    events: int = 0


def _midnights(after: datetime, until: datetime) -> list[datetime]:
    """The UTC midnights in (after, until]."""
    first = datetime.combine(after.astimezone(UTC).date() + timedelta(days=1), time(0),
                             tzinfo=UTC)
    found: list[datetime] = []
    while first <= until:
        found.append(first)
        first += timedelta(days=1)
    return found


async def _settle(runner: AgentRunner, conn: ReplayConnection) -> None:
    """Wait until the runner has reacted to everything published so far."""
    while True:
        await runner.wait_idle()
        if not runner.running:
            return
        unread = conn.unread()
        if not unread:
            return
        waits = [asyncio.ensure_future(event.wait()) for event in unread]
        try:
            await asyncio.wait(waits, timeout=0.05)
        finally:
            for wait in waits:
                wait.cancel()


async def replay_agent(agent: Agent, events: Sequence[RecordedUpdate], *, seed: str = "0",
                       daily_budget: float | None = None, limits: Limits | None = None,
                       agent_timeout_s: float = 60.0) -> ReplayRun:
    """Run ``agent`` through ``events`` (time-ordered) with the real runner; return the
    predictions the replay hub accepted and the runner's counters."""
    if not events:
        return ReplayRun(agent.name, [], Counter(), RunnerStats(agent=agent.name))
    clock = VirtualClock(events[0].hub_time)
    conn = ReplayConnection(clock, limits=limits)
    runner = AgentRunner(agent, [conn], daily_budget=daily_budget, rescan_interval_s=None,
                         agent_timeout_s=agent_timeout_s, drain_timeout_s=10.0,
                         new_prediction_id=seeded_ids(seed))
    await runner.start()
    try:
        await _settle(runner, conn)
        for event in events:
            for midnight in _midnights(clock.now, event.hub_time):
                if midnight == event.hub_time:
                    break
                clock.now = midnight
                if any(g.active and not g.settled and g.event_start_date > midnight
                       for g in conn.games.values()):
                    conn.offer_all()
                    await _settle(runner, conn)
            clock.now = max(clock.now, event.hub_time)
            conn.publish(event.update)
            await _settle(runner, conn)
    finally:
        await runner.stop()
        await conn.close()
    return ReplayRun(agent.name, list(conn.accepted), conn.rejected, runner.stats,
                     events=len(events))
