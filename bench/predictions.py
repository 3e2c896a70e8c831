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

``--miner-signature off`` sends predictions without ``signature`` (PROTOCOL.md allows it;
the hub then verifies nothing), ``both`` runs a pass of each, the bare echo included
(the client's work differs). The hub with its own store is checked against issue 11's
targets: server CPU per prediction <= 140 µs signed / 90 µs unsigned, round trips >=
0.15x the bare echo, p99 <= 10 ms.

The hub runs with ``synchronous=FULL`` (its default) and ``NORMAL``, each on a
fresh store. Wagers are tiny (0.001), so the default daily limit of 1000 per miner
is never reached; the hub's per-hotkey message rate limit (50/s by default) is
raised by the benchmark server (see ``bench/servers.py``). Games are posted to the
hub first (signed ``POST /admin/games``), starting 2 days ahead.

``--store postgresql://...`` adds a run of the hub on that PostgreSQL store (one
transaction per prediction, the daily limit checked in it), reported like the SQLite
runs, against the same bare echo.

``--book bettensor`` (or ``both``: the hub's own store too, same run) measures the hub
beside a Bettensor validator (``--bettensor-db``): the same games are rows of a fresh
validator database (bench/validatordb.py: the validator's tables and its
``delete_old_predictions`` trigger, ``--history-rows`` older predictions), the miners
are UIDs 0..N-1 of an allowlist, and every accepted prediction is a row of its
``predictions`` table before the miner gets its receipt. ``--validator-writer on``
runs the test kit's validator-writer process beside it (short write transactions,
2 ms apart, on other games), ``both`` without and with; its transactions/s are
counted over the measured window and, for comparison, over a few seconds alone
before the miners connect. ``--indexes on`` runs the hub with ``--bettensor-indexes``
(its indexes on ``predictions(miner_uid)`` and ``(prediction_date)``), ``both``
(the default) without and with. After each run the hub's ``/ws/health`` gives the
longest and mean time it held the file's write lock per batch, and the busy retries.

    python -m bench.predictions --miners 50 --seconds 10 --book both --sync full
    python -m bench.predictions --miners 50 --seconds 10 --book both --sync full \
        --history-rows 100000 --validator-writer on
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench import common, validatordb

_GAMES = 20
_WAGER = 0.001


def make_games() -> list[Any]:
    from sdk.models import Game

    # numeric ids and a start inside the window a Bettensor validator offers
    # ([now - 4 days, now + 8 days]): the same games serve every book
    start = datetime.now(UTC) + timedelta(days=2)
    return [Game(game_id=str(70_000 + i), team_a=f"home-{i}", team_b=f"away-{i}",
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
                     receipts: list[dict[str, Any]], signed: bool = True) -> None:
    from sdk.signing import sign_prediction

    count = offset
    while time.perf_counter() < until:
        wire = dict(templates[count % len(templates)])
        count += 1
        pid = str(uuid.uuid4())
        wire["prediction_id"] = pid
        data: dict[str, Any] = {"prediction": wire}
        if signed:  # PROTOCOL.md: the signature is optional; without it nothing is verified
            data["signature"] = sign_prediction(key, wire)
        text = json.dumps({"type": "prediction", "data": data}, separators=(",", ":"))
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
                  warmup: float, games: list[Any], post_games: bool = True,
                  mark: Callable[[], Awaitable[None]] | None = None,
                  signed: bool = True) -> dict[str, Any]:
    """One measured closed loop; ``mark`` is awaited when the measured window opens
    and again when the last miner is done (the validator-writer's count)."""
    keys = common.miner_keys(miners)
    templates = prediction_templates(games)
    result: dict[str, Any] = {"server": server.label, "miners": miners, "seconds": seconds}
    async with common.client_session() as session:
        if hub and post_games:
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
                latencies=latencies, outcomes=outcomes, receipts=receipts, signed=signed))
                for i, (ws, key) in enumerate(zip(sockets, keys, strict=True))]
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            if mark is not None:
                await mark()
            await common.gc_pauses(session, server.port, reset=True)
            with common.CpuWindow(server) as cpu:
                done, pending = await asyncio.wait(tasks, timeout=seconds + warmup + 30.0)
                ended = time.perf_counter()
            if mark is not None:
                await mark()
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
    checks = {"receipts_verified": sum(verify_receipt(r, validator) for r in receipts),
              "receipts_checked": len(receipts),
              "hub_predictions": health.get("predictions"),
              "hub_store_commits": health.get("store_commits")}
    if "bettensor_db" in health:
        checks["bettensor_db"] = health["bettensor_db"]
    return checks


