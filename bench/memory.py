"""Memory: resident memory per idle connection, hub vs a bare aiohttp WebSocket server.

    python -m bench.memory --miners 1000
    python -m bench.memory --quick

For each server (in its own subprocess): open a few warm-up connections (so
one-off allocations such as first-use imports and pools are not charged to the
measured ones), read the server's VmRSS from /proc, open ``--miners`` more
connections (to the hub: authenticated, each signed by its own hotkey), let them
settle (the hub's welcome and snapshot frames are read by the clients), read VmRSS
again. Per connection = (RSS after - RSS before) / miners. The connections stay
idle and open while RSS is read; no game is posted.

``--compress on`` makes the clients offer permessage-deflate. The hub sends its
welcome and snapshot compressed, but with ``server_no_context_takeover`` and one
compressor for the whole process (server_stub/wsframes.py), so like the bare
server (which sends nothing on an idle connection) it keeps no zlib context per
connection: the same target applies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
from typing import Any

import aiohttp

from bench import common

_WARMUP = 20


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


async def measure(server: common.ServerProcess, *, hub: bool, miners: int, compress: int,
                  settle: float) -> dict[str, Any]:
    keys = common.miner_keys(miners + _WARMUP) if hub else None
    warm_keys = keys[miners:] if keys is not None else None
    async with common.client_session() as session:
        warm = await common.connect_many(session, server.port, warm_keys, _WARMUP,
                                         compress=compress)
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        readers = [asyncio.create_task(_drain(ws)) for ws in warm]
        try:
            await asyncio.sleep(settle)
            before = server.rss_kib()
            sockets = await common.connect_many(session, server.port, keys, miners,
                                                compress=compress)
            readers += [asyncio.create_task(_drain(ws)) for ws in sockets]
            await asyncio.sleep(settle + miners / 1000)
            after = server.rss_kib()
            await asyncio.sleep(0.5)
            after2 = server.rss_kib()  # stable? (a second read a moment later)
        finally:
            await common.close_all(sockets + warm)
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    await asyncio.sleep(settle)
    released = server.rss_kib()
    return {"server": server.label, "miners": miners, "compress": compress,
            "rss_before_kib": before, "rss_after_kib": after, "rss_after_again_kib": after2,
            "rss_after_close_kib": released,
            "per_connection_kib": (max(after, after2) - before) / miners}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    compress_modes = {"off": [0], "on": [15], "both": [0, 15]}[args.compress]
    common.miner_keys(args.miners + _WARMUP)
    gc.collect()
    results: dict[str, dict[str, Any]] = {}
    for compress in compress_modes:
        # fresh servers (and store) for every mode: RSS rarely shrinks once grown
        with common.store_dir(args.store_dir) as store:
            bare, hub = common.ref_server("broadcast"), common.hub_server(store)
            try:
                await asyncio.gather(bare.start(), hub.start())
                for server, is_hub in ((bare, False), (hub, True)):
                    results[f"{'hub' if is_hub else 'bare'}:{compress}"] = await measure(
                        server, hub=is_hub, miners=args.miners, compress=compress,
                        settle=args.settle)
            finally:
                await asyncio.gather(bare.stop(), hub.stop())
    report(args, results, compress_modes)
    return {"benchmark": "memory", "miners": args.miners, "results": results}


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]],
           compress_modes: list[int]) -> None:
    for compress in compress_modes:
        bare, hub = results[f"bare:{compress}"], results[f"hub:{compress}"]
        mode = "permessage-deflate offered" if compress else "no compression"
        common.print_table(
            f"memory: {args.miners} idle connections, {mode}",
            [("RSS before (MiB)", bare["rss_before_kib"] / 1024, hub["rss_before_kib"] / 1024,
              None),
             ("RSS with N connections (MiB)", bare["rss_after_kib"] / 1024,
              hub["rss_after_kib"] / 1024, None),
             ("RSS after they closed (MiB)", bare["rss_after_close_kib"] / 1024,
              hub["rss_after_close_kib"] / 1024, None),
             ("KiB per idle connection", bare["per_connection_kib"], hub["per_connection_kib"],
              False)])
        tag = f"[{args.miners} miners, compress={'on' if compress else 'off'}]"
        value = common.ratio(hub["per_connection_kib"], bare["per_connection_kib"])
        common.print_ratio(f"memory.per_connection{tag}", value, 1.2, higher_is_better=False)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--miners", type=int, default=1000)
    parser.add_argument("--compress", choices=["off", "on", "both"], default="off",
                        help="clients offer permessage-deflate (window 15) or not")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds to wait before each RSS reading")
    parser.add_argument("--quick", action="store_true", help="small run: 200 miners")
    parser.add_argument("--store-dir", help="where the hub's SQLite file goes")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.miners, args.settle = 200, 0.5
    if args.miners < 1:
        parser.error("--miners must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    banner = f"memory: {args.miners} idle connections, compression {args.compress}"
    return common.run_main(banner, args, run)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
