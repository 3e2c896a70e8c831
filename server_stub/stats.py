"""Hub counters: one set of numbers behind both /ws/health and /metrics."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .activity import PredictionActivity

Label = TypeVar("Label", str, int)


@dataclass
class HubStats:
    started_monotonic: float = field(default_factory=time.monotonic)
    connections_total: int = 0
    active_connections: int = 0
    messages_in: Counter[str] = field(default_factory=Counter)
    messages_out: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    predictions: Counter[str] = field(default_factory=Counter)
    handshake_refusals: Counter[int] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    broadcasts: int = 0
    activity: PredictionActivity = field(default_factory=PredictionActivity)
    """Predictions per miner today and per minute (the dashboard's)."""

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic


class StatsCollector(Collector):
    """Exposes :class:`HubStats` (and a few live gauges) to prometheus-client."""

    def __init__(self, stats: HubStats, gauges: Callable[[], dict[str, float]]) -> None:
        self.stats = stats
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        yield _counter("bt_hub_connections", "WebSocket connections accepted", s.connections_total)
        yield _gauge("bt_hub_active_connections", "Open WebSocket connections",
                     s.active_connections)
        yield _gauge("bt_hub_uptime_seconds", "Seconds since the hub started", s.uptime_s)
        yield _counter("bt_hub_messages_out", "Frames queued to miners", s.messages_out)
        yield _counter("bt_hub_broadcasts", "game_update broadcasts", s.broadcasts)
        yield _labelled("bt_hub_messages_in", "Frames received from miners", "type",
                        s.messages_in)
        yield _labelled("bt_hub_errors", "Errors by code", "code", s.errors)
        yield _labelled("bt_hub_predictions", "Predictions by outcome", "status", s.predictions)
        yield _labelled("bt_hub_handshake_refusals", "Refused upgrades by HTTP status", "status",
                        s.handshake_refusals)
        yield _labelled("bt_hub_closes", "Connections closed by the hub, by close code", "code",
                        s.closes)
        for name, value in self.gauges().items():
            yield _gauge(f"bt_hub_{name}", name.replace("_", " "), value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled(name: str, doc: str, label: str, values: Counter[Label]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items(), key=lambda item: str(item[0])):
        family.add_metric([str(key)], value)
    return family