@dataclass
class Run:
    """One server to measure: the bare echo, or the hub with one book and sync mode."""

    label: str
    server: common.ServerProcess
    hub: bool = False
    sync: str = ""
    validator_db: Path | None = None
    writer: bool = False
    indexes: bool = False
    signed: bool = True


_CHOICES = {"off": [False], "on": [True], "both": [False, True]}


def bettensor_variants(args: argparse.Namespace) -> list[tuple[bool, bool]]:
    """(indexes, validator writing) of each Bettensor run, in the order they run."""
    return [(indexes, writer) for indexes in _CHOICES[args.indexes]
            for writer in _CHOICES[args.validator_writer]]


def bettensor_key(indexes: bool, writer: bool) -> str:
    """The results key of a Bettensor run (before ``:SYNC``)."""
    return f"bettensor{'+indexes' if indexes else ''}{'+writer' if writer else ''}"


def signature_modes(args: argparse.Namespace) -> list[bool]:
    """Whether the miners sign their predictions, per pass (signed first)."""
    return _CHOICES[args.miner_signature][::-1]


def unsigned_suffix(signed: bool) -> str:
    """Appended to results keys (and tags) of the runs whose miners do not sign."""
    return "" if signed else ":unsigned"


def plan(args: argparse.Namespace, syncs: list[str], games: list[Any],
         stores: contextlib.ExitStack) -> list[Run]:
    """The runs of this invocation, in order: bare, then per sync mode the hub with
    its own store and the hub beside a Bettensor validator (without, then with its
    indexes; each without, then with the validator-writer process), each on fresh
    files."""
    runs: list[Run] = []
    for signed in signature_modes(args):
        runs += _plan_pass(args, syncs, games, stores, signed)
    return runs


def _plan_pass(args: argparse.Namespace, syncs: list[str], games: list[Any],
               stores: contextlib.ExitStack, signed: bool) -> list[Run]:
    """The runs of one signature mode: the bare echo gets the same client work as the
    hubs it is compared with (signing is most of the client's CPU)."""
    tail = unsigned_suffix(signed)
    runs = [Run(f"bare{tail}", common.ref_server("echo"), signed=signed)]
    for sync in syncs:
        if args.book in ("own", "both"):
            store = stores.enter_context(common.store_dir(args.store_dir))
            runs.append(Run(f"hub:{sync}{tail}", common.hub_server(store, sync=sync), True,
                            sync, signed=signed))
        if args.store is not None and sync == syncs[0]:  # PostgreSQL: no sync modes
            runs.append(Run(f"hub:postgresql{tail}", common.hub_server(
                "", store_url=args.store), True, "postgresql", signed=signed))
        if args.book not in ("bettensor", "both"):
            continue
        for indexes, writer in bettensor_variants(args):
            store = Path(stores.enter_context(common.store_dir(args.store_dir)))
            db = validatordb.create(store / "validator.db", games,
                                    trigger=args.validator_trigger,
                                    history_rows=args.history_rows)
            allowlist = validatordb.write_allowlist(
                store / "allowlist.txt", [key.ss58_address for key in
                                          common.miner_keys(args.miners)])
            server = common.hub_server(store, sync=sync, bettensor_db=db, allowlist=allowlist,
                                       bettensor_indexes=indexes)
            runs.append(Run(f"{bettensor_key(indexes, writer)}:{sync}{tail}", server, True,
                            sync, db, writer, indexes, signed))
    return runs


def writer_alone_seconds(args: argparse.Namespace) -> float:
    """How long the validator-writer runs alone (the hub idle) before the miners
    connect: its rate without the hub's load, on the same file."""
    return min(3.0, float(args.seconds) / 3)


