"""The two servers every benchmark compares, each run in its own subprocess.

``python -m bench.servers hub ...``  the real hub (``server_stub.create_app``) with an
open registry and limits raised so the load generator is never throttled. No game
feed unless ``--feed simulate`` (the soak, bench/soak.py, runs the simulator with
short kick-off spacing and match duration).

``python -m bench.servers hub --bettensor-db PATH --allowlist FILE ...``  the same hub
beside a Bettensor validator: games from that database's ``game_data`` (read every
``--bettensor-poll`` seconds), accepted predictions into its ``predictions``; the
allowlist's ``HOTKEY UID`` lines give each miner its UID (bench/validatordb.py makes
both files). ``--bettensor-indexes`` as ``serve --bettensor-indexes``: the hub adds its
indexes on ``predictions(miner_uid)`` and ``(prediction_date)`` when it opens the file.

``python -m bench.servers ref --mode broadcast|echo``  a bare aiohttp WebSocket
server: no auth, no parsing, no storage. ``broadcast``: ``POST /broadcast`` sends the
request body, as text, to every open socket (``await ws.send_str`` in a loop).
``echo``: every text frame is sent straight back.

Both also serve ``GET /bench/gc`` (``?reset=1`` to restart the count): the garbage
collector's pauses in this process, so a benchmark can tell a GC pause from a slow
code path. Both print ``READY <port>`` on stdout once listening, and stop by themselves on
SIGTERM/SIGINT, when stdin reaches EOF (the benchmark closed it or died), or after
``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

VALIDATOR_URI = "//Alice"


def hub_app(args: argparse.Namespace) -> web.Application:
    """The hub as a validator would run it, with the load generator's limits lifted.

    Raised above production defaults (and why):
    - connects_per_minute / connect_burst: N miners connect from one address (127.0.0.1);
    - messages_per_second / message_burst / rate_limit_strikes: predictions are sent
      "as fast as possible", far above the 50/s production per-hotkey limit;
    - max_connections 20000; heartbeat 600 s so no heartbeat round lands inside a
      measurement (a run lasts well under 3 intervals, so nobody is dropped).
    Everything else (store synchronous mode, compression, queue sizes, frame limits,
    daily wager limit) is the production default unless given on the command line.
    """
    from bittensor.keyfiles import Keypair

    from server_stub import AllowListRegistry, HubConfig, OpenRegistry, create_app
    from server_stub.registry import read_allowlist

    config = HubConfig(
        heartbeat_interval_s=args.heartbeat,
        max_connections=20_000,
        connects_per_minute=1e9,
        connect_burst=1e9,
        messages_per_second=1e9,
        message_burst=1e9,
        rate_limit_strikes=1_000_000,
        store_synchronous=args.sync.upper(),
        freeze_gc=True,  # as bt-validator-stub serve runs it
        bettensor_db=args.bettensor_db,
        bettensor_poll_s=args.bettensor_poll,
        bettensor_indexes=args.bettensor_indexes,
        store_url=args.store if args.store.startswith("postgresql://") else None,
        backplane_url=args.backplane,
        redis_prefix=args.redis_prefix,
    )
    signer = Keypair.create_from_uri(VALIDATOR_URI)
    if args.bettensor_db is not None:  # as serve --bettensor-db --allowlist runs it
        return create_app(config, signer=signer, store_path=args.store,
                          registry=AllowListRegistry(read_allowlist(args.allowlist)))
    return create_app(config, signer=signer, store_path=args.store, registry=OpenRegistry(),
                      feed=_feed(args))


def _feed(args: argparse.Namespace) -> Any:
    """``--feed simulate``: the built-in simulator, with the kick-off spacing and match
    duration given (bench/soak.py uses seconds, so games kick off and settle during a
    run). The default ``none`` leaves the hub without a feed, as every other
    benchmark expects (they post their own games)."""
    if args.feed == "none":
        return None
    from datetime import UTC, datetime, timedelta

    from server_stub.simulator import GameSimulator

    return GameSimulator(seed=args.feed_seed, start=datetime.now(UTC), games=args.feed_games,
                         kickoff_spacing=timedelta(seconds=args.kickoff_spacing),
                         match_duration=timedelta(seconds=args.match_duration))


def reference_app(mode: str) -> web.Application:
    """A minimal aiohttp WebSocket server (aiohttp defaults: compression accepted)."""
    clients: set[web.WebSocketResponse] = set()

    async def handle_ws(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        clients.add(ws)
        try:
            async for message in ws:
                if mode == "echo" and message.type is WSMsgType.TEXT:
                    await ws.send_str(message.data)
        finally:
            clients.discard(ws)
        return ws

    async def handle_broadcast(request: web.Request) -> web.Response:
        text = await request.text()
        sent = 0
        for ws in list(clients):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(text)
                sent += 1
        return web.json_response({"sent": sent})

    async def close_all(app: web.Application) -> None:
        for ws in list(clients):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY), 2.0)

    app = web.Application()
    app.add_routes([web.get("/ws", handle_ws), web.post("/broadcast", handle_broadcast)])
    app.on_shutdown.append(close_all)
    return app


class GcPauses:
    """Counts the garbage collector's pauses (per generation) through gc.callbacks."""

    def __init__(self) -> None:
        self._started = 0.0
        self.reset()
        gc.callbacks.append(self._callback)

    def reset(self) -> None:
        self.count = [0, 0, 0]
        self.total_ms = [0.0, 0.0, 0.0]
        self.max_ms = [0.0, 0.0, 0.0]

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = (time.perf_counter() - self._started) * 1e3
        generation = info["generation"]
        self.count[generation] += 1
        self.total_ms[generation] += pause
        self.max_ms[generation] = max(self.max_ms[generation], pause)

    async def handle(self, request: web.Request) -> web.Response:
        body = {"count": self.count, "total_ms": self.total_ms, "max_ms": self.max_ms}
        if request.query.get("reset"):
            self.reset()
        return web.json_response(body)


