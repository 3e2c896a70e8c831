"""``bt-miner backtest``: replay a recording or a football-data.co.uk CSV to agents.

The replay runs each agent through the real :class:`~agents.AgentRunner` on a virtual
clock, against the hub's own rules (:mod:`agents.backtest`), then prints, per agent,
the money figures and the validator's scores; ``--json`` and ``--plot`` write them.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agents.backtest.backtester import Backtest, backtest, load_data
from agents.backtest.plot import MatplotlibMissing, plot_reports
from agents.backtest.recording import RecordingError
from agents.loader import AgentLoadError, load_agent

from .common import EXIT_OK, EXIT_USAGE, CliError, parse_agent_options, put_app_dir_first

__all__ = ["run_backtest", "split_agent_options"]


def split_agent_options(agents: list[str], values: list[str]) -> list[dict[str, Any]]:
    """``--agent-opt`` values per agent: ``KEY=VALUE`` goes to every agent,
    ``AGENT.KEY=VALUE`` only to the ``--agent AGENT`` given."""
    per_agent: list[dict[str, Any]] = [{} for _ in agents]
    for value in values:
        key, eq, _ = value.partition("=")
        target, dot, _ = key.rpartition(".")
        if eq and dot:
            if target not in agents:
                raise CliError(f"--agent-opt {value!r}: {target!r} is not one of the "
                               f"--agent values ({', '.join(agents)})")
            options = parse_agent_options([value[len(target) + 1:]])
            per_agent[agents.index(target)].update(options)
            continue
        options = parse_agent_options([value])
        for mine in per_agent:
            mine.update(options)
    return per_agent


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _tables(result: Backtest) -> tuple[Table, Table]:
    money = Table(title="backtest: money (ROI, CLV, risk: the validator's formulas)",
                  title_justify="left")
    for column in ("agent", "predictions", "wagered", "payout", "profit", "ROI", "CLV",
                   "risk", "hit rate", "max drawdown"):
        money.add_column(column, justify="left" if column == "agent" else "right")
    scores = Table(title="backtest: tier scores on the last day (mean daily composite over "
                         "3/7/15/30/45 days) and tiers whose wager requirement is met",
                   title_justify="left")
    for column in ("agent", "tier 1", "tier 2", "tier 3", "tier 4", "tier 5", "tiers met"):
        scores.add_column(column, justify="left" if column == "agent" else "right")
    for report in result.reports:
        hit = "-" if report.hit_rate is None else f"{report.hit_rate:.1%}"
        money.add_row(
            report.agent, str(report.predictions), _money(report.wagered),
            _money(report.payout), _money(report.profit), f"{report.roi:+.4f}",
            f"{report.clv:.4f}", f"{report.risk_score:+.4f}", hit,
            _money(report.max_drawdown))
        scores.add_row(report.agent, *(f"{score:+.4f}" for score in report.tier_scores),
                       ",".join(str(t) for t in report.tiers_met) or "-")
    return money, scores


async def run_backtest(*, agents: list[str], data: Path, agent_options: list[str],
                       json_out: Path | None, plot_out: Path | None, seed: int,
                       daily_budget: float | None, app_dir: Path | None,
                       console: Console) -> int:
    if not agents:
        raise CliError("give at least one --agent")
    if len(set(agents)) != len(agents):
        raise CliError("each --agent may be given once")
    if app_dir is not None:
        put_app_dir_first(app_dir)
    options = split_agent_options(agents, agent_options)
    try:
        loaded = [load_agent(name, **opts) for name, opts in zip(agents, options, strict=True)]
    except AgentLoadError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    try:
        replay_data = load_data(data)
    except OSError as exc:
        raise CliError(f"--data {str(data)!r}: {exc.strerror or exc}") from None
    except (RecordingError, UnicodeDecodeError) as exc:
        raise CliError(f"--data {str(data)!r}: {exc}") from None
    if plot_out is not None:
        try:
            from agents.backtest.plot import _pyplot

            _pyplot(headless=True)
        except MatplotlibMissing as exc:
            raise CliError(f"--plot: {exc}") from None
    started = time.perf_counter()
    result = await backtest(loaded, replay_data, seed=seed, daily_budget=daily_budget,
                            options=options)
    elapsed = time.perf_counter() - started
    skipped = (f"; {replay_data.skipped_rows} row(s) without odds skipped"
               if replay_data.kind == "csv" else "")
    console.print(f"{replay_data.games} games, {len(replay_data.events)} updates from "
                  f"{replay_data.source} ({replay_data.kind}{skipped}); replayed in "
                  f"{elapsed:.2f} s")
    for table in _tables(result):
        console.print(table)
    for report in result.reports:
        if report.rejected or report.agent_errors:
            console.print(f"{report.agent}: rejected {report.rejected or 0}, agent errors "
                          f"{report.agent_errors}")
    if json_out is not None:
        text = json.dumps(result.to_json(), indent=1, allow_nan=False) + "\n"
        await asyncio.to_thread(json_out.write_text, text, encoding="utf-8")
        console.print(f"JSON written to {json_out}")
    if plot_out is not None:
        plot_reports(result.reports, plot_out, headless=True)
        console.print(f"plot written to {plot_out}")
    return EXIT_OK