async def measure(args: argparse.Namespace, run: Run, games: list[Any]) -> dict[str, Any]:
    """One run; beside the validator-writer process when the run asks for it, whose
    transactions/s are counted alone first, then over the measured window."""
    writer = None
    marks: list[tuple[float, int]] = []

    async def mark() -> None:
        assert writer is not None
        now = time.perf_counter()
        marks.append((now, await writer.written()))

    if run.writer:
        assert run.validator_db is not None
        alone = writer_alone_seconds(args)
        # it stops itself after this long if this process dies without stopping it
        writer = await validatordb.ValidatorWriter(
            run.validator_db, max_seconds=alone + args.warmup + args.seconds + 120).start()
    try:
        if writer is not None:
            await mark()
            await asyncio.sleep(alone)
            await mark()
        result = await run_one(run.server, hub=run.hub, miners=args.miners,
                               seconds=args.seconds, warmup=args.warmup, games=games,
                               post_games=run.validator_db is None,
                               mark=mark if writer is not None else None,
                               signed=run.signed)
    finally:
        if writer is not None:
            await writer.stop()
    if writer is not None:
        result["validator_writer_transactions"] = writer.transactions
        result["validator_writer_alone_tx_per_s"] = _rate(marks[0], marks[1])
        result["validator_writer_tx_per_s"] = _rate(marks[2], marks[3])
    if run.validator_db is not None:
        result["validator_db_rows"] = validatordb.count_rows(run.validator_db,
                                                             below_uid=args.miners)
    return result


def _rate(first: tuple[float, int], second: tuple[float, int]) -> float:
    """Transactions per second between two (time, count) marks."""
    return (second[1] - first[1]) / max(second[0] - first[0], 1e-9)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    syncs = {"full": ["FULL"], "normal": ["NORMAL"], "both": ["FULL", "NORMAL"]}[args.sync]
    common.miner_keys(args.miners)
    games = make_games()
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stores:
        runs = plan(args, syncs, games, stores)
        try:
            await asyncio.gather(*(item.server.start() for item in runs))
            for one in runs:
                await common.wait_quiet(args.settle)
                results[one.label] = await measure(args, one, games)
                if args.verbose:
                    print(json.dumps(results[one.label], sort_keys=True, default=str),
                          flush=True)
        finally:
            await asyncio.gather(*(item.server.stop() for item in runs))
    report(args, results, syncs)
    return {"benchmark": "predictions", "miners": args.miners, "seconds": args.seconds,
            "window": 1, "book": args.book, "history_rows": args.history_rows,
            "indexes": args.indexes, "validator_writer": args.validator_writer,
            "validator_trigger": args.validator_trigger, "results": results}


_ROWS = [("round trips/s", "round_trips_per_s", True), ("latency p50 ms", "p50_ms", False),
         ("latency p99 ms", "p99_ms", False), ("latency max ms", "max_ms", False),
         ("server CPU us / round trip", "server_cpu_us_per_rt", False),
         ("client CPU util", "client_util", None), ("server CPU util", "server_util", None),
         ("server GC: longest pause ms", "gc_max_ms", None),
         ("server GC: total pause ms", "gc_total_ms", None),
         ("other processes' load (cores)", "other_load", None)]

def bettensor_book(args: argparse.Namespace, indexes: bool,
                   writer: bool) -> tuple[str, str]:
    """(title, tag tail) of a Bettensor run: the hub's indexes, the validator-writer
    process and the pre-filled history, as the table titles and RATIO/CHECK names
    say them."""
    history = f", history={args.history_rows}" if args.history_rows else ""
    title = (f"Bettensor db{', indexes' if indexes else ''}{history}"
             f"{' + validator writing' if writer else ''}")
    tail = (f", book=bettensor{', indexes' if indexes else ''}{history}"
            f"{', validator writing' if writer else ''}")
    return title, tail


# Issue 11's targets for the hub with its own store, durable commit and signed receipt.
CPU_US_TARGET = {True: 140.0, False: 90.0}
"""Server CPU per prediction (µs), with and without the miner's signature to verify."""
ROUND_TRIPS_TARGET = 0.15
"""Predictions/s as a fraction of the bare echo's round trips/s (same client work)."""
P99_MS_TARGET = 10.0
"""Latency p99 at 50 miners in lock-step (window one)."""
BETTENSOR_TARGETS = (0.1, 25.0)
"""(round trips / bare, p99 ms) for the hub beside a Bettensor validator: the targets
of its own issue (two databases and two commits per prediction), not issue 11's."""


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]],
           syncs: list[str]) -> None:
    for signed in signature_modes(args):
        _report_pass(args, results, syncs, signed)


