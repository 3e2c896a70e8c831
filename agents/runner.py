"""``AgentRunner``: connects one agent to one or many validators.

For each :class:`~sdk.connection.ValidatorConnection` the runner runs one task that

* reads the connection's game updates (coalesced: whatever changed since the agent was
  last called is offered at once, at its latest state) and, every
  ``rescan_interval_s``, the whole table again;
* offers the agent the games it is interested in (its sports/leagues), that are open
  (active, not settled, starting more than ``cutoff_margin_s`` from now on *that
  validator's* clock) and not yet predicted for that validator (unless
  ``agent.allow_repeat``);
* completes :class:`~agents.base.Pick` objects into predictions at *that validator's*
  current odds, enforces the daily budget per validator and hub UTC day (a pick over
  budget is scaled down or dropped), and submits concurrently;
* forwards every confirmation to ``agent.on_confirmation``.

Which games were already predicted, and how much was wagered each day, are seeded
from the connection's outbox at start, so a restarted miner neither predicts a game
twice nor overspends. Exceptions raised by the agent are logged with its name and
counted; they never stop a connection or the runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import Any, Protocol

from pydantic import ValidationError

from sdk.codes import ConfirmationStatus, ErrorCode
from sdk.connection import ConnectionState
from sdk.errors import BettensorWSError, LinkError, PredictionRejected, ReceiptError
from sdk.frames import Confirmation, GameUpdate, Limits
from sdk.models import Game, Prediction
from sdk.outbox import COUNTED_STATUSES, OutboxEntry
from sdk.validation import DEFAULT_DAILY_WAGER_LIMIT, wager_day

from .base import Agent, AgentContext, Pick, agent_logger
from .budget import DailySpend, OverBudget, fit_wager
from .stats import RunnerStats, ValidatorStats
from .stopping import until_stopped

__all__ = ["RETRY_CODES", "AgentRunner", "RunnerConnection", "RunnerOutbox"]

log = logging.getLogger("agents.runner")

RETRY_CODES = frozenset({ErrorCode.ODDS_MISMATCH, ErrorCode.UNKNOWN_GAME,
                         ErrorCode.WAGER_LIMIT, ErrorCode.RATE_LIMITED})
"""Rejections after which the game may be offered again (odds moved, table race,
budget): at most ``max_attempts`` submissions per game and validator."""


class RunnerOutbox(Protocol):
    """What the runner reads from a connection's outbox (:class:`~sdk.outbox.Outbox`)."""

    @property
    def closed(self) -> bool: ...

    async def entries(self, validator_hotkey: str | None = None) -> list[OutboxEntry]: ...

    async def wagered(self, validator_hotkey: str, wager_day: str) -> float: ...


class RunnerConnection(Protocol):
    """What the runner uses of a connection: exactly the part of
    :class:`~sdk.connection.ValidatorConnection` it touches. Spelled out so that a
    replay (:mod:`agents.backtest`) can drive the same runner on a virtual clock."""

    @property
    def validator_hotkey(self) -> str: ...

    @property
    def outbox(self) -> RunnerOutbox | None: ...

    @property
    def state(self) -> ConnectionState: ...

    @property
    def games(self) -> Mapping[str, Game]: ...

    @property
    def limits(self) -> Limits | None: ...

    @property
    def cutoff_margin(self) -> timedelta: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def wait_ready(self, timeout: float | None = None) -> None: ...

    def game_updates(self, buffer: int | None = None) -> AsyncIterator[GameUpdate]: ...

    def confirmations(self) -> AsyncIterator[Confirmation]: ...

    async def submit(self, prediction: Prediction, *,
                     timeout: float | None = None) -> Confirmation: ...

    def server_now(self) -> datetime: ...


def _random_prediction_id() -> str:
    return str(uuid.uuid4())


