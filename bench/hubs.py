"""Two hubs of one validator against one, on the same machine (issue 13).

    python -m bench.hubs [--miners 50] [--seconds 10] [--fanout-miners 256] [--updates 40]
    python -m bench.hubs --quick          # CI size

Every hub is ``python -m bench.servers hub`` on a fresh PostgreSQL database and its own
Redis prefix (``--store postgresql://... --backplane redis://...``): one hub, then two,
in the same invocation, each run followed by the bare aiohttp reference so the
figures can be read as the other benchmarks' ratios.

- predictions: ``--miners`` miners in a closed loop (signed predictions, each answered
  before the next), spread evenly over the hubs; round trips per second.
- fan-out: ``--fanout-miners`` miners spread over the hubs; ``--updates`` updates posted
  one after another to the first hub; every miner must get every update. Deliveries
  per second from the first post to the last delivery, and the p99 of post-to-delivery.

Servers are not pinned here (``BENCH_NO_PIN``): on a 2-core machine the pinning of the
other benchmarks would put both hubs on one core, and the question is what a second
hub process adds on the same machine (PostgreSQL and Redis share it too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from bench import common
from bench.predictions import make_games, miner_loop, prediction_templates

os.environ.setdefault("BENCH_NO_PIN", "1")  # before common.core_split() is first asked

POSTGRES = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
_MARK = re.compile(r'"team_a":"hubs-([0-9a-f]+)-(\d+)"')


@asynccontextmanager
async def hub_fleet(count: int) -> AsyncIterator[list[common.ServerProcess]]:
    """``count`` hub processes on a fresh database and Redis prefix, removed after."""
    import asyncpg
    import redis.asyncio as aioredis

    name = f"btws_bench_{uuid.uuid4().hex[:10]}"
    prefix = f"bt-ws-bench:{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(POSTGRES)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = POSTGRES.rsplit("/", 1)[0] + "/" + name
    servers = [common.ServerProcess(f"hub{count}#{i}", "hub", "--store", dsn,
                                    "--backplane", REDIS, "--redis-prefix", prefix)
               for i in range(count)]
    try:
        for server in servers:
            await server.start()
        yield servers
    finally:
        for server in servers:
            await server.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        client = aioredis.Redis.from_url(REDIS)
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def spread(count: int, servers: list[common.ServerProcess]) -> list[list[int]]:
    """Miner indices per server, round robin."""
    return [list(range(i, count, len(servers))) for i in range(len(servers))]


async def predictions(servers: list[common.ServerProcess], *, hub: bool, miners: int,
                      seconds: float, warmup: float) -> dict[str, Any]:
    keys = common.miner_keys(miners)
    games = make_games()
    templates = prediction_templates(games)
    async with common.client_session() as session:
        if hub:
            body = json.dumps({"games": [g.model_dump(mode="json") for g in games]}).encode()
            await common.post_json(session, servers[0].port, "/admin/games", body,
                                   key=common.validator_key())
            await asyncio.sleep(0.5)  # every hub applies the update from the stream
        sockets: list[aiohttp.ClientWebSocketResponse] = [None] * miners  # type: ignore[list-item]
        for server, indices in zip(servers, spread(miners, servers), strict=True):
            opened = await common.connect_many(
                session, server.port, [keys[i] for i in indices] if hub else None,
                len(indices))
            for index, ws in zip(indices, opened, strict=True):
                sockets[index] = ws
        try:
            if hub:
                for ws in sockets:  # the welcome and the snapshot
                    for _ in range(2):
                        await ws.receive(timeout=15.0)
            latencies: list[int] = []
            outcomes: dict[str, int] = {}
            start = time.perf_counter()
            measure_from, until = start + warmup, start + warmup + seconds
            tasks = [asyncio.create_task(miner_loop(
                ws, key, templates, offset=i, measure_from=measure_from, until=until,
                latencies=latencies, outcomes=outcomes, receipts=[], signed=True))
                for i, (ws, key) in enumerate(zip(sockets, keys, strict=True))]
            done, pending = await asyncio.wait(tasks, timeout=seconds + warmup + 30.0)
            for task in pending:
                task.cancel()
            failures = [str(t.exception()) for t in done if t.exception() is not None]
        finally:
            await common.close_all(sockets)
    lat_ms = [ns / 1e6 for ns in latencies]
    return {"per_s": len(latencies) / seconds, "p99_ms": common.percentile(lat_ms, 99),
            "outcomes": outcomes, "failures": failures[:3]}


async def fanout(servers: list[common.ServerProcess], *, hub: bool, miners: int,
                 updates: int) -> dict[str, Any]:
    keys = common.miner_keys(miners) if hub else None
    token = uuid.uuid4().hex[:8]
    sent = [0] * updates
    latencies: list[list[int]] = [[] for _ in range(updates)]
    complete = [asyncio.get_running_loop().create_future() for _ in range(updates)]

    def on_text(text: str) -> None:
        match = _MARK.search(text)
        if match is None or match.group(1) != token:
            return
        index = int(match.group(2))
        latencies[index].append(time.monotonic_ns() - sent[index])
        if len(latencies[index]) == miners and not complete[index].done():
            complete[index].set_result(None)

    async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                on_text(message.data)

    async with common.client_session() as session:
        sockets = []
        for server, indices in zip(servers, spread(miners, servers), strict=True):
            sockets += await common.connect_many(
                session, server.port, [keys[i] for i in indices] if keys else None,
                len(indices))
        readers = [asyncio.create_task(read(ws)) for ws in sockets]
        try:
            await asyncio.sleep(1.0)  # welcomes and snapshots are read and dropped
            game = {"game_id": "hubs-bench", "team_a": "", "team_b": "away",
                    "sport": "soccer", "league": "Bench",
                    "event_start_date": "2030-01-01T00:00:00Z", "team_a_odds": 2.0,
                    "team_b_odds": 2.0}
            began = time.monotonic_ns()
            for index in range(updates):
                game["team_a"] = f"hubs-{token}-{index}"
                sent[index] = time.monotonic_ns()
                if hub:
                    body = json.dumps({"games": [game]}).encode()
                    await common.post_json(session, servers[0].port, "/admin/games", body,
                                           key=common.validator_key())
                else:
                    frame = {"type": "game_update", "data": {
                        "epoch": "0123456789abcdef", "seq": index + 1, "prev_seq": index,
                        "games": [game], "snapshot": False}}
                    await common.post_json(session, servers[0].port, "/broadcast",
                                           json.dumps(frame, separators=(",", ":")).encode())
            await asyncio.wait_for(asyncio.gather(*complete), 120.0)
            ended = time.monotonic_ns()
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            await common.close_all(sockets)
    lat_ms = [ns / 1e6 for per in latencies for ns in per]
    return {"per_s": miners * updates / ((ended - began) / 1e9),
            "p99_ms": common.percentile(lat_ms, 99)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for count in (1, 2):
        async with hub_fleet(count) as servers:
            results[f"predictions_{count}"] = await predictions(
                servers, hub=True, miners=args.miners, seconds=args.seconds,
                warmup=args.warmup)
            results[f"fanout_{count}"] = await fanout(
                servers, hub=True, miners=args.fanout_miners, updates=args.updates)
    echo = common.ref_server("echo")
    await echo.start()
    try:
        results["predictions_bare"] = await predictions(
            [echo], hub=False, miners=args.miners, seconds=args.seconds, warmup=args.warmup)
    finally:
        await echo.stop()
    broadcast = common.ref_server("broadcast")
    await broadcast.start()
    try:
        results["fanout_bare"] = await fanout([broadcast], hub=False,
                                              miners=args.fanout_miners, updates=args.updates)
    finally:
        await broadcast.stop()
    return results


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    for kind, unit in (("predictions", "round trips/s"), ("fanout", "deliveries/s")):
        one, two, bare = (results[f"{kind}_{k}"] for k in ("1", "2", "bare"))
        print(f"{kind}: 1 hub {one['per_s']:.0f} {unit} (p99 {one['p99_ms']:.1f} ms), "
              f"2 hubs {two['per_s']:.0f} (p99 {two['p99_ms']:.1f} ms), "
              f"bare {bare['per_s']:.0f} (p99 {bare['p99_ms']:.1f} ms)")
        for name, run in (("1 hub", one), ("2 hubs", two)):
            if run.get("failures"):
                print(f"  {name} failures: {run['failures']}")
        print(f"RATIO hubs.{kind}[2 vs 1 hub] = {two['per_s'] / one['per_s']:.2f}")
        print(f"RATIO hubs.{kind}[1 hub vs bare] = {one['per_s'] / bare['per_s']:.2f}")
        print(f"RATIO hubs.{kind}[2 hubs vs bare] = {two['per_s'] / bare['per_s']:.2f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.hubs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--miners", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--fanout-miners", type=int, default=256)
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="CI size")
    args = parser.parse_args(argv)
    if args.quick:
        args.miners, args.seconds, args.warmup = 6, 1.5, 0.5
        args.fanout_miners, args.updates = 16, 5
    results = asyncio.run(run(args))
    report(args, results)
    return results


if __name__ == "__main__":
    main()
