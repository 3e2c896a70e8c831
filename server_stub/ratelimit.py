"""Bounded per-key limiter tables of token buckets. Pure logic: callers pass ``now``."""

from __future__ import annotations

from collections import OrderedDict

from sdk.pacing import TokenBucket

__all__ = ["KeyedLimiter", "TokenBucket"]


class KeyedLimiter:
    """One token bucket per key (hotkey, address) in a table of bounded size.

    When the table is full the least recently used bucket is forgotten: an attacker
    spraying keys cannot grow memory, at worst resetting some buckets to full.
    """

    def __init__(self, rate: float, capacity: float, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.capacity = capacity
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def bucket(self, key: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.capacity, updated=now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket

    def allow(self, key: str, now: float) -> bool:
        return self.bucket(key, now).take(now)

    def retry_after(self, key: str) -> float:
        bucket = self._buckets.get(key)
        return bucket.wait_time() if bucket is not None else 0.0

    def __len__(self) -> int:
        return len(self._buckets)
