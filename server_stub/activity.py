"""Prediction activity for the operator's dashboard: per miner today, per minute, and
rejections by code. Pure logic, no I/O.

:meth:`PredictionActivity.record` runs once per settled prediction, on the hub's hot
path (the prediction benchmark measures it): it is a handful of O(1) dict and list
updates, and nothing else. Everything the dashboard derives (sorting, shares, the
chart) is computed when the page asks (:meth:`PredictionActivity.per_minute`).

"Today" is the UTC day, like the daily wager limit's: a miner's counts start at zero
with its first prediction of a new day, and the previous day's entries are dropped
then, so the table holds at most the miners seen since midnight UTC.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

__all__ = ["MinerDay", "PredictionActivity"]

_DAY_S = 86_400
_MINUTE_S = 60


class MinerDay:
    """One miner's settled predictions on one UTC day."""

    __slots__ = ("accepted", "day", "duplicate", "last_ms", "rejected")

    def __init__(self, day: int) -> None:
        self.day = day
        self.accepted = 0
        self.rejected = 0
        self.duplicate = 0
        self.last_ms = 0
        """When its last prediction settled (epoch milliseconds)."""


class PredictionActivity:
    """Counters behind the dashboard's miner table and prediction chart.

    ``minutes``: how many minutes of per-minute history are kept (a ring of that many
    buckets, each stamped with its minute so a stale bucket reads as zero). ``now``:
    the wall clock in seconds (the hub passes its :class:`~server_stub.clock.HubClock`).
    """

    def __init__(self, *, minutes: int = 60, now: Callable[[], float] = time.time) -> None:
        if minutes < 1:
            raise ValueError("minutes must be at least 1")
        self.minutes = minutes
        self._now = now
        self._day = -1
        self._miners: dict[str, MinerDay] = {}
        self._stamps = [-1] * minutes
        self._totals = [0] * minutes
        self._accepted = [0] * minutes
        self.rejections: Counter[str] = Counter()
        """Rejected predictions by code, since the hub started."""

    def record(self, hotkey: str, status: str, code: str) -> None:
        """One settled prediction of ``hotkey``: ``status`` accepted, duplicate or
        rejected (with its ``code``)."""
        now = self._now()
        day = int(now // _DAY_S)
        if day != self._day:  # midnight UTC: yesterday's counts are no longer "today"
            self._day = day
            self._miners = {}
        miner = self._miners.get(hotkey)
        if miner is None:
            miner = self._miners[hotkey] = MinerDay(day)
        minute = int(now // _MINUTE_S)
        slot = minute % self.minutes
        if self._stamps[slot] != minute:
            self._stamps[slot] = minute
            self._totals[slot] = 0
            self._accepted[slot] = 0
        self._totals[slot] += 1
        miner.last_ms = int(now * 1000)
        if status == "accepted":
            miner.accepted += 1
            self._accepted[slot] += 1
        elif status == "duplicate":
            miner.duplicate += 1
        else:
            miner.rejected += 1
            self.rejections[code] += 1

    def today(self, hotkey: str) -> MinerDay | None:
        """``hotkey``'s counts for the current UTC day (None: no prediction today)."""
        miner = self._miners.get(hotkey)
        if miner is None or miner.day != int(self._now() // _DAY_S):
            return None
        return miner

    @property
    def miners_today(self) -> int:
        """Miners with at least one settled prediction today (UTC)."""
        return len(self._miners) if self._day == int(self._now() // _DAY_S) else 0

    def per_minute(self) -> list[tuple[int, int, int]]:
        """``(minute start in epoch seconds, predictions, accepted)`` for each of the
        last ``minutes`` minutes, oldest first, the current (partial) minute last."""
        current = int(self._now() // _MINUTE_S)
        history = []
        for minute in range(current - self.minutes + 1, current + 1):
            slot = minute % self.minutes
            if self._stamps[slot] == minute:
                history.append((minute * _MINUTE_S, self._totals[slot], self._accepted[slot]))
            else:
                history.append((minute * _MINUTE_S, 0, 0))
        return history
