"""RTT and clock offset from heartbeat echoes. Pure: callers pass timestamps.

For a heartbeat sent at local ``t0`` (its ``time_ns``), answered by the hub at hub
time ``ts`` and received at local ``t1``: ``rtt = t1 - t0`` and
``offset = ts - (t0 + t1) / 2`` (hub clock minus local clock). The estimate
trusts the sample with the smallest RTT among recent ones, whose error is at most
half its RTT.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClockSample:
    rtt_ns: int
    offset_ns: int


class ClockEstimator:
    def __init__(self, window: int = 16) -> None:
        self._samples: deque[ClockSample] = deque(maxlen=window)
        self.last_rtt_ns: int | None = None

    def add_echo(self, sent_ns: int, server_ns: int, received_ns: int) -> ClockSample | None:
        rtt = received_ns - sent_ns
        if rtt < 0:
            return None  # local clock stepped backwards: the sample means nothing
        sample = ClockSample(rtt, server_ns - (sent_ns + received_ns) // 2)
        self._samples.append(sample)
        self.last_rtt_ns = rtt
        return sample

    def add_rough(self, server_ns: int, received_ns: int) -> None:
        """A one-way reading (e.g. the welcome) used until a real echo arrives."""
        if not self._samples:
            self._samples.append(ClockSample(10**9, server_ns - received_ns))

    @property
    def offset_ns(self) -> int:
        if not self._samples:
            return 0
        return min(self._samples, key=lambda sample: sample.rtt_ns).offset_ns

    @property
    def rtt_ns(self) -> int | None:
        return self.last_rtt_ns
