"""Reconnect policy: full-jitter exponential backoff (tenacity) that honours Retry-After.

Pure: computes delays, never sleeps. Full jitter (a uniform draw from
``[0, min(cap, base * 2**(attempt-1))]``) spreads a crowd of miners reconnecting
after a hub restart instead of having them stampede in lockstep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from tenacity import wait_random_exponential


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

        A server's ``Retry-After`` is a floor: the jittered delay is drawn on top of
        it (within the cap), so clients told to wait the same time do not return
        together either.
        """
        jitter = float(self._wait(SimpleNamespace(attempt_number=max(attempt, 1))))
        if retry_after is not None and retry_after > 0:
            return retry_after + min(jitter, self.base * 4)
        return jitter
