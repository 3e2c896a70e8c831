"""Three hub processes of one validator on real PostgreSQL and Redis, as an operator
runs them (``bt-validator-stub serve --store postgresql://... --backplane redis://...``),
and SDK miners that know all three URLs:

- a hub SIGKILLed while predictions are in flight: its miners continue on the others,
  every prediction is confirmed exactly once (rows counted in PostgreSQL), and every
  miner's game table follows the shared stream afterwards;
- a rolling restart of all three;
- Redis restarted empty mid-run: a new epoch, snapshots, nothing lost;
- an upgrade's signed headers replayed against another hub: 401;
- the daily wager limit raced from two hubs at once: never exceeded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from bittensor import http_auth
from bittensor.keyfiles import Keypair

from sdk.connection import ConnectionState, ValidatorConnection
from sdk.models import Prediction
from sdk.signing import sign_prediction, verify_receipt

from .kit.clientkit import FAST_CLIENT
from .kit.games import future_game
from .kit.hubfleet import HubFleet
from .kit.keys import VALIDATOR, miner_key
from .kit.services import postgres_database, private_redis, redis_prefix
from .kit.waiting import eventually

pytestmark = pytest.mark.slow

# one address carries every miner here: lift the per-address upgrade limit
LIMITS = ("--upgrades-per-second", "1000", "--upgrade-burst", "1000", "--rate", "1000",
          "--connects-per-minute", "600", "--connect-burst", "100")
CLIENT = dataclasses.replace(FAST_CLIENT, heartbeat_interval_s=1.0, ready_timeout=30.0)
GAMES = [future_game(f"fleet-{i}") for i in range(4)]


@asynccontextmanager
async def fleet_on(tmp_path: Path, count: int = 3, *, redis_url: str | None = None
                   ) -> AsyncIterator[tuple[HubFleet, str]]:
    """``count`` hubs on a fresh database and a Redis prefix of their own (the machine's
    Redis unless ``redis_url``); yields the fleet and the database URL."""
    async with AsyncExitStack() as stack:
        dsn = await stack.enter_async_context(postgres_database())
        url, prefix = await stack.enter_async_context(redis_prefix())
        fleet = HubFleet(tmp_path, count, store=dsn, backplane=redis_url or url,
                         prefix=prefix, extra=LIMITS)
        await stack.enter_async_context(fleet)
        yield fleet, dsn


def rotated(urls: list[str], index: int) -> list[str]:
    """Miner ``index`` prefers hub ``index % n``: the miners spread over the fleet."""
    start = index % len(urls)
    return urls[start:] + urls[:start]


@asynccontextmanager
async def miners_on(fleet: HubFleet, tmp_path: Path, count: int
                    ) -> AsyncIterator[list[ValidatorConnection]]:
    conns = [ValidatorConnection(rotated(fleet.urls, i), miner_key(f"Fleet{i}"),
                                 VALIDATOR.ss58_address, outbox=tmp_path / f"outbox{i}.sqlite3",
                                 options=CLIENT)
             for i in range(count)]
    try:
        await asyncio.gather(*(conn.start() for conn in conns))
        await asyncio.gather(*(conn.wait_ready(30.0) for conn in conns))
        yield conns
    finally:
        await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)


def submit_over(conns: list[ValidatorConnection], per_miner: int, seconds: float
                ) -> tuple[dict[str, str], list[asyncio.Task[Any]]]:
    """Each miner submits ``per_miner`` predictions at random moments within
    ``seconds``; returns (prediction id -> miner hotkey, the submit tasks)."""
    owners: dict[str, str] = {}
    tasks: list[asyncio.Task[Any]] = []
    for index, conn in enumerate(conns):
        for n in range(per_miner):
            prediction = Prediction.for_game(GAMES[(index + n) % len(GAMES)], n % 2, 0.5)
            owners[prediction.prediction_id] = conn.miner_hotkey

            async def submit(conn: ValidatorConnection = conn,
                             prediction: Prediction = prediction) -> Any:
                await asyncio.sleep(random.uniform(0, seconds))
                return await conn.submit(prediction, timeout=90.0)

            tasks.append(asyncio.create_task(submit()))
    return owners, tasks


async def stored_rows(dsn: str) -> list[tuple[str, str]]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT miner_hotkey, prediction_id FROM predictions")
    finally:
        await connection.close()
    return [(row["miner_hotkey"], row["prediction_id"]) for row in rows]


async def assert_each_confirmed_once(dsn: str, conns: list[ValidatorConnection],
                                     owners: dict[str, str], tasks: list[asyncio.Task[Any]]
                                     ) -> None:
    """Every submit returned a validator-signed receipt; every prediction is one row in
    PostgreSQL under its miner; every outbox holds it once, confirmed."""
    results = await asyncio.wait_for(asyncio.gather(*tasks), 120)
    assert all(verify_receipt(r.model_dump(mode="json"), VALIDATOR.ss58_address)
               for r in results)
    assert {r.status for r in results} <= {"accepted", "duplicate"}
    rows = await stored_rows(dsn)
    assert len(rows) == len(set(rows)) == len(owners)
    assert {(hotkey, pid) for pid, hotkey in owners.items()} == set(rows)
    for conn in conns:
        entries = await conn.outbox.entries(VALIDATOR.ss58_address)
        mine = {pid for pid, hotkey in owners.items() if hotkey == conn.miner_hotkey}
        assert sorted(e.prediction_id for e in entries) == sorted(mine)
        assert all(e.status in ("accepted", "duplicate") for e in entries)


async def assert_tables_follow(fleet: HubFleet, conns: list[ValidatorConnection],
                               poster: int) -> None:
    """A game posted now reaches every miner; their tables are the fleet's, at the
    fleet's one epoch."""
    late = future_game(f"late-{random.randrange(10**6)}")
    await fleet.post_games(poster, [late])
    epochs = {(await fleet.health(hub.index))["epoch"] for hub in fleet.hubs
              if hub.proc is not None}
    assert len(epochs) == 1
    expected = {g.game_id for g in GAMES} | {late.game_id}
    await eventually(lambda: all(set(c.games) >= expected for c in conns), 30.0)
    assert {c.epoch for c in conns} == epochs
    assert all(c.state is ConnectionState.OPEN for c in conns)