class AgentRunner:
    """Run ``agent`` against ``connections`` (one task per validator).

    ``daily_budget``: the most to wager per validator and hub UTC day; None uses each
    validator's announced ``limits.daily_wager_limit`` (a larger value is capped to
    it). ``cutoff_margin_s``: games starting sooner than this (hub clock) are not
    offered (at least the connection's own margin). ``over_budget``: ``"scale"`` a
    pick down to what is left, or ``"drop"`` it. ``min_wager``: smaller wagers are
    not sent. ``submit_timeout_s``: how long to wait for a receipt (an unconfirmed
    prediction stays in the outbox and is resent by the connection).
    ``agent_timeout_s``: bound on each agent call. ``drain_timeout_s``: how long
    :meth:`stop` lets in-flight submissions finish. ``rescan_interval_s``: offer the
    whole table again this often even without updates (None: never).

    ``new_prediction_id``: makes the id of each prediction completed from a
    :class:`~agents.base.Pick` (default: a random UUID; a replay passes a seeded
    source so that the same input gives the same ids).

    Connections that are not started are started by the runner and closed by it on
    stop; started ones are left open.
    """

    def __init__(self, agent: Agent, connections: Sequence[RunnerConnection], *,
                 daily_budget: float | None = None, cutoff_margin_s: float = 5.0,
                 over_budget: OverBudget = "scale", min_wager: float = 0.01,
                 submit_timeout_s: float = 30.0, agent_timeout_s: float = 60.0,
                 drain_timeout_s: float = 10.0, rescan_interval_s: float | None = 60.0,
                 max_attempts: int = 3, max_in_flight: int = 256,
                 new_prediction_id: Callable[[], str] = _random_prediction_id) -> None:
        if not isinstance(agent, Agent):
            raise TypeError(f"agent must be an agents.Agent, not {type(agent).__name__}")
        if daily_budget is not None and (not math.isfinite(daily_budget) or daily_budget < 0):
            raise ValueError(f"daily_budget must be a finite number >= 0, not {daily_budget!r}")
        if over_budget not in ("scale", "drop"):
            raise ValueError(f"over_budget must be 'scale' or 'drop', not {over_budget!r}")
        hotkeys = [conn.validator_hotkey for conn in connections]
        repeated = sorted({h for h in hotkeys if hotkeys.count(h) > 1})
        if repeated:
            raise ValueError(f"more than one connection to validator(s) {repeated}: each "
                             "validator must appear once or games would be predicted twice")
        self.agent = agent
        self.connections = list(connections)
        self.daily_budget = daily_budget
        self.cutoff_margin = timedelta(seconds=max(cutoff_margin_s, 0.0))
        self.over_budget: OverBudget = over_budget
        self.min_wager = min_wager
        self.submit_timeout_s = submit_timeout_s
        self.agent_timeout_s = agent_timeout_s
        self.drain_timeout_s = drain_timeout_s
        self.rescan_interval_s = rescan_interval_s
        self.max_attempts = max(1, max_attempts)
        self.new_prediction_id = new_prediction_id
        self.stats = RunnerStats(agent=agent.name)
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._stopping = asyncio.Event()
        self._used_ids: dict[str, str] = {}
        self._workers: list[_ValidatorWorker] = []
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> AgentRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return any(not task.done() for task in self._tasks)

    async def start(self) -> None:
        """Start one task per validator (returns at once)."""
        if self._tasks:
            return
        self._stopping.clear()
        for conn in self.connections:
            worker = _ValidatorWorker(self, conn)
            self._workers.append(worker)
            self._tasks.append(asyncio.create_task(
                worker.run(), name=f"agent-{self.agent.name}-{conn.validator_hotkey[:8]}"))

    async def run(self) -> RunnerStats:
        """Serve until :meth:`stop` (or until every connection has closed); return the
        stats. Cancelling it stops the runner gracefully."""
        await self.start()
        try:
            await asyncio.gather(*(asyncio.shield(t) for t in self._tasks))
        except asyncio.CancelledError:
            await self.stop()
            raise
        return self.stats

    async def stop(self) -> RunnerStats:
        """Stop offering games, let in-flight submissions finish (bounded by
        ``drain_timeout_s``), call ``on_stop`` for each validator and close the
        connections the runner started."""
        self._stopping.set()
        if self._tasks:
            bound = self.drain_timeout_s + self.agent_timeout_s + 10.0
            _, late = await asyncio.wait(self._tasks, timeout=bound)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for worker in self._workers:
                if worker.owns_connection and late:
                    await worker.conn.close()
        return self.stats

    async def wait_idle(self) -> None:
        """Return once every validator's loop is waiting for game updates with no pass
        under way and every submission answered (or the loop has ended).

        For replays on a virtual clock (:mod:`agents.backtest`), which move time on
        only when the runner has finished reacting to what was published; a live
        miner never needs it."""
        while pending := [w.idle for w in self._workers if not w.idle.is_set()]:
            for event in pending:
                await event.wait()

    # -- helpers for the workers ----------------------------------------------------------

    def fresh_id(self, prediction: Prediction, validator_hotkey: str) -> Prediction:
        """A prediction whose id no *other* validator of this runner got: an agent may
        return one Prediction object to several validators, and ids key the outbox.
        Re-sending an id to the same validator keeps it (the hub answers duplicate)."""
        owner = self._used_ids.get(prediction.prediction_id)
        if owner is not None and owner != validator_hotkey:
            prediction = prediction.model_copy(update={"prediction_id": str(uuid.uuid4())})
        self._used_ids[prediction.prediction_id] = validator_hotkey
        return prediction

    async def call_agent(self, what: str, hook: Callable[..., Any], *args: Any,
                         stats: ValidatorStats, logger: logging.LoggerAdapter[logging.Logger],
                         interruptible: bool = False) -> tuple[bool, Any]:
        """Call an agent hook (async or plain), bounded by ``agent_timeout_s``;
        return (ok, result). Exceptions are logged with the agent's name and counted,
        never raised. ``interruptible``: give up (not ok) as soon as the runner stops."""
        try:
            async with asyncio.timeout(self.agent_timeout_s):
                result = hook(*args)
                if inspect.isawaitable(result):
                    if interruptible:
                        done = await until_stopped(result, self._stopping)
                        return (False, None) if done is None else (True, done.result())
                    result = await result
                return True, result
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            stats.agent_errors += 1
            logger.error("agent %r: %s did not finish within %.1fs; skipped",
                         self.agent.name, what, self.agent_timeout_s)
        except Exception:  # an agent's bug costs that one call, never the runner
            stats.agent_errors += 1
            logger.exception("agent %r raised in %s", self.agent.name, what)
        return False, None