def _report_pass(args: argparse.Namespace, results: dict[str, dict[str, Any]],
                 syncs: list[str], signed: bool) -> None:
    key_tail = unsigned_suffix(signed)
    tag_tail = "" if signed else ", unsigned"
    bare = results[f"bare{key_tail}"]
    for sync in syncs:
        own = results.get(f"hub:{sync}{key_tail}")
        if own is not None:
            _report_hub(args, bare, own, sync, "own store",
                        f"[{args.miners} miners, sync={sync}{tag_tail}]", signed)
            cpu_us = own["server_cpu_us_per_rt"]
            met = common.verdict(cpu_us, CPU_US_TARGET[signed], higher_is_better=False)
            common.print_verdict(
                f"CHECK predictions.server_cpu_us[{args.miners} miners, sync={sync}{tag_tail}]"
                f" = {common.fmt(cpu_us)} ({met}; bare echo "
                f"{common.fmt(bare['server_cpu_us_per_rt'])})")
        pg = results.get(f"hub:postgresql{key_tail}")
        if pg is not None and sync == syncs[0]:
            _report_hub(args, bare, pg, "postgresql", "PostgreSQL store",
                        f"[{args.miners} miners, store=postgresql{tag_tail}]", signed)
        for indexes, writer in bettensor_variants(args):
            bettensor = results.get(f"{bettensor_key(indexes, writer)}:{sync}{key_tail}")
            if bettensor is None:
                continue
            title, tail = bettensor_book(args, indexes, writer)
            _report_hub(args, bare, bettensor, sync, title,
                        f"[{args.miners} miners, sync={sync}{tail}{tag_tail}]", signed,
                        targets=BETTENSOR_TARGETS)
        for indexes, writer in bettensor_variants(args):
            bettensor = results.get(f"{bettensor_key(indexes, writer)}:{sync}{key_tail}")
            if bettensor is not None:
                title, tail = bettensor_book(args, indexes, writer)
                _report_bettensor(args, own, bettensor, sync, (title, tail + tag_tail))


def _report_hub(args: argparse.Namespace, bare: dict[str, Any], hub: dict[str, Any],
                sync: str, title: str, tag: str, signed: bool = True,
                targets: tuple[float, float] = (ROUND_TRIPS_TARGET, P99_MS_TARGET)) -> None:
    """The hub against the bare echo: table, answers, warnings, RATIO and CHECK."""
    round_trips_target, p99_target = targets
    common.print_table(
        f"predictions: {args.miners} miners x {args.seconds:g} s, window 1, "
        f"hub {title}, synchronous={sync}, miners {'sign' if signed else 'do not sign'}",
        [(name, bare[key], hub[key], better) for name, key, better in _ROWS],
        columns=("bare echo", f"hub {sync}"))
    print(f"hub answers: {hub['outcomes']}; receipts verified "
          f"{hub.get('receipts_verified')}/{hub.get('receipts_checked')}; hub counters "
          f"{hub.get('hub_predictions')}, {hub.get('hub_store_commits')} commits")
    for label, run in (("bare", bare), (f"hub {title} {sync}", hub)):
        if run["failures"]:
            print(f"WARNING {label}: miner loops failed: {run['failures']}")
        if note := common.load_note(run["other_load"]):
            print(f"NOTE {label}: {note}")
    rejected = {k: v for k, v in hub["outcomes"].items() if k != "accepted"}
    if rejected:
        print(f"WARNING hub {title} {sync}: not every prediction was accepted: {rejected}")
    common.print_ratio(f"predictions.round_trips{tag}",
                       common.ratio(hub["round_trips_per_s"], bare["round_trips_per_s"]),
                       round_trips_target, higher_is_better=True)
    common.print_verdict(
        f"CHECK predictions.p99_ms{tag} = {common.fmt(hub['p99_ms'])} "
        f"({common.verdict(hub['p99_ms'], p99_target, higher_is_better=False)}; "
        f"bare echo p99 {common.fmt(bare['p99_ms'])} ms)")


