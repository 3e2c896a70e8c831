"""``ValidatorWorker``: everything an :class:`~agents.runner.AgentRunner` does for one
validator (read its stream, offer the agent what is open, complete and budget the picks,
submit them, follow their confirmations), and :class:`RunnerConnection`, what it needs
of a connection (a :class:`~sdk.connection.ValidatorConnection`, or the backtester's
replay).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from datetime import date, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from sdk.codes import ConfirmationStatus, ErrorCode
from sdk.connection import ConnectionState
from sdk.errors import BettensorWSError, LinkError, PredictionRejected, ReceiptError
from sdk.frames import Confirmation, GameUpdate, Limits
from sdk.models import Game, Prediction
from sdk.outbox import COUNTED_STATUSES, OutboxEntry
from sdk.validation import DEFAULT_DAILY_WAGER_LIMIT, wager_day

from .base import AgentContext, Pick, agent_logger
from .budget import DailySpend, fit_wager
from .stopping import until_stopped

if TYPE_CHECKING:
    from .runner import AgentRunner

__all__ = ["RETRY_CODES", "RunnerConnection", "RunnerOutbox", "ValidatorWorker"]

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


class ValidatorWorker:
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
