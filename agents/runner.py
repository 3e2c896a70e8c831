"""``AgentRunner``: connects one agent to one or many validators.

For each :class:`~sdk.connection.ValidatorConnection` the runner runs one
:class:`~agents.worker.ValidatorWorker` task that

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
import inspect
import logging
import math
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from sdk.models import Prediction

from .base import Agent
from .budget import OverBudget
from .stats import RunnerStats, ValidatorStats
from .stopping import until_stopped
from .worker import RunnerConnection, ValidatorWorker

__all__ = ["AgentRunner"]

log = logging.getLogger("agents.runner")




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
        self._workers: list[ValidatorWorker] = []
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
            worker = ValidatorWorker(self, conn)
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
