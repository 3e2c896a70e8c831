"""Predictions: signed predictions in, durable signed receipts out; round trips/s and
latency, hub vs a bare aiohttp echo server.

    python -m bench.predictions --miners 50 --seconds 10
    python -m bench.predictions --quick

Each of ``--miners`` connected miners runs a closed loop with a window of ONE: build
a prediction, sign it with its hotkey (``sdk.signing.sign_prediction`` over the
prediction's wire dict), send it, wait for the answer, repeat, for ``--seconds``
after a short warm-up. The hub answers with its signed confirmation, sent only
after the prediction is committed to SQLite (per-prediction signature check,
validation against the game table and the daily wager ledger, durable insert,
validator-signed receipt); the bare server echoes the frame back. The client does
exactly the same work against both (it signs every prediction either way).

The hub runs with ``synchronous=FULL`` (its default) and ``NORMAL``, each on a
fresh store. Wagers are tiny (0.001), so the default daily limit of 1000 per miner
is never reached; the hub's per-hotkey message rate limit (50/s by default) is
raised by the benchmark server (see ``bench/servers.py``). Games are posted to the
hub first (signed ``POST /admin/games``), starting 30 days ahead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bench import common

_GAMES = 20
_WAGER = 0.001


def make_games() -> list[Any]:
    from sdk.models import Game

    start = datetime.now(UTC) + timedelta(days=30)
    return [Game(game_id=f"bench-game-{i}", team_a=f"home-{i}", team_b=f"away-{i}",
                 sport="soccer", league="EPL", event_start_date=start,
                 team_a_odds=1.5 + i / 10, team_b_odds=2.5 + i / 10, tie_odds=3.2,
                 can_tie=True) for i in range(_GAMES)]


def prediction_templates(games: list[Any]) -> list[dict[str, Any]]:
    """One prediction wire dict per game; each submission copies one and gives it a
    fresh ``prediction_id`` (what ``Prediction.for_game(...).wire()`` would return,
    without re-running pydantic in the client's hot loop)."""
    from sdk.models import Prediction

    return [Prediction.for_game(game, i % 3, _WAGER, confidence_score=0.6,
                                model_name="bench").wire()
            for i, game in enumerate(games)]


class Failure(Exception):
    pass


async def miner_loop(ws: aiohttp.ClientWebSocketResponse, key: Any,
                     templates: list[dict[str, Any]], *, offset: int, measure_from: float,
                     until: float, latencies: list[int], outcomes: dict[str, int],
                     receipts: list[dict[str, Any]]) -> None:
    from sdk.signing import sign_prediction

    count = offset
    while time.perf_counter() < until:
        wire = dict(templates[count % len(templates)])
        count += 1
        pid = str(uuid.uuid4())
        wire["prediction_id"] = pid
        text = json.dumps({"type": "prediction",
                           "data": {"prediction": wire,
                                    "signature": sign_prediction(key, wire)}},
                          separators=(",", ":"))
        sent = time.perf_counter_ns()
        await ws.send_str(text)
        while True:
            message = await ws.receive(timeout=15.0)
            if message.type is not aiohttp.WSMsgType.TEXT:
                raise Failure(f"socket ended: {message.type!r} {message.data!r}")
            frame = json.loads(message.data)
            data = frame.get("data", {})
            if frame.get("type") == "confirmation" and data.get("prediction_id") == pid:
                status = data.get("status", "?")
                if status != "accepted":
                    status = f"{status}:{data.get('code')}"
                elif len(receipts) < 5:
                    receipts.append(data)
                break
            if frame.get("type") == "prediction" and \
                    data.get("prediction", {}).get("prediction_id") == pid:
                status = "echoed"
                break
            if frame.get("type") == "error":
                raise Failure(f"hub error frame: {data}")
        done = time.perf_counter_ns()
        if sent / 1e9 >= measure_from:
            latencies.append(done - sent)
            outcomes[status] = outcomes.get(status, 0) + 1


async def _skip_until_snapshot(ws: aiohttp.ClientWebSocketResponse) -> None:
    for _ in range(10):
        message = await ws.receive(timeout=15.0)
        if message.type is aiohttp.WSMsgType.TEXT and '"snapshot":true' in message.data:
            return
    raise Failure("no snapshot after the welcome")


async def run_one(server: common.ServerProcess, *, hub: bool, miners: int, seconds: float,
                  warmup: float, games: list[Any]) -> dict[str, Any]:
    keys = common.miner_keys(miners)
    templates = prediction_templates(games)
    result: dict[str, Any] = {"server": server.label, "miners": miners, "seconds": seconds}
    async with common.client_session() as session:
        if hub:
            body = json.dumps({"games": [g.model_dump(mode="json") for g in games]}).encode()
            await common.post_json(session, server.port, "/admin/games", body,
                                   key=common.validator_key())
        sockets = await common.connect_many(session, server.port, keys if hub else None,
                                            miners)
        try:
            if hub:
                await asyncio.gather(*(_skip_until_snapshot(ws) for ws in sockets))
            latencies: list[int] = []
            outcomes: dict[str, int] = {}
            receipts: list[dict[str, Any]] = []
            start = time.perf_counter()
            measure_from = start + warmup
            until = measure_from + seconds
            tasks = [asyncio.create_task(miner_loop(
                ws, key, templates, offset=i, measure_from=measure_from, until=until,
                latencies=latencies, outcomes=outcomes, receipts=receipts))
                for i, (ws, key) in enumerate(zip(sockets, keys, strict=True))]
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            await common.gc_pauses(session, server.port, reset=True)
            with common.CpuWindow(server) as cpu:
                done, pending = await asyncio.wait(tasks, timeout=seconds + warmup + 30.0)
                ended = time.perf_counter()
            for task in pending:
                task.cancel()
            failures = [str(task.exception()) for task in done if task.exception() is not None]
            await asyncio.gather(*pending, return_exceptions=True)
            window = max(min(ended, until) - measure_from, 1e-9)
            lat_ms = [ns / 1e6 for ns in latencies]
            result.update(
                round_trips=len(latencies), round_trips_per_s=len(latencies) / window,
                p50_ms=common.percentile(lat_ms, 50), p99_ms=common.percentile(lat_ms, 99),
                max_ms=max(lat_ms, default=float("nan")), outcomes=outcomes,
                failures=failures[:3], client_util=cpu.client_util,
                server_util=cpu.server_util,
                server_cpu_us_per_rt=cpu.server_cpu / max(len(latencies), 1) * 1e6,
                other_load=cpu.other_load,
            )
            result.update(await common.gc_pauses(session, server.port))
            if hub:
                result.update(await _hub_checks(session, server, receipts))
        finally:
            await common.close_all(sockets)
    return result


async def _hub_checks(session: aiohttp.ClientSession, server: common.ServerProcess,
                      receipts: list[dict[str, Any]]) -> dict[str, Any]:
    """Receipts verify against the validator hotkey; the hub's counters agree."""
    from sdk.signing import verify_receipt

    validator = common.validator_key().ss58_address
    async with session.get(common.url(server.port, "/ws/health")) as response:
        health = await response.json()
    return {"receipts_verified": sum(verify_receipt(r, validator) for r in receipts),
            "receipts_checked": len(receipts),
            "hub_predictions": health.get("predictions"),
            "hub_store_commits": health.get("store_commits")}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    syncs = {"full": ["FULL"], "normal": ["NORMAL"], "both": ["FULL", "NORMAL"]}[args.sync]
    common.miner_keys(args.miners)
    games = make_games()
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stores:
        servers: list[tuple[str, common.ServerProcess, bool]] = [
            ("bare", common.ref_server("echo"), False)]
        for sync in syncs:
            store = stores.enter_context(common.store_dir(args.store_dir))
            servers.append((f"hub:{sync}", common.hub_server(store, sync=sync), True))
        try:
            await asyncio.gather(*(server.start() for _, server, _ in servers))
            for label, server, is_hub in servers:
                await common.wait_quiet(args.settle)
                results[label] = await run_one(server, hub=is_hub, miners=args.miners,
                                               seconds=args.seconds, warmup=args.warmup,
                                               games=games)
                if args.verbose:
                    print(json.dumps(results[label], sort_keys=True, default=str), flush=True)
        finally:
            await asyncio.gather(*(server.stop() for _, server, _ in servers))
    report(args, results, syncs)
    return {"benchmark": "predictions", "miners": args.miners, "seconds": args.seconds,
            "window": 1, "results": results}


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]],
           syncs: list[str]) -> None:
    bare = results["bare"]
    rows = [("round trips/s", "round_trips_per_s", True), ("latency p50 ms", "p50_ms", False),
            ("latency p99 ms", "p99_ms", False), ("latency max ms", "max_ms", False),
            ("server CPU us / round trip", "server_cpu_us_per_rt", False),
            ("client CPU util", "client_util", None), ("server CPU util", "server_util", None),
            ("server GC: longest pause ms", "gc_max_ms", None),
            ("server GC: total pause ms", "gc_total_ms", None),
            ("other processes' load (cores)", "other_load", None)]
    for sync in syncs:
        hub = results[f"hub:{sync}"]
        common.print_table(
            f"predictions: {args.miners} miners x {args.seconds:g} s, window 1, "
            f"hub store synchronous={sync}",
            [(name, bare[key], hub[key], better) for name, key, better in rows],
            columns=("bare echo", f"hub {sync}"))
        print(f"hub answers: {hub['outcomes']}; receipts verified "
              f"{hub.get('receipts_verified')}/{hub.get('receipts_checked')}; hub counters "
              f"{hub.get('hub_predictions')}, {hub.get('hub_store_commits')} commits")
        for label, run in (("bare", bare), (f"hub {sync}", hub)):
            if run["failures"]:
                print(f"WARNING {label}: miner loops failed: {run['failures']}")
            if note := common.load_note(run["other_load"]):
                print(f"NOTE {label}: {note}")
        rejected = {k: v for k, v in hub["outcomes"].items() if k != "accepted"}
        if rejected:
            print(f"WARNING hub {sync}: not every prediction was accepted: {rejected}")
        tag = f"[{args.miners} miners, sync={sync}]"
        common.print_ratio(f"predictions.round_trips{tag}",
                           common.ratio(hub["round_trips_per_s"], bare["round_trips_per_s"]),
                           0.1, higher_is_better=True)
        common.print_verdict(
            f"CHECK predictions.p99_ms{tag} = {common.fmt(hub['p99_ms'])} "
            f"({common.verdict(hub['p99_ms'], 25.0, higher_is_better=False)}; "
            f"bare echo p99 {common.fmt(bare['p99_ms'])} ms)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.predictions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--miners", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per server")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured lead-in (s)")
    parser.add_argument("--sync", choices=["full", "normal", "both"], default="both",
                        help="hub SQLite synchronous mode(s) to measure")
    parser.add_argument("--settle", type=float, default=20.0,
                        help="before each run wait up to this long for other processes "
                             "to leave the CPU (shared machines)")
    parser.add_argument("--quick", action="store_true", help="small run: 10 miners x 1.5 s")
    parser.add_argument("--store-dir", help="where the hub's SQLite files go")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--verbose", action="store_true", help="print every run's figures")
    args = parser.parse_args(argv)
    if args.quick:
        args.miners, args.seconds, args.warmup = 10, 1.5, 0.3
        args.settle = 0.0
    if args.miners < 1 or args.seconds <= 0:
        parser.error("--miners must be >= 1 and --seconds > 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    banner = (f"predictions: {args.miners} miners x {args.seconds:g} s per server, window 1, "
              f"hub synchronous {args.sync}")
    return common.run_main(banner, args, run)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
