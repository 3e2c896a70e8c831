"""Soak under chaos: many miners, a hub that restarts, a network that misbehaves.

    python -m bench.soak                              # 200 miners, 300 s, 2 hub restarts
    python -m bench.soak --short                      # CI size: 16 miners, 25 s, 2 restarts
    python -m bench.soak --short --break outbox-resend   # must FAIL: shows what is caught

The hub runs in its own subprocess (``python -m bench.servers hub --feed simulate``:
the built-in simulator with kick-offs every ~20 s and 30 s matches, so games open,
kick off and settle during the run; heartbeat 2 s; limits lifted for one-address
load; a SQLite store in a temp dir). It is restarted ``--restarts`` times at evenly
spaced moments: graceful stop (stdin closed: 1001 to every miner, store flushed),
then a new process on the SAME port and store.

Miners: N ``ValidatorConnection`` + ``AgentRunner`` running ``ValueAgent`` (each its
own outbox file in the temp dir), spread over several ``FaultProxy`` instances (the
client tests' proxy, tests/kit/faultproxy.py). A chaos loop injects random faults on the
proxies: cuts, stalls of a few heartbeat intervals, added per-chunk delays.

At the end the chaos stops, the proxies are released, the runners stop predicting,
and everything is given a bounded time to settle. Then, each with its figure:

(a) every prediction a miner holds as confirmed (outbox status accepted/duplicate) is
    in the hub's SQLite store exactly once under that miner's hotkey (same receipt
    time), and no hub row is missing from the miners' outboxes;
(b) no prediction is still pending;
(c) every miner's game table equals the hub's (signed ``GET /games`` snapshot,
    compared game by game at equal epoch and seq);
(d) the hub's RSS after warm-up stayed under warm-up RSS + 25 % + 20 MiB, per
    incarnation;
(e) no asyncio task leaked in this (the miners') process;
(f) every miner is connected at the end, none stopped with a permanent error;
(g) every hub stop was graceful (exit 0 on stdin EOF) and no hub process logged a
    traceback (their stderr).

Exit code 0 only if every check passes. ``run_soak`` is the same thing as an async
function (tests/test_soak.py runs a short one in CI).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import sqlite3
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from agents import AgentRunner, ValueAgent
from bench import common
from sdk.connection import ConnectionState, ValidatorConnection
from sdk.models import Game, ns_value
from sdk.options import ConnectionOptions

# The fault-injecting TCP proxy of the client tests, imported from there (not copied):
# cut / stall / resume / delay / retarget on every link it forwards.
from tests.kit.faultproxy import FaultProxy

MIB = 1024
RSS_GROWTH = 0.25
RSS_SLACK_KIB = 20 * MIB
CONFIRMED = ("accepted", "duplicate")

BREAKS = {
    "outbox-resend": "ValidatorConnection._resend_pending and _post_pending do nothing: "
                     "predictions left unconfirmed by a disconnect are never resent",
}

Out = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# -- results ----------------------------------------------------------------------------


@dataclass
class Incarnation:
    """One hub process: its RSS samples as (seconds since READY, KiB)."""

    index: int
    pid: int
    port: int
    started: float
    warmup_s: float
    samples: list[tuple[float, int]] = field(default_factory=list)
    stop_s: float | None = None
    exit_code: int | None = None
    stderr: str = ""  # everything the hub process wrote to stderr (its log)

    @property
    def warm_kib(self) -> int | None:
        """RSS at the end of warm-up: the first sample at or after ``warmup_s``."""
        after = [kib for t, kib in self.samples if t >= self.warmup_s]
        return after[0] if after else None

    @property
    def max_after_kib(self) -> int | None:
        after = [kib for t, kib in self.samples if t >= self.warmup_s]
        return max(after[1:]) if len(after) > 1 else None

    @property
    def bound_kib(self) -> int | None:
        warm = self.warm_kib
        return None if warm is None else int(warm * (1 + RSS_GROWTH) + RSS_SLACK_KIB)

    @property
    def rss_ok(self) -> bool:
        peak, bound = self.max_after_kib, self.bound_kib
        return peak is None or bound is None or peak <= bound

    @property
    def graceful(self) -> bool:
        return self.exit_code == 0


@dataclass
class SoakResult:
    miners: int
    seconds: float
    restarts_requested: int
    proxies: int
    breaks: tuple[str, ...]
    wall_s: float = 0.0
    settle_s: float = 0.0
    settled: bool = False
    # predictions (miners' outboxes)
    predictions_made: int = 0
    accepted: int = 0
    duplicate: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    pending: int = 0
    pending_by_miner: dict[int, int] = field(default_factory=dict)
    # (a) against the hub's store
    hub_rows: int = 0
    missing_at_hub: list[tuple[str, str]] = field(default_factory=list)
    orphans_at_hub: list[tuple[str, str]] = field(default_factory=list)
    hub_duplicate_ids: list[str] = field(default_factory=list)
    receipt_mismatches: list[str] = field(default_factory=list)
    # (c) game tables
    hub_epoch: str = ""
    hub_seq: int = 0
    hub_games: int = 0
    tables_matched: int = 0
    table_mismatches: dict[int, str] = field(default_factory=dict)
    # (d) hub memory
    incarnations: list[Incarnation] = field(default_factory=list)
    # (e) tasks
    tasks_before: int = 0
    tasks_after: int = 0
    leaked_tasks: list[str] = field(default_factory=list)
    # (f) connections
    connected_at_end: int = 0
    fatal_errors: list[str] = field(default_factory=list)
    # chaos and churn
    faults: dict[str, int] = field(default_factory=dict)
    links_cut: int = 0
    hub_restarts: int = 0
    reconnects: int = 0
    runner: dict[str, Any] = field(default_factory=dict)
    log_counts: dict[str, int] = field(default_factory=dict)
    log_samples: list[str] = field(default_factory=list)

    @property
    def confirmed(self) -> int:
        return self.accepted + self.duplicate

    @property
    def hub_log(self) -> list[str]:
        """Every non-empty line the hub processes wrote to stderr (WARNING and up)."""
        return [line for inc in self.incarnations for line in inc.stderr.splitlines()
                if line.strip()]

    @property
    def hub_tracebacks(self) -> int:
        return sum(line.startswith("Traceback") for line in self.hub_log)

    @property
    def lost(self) -> int:
        """Predictions a miner made that the hub does not hold as confirmed to it:
        confirmed at the miner but missing at the hub, or never confirmed at all."""
        return len(self.missing_at_hub) + self.pending

    def checks(self) -> list[tuple[str, bool, str]]:
        """(name, passed, figure) for every invariant."""
        a_ok = not (self.missing_at_hub or self.orphans_at_hub or self.hub_duplicate_ids
                    or self.receipt_mismatches) and self.hub_rows == self.confirmed
        a = (f"{self.confirmed} confirmed at miners, {self.hub_rows} rows at hub; "
             f"missing at hub {len(self.missing_at_hub)}, hub rows unknown to miners "
             f"{len(self.orphans_at_hub)}, ids stored more than once "
             f"{len(self.hub_duplicate_ids)}, receipt mismatches {len(self.receipt_mismatches)}")
        b = (f"{self.pending} pending after {self.settle_s:.1f} s of settling"
             + ("" if self.settled else " (settle bound reached)"))
        if self.pending_by_miner:
            b += (f" on {len(self.pending_by_miner)} miners (e.g. "
                  + ", ".join(f"miner {i}: {n}"
                              for i, n in sorted(self.pending_by_miner.items())[:3]) + ")")
        c = (f"{self.tables_matched}/{self.miners} tables equal the hub's "
             f"(epoch {self.hub_epoch}, seq {self.hub_seq}, {self.hub_games} games)")
        if self.table_mismatches:
            first = sorted(self.table_mismatches.items())[:3]
            c += "; e.g. " + "; ".join(f"miner {i}: {why}" for i, why in first)
        d_ok = bool(self.incarnations) and all(inc.rss_ok for inc in self.incarnations)
        d = "; ".join(
            f"#{inc.index}: warm {_mib(inc.warm_kib)} -> max {_mib(inc.max_after_kib)} "
            f"<= bound {_mib(inc.bound_kib)} MiB" for inc in self.incarnations)
        d += f" (bound = warm-up RSS + {RSS_GROWTH:.0%} + {RSS_SLACK_KIB // MIB} MiB)"
        e = f"{self.tasks_before} before, {self.tasks_after} after"
        if self.leaked_tasks:
            e += f"; leaked: {', '.join(self.leaked_tasks[:5])}"
        f_ok = self.connected_at_end == self.miners and not self.fatal_errors
        f = f"{self.connected_at_end}/{self.miners} open, {len(self.fatal_errors)} stopped"
        graceful = sum(inc.graceful for inc in self.incarnations)
        g_ok = self.hub_tracebacks == 0 and graceful == len(self.incarnations)
        if self.fatal_errors:
            f += f"; e.g. {self.fatal_errors[0]}"
        return [
            ("(a) hub store == miners' confirmed predictions", a_ok, a),
            ("(b) nothing pending", self.pending == 0, b),
            ("(c) game tables equal", self.tables_matched == self.miners, c),
            ("(d) hub RSS bounded", d_ok, d),
            ("(e) no task leaks", self.tasks_after == self.tasks_before, e),
            ("(f) miners connected", f_ok, f),
            ("(g) hub stops graceful, no traceback in its log", g_ok,
             f"graceful stops {graceful}/{len(self.incarnations)}, {self.hub_tracebacks} "
             f"tracebacks in {len(self.hub_log)} lines of hub stderr"),
        ]

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.checks())

    def report(self) -> list[str]:
        rejected = ", ".join(f"{k}={v}" for k, v in sorted(self.rejected.items())) or "none"
        faults = ", ".join(f"{k}={v}" for k, v in sorted(self.faults.items())) or "none"
        graceful = sum(inc.graceful for inc in self.incarnations)
        stops = sum(inc.exit_code is not None for inc in self.incarnations)
        lines = [
            "",
            "== soak summary ==",
            f"miners                {self.miners} over {self.proxies} fault proxies",
            f"duration              {self.seconds:g} s of chaos, {self.settle_s:.1f} s to "
            f"settle, {self.wall_s:.0f} s wall",
            f"predictions made      {self.predictions_made}",
            f"  confirmed           {self.confirmed} (accepted {self.accepted}, first receipt "
            f"lost and recovered as duplicate {self.duplicate})",
            f"  rejected            {sum(self.rejected.values())} ({rejected})",
            f"  pending at end      {self.pending}",
            f"  lost                {self.lost} (must be 0)",
            f"hub store rows        {self.hub_rows}",
            f"faults injected       {faults} ({self.links_cut} links cut)",
            f"hub restarts          {self.hub_restarts} (graceful stops {graceful}/{stops})",
        ]
        for inc in self.incarnations:
            lines.append(
                f"hub RSS #{inc.index}            warm-up {_mib(inc.warm_kib)} MiB at "
                f"{inc.warmup_s:.0f} s, max after {_mib(inc.max_after_kib)} MiB, bound "
                f"{_mib(inc.bound_kib)} MiB ({len(inc.samples)} samples)")
        lines.append(f"hub log (stderr)      {len(self.hub_log)} lines, "
                     f"{self.hub_tracebacks} tracebacks")
        lines += [f"  {line[:200]}" for line in self.hub_log[:12]]
        lines += [
            f"reconnects            {self.reconnects}",
            "runners               " + ", ".join(f"{k}={v}" for k, v in self.runner.items()),
            "miner-side log        " + (", ".join(f"{k}={v}" for k, v in
                                                  sorted(self.log_counts.items())) or "quiet"),
        ]
        lines += [f"  {sample}" for sample in self.log_samples[:5]]
        if self.breaks:
            lines.append(f"deliberately broken  {', '.join(self.breaks)}")
        lines.append("")
        for name, ok, figure in self.checks():
            lines.append(f"CHECK {name}: {'PASS' if ok else 'FAIL'} - {figure}")
        failed = [name for name, ok, _ in self.checks() if not ok]
        lines.append("RESULT: " + ("PASS" if not failed else "FAIL: " + ", ".join(failed)))
        return lines


def _mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / MIB:.1f}"


# -- the hub subprocess -------------------------------------------------------------------


class HubRunner:
    """The hub in its own process; restarted on the same port and store."""

    def __init__(self, store: Path | str, *, heartbeat: float, seed: int, games: int,
                 kickoff_spacing: float, match_duration: float, warmup_s: float,
                 max_seconds: float, extra: Iterable[str] = (), label: str = "hub",
                 seed_offset: int = 0) -> None:
        self.store = store  # a SQLite path, or a postgresql:// URL several hubs share
        self.extra = list(extra)
        self.label = label
        self.seed_offset = seed_offset
        self.heartbeat = heartbeat
        self.seed = seed
        self.games = games
        self.kickoff_spacing = kickoff_spacing
        self.match_duration = match_duration
        self.warmup_s = warmup_s
        self.max_seconds = max_seconds
        self.port = 0
        self.server: common.ServerProcess | None = None
        self.incarnations: list[Incarnation] = []

    @property
    def current(self) -> Incarnation | None:
        return self.incarnations[-1] if self.server is not None else None

    async def start(self) -> None:
        index = len(self.incarnations)
        args = ["hub", "--store", str(self.store), "--heartbeat", str(self.heartbeat),
                *self.extra,
                "--port", str(self.port), "--feed", "simulate",
                # a new simulator per incarnation: a fresh seed keeps its game ids apart
                # from the ones the store already holds
                "--feed-seed", str(self.seed * 100 + self.seed_offset + index),
                "--feed-games", str(self.games),
                "--kickoff-spacing", str(self.kickoff_spacing),
                "--match-duration", str(self.match_duration)]
        last: Exception | None = None
        for _ in range(20):  # the port may still be held for a moment after a stop
            server = common.ServerProcess(f"{self.label}#{index}", *args,
                                          max_seconds=self.max_seconds)
            try:
                await server.start()
            except RuntimeError as exc:
                last = exc
                await asyncio.sleep(0.5)
                continue
            self.server, self.port = server, server.port
            self.incarnations.append(Incarnation(index, server.pid, server.port,
                                                 time.monotonic(), self.warmup_s))
            return
        raise RuntimeError(f"the hub did not restart on port {self.port}: {last}")

    async def stop(self) -> None:
        server, incarnation = self.server, self.current
        if server is None or incarnation is None:
            return
        self.server = None
        started = time.monotonic()
        await server.stop(timeout=60.0)  # stdin EOF: graceful; SIGTERM/SIGKILL only late
        incarnation.stop_s = time.monotonic() - started
        assert server.proc is not None
        incarnation.exit_code = server.proc.returncode
        incarnation.stderr = server.stderr_text

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def sample(self) -> None:
        incarnation = self.current
        if incarnation is None:
            return
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            kib = common.proc_rss_kib(incarnation.pid)
            incarnation.samples.append((time.monotonic() - incarnation.started, kib))


# -- logging: count what the miners' side complains about -------------------------------


class _LogCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.levelname.lower()}:{record.name}"] += 1
        if record.levelno >= logging.ERROR and len(self.samples) < 10:
            with contextlib.suppress(Exception):
                self.samples.append(f"{record.name}: {record.getMessage()[:200]}")


@contextlib.contextmanager
def _counting_logs(names: Iterable[str]) -> Iterator[_LogCounter]:
    counter = _LogCounter()
    saved: list[tuple[logging.Logger, int]] = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        if logger.getEffectiveLevel() > logging.WARNING:
            logger.setLevel(logging.WARNING)
        logger.addHandler(counter)
    try:
        yield counter
    finally:
        for logger, level in saved:
            logger.removeHandler(counter)
            logger.setLevel(level)


@contextlib.contextmanager
def _broken(breaks: Iterable[str]) -> Iterator[None]:
    """Deliberately break a guarantee (the soak must then fail)."""
    saved: list[tuple[str, Any]] = []

    async def do_nothing(self: ValidatorConnection) -> None:
        return None

    try:
        for name in breaks:
            if name not in BREAKS:
                raise ValueError(f"unknown break {name!r}; known: {', '.join(BREAKS)}")
            if name == "outbox-resend":
                for attr in ("_resend_pending", "_post_pending"):
                    saved.append((attr, ValidatorConnection.__dict__[attr]))
                    setattr(ValidatorConnection, attr, do_nothing)
        yield
    finally:
        for attr, original in saved:
            setattr(ValidatorConnection, attr, original)


# -- the soak -------------------------------------------------------------------------------


class _Soak:
    def __init__(self, result: SoakResult, *, seed: int, heartbeat: float,
                 faults_per_proxy_minute: float, settle_timeout: float,
                 rss_interval: float, out: Out) -> None:
        self.result = result
        self.rng = random.Random(seed)
        self.heartbeat = heartbeat
        self.fault_rate = faults_per_proxy_minute * result.proxies / 60.0  # events/s
        self.settle_timeout = settle_timeout
        self.rss_interval = rss_interval
        self.out = out
        self.faults: Counter[str] = Counter()
        self.hubs: list[HubRunner] = []
        self.proxies: list[FaultProxy] = []
        self.conns: list[ValidatorConnection] = []
        self.runners: list[AgentRunner] = []
        self.session: aiohttp.ClientSession | None = None
        self.validator = common.validator_key().ss58_address
        self.keys = common.miner_keys(result.miners)
        self.sampling = asyncio.Event()

    # -- setup ---------------------------------------------------------------------------

    @property
    def hub(self) -> HubRunner | None:
        """The first hub: the one asked for the reference snapshot."""
        return self.hubs[0] if self.hubs else None

    async def start_miners(self, folder: Path) -> None:
        # ``proxies`` fault proxies in front of each hub; a miner knows one proxy of
        # every hub (its own hub first), so a cut or a restart moves it to another hub
        for hub in self.hubs:
            for _ in range(self.result.proxies):
                self.proxies.append(await FaultProxy(hub.port, max_links=1024).start())
        # one session for every miner; no connector cap (each WebSocket holds a connection)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        per_hub = self.result.proxies
        for index, key in enumerate(self.keys):
            group, first = index % per_hub, index % len(self.hubs)
            order = [(first + k) % len(self.hubs) for k in range(len(self.hubs))]
            urls = [self.proxies[h * per_hub + group].url for h in order]
            conn = ValidatorConnection(
                urls, key, self.validator, outbox=folder / f"miner-{index}.sqlite3",
                options=ConnectionOptions(backoff_base=0.2, backoff_cap=5.0,
                                          handshake_timeout=5.0, ws_probe_interval=5.0,
                                          long_poll_timeout=10.0),
                session=self.session)
            self.conns.append(conn)
        await asyncio.gather(*(conn.start() for conn in self.conns))
        for conn in self.conns:
            # each miner its own taste, so they do not all bet alike
            agent = ValueAgent(home_advantage=self.rng.uniform(0.15, 0.45),
                               kelly=self.rng.uniform(0.1, 0.3), max_stake=50.0)
            runner = AgentRunner(agent, [conn], submit_timeout_s=15.0, drain_timeout_s=5.0,
                                 agent_timeout_s=10.0, rescan_interval_s=10.0)
            self.runners.append(runner)
            await runner.start()

    async def wait_ready(self, timeout: float) -> int:
        async def ready(conn: ValidatorConnection) -> bool:
            try:
                await conn.wait_ready(timeout)
            except Exception:  # noqa: BLE001 - timeout, or the connection gave up (counted in (f))
                return False
            return True

        return sum(await asyncio.gather(*(ready(conn) for conn in self.conns)))

    # -- during the run ----------------------------------------------------------------------

    async def sample_rss(self) -> None:
        while not self.sampling.is_set():
            for hub in self.hubs:
                hub.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sampling.wait(), self.rss_interval)

    async def chaos(self, until: float) -> None:
        """Random faults on random proxies until ``until`` (monotonic); each stall or
        delay is lifted by this loop when its time is up.

        Besides the random ones, one targeted fault: while a proxy is delayed, its
        predictions spend a while in flight, and the first time it has some in flight
        its links are cut (``cut_in_flight``): the case the outbox resend exists for,
        which a cut at a random moment would almost never hit."""
        active: dict[int, tuple[str, float]] = {}  # proxy -> (stall/delay, when it ends)
        targeted: set[int] = set()  # delayed proxies already cut while in flight
        next_fault = time.monotonic() + self.rng.expovariate(self.fault_rate)
        while (now := time.monotonic()) < until:
            for index, (_, end) in list(active.items()):
                if now >= end:
                    self._release(index)
                    del active[index]
                    targeted.discard(index)
            if now >= next_fault:
                self._inject(active, now)
                next_fault = now + self.rng.expovariate(self.fault_rate)
            for index, (kind, _) in active.items():
                if kind == "delay" and index not in targeted and self._in_flight(index):
                    targeted.add(index)
                    self.result.links_cut += self.proxies[index].cut()
                    self.faults["cut_in_flight"] += 1
            await asyncio.sleep(min(0.05, max(0.0, until - now)))
        for index in range(len(self.proxies)):
            self._release(index)

    def _in_flight(self, proxy: int) -> int:
        """Submissions of this proxy's miners still waiting for their receipt."""
        waiting = 0
        for runner in self.runners[proxy::len(self.proxies)]:
            for v in runner.stats.validators.values():
                waiting += v.submitted - (v.accepted + v.duplicate + v.rejected_total
                                          + v.unconfirmed + v.errors)
        return waiting

    def _inject(self, active: dict[int, tuple[str, float]], now: float) -> None:
        kind = self.rng.choices(["cut", "stall", "delay"], weights=[4, 3, 3])[0]
        free = [i for i in range(len(self.proxies)) if i not in active]
        if kind != "cut" and not free:
            kind = "cut"
        if kind == "cut":
            index = self.rng.randrange(len(self.proxies))
            self.result.links_cut += self.proxies[index].cut()
        elif kind == "stall":  # 1.5 to 4 heartbeat intervals: past 3 both sides drop it
            index = self.rng.choice(free)
            self.proxies[index].stall()
            active[index] = (kind, now + self.rng.uniform(1.5, 4.0) * self.heartbeat)
        else:  # every forwarded chunk held 50-300 ms, for 3-10 s
            index = self.rng.choice(free)
            self.proxies[index].delay(self.rng.uniform(0.05, 0.3))
            active[index] = (kind, now + self.rng.uniform(3.0, 10.0))
        self.faults[kind] += 1

    def _release(self, index: int) -> None:
        self.proxies[index].resume()
        self.proxies[index].delay(0.0)

    async def restarts(self, start: float, seconds: float, count: int) -> None:
        for k in range(1, count + 1):
            await asyncio.sleep(max(0.0, start + seconds * k / (count + 1) - time.monotonic()))
            hub = self.hubs[(k - 1) % len(self.hubs)]  # with several hubs, in turn
            began = time.monotonic()
            await hub.restart()
            self.result.hub_restarts += 1
            self.out(f"  t={time.monotonic() - start:5.0f}s {hub.label} restarted on port "
                     f"{hub.port} ({time.monotonic() - began:.1f} s, graceful stop: "
                     f"{hub.incarnations[-2].graceful})")

    async def progress(self, start: float, until: float, every: float) -> None:
        while (now := time.monotonic()) < until:
            await asyncio.sleep(min(every, until - now))
            submitted = sum(r.stats.submitted for r in self.runners)
            open_ = sum(c.state is ConnectionState.OPEN for c in self.conns)
            self.out(f"  t={time.monotonic() - start:5.0f}s open {open_}/{len(self.conns)}, "
                     f"submitted {submitted}, faults {dict(self.faults)}, "
                     f"reconnects {sum(c.reconnects for c in self.conns)}")

    # -- the end -------------------------------------------------------------------------

    async def settle(self) -> None:
        """Runners stop predicting; wait (bounded) until every miner is open and no
        prediction is pending."""
        await asyncio.gather(*(runner.stop() for runner in self.runners))
        started = time.monotonic()
        pending = -1
        while True:
            pending = await self._pending()
            open_ = sum(c.state is ConnectionState.OPEN for c in self.conns)
            if pending == 0 and open_ == len(self.conns):
                self.result.settled = True
                break
            if time.monotonic() - started >= self.settle_timeout:
                break
            await asyncio.sleep(0.5)
        self.result.settle_s = time.monotonic() - started

    async def _pending(self) -> int:
        total = 0
        for conn in self.conns:
            if conn.outbox is not None and not conn.outbox.closed:
                total += (await conn.outbox.counts(self.validator)).get("pending", 0)
        return total

    async def compare_tables(self, timeout: float = 20.0) -> None:
        """Each miner's table against the hub's snapshot at the same epoch and seq."""
        assert self.hub is not None
        result = self.result
        left = set(range(len(self.conns)))
        why: dict[int, str] = {}
        deadline = time.monotonic() + timeout
        while left and time.monotonic() < deadline:
            try:
                epoch, seq, games = await self._hub_snapshot()
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
                why = {i: f"no hub snapshot: {exc!r}" for i in left}
                await asyncio.sleep(0.5)
                continue
            result.hub_epoch, result.hub_seq, result.hub_games = epoch, seq, len(games)
            # no await from here to the end of the loop: every miner is read as of now
            for index in sorted(left):
                conn = self.conns[index]
                if conn.epoch != epoch or conn.seq != seq:
                    why[index] = (f"at epoch {conn.epoch} seq {conn.seq}, hub at "
                                  f"{epoch} seq {seq}")
                    continue
                mine = {gid: game.model_dump(mode="json") for gid, game in conn.games.items()}
                if mine == games:
                    left.discard(index)
                    why.pop(index, None)
                else:
                    why[index] = _table_diff(mine, games)
            if left:
                await asyncio.sleep(0.2)
        result.tables_matched = len(self.conns) - len(left)
        result.table_mismatches = {i: why.get(i, "not compared") for i in left}

    async def _hub_snapshot(self) -> tuple[str, int, dict[str, dict[str, Any]]]:
        assert self.hub is not None
        assert self.session is not None
        path = "/games?timeout=0"
        async with self.session.get(common.url(self.hub.port, path),
                                    headers=common.auth_headers(self.keys[0], "GET", path),
                                    timeout=aiohttp.ClientTimeout(total=10)) as response:
            if response.status != 200:
                raise ValueError(f"GET /games -> {response.status}: {await response.text()}")
            body = await response.json()
        update = body["updates"][0]
        if not update.get("snapshot"):
            raise ValueError("GET /games without a resume point did not answer a snapshot")
        games = {game["game_id"]: Game.model_validate(game).model_dump(mode="json")
                 for game in update["games"]}
        return body["epoch"], int(update["seq"]), games

    async def collect_outboxes(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(miner hotkey, prediction_id) -> receipt of every confirmed prediction;
        counts every outbox row by status into the result."""
        result = self.result
        confirmed: dict[tuple[str, str], dict[str, Any]] = {}
        rejected: Counter[str] = Counter()
        for index, conn in enumerate(self.conns):
            assert conn.outbox is not None
            assert conn.miner_hotkey is not None
            for entry in await conn.outbox.entries(self.validator):
                result.predictions_made += 1
                if entry.status in CONFIRMED:
                    if entry.status == "accepted":
                        result.accepted += 1
                    else:
                        result.duplicate += 1
                    if entry.miner_hotkey != conn.miner_hotkey:
                        result.receipt_mismatches.append(
                            f"{entry.prediction_id}: outbox hotkey {entry.miner_hotkey}")
                    confirmed[(conn.miner_hotkey, entry.prediction_id)] = entry.receipt or {}
                elif entry.status == "pending":
                    result.pending += 1
                    result.pending_by_miner[index] = result.pending_by_miner.get(index, 0) + 1
                else:
                    rejected[entry.code or entry.status] += 1
        result.rejected = dict(rejected)
        return confirmed

    async def check_store(self, confirmed: dict[tuple[str, str], dict[str, Any]]) -> None:
        """(a): the hubs' store (their SQLite file or PostgreSQL database), read
        directly, against the miners' receipts."""
        assert self.hub is not None
        result = self.result
        rows, twice = await _stored_predictions(self.hub.store)
        result.hub_rows = len(rows)
        result.hub_duplicate_ids = [row[0] for row in twice]
        stored = {(hotkey, pid): received for hotkey, pid, received in rows}
        result.missing_at_hub = sorted(set(confirmed) - set(stored))
        result.orphans_at_hub = sorted(set(stored) - set(confirmed))
        for key, receipt in confirmed.items():
            if key in stored and ns_value(receipt.get("received_at_ns")) != stored[key]:
                result.receipt_mismatches.append(
                    f"{key[1]}: receipt at {receipt.get('received_at_ns')}, stored "
                    f"{stored[key]}")

    async def close(self) -> None:
        await asyncio.gather(*(runner.stop() for runner in self.runners),
                             return_exceptions=True)
        await asyncio.gather(*(conn.close() for conn in self.conns), return_exceptions=True)
        if self.session is not None:
            await self.session.close()
            self.session = None
        await asyncio.gather(*(proxy.close() for proxy in self.proxies),
                             return_exceptions=True)


async def _delete_prefix(url: str, prefix: str) -> None:
    """Leave the shared Redis as the soak found it: drop the keys it made."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


_ROWS = "SELECT miner_hotkey, prediction_id, received_at_ns FROM predictions"
_TWICE = ("SELECT prediction_id FROM predictions GROUP BY miner_hotkey, prediction_id"
          " HAVING COUNT(*) > 1")


async def _stored_predictions(store: Path | str) -> tuple[list[Any], list[Any]]:
    """Every stored (hotkey, id, received_at_ns), and the ids stored more than once."""
    location = str(store)
    if location.startswith("postgresql://"):
        import asyncpg

        connection = await asyncpg.connect(location)
        try:
            rows = [tuple(row) for row in await connection.fetch(_ROWS)]
            twice = [tuple(row) for row in await connection.fetch(_TWICE)]
        finally:
            await connection.close()
        return rows, twice
    db = sqlite3.connect(location)
    try:
        return db.execute(_ROWS).fetchall(), db.execute(_TWICE).fetchall()
    finally:
        db.close()


def _table_diff(mine: dict[str, Any], hub: dict[str, Any]) -> str:
    only_mine = sorted(set(mine) - set(hub))
    only_hub = sorted(set(hub) - set(mine))
    differ = sorted(gid for gid in set(mine) & set(hub) if mine[gid] != hub[gid])
    return (f"same seq but tables differ: only at miner {only_mine[:3]}, only at hub "
            f"{only_hub[:3]}, different {differ[:3]}")


async def run_soak(miners: int = 200, seconds: float = 300.0, restarts: int = 2,
                   seed: int = 1, *, proxies: int | None = None, heartbeat: float = 2.0,
                   kickoff_spacing: float = 20.0, match_duration: float = 30.0,
                   games: int = 8, faults_per_proxy_minute: float = 5.0,
                   settle_timeout: float = 90.0, ready_timeout: float = 60.0,
                   rss_interval: float = 2.0, store_dir: str | None = None,
                   breaks: Iterable[str] = (), out: Out | None = None, hubs: int = 1,
                   store: str | None = None, backplane: str | None = None,
                   redis_prefix: str | None = None) -> SoakResult:
    """Run the soak; every invariant's figure is a field of the returned result (and
    :meth:`SoakResult.checks` judges them). Every phase is bounded.

    ``hubs`` > 1 runs several hubs of the validator on one shared ``store``
    (``postgresql://``) and ``backplane`` (``redis://``, under ``redis_prefix``, by
    default a fresh one deleted at the end); restarts go round them."""
    if miners < 1 or seconds <= 0 or restarts < 0 or hubs < 1:
        raise ValueError("miners >= 1, seconds > 0, restarts >= 0 and hubs >= 1, please")
    if hubs > 1 and (store is None or backplane is None):
        raise ValueError("several hubs share a postgresql:// store and a redis:// backplane")
    out = out or _quiet
    breaks = tuple(breaks)
    proxy_count = proxies or min(10, max(1, miners // 4))
    result = SoakResult(miners=miners, seconds=seconds, restarts_requested=restarts,
                        proxies=min(proxy_count, miners), breaks=breaks)
    result.tasks_before = len(asyncio.all_tasks())
    before = set(asyncio.all_tasks())
    wall = time.monotonic()
    span = seconds / (restarts + 1)
    soak = _Soak(result, seed=seed, heartbeat=heartbeat,
                 faults_per_proxy_minute=faults_per_proxy_minute,
                 settle_timeout=settle_timeout, rss_interval=rss_interval, out=out)
    common.miner_keys(miners)  # derive the keys before anything is timed
    with (common.store_dir(store_dir) as folder, _broken(breaks),
          _counting_logs(["sdk", "agents"]) as logs):
        prefix = redis_prefix or f"bt-ws-soak:{uuid.uuid4().hex[:8]}"
        extra = [] if backplane is None else ["--backplane", backplane, "--redis-prefix", prefix]
        soak.hubs = [HubRunner(
            store or Path(folder) / "hub.sqlite3", heartbeat=heartbeat, seed=seed, games=games,
            kickoff_spacing=kickoff_spacing, match_duration=match_duration,
            warmup_s=min(30.0, max(2.0, 0.25 * span)),
            max_seconds=seconds + settle_timeout + ready_timeout + 600.0,
            extra=extra, label=f"hub{number}" if hubs > 1 else "hub",
            seed_offset=10 * number) for number in range(hubs)]
        sampler: asyncio.Task[None] | None = None
        try:
            for hub in soak.hubs:
                await hub.start()
            sampler = asyncio.create_task(soak.sample_rss(), name="soak-rss")
            where = ", ".join(f"{hub.label} pid {hub.current.pid if hub.current else '?'} "
                              f"on port {hub.port}" for hub in soak.hubs)
            out(f"soak: {where}; {miners} miners over {result.proxies * hubs} proxies; "
                f"{seconds:g} s, {restarts} restart(s)"
                + (f"; store {store}, backplane {backplane}" if hubs > 1 else "")
                + (f"; BROKEN: {', '.join(breaks)}" if breaks else ""))
            await soak.start_miners(Path(folder))
            ready = await soak.wait_ready(ready_timeout)
            out(f"  {ready}/{miners} miners ready")
            start = time.monotonic()
            until = start + seconds
            await asyncio.gather(soak.chaos(until), soak.restarts(start, seconds, restarts),
                                 soak.progress(start, until, max(5.0, seconds / 10)))
            result.faults = dict(soak.faults)
            out(f"  chaos over ({result.faults}); settling (at most {settle_timeout:g} s)")
            await soak.settle()
            await soak.compare_tables()
            confirmed = await soak.collect_outboxes()
            result.reconnects = sum(conn.reconnects for conn in soak.conns)
            result.connected_at_end = sum(c.state is ConnectionState.OPEN for c in soak.conns)
            result.fatal_errors = [f"miner {i}: {c.error}" for i, c in enumerate(soak.conns)
                                   if c.error is not None]
            stats = [runner.stats for runner in soak.runners]
            result.runner = {
                "submitted": sum(s.submitted for s in stats),
                "accepted": sum(s.accepted for s in stats),
                "duplicate": sum(s.duplicate for s in stats),
                "rejected_incl_local_precheck": sum(sum(s.rejected.values()) for s in stats),
                "unconfirmed_in_time": sum(s.unconfirmed for s in stats),
                "agent_errors": sum(s.agent_errors for s in stats),
            }
            await soak.close()
            soak.sampling.set()
            for hub in soak.hubs:
                await hub.stop()
            await soak.check_store(confirmed)
        finally:
            soak.sampling.set()
            if sampler is not None:
                await sampler
            await soak.close()
            for hub in soak.hubs:
                await hub.stop()
            result.incarnations = [i for hub in soak.hubs for i in hub.incarnations]
            if backplane is not None and redis_prefix is None:
                await _delete_prefix(backplane, prefix)
            result.log_counts = dict(logs.counts)
            result.log_samples = list(logs.samples)
    # (e): let callbacks scheduled by the closes run, then count
    for _ in range(100):  # at most 5 s
        if len(asyncio.all_tasks()) <= result.tasks_before:
            break
        await asyncio.sleep(0.05)
    result.tasks_after = len(asyncio.all_tasks())
    result.leaked_tasks = sorted(t.get_name() for t in asyncio.all_tasks() - before
                                 if t is not asyncio.current_task())
    result.wall_s = time.monotonic() - wall
    return result


# -- command line ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--miners", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=300.0, help="chaos phase length")
    parser.add_argument("--restarts", type=int, default=2, help="hub restarts during it")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--proxies", type=int, help="fault proxies (default min(10, N/4))")
    parser.add_argument("--faults-per-proxy-minute", type=float, default=5.0,
                        help="mean rate of injected faults on each proxy")
    parser.add_argument("--rss-interval", type=float, default=2.0,
                        help="seconds between samples of the hub's RSS")
    parser.add_argument("--settle", type=float, default=90.0,
                        help="at most this long for everything to settle at the end")
    parser.add_argument("--short", action="store_true",
                        help="CI size: 16 miners, 25 s, 2 restarts, 30 s settle bound, "
                             "10 faults per proxy minute, RSS sampled every 0.5 s")
    parser.add_argument("--break", dest="breaks", action="append", default=[],
                        choices=sorted(BREAKS),
                        help="deliberately break a guarantee; the soak must then FAIL")
    parser.add_argument("--store-dir", help="where the temp dir for the SQLite files goes")
    parser.add_argument("--hubs", type=int, default=1,
                        help="hubs of the validator (more than 1 needs --store and "
                             "--backplane); restarts go round them")
    parser.add_argument("--store", help="a postgresql:// store the hubs share (default: "
                                        "one SQLite file)")
    parser.add_argument("--backplane", help="a redis:// backplane the hubs share")
    parser.add_argument("--log-level", default="error",
                        help="miner-side log lines printed (they are counted anyway)")
    args = parser.parse_args(argv)
    if args.short:
        args.miners, args.seconds, args.restarts, args.settle = 16, 25.0, 2, 30.0
        args.faults_per_proxy_minute, args.rss_interval = 10.0, 0.5
    if args.miners < 1 or args.seconds <= 0 or args.restarts < 0:
        parser.error("--miners >= 1, --seconds > 0, --restarts >= 0")
    if args.hubs > 1 and (args.store is None or args.backplane is None):
        parser.error("--hubs > 1 needs --store postgresql://... and --backplane redis://...")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(args.log_level.upper())
    result = asyncio.run(run_soak(
        args.miners, args.seconds, args.restarts, args.seed, proxies=args.proxies,
        faults_per_proxy_minute=args.faults_per_proxy_minute,
        settle_timeout=args.settle, rss_interval=args.rss_interval,
        store_dir=args.store_dir, breaks=args.breaks, out=lambda s: print(s, flush=True),
        hubs=args.hubs, store=args.store, backplane=args.backplane))
    for line in result.report():
        print(line)
    for name in args.breaks:
        print(f"(broken on purpose: {BREAKS[name]})")
    return 0 if result.passed else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
