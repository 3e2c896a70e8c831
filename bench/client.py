"""Client: what the SDK costs a miner per received game update and per connection,
against a bare aiohttp client that only ``json.loads`` the same frames.

    python -m bench.client --clients 100 --updates 300 --rounds 3
    python -m bench.client --quick

One hub (its own subprocess, pinned to one core: bench/common.py) serves every
phase. Each phase runs the clients in a fresh subprocess of their own (on the other
cores), so its CPU and RSS are the clients' alone:

- **bare**: N aiohttp WebSockets (each upgrade ``btauth/1``-signed by its own
  hotkey), each reading with ``async for`` and ``json.loads`` on every text frame;
- **sdk**: N ``sdk.ValidatorConnection`` as a miner runs them (one outbox file shared
  by all, the default since the shared outbox), each consumed the way a user does:
  ``async for update in conn.game_updates()``, the game table kept up to date;
- **sdk-private**: the same with a private in-memory outbox per connection (how
  every connection worked before the shared outbox: its own SQLite and writer thread).

The phase's subprocess connects its clients (a few warm-up connections first, so
one-off allocations are not charged to the measured ones), reads its RSS before and
after: KiB per connection. Then this process posts ``--updates`` game updates (signed
``POST /admin/games``, one game per update, paced at ``--rate`` per second so no
reader falls behind and nothing is coalesced), and the subprocess measures its own CPU
from the first post until every client has received every update: CPU per received
update = CPU / (N x updates). ``--rounds`` alternates the order of the phases and
reports medians. ``--profile`` runs the sdk phase under pyinstrument and prints where
its time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench import common

_WARMUP = 5
_ROOT = str(Path(__file__).resolve().parent.parent)  # the project root (bench's parent)
KINDS = ("bare", "sdk", "sdk-private")


def game(index: int, token: str, number: int) -> dict[str, Any]:
    """The game of update ``number``: its ``team_a`` carries the phase and the number."""
    return {"game_id": f"bench-client-{index}", "team_a": f"bench-{token}-{number}",
            "team_b": "away", "sport": "soccer", "league": "EPL",
            "event_start_date": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            "team_a_odds": 2.1 + (number % 7) / 100, "team_b_odds": 3.4, "tie_odds": 3.3,
            "can_tie": True}


def mark(team_a: str, token: str) -> int | None:
    prefix = f"bench-{token}-"
    return int(team_a[len(prefix):]) if team_a.startswith(prefix) else None


# -- the clients' subprocess ---------------------------------------------------------------


class Progress:
    """Updates received per client; done when every client has every update."""

    def __init__(self, clients: int, updates: int, token: str) -> None:
        self.token = token
        self.updates = updates
        self.counts = [0] * clients
        self.remaining = clients
        self.done = asyncio.Event()

    def got(self, client: int, team_a: str) -> None:
        number = mark(team_a, self.token)
        if number is None:
            return
        self.counts[client] += 1
        if number == self.updates - 1:
            self.remaining -= 1
            if self.remaining == 0:
                self.done.set()


async def bare_clients(port: int, keys: Any, progress: Progress | None,
                       session: aiohttp.ClientSession) -> tuple[list[Any], list[Any]]:
    sockets = await common.connect_many(session, port, keys, len(keys))

    async def read(index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                frame = json.loads(message.data)
                if progress is not None and frame["type"] == "game_update":
                    for item in frame["data"]["games"]:
                        progress.got(index, item["team_a"])

    tasks = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(sockets)]
    return sockets, tasks


async def sdk_clients(port: int, keys: Any, progress: Progress | None,
                      session: aiohttp.ClientSession, outbox: str
                      ) -> tuple[list[Any], list[Any]]:
    from sdk import ConnectionOptions, ValidatorConnection

    vk = common.validator_key().ss58_address
    options = ConnectionOptions(ready_timeout=60)
    conns = [ValidatorConnection(f"ws://{common.HOST}:{port}", key, vk, outbox=outbox,
                                 session=session, options=options) for key in keys]
    gate = asyncio.Semaphore(50)

    async def start(conn: ValidatorConnection) -> None:
        async with gate:
            await conn.start()
            await conn.wait_ready(60)

    await asyncio.wait_for(asyncio.gather(*(start(c) for c in conns)), 300)

    async def read(index: int, conn: ValidatorConnection) -> None:
        async for update in conn.game_updates():
            if progress is not None:
                for item in update.games:
                    progress.got(index, item.team_a)

    tasks = [asyncio.create_task(read(i, c)) for i, c in enumerate(conns)]
    return conns, tasks


async def close_clients(kind: str, clients: list[Any], tasks: list[Any]) -> None:
    if kind == "bare":
        await common.close_all(clients)
    else:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def receiver(args: argparse.Namespace) -> None:
    """One phase's clients: connect, report RSS, then on ``GO`` count the updates and
    report the CPU they cost. Talks to the parent over stdin/stdout, one JSON line each."""
    kind = args.receiver
    offset = KINDS.index(kind) * (args.clients + _WARMUP)
    keys = common.miner_keys(len(KINDS) * (args.clients + _WARMUP))[
        offset:offset + args.clients + _WARMUP]
    outbox = str(Path(args.store_dir) / f"{kind}-outbox.sqlite3") if kind == "sdk" else ":memory:"
    progress = Progress(args.clients, args.updates, args.token)
    warm: tuple[list[Any], list[Any]] = ([], [])
    clients: tuple[list[Any], list[Any]] = ([], [])
    async with common.client_session() as session:
        try:
            if kind == "bare":
                warm = await bare_clients(args.port, keys[args.clients:], None, session)
            else:
                warm = await sdk_clients(args.port, keys[args.clients:], None, session, outbox)
            await asyncio.sleep(0.5)
            gc.collect()
            rss_before = common.proc_rss_kib(os.getpid())
            if kind == "bare":
                clients = await bare_clients(args.port, keys[:args.clients], progress, session)
            else:
                clients = await sdk_clients(args.port, keys[:args.clients], progress, session,
                                            outbox)
            await asyncio.sleep(0.5)
            gc.collect()
            rss_after = common.proc_rss_kib(os.getpid())
            reply({"ready": True, "rss_before_kib": rss_before, "rss_after_kib": rss_after,
                   "threads": len(os.listdir("/proc/self/task"))})
            line = await asyncio.to_thread(sys.stdin.readline)
            if line.strip() != "GO":
                return
            profiler = None
            if args.profile:
                from pyinstrument import Profiler

                profiler = Profiler(async_mode="disabled")
                profiler.start()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            try:
                await asyncio.wait_for(progress.done.wait(),
                                       args.timeout + args.updates / args.rate)
                finished = True
            except TimeoutError:
                finished = False
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            if profiler is not None:
                profiler.stop()
                print(profiler.output_text(unicode=False, color=False, show_all=False),
                      file=sys.stderr, flush=True)
            reply({"done": finished, "cpu_s": cpu, "wall_s": wall,
                   "received": sum(progress.counts)})
        finally:
            await close_clients(kind, *clients)
            await close_clients(kind, *warm)


def reply(payload: dict[str, Any]) -> None:
    print(json.dumps(payload), flush=True)


# -- the orchestrator --------------------------------------------------------------------


async def phase(args: argparse.Namespace, hub: common.ServerProcess, kind: str,
                token: str, session: aiohttp.ClientSession) -> dict[str, Any]:
    profile = ["--profile"] if args.profile and kind == "sdk" else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.client", "--receiver", kind, "--port", str(hub.port),
        "--clients", str(args.clients), "--updates", str(args.updates), "--rate",
        str(args.rate), "--token", token, "--store-dir", args.store, *profile,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=None if args.profile else asyncio.subprocess.DEVNULL,
        cwd=_ROOT)
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 300))
        proc.stdin.write(b"GO\n")
        await proc.stdin.drain()
        window = common.CpuWindow(hub)
        with window:
            await post_updates(args, hub.port, token, session)
            done = json.loads(await asyncio.wait_for(
                proc.stdout.readline(), args.timeout + 2 * args.updates / args.rate))
        await asyncio.wait_for(proc.wait(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    deliveries = args.clients * args.updates
    return {"kind": kind, **ready, **done,
            "kib_per_connection": (ready["rss_after_kib"] - ready["rss_before_kib"])
            / args.clients,
            "cpu_us_per_update": done["cpu_s"] / deliveries * 1e6,
            "other_load": max(0.0, window.machine_cpu - window.client_cpu - window.server_cpu
                              - done["cpu_s"]) / window.wall}


async def post_updates(args: argparse.Namespace, port: int, token: str,
                       session: aiohttp.ClientSession) -> None:
    """``--updates`` signed updates, one game each, paced at ``--rate`` per second."""
    started = time.perf_counter()
    for number in range(args.updates):
        body = json.dumps({"games": [game(0, token, number)]}, separators=(",", ":")).encode()
        await common.post_json(session, port, "/admin/games", body, key=common.validator_key())
        delay = started + (number + 1) / args.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    common.miner_keys(len(KINDS) * (args.clients + _WARMUP))
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    load = await common.wait_quiet(args.settle)
    with common.store_dir(args.store_dir) as store:
        args.store = store
        hub = common.hub_server(store)
        try:
            await hub.start()
            async with common.client_session() as session:
                await post_updates(argparse.Namespace(updates=1, rate=1e9), hub.port,
                                   "warmup", session)
                for round_no in range(args.rounds):
                    order = KINDS if round_no % 2 == 0 else KINDS[::-1]
                    for kind in order:
                        result = await phase(args, hub, kind, f"r{round_no}{kind[:4]}",
                                             session)
                        runs[kind].append(result)
                        print(f"round {round_no + 1} {kind:<12} cpu/update "
                              f"{result['cpu_us_per_update']:.1f} us, "
                              f"{result['kib_per_connection']:.1f} KiB/connection, "
                              f"received {result['received']}/"
                              f"{args.clients * args.updates}"
                              f"{'' if result['done'] else ' (TIMED OUT)'}, "
                              f"other load {result['other_load']:.2f} cores", flush=True)
        finally:
            await hub.stop()
    summary = {kind: {key: statistics.median(r[key] for r in results)
                      for key in ("cpu_us_per_update", "kib_per_connection", "other_load",
                                  "threads")}
               for kind, results in runs.items()}
    report(args, summary, load)
    return {"benchmark": "client", "clients": args.clients, "updates": args.updates,
            "rounds": args.rounds, "summary": summary, "runs": runs}


def report(args: argparse.Namespace, summary: dict[str, dict[str, float]],
           load: float) -> None:
    bare, sdk, private = summary["bare"], summary["sdk"], summary["sdk-private"]
    common.print_table(
        f"client: {args.clients} connections, {args.updates} updates at {args.rate:g}/s, "
        f"median of {args.rounds}",
        [("CPU per received update (us)", bare["cpu_us_per_update"],
          sdk["cpu_us_per_update"], False),
         ("KiB per connection", bare["kib_per_connection"], sdk["kib_per_connection"], False),
         ("threads in the client process", bare["threads"], sdk["threads"], None)],
        columns=("bare", "sdk"), ratio_name="sdk/bare")
    print(f"sdk with a private outbox per connection (before the shared outbox): "
          f"{private['cpu_us_per_update']:.1f} us per update, "
          f"{private['kib_per_connection']:.1f} KiB and {private['threads']:.0f} threads")
    worst = max(r["other_load"] for r in summary.values())
    note = common.load_note(max(worst, 0.0 if load != load else load))
    tag = f"[{args.clients} clients]"
    common.print_ratio(f"client.cpu_per_update{tag}",
                       common.ratio(sdk["cpu_us_per_update"], bare["cpu_us_per_update"]), 1.5,
                       higher_is_better=False, note=note)
    common.print_ratio(f"client.memory_per_connection{tag}",
                       common.ratio(sdk["kib_per_connection"], bare["kib_per_connection"]),
                       note=f"sdk {sdk['kib_per_connection']:.1f} KiB, bare "
                            f"{bare['kib_per_connection']:.1f} KiB")
    kib = sdk["kib_per_connection"]
    common.print_verdict(f"CHECK client.sdk_kib_per_connection{tag} = {kib:.1f}  "
                         f"({common.verdict(kib, 64, higher_is_better=False)}; private "
                         f"outbox per connection: {private['kib_per_connection']:.1f})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.client", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--rate", type=float, default=100.0,
                        help="updates posted per second")
    parser.add_argument("--rounds", type=int, default=3, help="median of this many rounds")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds allowed beyond the posting time for every delivery")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="wait up to this many seconds for a quiet machine first")
    parser.add_argument("--profile", action="store_true",
                        help="profile the sdk phase's clients (pyinstrument, to stderr)")
    parser.add_argument("--quick", action="store_true", help="small run: 10 clients, 1 round")
    parser.add_argument("--store-dir", help="where the hub's SQLite file goes")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--receiver", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.updates, args.rounds, args.rate = 10, 40, 1, 200.0
    if args.clients < 1 or args.updates < 1 or args.rounds < 1:
        parser.error("--clients, --updates and --rounds must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.receiver is not None:
        asyncio.run(receiver(args))
        return {}
    banner = (f"client: {args.clients} connections, {args.updates} game updates, "
              f"{args.rounds} round(s)")
    return common.run_main(banner, args, run)


if __name__ == "__main__":
    main()