class _ValidatorWorker:
    """Everything the runner does for one validator."""

    def __init__(self, runner: AgentRunner, conn: RunnerConnection) -> None:
        self.runner = runner
        self.agent = runner.agent
        self.conn = conn
        self.hotkey = conn.validator_hotkey
        self.stats = runner.stats.validator(self.hotkey)
        self.log = agent_logger(self.agent.name, self.hotkey)
        self.ledger = DailySpend()
        self.predicted: set[str] = set()
        self.attempts: Counter[str] = Counter()
        self.dirty: set[str] = set()
        self.rescan = True  # the whole table at the first pass
        self.wake = asyncio.Event()
        self.updates_closed = False
        self.in_flight: set[asyncio.Task[None]] = set()
        self.owns_connection = False
        self.started = False
        self.waiting = False  # blocked in _wait_for_work
        self.finished = False
        self.idle = asyncio.Event()  # see AgentRunner.wait_idle

    def _note_idle(self) -> None:
        if self.finished or (self.waiting and not self.in_flight and not self.dirty
                             and not self.rescan):
            self.idle.set()
        else:
            self.idle.clear()

    # -- main loop ------------------------------------------------------------------------

    async def run(self) -> None:
        readers: list[asyncio.Task[None]] = []
        try:
            if self.conn.outbox is None:
                await self.conn.start()
                self.owns_connection = True
            await self._seed()
            # Subscribe before the first look at the table so no update falls in between.
            readers.append(asyncio.create_task(self._read_updates(self.conn.game_updates())))
            readers.append(asyncio.create_task(
                self._read_confirmations(self.conn.confirmations())))
            if not await self._wait_ready():
                return
            await self.runner.call_agent("on_start", self.agent.on_start,
                                         await self._context(), stats=self.stats,
                                         logger=self.log)
            self.started = True
            while not self.runner._stopping.is_set():
                if not await self._wait_for_work():
                    break
                await self._pass()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug ends this validator's loop (logged), never the others
            self.stats.errors += 1
            self.log.exception("runner for validator %s failed", self.hotkey)
        finally:
            try:
                await self._shutdown(readers)
            finally:
                self.finished = True
                self._note_idle()

    async def _seed(self) -> None:
        assert self.conn.outbox is not None
        entries = await self.conn.outbox.entries(self.hotkey)
        counted = [e for e in entries if e.status in COUNTED_STATUSES]
        self.predicted.update(e.game_id for e in counted)
        self.ledger.seed((e.wager_day, e.wager) for e in counted)
        if counted:
            self.log.info("outbox: %d predictions already made for %d games", len(counted),
                          len(self.predicted))

    async def _wait_ready(self) -> bool:
        """Wait for the connection to open (or the runner to stop); False to give up."""
        ready = await until_stopped(self.conn.wait_ready(), self.runner._stopping)
        if ready is None:
            return False
        error = ready.exception()
        if error is not None:
            self.stats.errors += 1
            self.log.error("validator %s: connection stopped: %s", self.hotkey, error)
            return False
        return self.conn.state is not ConnectionState.CLOSED

    async def _wait_for_work(self) -> bool:
        """Wait until there are changed games (or a rescan is due); False to stop."""
        if self.updates_closed:  # the connection is closed for good
            return False
        while not (self.dirty or self.rescan):
            if self.updates_closed or self.runner._stopping.is_set():
                return False
            self.wake.clear()
            self.waiting = True
            self._note_idle()
            try:
                woken = await until_stopped(self.wake.wait(), self.runner._stopping,
                                            timeout=self.runner.rescan_interval_s)
            finally:
                self.waiting = False
                self._note_idle()
            if woken is None and not self.runner._stopping.is_set():
                self.rescan = True
        return not self.runner._stopping.is_set()

    async def _read_updates(self, updates: AsyncIterator[GameUpdate]) -> None:
        try:
            async for update in updates:
                if update.snapshot:
                    self.rescan = True
                self.dirty.update(game.game_id for game in update.games)
                self._note_idle()
                self.wake.set()
        except asyncio.CancelledError:
            raise
        except BettensorWSError as exc:  # the connection's permanent error ends the stream
            self.log.error("validator %s: game updates ended: %s", self.hotkey, exc)
        finally:
            self.updates_closed = True
            self.wake.set()
            self._note_idle()

    async def _read_confirmations(self, confirmations: AsyncIterator[Confirmation]) -> None:
        with contextlib.suppress(BettensorWSError):  # ends with the connection's error
            async for confirmation in confirmations:
                ctx = await self._context()
                await self.runner.call_agent("on_confirmation", self.agent.on_confirmation,
                                             confirmation, ctx, stats=self.stats,
                                             logger=self.log)

    async def _shutdown(self, readers: list[asyncio.Task[None]]) -> None:
        if self.in_flight:
            _, pending = await asyncio.wait(set(self.in_flight),
                                            timeout=self.runner.drain_timeout_s)
            if pending:
                self.log.warning("%d submissions still unconfirmed at stop; they stay in the "
                                 "outbox and are resent by the next connection", len(pending))
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        if self.started:
            try:
                ctx = await self._context()
                await self.runner.call_agent("on_stop", self.agent.on_stop, ctx,
                                             stats=self.stats, logger=self.log)
            except Exception:  # shutting down goes on whatever on_stop needed (logged)
                self.log.warning("on_stop could not run", exc_info=True)
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        if self.owns_connection:
            await self.conn.close()

    # -- one pass: offer, complete, budget, submit ----------------------------------------

    def _budget(self) -> float:
        limits = self.conn.limits
        limit = limits.daily_wager_limit if limits is not None else DEFAULT_DAILY_WAGER_LIMIT
        budget = self.runner.daily_budget
        return limit if budget is None else min(budget, limit)

    async def _context(self, now: datetime | None = None,
                       table: dict[str, Game] | None = None) -> AgentContext:
        now = now or self.conn.server_now()
        day = wager_day(now)
        key = day.isoformat()
        if self.conn.outbox is not None and not self.conn.outbox.closed:
            self.ledger.observe(key, await self.conn.outbox.wagered(self.hotkey, key))
        budget = self._budget()
        return AgentContext(
            validator_hotkey=self.hotkey, server_time=now,
            bankroll_left=self.ledger.left(key, budget), daily_budget=budget,
            wagered_today=self.ledger.wagered(key),
            games=MappingProxyType(table if table is not None else dict(self.conn.games)),
            logger=self.log, predicted=frozenset(self.predicted), limits=self.conn.limits,
            day=day)

    def _open(self, game: Game, cutoff: datetime) -> bool:
        return game.active and not game.settled and game.event_start_date > cutoff

    def _cutoff(self, now: datetime) -> datetime:
        return now + max(self.runner.cutoff_margin, self.conn.cutoff_margin)

    async def _pass(self) -> None:
        table = dict(self.conn.games)
        if self.rescan:
            ids: set[str] = set(table)
        else:
            ids = self.dirty & set(table)
        self.rescan = False
        self.dirty = set()
        now = self.conn.server_now()
        cutoff = self._cutoff(now)
        repeat = self.agent.allow_repeat
        try:
            games = sorted(
                (table[i] for i in ids
                 if (repeat or i not in self.predicted)
                 and self.attempts[i] < self.runner.max_attempts
                 and self._open(table[i], cutoff) and self.agent.interested_in(table[i])),
                key=lambda g: (g.event_start_date, g.game_id))
        except Exception:  # an agent's bug costs this pass, never the runner
            self.stats.agent_errors += 1
            self.log.exception("agent %r raised in interested_in", self.agent.name)
            return
        if not games:
            return
        ctx = await self._context(now, table)
        self.stats.batches += 1
        ok, result = await self.runner.call_agent(
            "on_games", self.agent.on_games, games, ctx, stats=self.stats, logger=self.log,
            interruptible=True)
        if not ok or not result:
            return
        if not isinstance(result, list | tuple):
            self.stats.agent_errors += 1
            self.log.error("agent %r: on_games must return a list of Pick/Prediction, not %s",
                           self.agent.name, type(result).__name__)
            return
        # Odds may have moved while the agent thought: complete at the latest state.
        latest = dict(self.conn.games)
        now = self.conn.server_now()
        day = wager_day(now)
        seen: set[str] = set()
        for item in result:
            prediction = self._prepare(item, latest, self._cutoff(now), day, seen)
            if prediction is not None:
                self._spawn_submit(prediction, day)

    def _skip(self, reason: str, message: str, *args: Any) -> None:
        self.stats.skipped[reason] += 1
        self.log.info("skipped (%s): " + message, reason, *args)

    def _prepare(self, item: Any, table: dict[str, Game], cutoff: datetime, day: date,
                 seen: set[str]) -> Prediction | None:
        """Check one pick against the repeat rule, the table, the cutoff and the budget;
        reserve its wager and return the prediction to send (None: skipped)."""
        if not isinstance(item, Pick | Prediction):
            self.stats.agent_errors += 1
            self._skip("invalid_pick", "agent returned %r, not a Pick or Prediction", item)
            return None
        game_id = item.game_id
        if game_id in seen or (not self.agent.allow_repeat and game_id in self.predicted):
            self._skip("repeat", "game %s is already predicted for this validator", game_id)
            return None
        game = table.get(game_id)
        if game is None:
            self._skip("unknown_game", "game %s is not in this validator's table", game_id)
            return None
        if not self._open(game, cutoff):
            self._skip("started", "game %s is closed or starts before the cutoff", game_id)
            return None
        key = day.isoformat()
        left = self.ledger.left(key, self._budget())
        wager = fit_wager(float(item.wager), left, policy=self.runner.over_budget,
                          min_wager=self.runner.min_wager)
        if wager is None:
            if item.wager > 0 and math.isfinite(item.wager) and item.wager >= self.runner.min_wager:
                self._skip("budget", "wager %g on %s does not fit today's budget (%g left)",
                           item.wager, game_id, left)
            else:
                self._skip("no_wager", "wager %r on %s is not a positive amount of at least %g",
                           item.wager, game_id, self.runner.min_wager)
            return None
        if wager < item.wager:
            self.stats.scaled += 1
            self.log.info("wager on %s scaled from %g to %g to fit today's budget",
                          game_id, item.wager, wager)
        try:
            if isinstance(item, Pick):
                prediction = item.to_prediction(game, wager=wager, model_name=self.agent.name,
                                                prediction_id=self.runner.new_prediction_id())
            else:
                prediction = item if wager == item.wager else item.model_copy(
                    update={"wager": wager})
        except (ValueError, ValidationError) as exc:
            self._skip("invalid_pick", "pick %r cannot be completed: %s", item, exc)
            return None
        prediction = self.runner.fresh_id(prediction, self.hotkey)
        seen.add(game_id)
        self.predicted.add(game_id)
        self.attempts[game_id] += 1
        self.ledger.reserve(key, wager)
        self.stats.add_wager(key, game_id, wager)
        return prediction

    def _spawn_submit(self, prediction: Prediction, day: date) -> None:
        task = asyncio.create_task(self._submit(prediction, day.isoformat()),
                                   name=f"submit-{prediction.prediction_id}")
        self.in_flight.add(task)
        task.add_done_callback(self._submitted)

    def _submitted(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self._note_idle()

    async def _submit(self, prediction: Prediction, day: str) -> None:
        game_id, wager = prediction.game_id, prediction.wager
        async with self.runner._in_flight:
            self.stats.submitted += 1
            try:
                confirmation = await self.conn.submit(prediction,
                                                      timeout=self.runner.submit_timeout_s)
            except PredictionRejected as exc:
                self._rejected(prediction, day, str(exc.code), exc.message)
                return
            except ReceiptError as exc:
                self.stats.errors += 1
                self.log.error("prediction %s on %s: %s", prediction.prediction_id, game_id, exc)
                return
            except (TimeoutError, LinkError) as exc:
                self.stats.unconfirmed += 1
                self.log.warning("prediction %s on %s not confirmed yet (%s); it stays in the "
                                 "outbox and is resent", prediction.prediction_id, game_id,
                                 exc or "timeout")
                return
            except Exception:  # unexpected: counted and logged, never fatal to the runner
                self.stats.errors += 1
                self.log.exception("submitting %s on %s failed", prediction.prediction_id,
                                   game_id)
                return
        if confirmation.status is ConfirmationStatus.DUPLICATE:
            self.stats.duplicate += 1
        else:
            self.stats.accepted += 1
        self.log.debug("prediction %s on %s: %s (wager %g)", prediction.prediction_id, game_id,
                       confirmation.status, wager)

    def _rejected(self, prediction: Prediction, day: str, code: str, message: str) -> None:
        game_id = prediction.game_id
        self.stats.rejected[code] += 1
        self.ledger.release(day, prediction.wager)
        self.stats.remove_wager(day, game_id, prediction.wager)
        if code == ErrorCode.WAGER_LIMIT:
            self.ledger.exhaust(day, self._budget())
        if code in RETRY_CODES:
            # Offered again with its next update (or the next rescan), up to max_attempts;
            # at once when the update that moved the odds has already arrived.
            self.predicted.discard(game_id)
            game = self.conn.games.get(game_id)
            if (code == ErrorCode.ODDS_MISMATCH and game is not None
                    and _odds(game) != _odds(prediction)):
                self.dirty.add(game_id)
                self._note_idle()
                self.wake.set()
        self.log.warning("prediction %s on %s rejected: [%s] %s", prediction.prediction_id,
                         game_id, code, message)


def _odds(item: Game | Prediction) -> tuple[float, float, float | None]:
    return item.team_a_odds, item.team_b_odds, item.tie_odds
