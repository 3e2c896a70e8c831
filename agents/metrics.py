"""Prometheus metrics for the miner operator (``bt-miner run --metrics-port N``).

Nothing is counted as it happens: the connections, the runner and the outbox already
hold every figure, so each scrape reads them once (:func:`read_miner`, a
:class:`MinerReading`) and :class:`MinerCollector` turns that reading into metric
families (pure, no I/O). The outbox is read through its own async writer, so the
exposition is served by aiohttp on the miner's event loop (:func:`serve_metrics`)
rather than by prometheus-client's thread server, which could only block on it.

The metric names are listed in README.md (``bt-miner`` section) and in
:data:`METRIC_NAMES`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sdk.connection import ConnectionState, ValidatorConnection
from sdk.outbox import PENDING
from sdk.validation import DEFAULT_DAILY_WAGER_LIMIT, wager_day

from .runner import AgentRunner

__all__ = ["METRIC_NAMES", "MinerCollector", "MinerReading", "ValidatorReading",
           "exposition", "read_miner", "serve_metrics"]

UP_STATES = frozenset({ConnectionState.OPEN.value, ConnectionState.FALLBACK_HTTP.value})
"""States in which predictions reach the validator (WebSocket or the HTTP fallback)."""


@dataclass(frozen=True, slots=True)
class ValidatorReading:
    """What one scrape saw of one validator."""

    hotkey: str
    state: str
    rtt_s: float | None = None
    clock_offset_s: float = 0.0
    reconnects: int = 0
    predictions: dict[tuple[str, str], int] = field(default_factory=dict)
    """Outbox rows by (status, code); code is "" unless rejected."""
    pending: int = 0
    day: str = ""
    wagered_today: float = 0.0
    daily_limit: float = DEFAULT_DAILY_WAGER_LIMIT
    settled: int = 0
    settled_wagered: float = 0.0
    settled_payout: float = 0.0
    submitted: int = 0
    unconfirmed: int = 0
    agent_errors: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MinerReading:
    """What one scrape saw of the whole miner."""

    miner_hotkey: str
    agent: str
    uptime_s: float
    validators: tuple[ValidatorReading, ...] = ()


async def read_miner(conns: Sequence[ValidatorConnection], runner: AgentRunner | None,
                     *, daily_budget: float | None = None,
                     started: float | None = None) -> MinerReading:
    """Read the live state of a running miner: each connection's state, RTT and clock,
    its outbox (rows by status, pending, wagered today, settled results) and the
    runner's counters. ``started``: the ``time.monotonic()`` the miner started at."""
    readings = []
    for conn in conns:
        stats = runner.stats.validators.get(conn.validator_hotkey) if runner else None
        limit = conn.limits.daily_wager_limit if conn.limits else DEFAULT_DAILY_WAGER_LIMIT
        if daily_budget is not None:
            limit = min(limit, daily_budget)
        day = wager_day(conn.server_now()).isoformat()
        predictions: dict[tuple[str, str], int] = {}
        pending = 0
        wagered = settled_wagered = settled_payout = 0.0
        settled = 0
        outbox = conn.outbox
        if outbox is not None and not outbox.closed:
            for key, count in (await outbox.counts(conn.validator_hotkey)).items():
                status, _, code = key.partition(":")
                predictions[(status, code)] = count
            pending = predictions.get((PENDING, ""), 0)
            wagered = await outbox.wagered(conn.validator_hotkey, day, conn.miner_hotkey)
            settled, settled_wagered, settled_payout = await outbox.settled_totals(
                conn.validator_hotkey, conn.miner_hotkey)
        readings.append(ValidatorReading(
            hotkey=conn.validator_hotkey, state=str(conn.state), rtt_s=conn.rtt,
            clock_offset_s=conn.clock_offset, reconnects=conn.reconnects,
            predictions=predictions, pending=pending, day=day, wagered_today=wagered,
            daily_limit=limit, settled=settled, settled_wagered=settled_wagered,
            settled_payout=settled_payout,
            submitted=stats.submitted if stats else 0,
            unconfirmed=stats.unconfirmed if stats else 0,
            agent_errors=stats.agent_errors if stats else 0,
            skipped=dict(stats.skipped) if stats else {}))
    miner = next((c.miner_hotkey for c in conns if c.miner_hotkey), "")
    return MinerReading(
        miner_hotkey=miner, agent=runner.agent.name if runner else "",
        uptime_s=time.monotonic() - started if started is not None else 0.0,
        validators=tuple(readings))


METRIC_NAMES = (
    "bt_miner_info", "bt_miner_uptime_seconds", "bt_miner_connection_up",
    "bt_miner_connection_state", "bt_miner_rtt_seconds", "bt_miner_clock_offset_seconds",
    "bt_miner_reconnects", "bt_miner_predictions", "bt_miner_outbox_pending",
    "bt_miner_wagered_today", "bt_miner_daily_limit", "bt_miner_settled_predictions",
    "bt_miner_settled_wagered", "bt_miner_settled_payout", "bt_miner_settled_profit",
    "bt_miner_submitted", "bt_miner_unconfirmed", "bt_miner_agent_errors",
    "bt_miner_skipped",
)


