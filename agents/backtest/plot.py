"""``--plot``: cumulative profit and daily composite score per agent, as a PNG.

matplotlib is an optional dependency (the ``notebook`` and ``test`` extras): it is
imported only here, only when a plot is asked for."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from .results import AgentReport

__all__ = ["MatplotlibMissing", "plot_reports"]


class MatplotlibMissing(RuntimeError):
    """Plotting was asked for without matplotlib installed."""


def _pyplot(*, headless: bool = False) -> Any:
    """pyplot, with the backend already chosen (a notebook's inline one), or the
    file-only Agg backend when ``headless`` (the command line)."""
    try:
        import matplotlib
    except ImportError:
        raise MatplotlibMissing(
            "plotting needs matplotlib: pip install 'bettensor-ws[notebook]' "
            "(or pip install matplotlib)") from None
    if headless:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_reports(reports: Sequence[AgentReport], out: str | Path | None = None, *,
                 headless: bool = False) -> Any:
    """A figure with two panels (cumulative profit, daily composite) per agent; saved
    as PNG to ``out`` when given. Returns the matplotlib figure (in a notebook it is
    shown inline). ``headless``: draw with the Agg backend and close the figure once
    saved (the command line)."""
    plt = _pyplot(headless=headless)
    figure, (profit_axes, score_axes) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for report in reports:
        days = [date.fromisoformat(row.day) for row in report.days]
        profit_axes.plot(days, [row.cumulative_profit for row in report.days],
                         label=report.agent)
        score_axes.plot(days, [row.composite for row in report.days], label=report.agent)
    profit_axes.set_ylabel("cumulative profit")
    profit_axes.axhline(0.0, color="grey", linewidth=0.8)
    profit_axes.legend(loc="best")
    score_axes.set_ylabel("daily composite score")
    score_axes.axhline(0.0, color="grey", linewidth=0.8)
    score_axes.set_xlabel("day (UTC)")
    figure.autofmt_xdate()
    figure.tight_layout()
    if out is not None:
        figure.savefig(Path(out), format="png", dpi=100)
    if headless:
        plt.close(figure)
    return figure
