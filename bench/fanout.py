"""Fan-out: N connected miners, a burst of game updates, delivered messages/s and
latency, hub vs a bare aiohttp broadcaster.

    python -m bench.fanout --miners 1000 --updates 50
    python -m bench.fanout --quick

For each round and compression setting (clients offering permessage-deflate or
not), a fresh bare server and a fresh hub are started, and against each (bare first)
the benchmark:

1. connects N miners (to the hub: each upgrade ``btauth/1``-signed by its own hotkey;
   the hub admits them through an open registry), and lets the hub's welcome and
   snapshot frames drain;
2. warms up with 2 single updates (not measured);
3. **burst**: sends ``--updates`` updates at once (concurrent POSTs: signed
   ``POST /admin/games`` to the hub, ``POST /broadcast`` of the same frame text to
   the bare server) and measures deliveries/s = N x updates / (last receipt - the
   moment the requests were written) and the latency of every delivery;
4. **paced**: ``--paced`` updates one at a time (the next is posted when every miner
   has the previous one): per-delivery latency of a single broadcast to N miners.

Every update carries its index in the game's ``team_a``; each client records the
receipt time against the moment the update's request was written (the burst's
requests are pre-built, pre-signed and written in one loop). The hub and the
bare server run in their own subprocesses; the clients run here, in one process,
and its CPU use is printed so a client bottleneck is visible. The servers' CPU per
delivery and garbage-collector pauses are printed too. ``--rounds N`` reports
medians. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bench import common

_MARK = re.compile(r'"team_a":"bench-(\w+)-(\d+)"')
_WARMUP = 2


def game_template() -> dict[str, Any]:
    from sdk.models import Game

    game = Game(game_id="bench-fanout-1", team_a="home", team_b="away", sport="soccer",
                league="EPL", event_start_date=datetime.now(UTC) + timedelta(days=30),
                team_a_odds=2.1, team_b_odds=3.4, tie_odds=3.3, can_tie=True)
    return game.model_dump(mode="json")


class Deliveries:
    """What the N client sockets received, per update index."""

    def __init__(self, token: str, miners: int, updates: int) -> None:
        self.token = token
        self.miners = miners
        self.sent_ns = [0] * updates
        self.latency_ns: list[list[int]] = [[] for _ in range(updates)]
        self.last_ns = [0] * updates
        self._waiters: list[asyncio.Future[None]] = [
            asyncio.get_running_loop().create_future() for _ in range(updates)]
        self.other_frames = 0

    def on_text(self, text: str) -> None:
        match = _MARK.search(text)
        if match is None or match.group(1) != self.token:
            self.other_frames += 1  # welcome, snapshot (hub), leftovers
            return
        now = time.monotonic_ns()
        index = int(match.group(2))
        latencies = self.latency_ns[index]
        latencies.append(now - self.sent_ns[index])
        self.last_ns[index] = now
        if len(latencies) == self.miners and not self._waiters[index].done():
            self._waiters[index].set_result(None)

    async def wait(self, indices: range, timeout: float) -> bool:
        """True when every miner got every update in ``indices`` within ``timeout``."""
        try:
            await asyncio.wait_for(asyncio.gather(*(asyncio.shield(self._waiters[i])
                                                    for i in indices)), timeout)
            return True
        except TimeoutError:
            return False

    def delivered(self, indices: range) -> int:
        return sum(len(self.latency_ns[i]) for i in indices)

    def latencies_ms(self, indices: range) -> list[float]:
        return [ns / 1e6 for i in indices for ns in self.latency_ns[i]]


async def _read(ws: aiohttp.ClientWebSocketResponse, sink: Deliveries) -> None:
    async for message in ws:
        if message.type is aiohttp.WSMsgType.TEXT:
            sink.on_text(message.data)


class Poster:
    """Posts updates to the hub (signed ``POST /admin/games``) or to the bare server
    (``POST /broadcast`` of the frame the hub would send).

    Requests are built (and signed) and their TCP connections opened *before* the
    clock starts; then all of them are written in one synchronous loop, so a burst
    reaches the server at once whatever else this process is busy with (1000
    client sockets receiving).
    """

    def __init__(self, server: common.ServerProcess, hub: bool, token: str,
                 sink: Deliveries) -> None:
        self.server = server
        self.hub = hub
        self.token = token
        self.sink = sink
        self.template = game_template()
        self.validator = common.validator_key() if hub else None

    def request(self, index: int) -> bytes:
        game = dict(self.template)
        game["team_a"] = f"bench-{self.token}-{index}"
        if self.hub:
            path = "/admin/games"
            body = json.dumps({"games": [game]}, separators=(",", ":")).encode()
            headers = common.auth_headers(self.validator, "POST", path, body)
        else:
            path = "/broadcast"
            frame = {"type": "game_update",
                     "data": {"epoch": "0123456789abcdef", "seq": index + 1, "prev_seq": index,
                              "games": [game], "snapshot": False}}
            body = json.dumps(frame, separators=(",", ":")).encode()
            headers = {}
        head = [f"POST {path} HTTP/1.1", f"Host: {common.HOST}:{self.server.port}",
                "Content-Type: application/json", f"Content-Length: {len(body)}",
                "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    async def post(self, indices: range, timeout: float = 60.0) -> None:
        """Send the updates ``indices`` at once; return when all are answered."""
        requests = [self.request(index) for index in indices]
        streams = await asyncio.gather(*(asyncio.open_connection(common.HOST, self.server.port)
                                         for _ in indices))
        try:
            now = time.monotonic_ns()
            for index, request, (_, writer) in zip(indices, requests, streams, strict=True):
                self.sink.sent_ns[index] = now
                writer.write(request)
            answers = await asyncio.wait_for(
                asyncio.gather(*(reader.read() for reader, _ in streams)), timeout)
        finally:
            for _, writer in streams:
                writer.close()
        for answer in answers:
            status = answer.split(b"\r\n", 1)[0]
            if b" 200 " not in status:
                raise RuntimeError(f"{self.server.label} refused an update: {answer[:300]!r}")


async def run_one(server: common.ServerProcess, *, hub: bool, miners: int, updates: int,
                  paced: int, compress: int, token: str) -> dict[str, Any]:
    keys = common.miner_keys(miners) if hub else None
    total = _WARMUP + updates + paced
    warm = range(_WARMUP)
    burst = range(_WARMUP, _WARMUP + updates)
    steady = range(_WARMUP + updates, total)
    sink = Deliveries(token, miners, total)
    result: dict[str, Any] = {"server": server.label, "miners": miners, "updates": updates,
                              "paced": paced, "compress": compress}
    async with common.client_session() as session:
        started = time.perf_counter()
        sockets = await common.connect_many(session, server.port, keys, miners,
                                            compress=compress)
        result["connect_s"] = time.perf_counter() - started
        readers = [asyncio.create_task(_read(ws, sink)) for ws in sockets]
        try:
            await asyncio.sleep(0.3 + miners / 2000)  # welcome/snapshot frames drain
            poster = Poster(server, hub, token, sink)
            for index in warm:
                await poster.post(range(index, index + 1))
                await sink.wait(range(index, index + 1), 30.0)
            await asyncio.sleep(0.2)
            await common.gc_pauses(session, server.port, reset=True)
            budget = 30.0 + miners * updates * 200e-6
            with common.CpuWindow(server) as cpu:
                await poster.post(burst)
                complete = await sink.wait(burst, budget)
            delivered = sink.delivered(burst)
            end = max(sink.last_ns[i] for i in burst) or time.monotonic_ns()
            burst_lat = sink.latencies_ms(burst)
            result.update(
                burst_complete=complete, burst_expected=miners * updates,
                burst_delivered=delivered,
                burst_msgs_per_s=delivered / max((end - sink.sent_ns[burst[0]]) / 1e9, 1e-9),
                burst_p50_ms=common.percentile(burst_lat, 50),
                burst_p99_ms=common.percentile(burst_lat, 99),
                burst_client_util=cpu.client_util, burst_server_util=cpu.server_util,
                server_cpu_us_per_msg=cpu.server_cpu / max(delivered, 1) * 1e6,
                client_cpu_us_per_msg=cpu.client_cpu / max(delivered, 1) * 1e6,
                other_load=cpu.other_load, burst_server_cpu_s=cpu.server_cpu,
            )
            await asyncio.sleep(0.2)
            full_ms = []
            paced_complete = True
            with common.CpuWindow(server) as cpu:
                for index in steady:
                    await poster.post(range(index, index + 1))
                    paced_complete &= await sink.wait(range(index, index + 1), 30.0)
                    full_ms.append((sink.last_ns[index] - sink.sent_ns[index]) / 1e6)
                    await asyncio.sleep(0.01)
            paced_lat = sink.latencies_ms(steady)
            paced_count = max(sink.delivered(steady), 1)
            result.update(
                paced_complete=paced_complete,
                paced_delivered=sink.delivered(steady), paced_expected=miners * paced,
                paced_p50_ms=common.percentile(paced_lat, 50),
                paced_p99_ms=common.percentile(paced_lat, 99),
                paced_full_ms=statistics.median(full_ms) if full_ms else float("nan"),
                paced_server_cpu_us_per_msg=cpu.server_cpu / paced_count * 1e6,
                paced_client_cpu_us_per_msg=cpu.client_cpu / paced_count * 1e6,
                other_load=max(result["other_load"], cpu.other_load),
            )
            result.update(await common.gc_pauses(session, server.port))
        finally:
            await common.close_all(sockets)
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    await asyncio.sleep(0.3)  # let the server finish its close handshakes
    return result


_KEYS = ("burst_msgs_per_s", "burst_p50_ms", "burst_p99_ms", "paced_p50_ms", "paced_p99_ms",
         "paced_full_ms", "server_cpu_us_per_msg", "client_cpu_us_per_msg",
         "paced_server_cpu_us_per_msg", "paced_client_cpu_us_per_msg",
         "burst_client_util", "burst_server_util", "connect_s", "other_load",
         "burst_server_cpu_s", "gc_max_ms", "gc_total_ms")


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged = dict(runs[0])
    for key in _KEYS:
        merged[key] = statistics.median(run[key] for run in runs)
    merged["burst_complete"] = all(run["burst_complete"] for run in runs)
    merged["paced_complete"] = all(run["paced_complete"] for run in runs)
    merged["rounds"] = len(runs)
    return merged


async def run(args: argparse.Namespace) -> dict[str, Any]:
    compress_modes = [0, 15] if args.compress == "both" else [int(args.compress == "on") * 15]
    common.miner_keys(args.miners)  # key derivation before anything is timed
    results: dict[str, list[dict[str, Any]]] = {}
    rss: dict[str, int] = {}
    for round_no in range(args.rounds):
        for compress in compress_modes:
            # Fresh servers for every run: garbage left by the previous run's 1000
            # closed connections would otherwise be collected inside this one.
            with common.store_dir(args.store_dir) as store:
                bare, hub = common.ref_server("broadcast"), common.hub_server(store)
                try:
                    await asyncio.gather(bare.start(), hub.start())
                    if args.verbose:
                        print(f"servers: bare pid {bare.pid} port {bare.port}, "
                              f"hub pid {hub.pid} port {hub.port}", flush=True)
                    for server, is_hub in ((bare, False), (hub, True)):
                        key = f"{'hub' if is_hub else 'bare'}:{compress}"
                        token = f"r{round_no}c{compress}{'h' if is_hub else 'b'}"
                        await common.wait_quiet(args.settle)
                        outcome = await run_one(server, hub=is_hub, miners=args.miners,
                                                updates=args.updates, paced=args.paced,
                                                compress=compress, token=token)
                        results.setdefault(key, []).append(outcome)
                        if args.verbose:
                            print(json.dumps(outcome, sort_keys=True), flush=True)
                    rss = {"bare_rss_kib": bare.rss_kib(), "hub_rss_kib": hub.rss_kib()}
                finally:
                    await asyncio.gather(bare.stop(), hub.stop())
    summary = {key: _median(runs) for key, runs in results.items()}
    report(args, summary, compress_modes)
    return {"benchmark": "fanout", "miners": args.miners, "updates": args.updates,
            "paced": args.paced, "rounds": args.rounds, "results": summary, **rss}


def report(args: argparse.Namespace, summary: dict[str, dict[str, Any]],
           compress_modes: list[int]) -> None:
    rows = [("deliveries/s (burst)", "burst_msgs_per_s", True),
            ("burst latency p50 ms", "burst_p50_ms", False),
            ("burst latency p99 ms", "burst_p99_ms", False),
            ("paced latency p50 ms", "paced_p50_ms", False),
            ("paced latency p99 ms", "paced_p99_ms", False),
            ("paced: post -> last miner ms", "paced_full_ms", False),
            ("server CPU us / delivery (burst)", "server_cpu_us_per_msg", False),
            ("client CPU us / delivery (burst)", "client_cpu_us_per_msg", False),
            ("server CPU us / delivery (paced)", "paced_server_cpu_us_per_msg", False),
            ("client CPU us / delivery (paced)", "paced_client_cpu_us_per_msg", False),
            ("client CPU util (burst)", "burst_client_util", None),
            ("server CPU util (burst)", "burst_server_util", None),
            ("server GC: longest pause ms", "gc_max_ms", None),
            ("server GC: total pause ms", "gc_total_ms", None),
            ("connect N miners s", "connect_s", None),
            ("other processes' load (cores)", "other_load", None)]
    for compress in compress_modes:
        bare, hub = summary[f"bare:{compress}"], summary[f"hub:{compress}"]
        mode = "permessage-deflate offered" if compress else "no compression"
        common.print_table(
            f"fanout {args.miners} miners x {args.updates} updates "
            f"(+{args.paced} paced), {mode}, median of {args.rounds} round(s)",
            [(name, bare[key], hub[key], better) for name, key, better in rows])
        for label, run in (("bare", bare), ("hub", hub)):
            if not (run["burst_complete"] and run["paced_complete"]):
                print(f"WARNING {label}: not every delivery arrived "
                      f"({run['burst_delivered']}/{run['burst_expected']} burst, "
                      f"{run['paced_delivered']}/{run['paced_expected']} paced)")
            if note := common.load_note(run["other_load"]):
                print(f"NOTE {label}: {note}")
            if run["burst_client_util"] > 0.9:
                print(f"NOTE {label}: the client process was ~{run['burst_client_util']:.0%} "
                      "busy during the burst: throughput may be client-bound")
        tag = f"[{args.miners} miners, compress={'on' if compress else 'off'}]"
        common.print_ratio(f"fanout.throughput{tag}",
                           common.ratio(hub["burst_msgs_per_s"], bare["burst_msgs_per_s"]),
                           1.0, higher_is_better=True)
        common.print_ratio(f"fanout.p99_burst{tag}",
                           common.ratio(hub["burst_p99_ms"], bare["burst_p99_ms"]),
                           1.0, higher_is_better=False)
        common.print_ratio(f"fanout.p99_paced{tag}",
                           common.ratio(hub["paced_p99_ms"], bare["paced_p99_ms"]),
                           1.0, higher_is_better=False)
        measurable = min(hub["burst_server_cpu_s"], bare["burst_server_cpu_s"]) >= 0.1
        if measurable:
            common.print_ratio(f"fanout.server_cpu_per_delivery{tag}",
                               common.ratio(hub["server_cpu_us_per_msg"],
                                            bare["server_cpu_us_per_msg"]),
                               1.0, higher_is_better=False)
        else:
            common.print_ratio(f"fanout.server_cpu_per_delivery{tag}", float("nan"),
                               note="burst too short to measure CPU")
        common.print_ratio(f"fanout.server_cpu_per_delivery_paced{tag}",
                           common.ratio(hub["paced_server_cpu_us_per_msg"],
                                        bare["paced_server_cpu_us_per_msg"]),
                           1.0, higher_is_better=False)
    if len(compress_modes) == 2:
        for label in ("bare", "hub"):
            plain, deflate = summary[f"{label}:0"], summary[f"{label}:15"]
            common.print_ratio(
                f"fanout.deflate_cost[{label}, {args.miners} miners]",
                common.ratio(deflate["burst_msgs_per_s"], plain["burst_msgs_per_s"]),
                note="throughput with permessage-deflate / without; server CPU per "
                     f"delivery {fmt_us(plain)} -> {fmt_us(deflate)}")


def fmt_us(run: dict[str, Any]) -> str:
    """Server CPU per delivery, burst / paced."""
    return (f"{run['server_cpu_us_per_msg']:.1f} / "
            f"{run['paced_server_cpu_us_per_msg']:.1f} us (burst / paced)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--miners", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=50, help="updates in the burst")
    parser.add_argument("--paced", type=int, default=60, help="updates sent one at a time")
    parser.add_argument("--compress", choices=["off", "on", "both"], default="both",
                        help="clients offer permessage-deflate (window 15) or not")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat and report the median of each figure")
    parser.add_argument("--quick", action="store_true",
                        help="small run (~10 s): 32 miners, 10 updates, 5 paced")
    parser.add_argument("--settle", type=float, default=20.0,
                        help="before each run wait up to this long for other processes "
                             "to leave the CPU (shared machines)")
    parser.add_argument("--store-dir", help="where the hub's SQLite file goes")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--verbose", action="store_true", help="print every run's figures")
    args = parser.parse_args(argv)
    if args.quick:
        args.miners, args.updates, args.paced, args.rounds = 32, 10, 5, 1
        args.settle = 0.0
    if args.miners < 1 or args.updates < 1 or args.paced < 1 or args.rounds < 1:
        parser.error("--miners, --updates, --paced and --rounds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    banner = (f"fanout: {args.miners} miners, {args.updates} burst + {args.paced} paced updates, "
              f"compression {args.compress}, {args.rounds} round(s)")
    return common.run_main(banner, args, run)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