class MinerCollector(Collector):
    """The metric families of one :class:`MinerReading` (every figure labelled by
    ``validator`` hotkey). Outbox figures are gauges: rows move from ``pending`` to a
    receipt's status, and an operator may prune the file."""

    def __init__(self, reading: MinerReading) -> None:
        self.reading = reading

    def collect(self) -> Iterator[Metric]:
        r = self.reading
        info = GaugeMetricFamily("bt_miner_info", "The miner's hotkey and agent (always 1)",
                                 labels=["miner", "agent"])
        info.add_metric([r.miner_hotkey, r.agent], 1)
        yield info
        yield GaugeMetricFamily("bt_miner_uptime_seconds", "Seconds since bt-miner started",
                                value=r.uptime_s)
        vs = r.validators
        yield _per_validator(GaugeMetricFamily, "bt_miner_connection_up",
                             "1 while predictions can reach the validator (WebSocket or HTTP "
                             "fallback)", vs, lambda v: 1.0 if v.state in UP_STATES else 0.0)
        states = GaugeMetricFamily("bt_miner_connection_state",
                                   "1 for the connection's current state",
                                   labels=["validator", "state"])
        for v in vs:
            for state in ConnectionState:
                states.add_metric([v.hotkey, state.value], 1.0 if v.state == state else 0.0)
        yield states
        rtt = GaugeMetricFamily("bt_miner_rtt_seconds", "Last heartbeat round trip",
                                labels=["validator"])
        for v in vs:
            if v.rtt_s is not None:
                rtt.add_metric([v.hotkey], v.rtt_s)
        yield rtt
        yield _per_validator(GaugeMetricFamily, "bt_miner_clock_offset_seconds",
                             "Hub clock minus local clock", vs, lambda v: v.clock_offset_s)
        yield _per_validator(CounterMetricFamily, "bt_miner_reconnects",
                             "Sessions that ended and were retried", vs,
                             lambda v: v.reconnects)
        predictions = GaugeMetricFamily(
            "bt_miner_predictions", "Predictions in the outbox by status (rejections by code)",
            labels=["validator", "status", "code"])
        for v in vs:
            for (status, code), count in sorted(v.predictions.items()):
                predictions.add_metric([v.hotkey, status, code], count)
        yield predictions
        yield _per_validator(GaugeMetricFamily, "bt_miner_outbox_pending",
                             "Predictions awaiting their receipt (resent after reconnects)",
                             vs, lambda v: v.pending)
        yield _per_validator(GaugeMetricFamily, "bt_miner_wagered_today",
                             "Wagers counted against today's limit (hub UTC day)", vs,
                             lambda v: v.wagered_today)
        yield _per_validator(GaugeMetricFamily, "bt_miner_daily_limit",
                             "Most that may be wagered today (validator limit or "
                             "--daily-budget)", vs, lambda v: v.daily_limit)
        yield _per_validator(GaugeMetricFamily, "bt_miner_settled_predictions",
                             "Confirmed predictions whose game has a result", vs,
                             lambda v: v.settled)
        yield _per_validator(GaugeMetricFamily, "bt_miner_settled_wagered",
                             "Stakes of the settled predictions", vs,
                             lambda v: v.settled_wagered)
        yield _per_validator(GaugeMetricFamily, "bt_miner_settled_payout",
                             "What the settled predictions returned", vs,
                             lambda v: v.settled_payout)
        yield _per_validator(GaugeMetricFamily, "bt_miner_settled_profit",
                             "Payout minus stakes of the settled predictions", vs,
                             lambda v: v.settled_payout - v.settled_wagered)
        yield _per_validator(CounterMetricFamily, "bt_miner_submitted",
                             "Predictions submitted since start", vs, lambda v: v.submitted)
        yield _per_validator(CounterMetricFamily, "bt_miner_unconfirmed",
                             "Submissions without a receipt in time since start (kept and "
                             "resent)", vs, lambda v: v.unconfirmed)
        yield _per_validator(CounterMetricFamily, "bt_miner_agent_errors",
                             "Exceptions and timeouts of the agent since start", vs,
                             lambda v: v.agent_errors)
        skipped = CounterMetricFamily("bt_miner_skipped", "Picks not submitted, by reason",
                                      labels=["validator", "reason"])
        for v in vs:
            for reason, count in sorted(v.skipped.items()):
                skipped.add_metric([v.hotkey, reason], count)
        yield skipped


def _per_validator(kind: type[GaugeMetricFamily] | type[CounterMetricFamily], name: str,
                   doc: str, validators: Sequence[ValidatorReading],
                   value: Callable[[ValidatorReading], float]) -> Metric:
    family = kind(name, doc, labels=["validator"])
    for v in validators:
        family.add_metric([v.hotkey], value(v))
    return family


def exposition(reading: MinerReading) -> bytes:
    """The Prometheus text format of one reading."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MinerCollector(reading))
    return generate_latest(registry)


@contextlib.asynccontextmanager
async def serve_metrics(read: Callable[[], Awaitable[MinerReading]], host: str = "127.0.0.1",
                        port: int = 0) -> AsyncIterator[str]:
    """Serve ``GET /metrics`` on ``host:port`` (0: any free port) until the block ends;
    yields the URL it listens on. Each scrape calls ``read`` once. Raises OSError when
    the address cannot be bound."""

    async def handle(request: web.Request) -> web.Response:
        body = exposition(await read())
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"http://{shown}:{bound_port}/metrics"
    finally:
        await runner.cleanup()
