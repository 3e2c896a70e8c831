"""What a miner's predictions returned, per UTC day: pure arithmetic over outbox
entries (no I/O), shared by ``bt-miner status`` and anyone reading an outbox.

Only confirmed predictions (``accepted``/``duplicate``) count: a pending or rejected
one staked nothing with the validator. A confirmed prediction is either settled
(its stake is in ``wagered``, its return in ``payout``) or still open (its stake is
``open_exposure``). The day is the prediction's ``wager_day``: the hub's UTC day the
wager counts against, as the validator's daily limit does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .outbox import CONFIRMED_STATUSES, OutboxEntry


@dataclass(slots=True)
class DayResults:
    """One UTC day of confirmed predictions with one validator."""

    day: str
    settled: int = 0
    wins: int = 0
    wagered: float = 0.0
    """Stakes of the settled predictions."""
    payout: float = 0.0
    """What the settled predictions returned (wager x odds on a win, else 0)."""
    open_exposure: float = 0.0
    """Stakes of the confirmed predictions whose game has not settled yet."""
    open: int = 0

    @property
    def profit(self) -> float:
        return self.payout - self.wagered

    @property
    def roi(self) -> float | None:
        """Profit over the settled stakes; None before anything with a stake settled."""
        return self.profit / self.wagered if self.wagered > 0 else None

    @property
    def hit_rate(self) -> float | None:
        """Wins over settled predictions; None before any settled."""
        return self.wins / self.settled if self.settled else None

    def add(self, entry: OutboxEntry) -> None:
        """Count one confirmed prediction."""
        if entry.outcome is None or entry.payout is None:
            self.open += 1
            self.open_exposure += entry.wager
            return
        self.settled += 1
        self.wagered += entry.wager
        self.payout += entry.payout
        if entry.prediction.get("predicted_outcome") == entry.outcome:
            self.wins += 1

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.day, "settled": self.settled, "wins": self.wins,
                "wagered": self.wagered, "payout": self.payout, "profit": self.profit,
                "roi": self.roi, "hit_rate": self.hit_rate, "open": self.open,
                "open_exposure": self.open_exposure}


def results_by_day(entries: Iterable[OutboxEntry]) -> list[DayResults]:
    """One :class:`DayResults` per ``wager_day`` with a confirmed prediction, oldest
    day first (entries of one validator: an outbox file holds one)."""
    days: dict[str, DayResults] = {}
    for entry in entries:
        if entry.status not in CONFIRMED_STATUSES:
            continue
        day = days.get(entry.wager_day)
        if day is None:
            day = days[entry.wager_day] = DayResults(entry.wager_day)
        day.add(entry)
    return [days[day] for day in sorted(days)]