async def test_a_hub_killed_mid_run_loses_nothing(tmp_path):
    async with fleet_on(tmp_path) as (fleet, dsn):
        await fleet.post_games(0, GAMES)
        async with miners_on(fleet, tmp_path, 100) as conns:
            on_victim = [c for c in conns if c.url == fleet.hubs[1].url]
            assert len(on_victim) >= 30
            owners, tasks = submit_over(conns, per_miner=3, seconds=4.0)
            await asyncio.sleep(1.5)  # predictions are in flight: kill a hub under them
            await fleet.kill(1)
            await assert_each_confirmed_once(dsn, conns, owners, tasks)
            assert all(c.url != fleet.hubs[1].url for c in on_victim)
            await assert_tables_follow(fleet, conns, poster=2)


async def test_a_rolling_restart_of_every_hub_loses_nothing(tmp_path):
    async with fleet_on(tmp_path) as (fleet, dsn):
        await fleet.post_games(0, GAMES)
        async with miners_on(fleet, tmp_path, 30) as conns:
            owners, tasks = submit_over(conns, per_miner=6, seconds=12.0)
            for hub in fleet.hubs:
                await fleet.stop(hub.index)  # graceful: 1001, the miners move on
                await fleet.start(hub.index)
            assert [hub.exits for hub in fleet.hubs] == [[0], [0], [0]]
            await assert_each_confirmed_once(dsn, conns, owners, tasks)
            await assert_tables_follow(fleet, conns, poster=1)


async def test_redis_restarted_empty_mid_run_starts_a_new_epoch_and_loses_nothing(tmp_path):
    async with private_redis(tmp_path) as redis_server, \
            fleet_on(tmp_path, redis_url=redis_server.url) as (fleet, dsn):
        await fleet.post_games(0, GAMES)
        before = (await fleet.health(0))["epoch"]
        async with miners_on(fleet, tmp_path, 30) as conns:
            owners, tasks = submit_over(conns, per_miner=4, seconds=6.0)
            await asyncio.sleep(2.0)
            await redis_server.restart()
            await assert_each_confirmed_once(dsn, conns, owners, tasks)
            await assert_tables_follow(fleet, conns, poster=2)
            after = (await fleet.health(0))["epoch"]
            assert after != before
            assert {c.epoch for c in conns} == {after}


async def test_an_upgrade_replayed_against_another_hub_is_refused(tmp_path):
    async with fleet_on(tmp_path, 2) as (fleet, _):
        headers = http_auth.sign(miner_key("Replayer"), method="GET", path="/ws",
                                 receiver_ss58=VALIDATOR.ss58_address)
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(fleet.hubs[0].url, headers=headers)
            assert json.loads((await ws.receive(timeout=10)).data)["type"] == "welcome"
            async with session.get(fleet.hubs[1].url, headers={
                    **headers, "Upgrade": "websocket", "Connection": "Upgrade",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as response:
                body = await response.json()
            assert (response.status, body["error"]) == (401, "replayed_request")
            assert not ws.closed  # the original connection is untouched
            await ws.close()


async def test_the_daily_limit_raced_from_two_hubs_is_never_exceeded(tmp_path):
    """One miner, 30 predictions of 100 (limit 1000) sent to two hubs at once over
    HTTP: exactly 10 accepted, the rest signed wager_limit rejections."""
    async with fleet_on(tmp_path, 2) as (fleet, dsn):
        await fleet.post_games(0, GAMES)
        miner: Keypair = miner_key("Racer")
        game = GAMES[0]

        async def post(index: int, session: aiohttp.ClientSession) -> dict[str, Any]:
            wire = Prediction.for_game(game, 0, 100.0).wire()
            body = json.dumps({"prediction": wire,
                               "signature": sign_prediction(miner, wire)}).encode()
            headers = http_auth.sign(miner, method="POST", path="/predictions", body=body,
                                     receiver_ss58=VALIDATOR.ss58_address)
            headers["Content-Type"] = "application/json"
            url = f"{fleet.hubs[index % 2].http_url}/predictions"
            async with session.post(url, data=body, headers=headers) as response:
                assert response.status == 200, await response.text()
                answer: dict[str, Any] = await response.json()
                return answer

        async with aiohttp.ClientSession() as session:
            answers = await asyncio.gather(*(post(i, session) for i in range(30)))
        outcomes = sorted((a["status"], a["code"]) for a in answers)
        assert outcomes.count(("accepted", "ok")) == 10
        assert outcomes.count(("rejected", "wager_limit")) == 20
        assert all(verify_receipt(a, VALIDATOR.ss58_address) for a in answers)
        connection = await asyncpg.connect(dsn)
        try:
            total = await connection.fetchval(
                "SELECT sum(wager) FROM predictions WHERE miner_hotkey = $1",
                miner.ss58_address)
        finally:
            await connection.close()
        assert total == 1000.0
