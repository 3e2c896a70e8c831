"""The hub clock. Cutoffs and wager days are judged on it; tests can skew it."""

from __future__ import annotations

import time
from datetime import UTC, datetime


class HubClock:
    """Wall clock plus a fixed ``offset_ns`` (0 in production)."""

    def __init__(self, offset_ns: int = 0) -> None:
        self.offset_ns = offset_ns

    def now_ns(self) -> int:
        return time.time_ns() + self.offset_ns

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_ns() / 1e9, UTC)