async def serve(args: argparse.Namespace) -> None:
    app = hub_app(args) if args.kind == "hub" else reference_app(args.mode)
    app.router.add_get("/bench/gc", GcPauses().handle)
    # access_log=None for both: per-request log formatting is not what is compared.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def watch_stdin() -> None:  # the parent closes our stdin (or dies): stop
        with contextlib.suppress(Exception):
            sys.stdin.buffer.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True, name="stdin-watch").start()
    print(f"READY {port}", flush=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["hub", "ref"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", choices=["broadcast", "echo"], default="broadcast",
                        help="reference behaviour")
    parser.add_argument("--store", help="hub: SQLite store path or postgresql:// URL")
    parser.add_argument("--backplane", help="hub: a redis:// backplane shared by hubs")
    parser.add_argument("--redis-prefix", help="hub: the backplane's key prefix")
    parser.add_argument("--sync", default="FULL", help="hub: SQLite synchronous mode")
    parser.add_argument("--heartbeat", type=float, default=600.0, help="hub heartbeat (s)")
    parser.add_argument("--feed", choices=["none", "simulate"], default="none",
                        help="hub: game feed (default none: the benchmark posts games)")
    parser.add_argument("--feed-seed", type=int, default=0, help="hub: simulator seed")
    parser.add_argument("--feed-games", type=int, default=8,
                        help="hub: unsettled simulator fixtures at any time")
    parser.add_argument("--kickoff-spacing", type=float, default=180.0,
                        help="hub: seconds between simulated kick-offs")
    parser.add_argument("--match-duration", type=float, default=300.0,
                        help="hub: seconds from kick-off to the result")
    parser.add_argument("--bettensor-db", type=Path,
                        help="hub: beside a Bettensor validator, this database")
    parser.add_argument("--allowlist", type=Path,
                        help="hub with --bettensor-db: 'HOTKEY UID' lines")
    parser.add_argument("--bettensor-poll", type=float, default=5.0,
                        help="hub with --bettensor-db: seconds between reads of game_data")
    parser.add_argument("--bettensor-indexes", action="store_true",
                        help="hub with --bettensor-db: add the hub's indexes on "
                             "predictions(miner_uid) and (prediction_date)")
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="stop after this long whatever happens")
    args: Any = parser.parse_args(argv)
    if args.kind == "hub" and not args.store:
        parser.error("hub needs --store PATH")
    if args.bettensor_db is not None and (args.allowlist is None or args.feed != "none"):
        parser.error("--bettensor-db needs --allowlist FILE and no --feed")
    if args.bettensor_indexes and args.bettensor_db is None:
        parser.error("--bettensor-indexes needs --bettensor-db")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
