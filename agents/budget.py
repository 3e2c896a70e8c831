"""Daily wager budget bookkeeping (pure; no clocks, no I/O).

A validator allows at most ``daily_wager_limit`` per miner per UTC day of *its* clock.
The runner keeps one :class:`DailySpend` per validator: what was wagered per day
(seeded at start from the outbox entries whose status counts,
:data:`sdk.outbox.COUNTED_STATUSES`, then every submission reserved before it is sent
and released again if it is rejected), and :func:`fit_wager` decides what happens to
a pick that does not fit what is left.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

__all__ = ["DailySpend", "OverBudget", "fit_wager"]

OverBudget = Literal["scale", "drop"]

_EPSILON = 1e-9


def fit_wager(wager: float, left: float, *, policy: OverBudget = "scale",
              min_wager: float = 0.01, step: float = 0.01) -> float | None:
    """The wager to submit when ``left`` can still be wagered today, or None to drop.

    A wager that fits is returned unchanged. One that does not is dropped
    (``policy="drop"``) or scaled down (``"scale"``) to ``left`` rounded *down* to a
    multiple of ``step`` (never a hair over the limit), and dropped if that is below
    ``min_wager``. Non-positive or non-finite wagers are dropped. The result is never
    more than ``max(left, 0)``.
    """
    if not math.isfinite(wager) or wager <= 0:
        return None
    left = max(left, 0.0) if math.isfinite(left) else (math.inf if left > 0 else 0.0)
    if wager <= left + _EPSILON:
        return min(wager, left) if wager >= min_wager else None
    if policy == "drop":
        return None
    if policy != "scale":
        raise ValueError(f"over-budget policy must be 'scale' or 'drop', not {policy!r}")
    scaled = math.floor(left / step + _EPSILON) * step if step > 0 else left
    scaled = min(round(scaled, 9), left)
    if scaled < min_wager or scaled <= 0:
        return None
    return scaled


class DailySpend:
    """Amount wagered per day (ISO date string) with one validator."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def seed(self, entries: Iterable[tuple[str, float]]) -> None:
        """Add ``(day, wager)`` pairs of earlier submissions (e.g. from the outbox)."""
        for day, wager in entries:
            self.reserve(day, wager)

    def wagered(self, day: str) -> float:
        return self.spent.get(day, 0.0)

    def left(self, day: str, limit: float) -> float:
        return max(limit - self.wagered(day), 0.0)

    def reserve(self, day: str, amount: float) -> None:
        self.spent[day] = self.spent.get(day, 0.0) + amount

    def release(self, day: str, amount: float) -> None:
        self.spent[day] = max(self.spent.get(day, 0.0) - amount, 0.0)

    def exhaust(self, day: str, limit: float) -> None:
        """Mark the day as spent (the hub said so even if our books disagree)."""
        self.spent[day] = max(self.spent.get(day, 0.0), limit)

    def observe(self, day: str, wagered: float) -> None:
        """Never believe less than ``wagered`` was spent on ``day`` (another writer of the
        same outbox, e.g. a prediction submitted by hand, counts too)."""
        if wagered > self.spent.get(day, 0.0):
            self.spent[day] = wagered