def _report_bettensor(args: argparse.Namespace, own: dict[str, Any] | None,
                      bettensor: dict[str, Any], sync: str, book: tuple[str, str]) -> None:
    """The hub beside a Bettensor validator against the hub with its own store (same
    run), the rows it wrote, and how long it held the validator's write lock."""
    title, tag_tail = book
    tag = f"[{args.miners} miners, sync={sync}{tag_tail.replace(', book=bettensor', '')}]"
    db = bettensor.get("bettensor_db", {})
    accepted = (bettensor.get("hub_predictions") or {}).get("accepted")
    rows = bettensor.get("validator_db_rows")
    print(f"\nhub {title} {sync}: {rows} rows of the bench miners in the validator's "
          f"predictions (hub accepted {accepted}), {db.get('commits')} commits; "
          f"validator db history {args.history_rows} rows, delete_old_predictions trigger "
          f"{'on' if args.validator_trigger else 'off'}, hub indexes "
          f"{'on' if db.get('indexes') else 'off'}")
    if "validator_writer_transactions" in bettensor:
        print(f"validator-writer process: {bettensor['validator_writer_transactions']} "
              f"transactions in all; {common.fmt(bettensor['validator_writer_tx_per_s'])}/s "
              f"beside the loaded hub, "
              f"{common.fmt(bettensor['validator_writer_alone_tx_per_s'])}/s alone "
              f"({writer_alone_seconds(args):g} s before the miners connected)")
    if rows != accepted:
        print(f"WARNING hub {title} {sync}: {rows} rows for {accepted} accepted predictions")
    if db.get("replaced"):
        print(f"WARNING hub {title} {sync}: the validator database was replaced")
    if own is not None:
        common.print_table(
            f"predictions: hub own store vs {title}, synchronous={sync}",
            [(name, own[key], bettensor[key], better) for name, key, better in _ROWS[:5]],
            columns=("own store", "Bettensor db"), ratio_name="bt/own")
        common.print_ratio(f"predictions.bettensor_vs_own{tag}",
                           common.ratio(bettensor["round_trips_per_s"],
                                        own["round_trips_per_s"]))
    common.print_verdict(
        f"CHECK predictions.bettensor_lock_hold_max_ms{tag} = "
        f"{common.fmt(float(db.get('lock_hold_max_ms', float('nan'))))} (mean "
        f"{common.fmt(float(db.get('lock_hold_mean_ms', float('nan'))))} ms per batch, "
        f"{db.get('commits')} batches, busy retries {db.get('busy_retries')})")
    if "validator_writer_tx_per_s" in bettensor:
        beside = bettensor["validator_writer_tx_per_s"]
        alone = bettensor["validator_writer_alone_tx_per_s"]
        writer_tag = tag.replace(", validator writing", "")
        common.print_verdict(
            f"CHECK predictions.validator_writer_tps{writer_tag} = {common.fmt(beside)} "
            f"(alone {common.fmt(alone)}; beside/alone "
            f"{common.fmt(common.ratio(beside, alone), 3)})")


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
    parser.add_argument("--book", choices=["own", "bettensor", "both"], default="own",
                        help="where the hub keeps predictions: its own store, a Bettensor "
                             "validator's database, or both (compared in the same run)")
    parser.add_argument("--validator-writer", choices=["off", "on", "both"], default="both",
                        help="with a Bettensor book: run the validator-writer process "
                             "beside the hub (both: without, then with)")
    parser.add_argument("--validator-trigger", action=argparse.BooleanOptionalAction,
                        default=True, help="the validator's delete_old_predictions "
                                           "trigger on its predictions table")
    parser.add_argument("--indexes", choices=["off", "on", "both"], default="both",
                        help="with a Bettensor book: the hub's --bettensor-indexes "
                             "(both: without, then with)")
    parser.add_argument("--history-rows", type=int, default=0,
                        help="predictions (other UIDs, last 45 days) the validator "
                             "database holds before the run")
    parser.add_argument("--miner-signature", choices=["off", "on", "both"], default="on",
                        help="whether miners sign their predictions (off: no 'signature', "
                             "the hub verifies nothing; both: a pass of each, bare echo "
                             "included)")
    parser.add_argument("--quick", action="store_true", help="small run: 10 miners x 1.5 s")
    parser.add_argument("--store-dir", help="where the hub's SQLite files go")
    parser.add_argument("--store", help="also run the hub on this PostgreSQL store "
                        "(postgresql://...; a database of its own: its tables are kept)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--verbose", action="store_true", help="print every run's figures")
    args = parser.parse_args(argv)
    if args.quick:
        args.miners, args.seconds, args.warmup = 10, 1.5, 0.3
        args.settle = 0.0
    if args.miners < 1 or args.seconds <= 0 or args.history_rows < 0:
        parser.error("--miners must be >= 1, --seconds > 0 and --history-rows >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    banner = (f"predictions: {args.miners} miners x {args.seconds:g} s per server, window 1, "
              f"hub synchronous {args.sync}, book {args.book}")
    return common.run_main(banner, args, run)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
