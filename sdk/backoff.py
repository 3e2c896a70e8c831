"""Backoff delays: full-jitter exponential backoff (tenacity) that honours Retry-After.

Pure: computes delays, never sleeps. Full jitter (a uniform draw from
``[0, min(cap, base * 2**(attempt-1))]``) spreads a crowd of miners reconnecting
after a hub restart instead of having them stampede in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tenacity import RetryCallState, Retrying, wait_random_exponential


@dataclass
class Backoff:
    """Delays for reconnect attempt 1, 2, 3, ... (attempt counts failures in a row)."""

    base: float = 0.5
    cap: float = 30.0
    _wait: wait_random_exponential = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap <= 0:
            raise ValueError("backoff base and cap must be positive")
        self._wait = wait_random_exponential(multiplier=self.base, max=self.cap)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``.

        A server's ``Retry-After`` is a floor, with a uniform spread as wide as the
        wait itself (within the cap) on top: a crowd told "come back in 5 s" (a hub
        shutting down tells everyone the same) returns over the next 5 s instead of
        in one burst.
        """
        if retry_after is not None and retry_after > 0:
            return retry_after + random.uniform(0, min(self.cap, max(retry_after, self.base)))
        return float(self._wait(_attempt_state(attempt)))


def _attempt_state(attempt: int) -> RetryCallState:
    """tenacity's wait strategies read the attempt number from a call state."""
    state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = max(attempt, 1)
    return state
