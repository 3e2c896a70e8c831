"""Reconnect storm: N SDK clients connected to a hub, the hub restarted on the same
store and port; how long until every client is reconnected and resumed, and how
hard they hit the hub while doing so.

    python -m bench.storm --clients 1000
    python -m bench.storm --quick

Two runs, each against a fresh hub subprocess on a fixed port:

- **sdk**: N ``sdk.ValidatorConnection`` clients with their default policy
  (full-jitter exponential backoff, base 0.5 s, cap 30 s).
- **reference**: N bare aiohttp clients that reconnect the moment their socket
  closes and retry every 50 ms while the hub is down: no jitter, no backoff.

For each: time from the restarted hub being ready to the last client open and
resumed (its game table matches the hub's epoch and seq), and the peak rate of
connect *attempts* from the moment the hub went down (most attempts in any 100 ms
window, scaled to per second): what a hub coming back has to absorb. Completed
connects are printed too, but their peak is the hub's accept speed (attempts queue in
the listen backlog while it starts), not the clients' behaviour. The jitter is doing
its job when the SDK's attempt peak is well below the reference's. Also printed:
client-side memory per SDK connection (RSS of this process before and after
connecting, divided by N); the N connections share one outbox file and writer
thread, as the connections of a miner process do (bench/client.py compares that
with a bare aiohttp client).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench import common

WINDOW_S = 0.1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((common.HOST, 0))
        return int(sock.getsockname()[1])


def self_rss_kib() -> int:
    import os

    return common.proc_rss_kib(os.getpid())


def hub_process(store: Path, port: int) -> common.ServerProcess:
    return common.ServerProcess("hub", "hub", "--store", str(store), "--port", str(port),
                                "--heartbeat", "20")


async def post_games(port: int, count: int = 5) -> dict[str, Any]:
    from sdk.models import Game

    start = datetime.now(UTC) + timedelta(days=3)
    games = [Game(game_id=f"storm-{i}", team_a=f"home-{i}", team_b=f"away-{i}",
                  sport="soccer", league="EPL", event_start_date=start, team_a_odds=2.0,
                  team_b_odds=3.0, tie_odds=3.2, can_tie=True).model_dump(mode="json")
             for i in range(count)]
    body = json.dumps({"games": games}).encode()
    async with common.client_session() as session:
        return await common.post_json(session, port, "/admin/games", body,
                                      key=common.validator_key())


def peak_rate(stamps: Sequence[float]) -> float:
    """Most events in any WINDOW_S window, per second."""
    ordered = sorted(stamps)
    best, start = 0, 0
    for end in range(len(ordered)):
        while ordered[end] - ordered[start] > WINDOW_S:
            start += 1
        best = max(best, end - start + 1)
    return best / WINDOW_S


async def run_sdk(clients: int, store_dir: str) -> dict[str, float]:
    from sdk import ConnectionState, ValidatorConnection

    port = free_port()
    store = Path(store_dir) / "storm-sdk.sqlite3"
    keys = common.miner_keys(clients)
    vk = common.validator_key().ss58_address
    opened: list[float] = []
    attempts: list[float] = []
    phase = {"restarting": False}

    def on_state(state: ConnectionState) -> None:
        if not phase["restarting"]:
            return
        if state is ConnectionState.OPEN:
            opened.append(time.perf_counter())
        elif state is ConnectionState.CONNECTING:
            attempts.append(time.perf_counter())

    hub = await hub_process(store, port).start()
    await post_games(port)
    session = common.client_session()
    outbox = Path(store_dir) / "storm-outbox.sqlite3"  # one per process, as a miner's
    conns = [ValidatorConnection(f"ws://{common.HOST}:{port}", keys[i], vk, outbox=outbox,
                                 session=session, on_state_change=on_state)
             for i in range(clients)]
    rss_before = self_rss_kib()
    try:
        gate = asyncio.Semaphore(100)

        async def start(conn: ValidatorConnection) -> None:
            async with gate:
                await conn.start()
                await conn.wait_ready(120)

        await asyncio.wait_for(asyncio.gather(*(start(c) for c in conns)), 300)
        rss_after = self_rss_kib()
        phase["restarting"] = True
        t_stop = time.perf_counter()
        await hub.stop()
        hub = await hub_process(store, port).start()
        t_ready = time.perf_counter()
        health = await _health(port)
        epoch, seq = health["epoch"], health["seq"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done = sum(1 for c in conns if c.state is ConnectionState.OPEN
                       and c.epoch == epoch and c.seq == seq and len(c.games) == 5)
            if done == clients:
                break
            await asyncio.sleep(0.05)
        t_all = max(opened) if opened else float("nan")
        resumed = sum(1 for c in conns if c.epoch == epoch and c.seq == seq)
        return {"clients": clients, "resumed": resumed,
                "down_s": t_ready - t_stop, "recover_s": t_all - t_ready,
                "peak_connects_per_s": peak_rate([t for t in opened if t >= t_ready]),
                "attempts": len(attempts), "peak_attempts_per_s": peak_rate(attempts),
                "client_kib_per_conn": (rss_after - rss_before) / clients}
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        await session.close()
        await hub.stop()


async def run_reference(clients: int, store_dir: str) -> dict[str, float]:
    port = free_port()
    store = Path(store_dir) / "storm-ref.sqlite3"
    keys = common.miner_keys(clients)
    opened: list[float] = []
    attempts: list[float] = []
    phase = {"restarting": False, "stop": False}
    session = common.client_session()

    async def client(key: Any) -> None:
        while not phase["stop"]:
            if phase["restarting"]:
                attempts.append(time.perf_counter())
            try:
                headers = common.auth_headers(key, "GET", "/ws")
                ws = await session.ws_connect(common.url(port, "/ws"), headers=headers,
                                              heartbeat=None)
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.05)  # hammer: retry at once, no jitter
                continue
            if phase["restarting"]:
                opened.append(time.perf_counter())
            with contextlib.suppress(Exception):
                async for _ in ws:
                    pass

    hub = await hub_process(store, port).start()
    tasks = [asyncio.create_task(client(k)) for k in keys]
    try:
        for _ in range(6000):
            if (await _health(port))["active_connections"] >= clients:
                break
            await asyncio.sleep(0.05)
        phase["restarting"] = True
        await hub.stop()
        hub = await hub_process(store, port).start()
        t_ready = time.perf_counter()
        for _ in range(6000):
            if len(opened) >= clients:
                break
            await asyncio.sleep(0.05)
        return {"clients": clients, "recover_s": max(opened) - t_ready if opened else 0.0,
                "peak_connects_per_s": peak_rate([t for t in opened if t >= t_ready]),
                "attempts": len(attempts), "peak_attempts_per_s": peak_rate(attempts)}
    finally:
        phase["stop"] = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()
        await hub.stop()


async def _health(port: int) -> dict[str, Any]:
    async with common.client_session() as session, session.get(
            common.url(port, "/ws/health")) as response:
        return await response.json()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    with common.store_dir(None) as directory:
        sdk_run = await run_sdk(args.clients, directory)
        ref_run = await run_reference(args.clients, directory)
    print(f"\nreconnect storm: {args.clients} clients, hub restarted on the same store/port")
    print(f"  sdk (full jitter):  all {int(sdk_run['resumed'])}/{args.clients} resumed "
          f"{sdk_run['recover_s']:.2f} s after the hub was back "
          f"(hub down {sdk_run['down_s']:.2f} s); {sdk_run['attempts']} connect attempts, "
          f"peak {sdk_run['peak_attempts_per_s']:.0f} attempts/s; completed connects peak "
          f"{sdk_run['peak_connects_per_s']:.0f}/s")
    print(f"  reference (no jitter, 50 ms retry): all reconnected {ref_run['recover_s']:.2f} s "
          f"after; {ref_run['attempts']} connect attempts, peak "
          f"{ref_run['peak_attempts_per_s']:.0f} attempts/s; completed connects peak "
          f"{ref_run['peak_connects_per_s']:.0f}/s")
    ratio = sdk_run["peak_attempts_per_s"] / max(ref_run["peak_attempts_per_s"], 1e-9)
    print(f"  ratio peak attempt rate sdk/reference: {ratio:.2f}x (lower = more spread)")
    print(f"  client memory per SDK connection: {sdk_run['client_kib_per_conn']:.1f} KiB")
    return {"sdk": sdk_run, "reference": ref_run, "peak_ratio": ratio}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 clients")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients = 100
    result = asyncio.run(main_async(args))
    common.write_json(args.json, result)


if __name__ == "__main__":
    main()
