"""Token bucket: the pacing rule shared by the hub's rate limits and the SDK's sender.

Pure: callers pass ``now`` (monotonic seconds)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second up to ``capacity``; ``take`` spends one if it can."""

    rate: float
    capacity: float
    tokens: float = field(default=-1.0)
    updated: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def take(self, now: float, cost: float = 1.0) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def reserve(self, now: float, cost: float = 1.0) -> float:
        """Spend ``cost`` now, going into debt if needed; return the seconds to wait
        before acting so the rate holds (0 when tokens were available). Concurrent
        callers each get their own later slot."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= cost
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def wait_time(self, cost: float = 1.0) -> float:
        """Seconds until ``cost`` tokens are available (after the last ``take``)."""
        missing = cost - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate
