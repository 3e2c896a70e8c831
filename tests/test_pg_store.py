"""server_stub.pgstore against the real PostgreSQL: the round trip of a prediction and
its receipt, the daily wager limit raced from two stores (two pools: two hubs), a
duplicate answered by the store that did not keep it, and a hub on PostgreSQL serving
a real SDK miner across a restart."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import subprocess
import sys
from typing import Any

import aiohttp
import asyncpg
import pytest

from sdk.codes import ErrorCode
from sdk.errors import PredictionRejected
from sdk.models import Prediction
from sdk.signing import verify_receipt
from server_stub import HubConfig, create_app
from server_stub.extras import MissingExtraError, import_extra
from server_stub.pgstore import PostgresStore, redact
from server_stub.store import PredictionRecord, StoreClosed

from .kit.clientkit import assert_verified_receipt
from .kit.games import future_game
from .kit.keys import VALIDATOR, miner_key
from .kit.services import postgres_database

DAY = "2026-11-29"
BOB = miner_key("Bob")


def record(pid: str, *, hotkey: str = "miner", wager: float = 1.0, received_at_ns: int = 1,
           day: str = DAY) -> PredictionRecord:
    receipt = {"prediction_id": pid, "status": "accepted", "code": "ok",
               "message": "accepted", "received_at_ns": str(received_at_ns),
               "miner_hotkey": hotkey, "validator_hotkey": "v", "signature": "0x01"}
    return PredictionRecord(miner_hotkey=hotkey, prediction_id=pid, game_id="g", wager=wager,
                            wager_day=day, received_at_ns=received_at_ns,
                            prediction={"prediction_id": pid, "wager": wager,
                                        "note": "nan\u0000", "odds": float("nan")},
                            signature=None, receipt=receipt)


async def rows(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def test_a_prediction_its_duplicate_and_its_receipt_round_trip():
    async with postgres_database() as dsn:
        store = await PostgresStore(dsn, daily_limit=1000.0, pool_size=2).open()
        try:
            first = await store.record(record("p-1", received_at_ns=11))
            again = await store.record(record("p-1", received_at_ns=22))
            assert first.stored
            assert first.receipt == record("p-1", received_at_ns=11).receipt
            assert not again.stored
            assert again.rejection is None
            assert again.receipt == first.receipt  # the original, received_at_ns a string
            assert await store.receipt("miner", "p-1") == first.receipt
            assert await store.receipt("miner", "p-2") is None
            assert await store.wagered("miner", DAY) == 1.0  # the resend counted nothing
            assert await store.wagered("miner", "2026-11-30") == 0.0
            assert await store.count() == 1
            health = store.health()
            assert health["engine"] == "postgresql"
            assert health["commits"] == 2
        finally:
            await store.close()
        with pytest.raises(StoreClosed):
            store.record(record("p-3"))
        (row,) = await rows(dsn, "SELECT prediction, receipt, wager_day FROM predictions")
        assert json.loads(row["receipt"]) == first.receipt
        stored = json.loads(row["prediction"])  # NaN and NUL survive as JSON text
        assert stored["note"] == "nan\u0000"
        assert stored["odds"] != stored["odds"]


async def test_predictions_sent_together_are_recorded_together_and_each_learns_its_own():
    """One pooled connection: what arrives while it is busy goes in one transaction; a
    resend within the batch is a duplicate; a value the server refuses (a NUL in a text
    column) fails its own prediction only."""
    async with postgres_database() as dsn:
        store = await PostgresStore(dsn, daily_limit=1000.0, pool_size=1).open()
        try:
            poison = record("p-bad")
            poison = PredictionRecord(**{**{f: getattr(poison, f) for f in (
                "miner_hotkey", "prediction_id", "wager", "wager_day", "received_at_ns",
                "prediction", "signature", "receipt")}, "game_id": "g\x00"})
            futures = [store.record(record(f"p-{i}", received_at_ns=i)) for i in range(50)]
            futures.append(store.record(record("p-7", received_at_ns=99)))
            outcomes = await asyncio.gather(*futures)
            assert [o.stored for o in outcomes] == [True] * 50 + [False]
            assert outcomes[-1].receipt == outcomes[7].receipt
            assert (store.commits, store.committed_ops) == (1, 51)
            bad = store.record(poison)
            good = [store.record(record(f"q-{i}")) for i in range(3)]
            with pytest.raises(asyncpg.PostgresError):
                await bad
            assert [o.stored for o in await asyncio.gather(*good)] == [True] * 3
            assert store.queued == 0
        finally:
            await store.close()
        (row,) = await rows(dsn, "SELECT count(*) AS n FROM predictions")
        assert row["n"] == 53


async def test_games_are_saved_by_id_and_loaded_by_another_store():
    async with postgres_database() as dsn:
        games = [future_game("g1"), future_game("g2")]
        writer = await PostgresStore(dsn, daily_limit=1000.0, pool_size=1).open()
        await writer.save_games(games)
        moved = games[0].model_copy(update={"team_a_odds": 1.7})
        await writer.save_games([games[0], moved])  # the same id twice: the last wins
        await writer.close()
        reader = await PostgresStore(dsn, daily_limit=1000.0, pool_size=1).open()
        try:
            assert await reader.load_games() == [moved, games[1]]
        finally:
            await reader.close()


async def test_the_daily_limit_raced_from_two_stores_is_never_exceeded():
    """Two pools (two hubs) submit 20 predictions of 0.25 each for two miners at 7.5 of
    a limit of 10: exactly 10 of each are accepted, the rest refused wager_limit,
    whichever store each went through, and the stored wagers add up to the limit."""
    async with postgres_database() as dsn:
        hub_a = await PostgresStore(dsn, daily_limit=10.0, pool_size=4).open()
        hub_b = await PostgresStore(dsn, daily_limit=10.0, pool_size=4).open()
        try:
            assert (await hub_a.record(record("early", wager=7.5))).stored
            assert (await hub_b.record(record("early", hotkey="m2", wager=7.5))).stored
            # two miners in every batch: each batch locks both totals, on both pools
            sends = [(store, hotkey) for store in (hub_a, hub_b) for hotkey in ("miner", "m2")]
            sends *= 10
            random.Random(7).shuffle(sends)
            outcomes = await asyncio.gather(*(
                store.record(record(f"race-{i}", hotkey=hotkey, wager=0.25,
                                    received_at_ns=i))
                for i, (store, hotkey) in enumerate(sends)))
            for hotkey in ("miner", "m2"):
                mine = [o for o, (_, h) in zip(outcomes, sends, strict=True) if h == hotkey]
                assert len([o for o in mine if o.stored]) == 10
                assert all(o.rejection is not None
                           and o.rejection.code == ErrorCode.WAGER_LIMIT
                           for o in mine if not o.stored)
                assert await hub_b.wagered(hotkey, DAY) == 10.0
        finally:
            await hub_a.close()
            await hub_b.close()
        by_miner = await rows(dsn, "SELECT miner_hotkey, count(*) AS n, sum(wager) AS total"
                                   " FROM predictions GROUP BY miner_hotkey")
        assert sorted(tuple(row) for row in by_miner) == [("m2", 11, 10.0),
                                                           ("miner", 11, 10.0)]


async def test_a_duplicate_stored_by_one_store_gets_the_original_receipt_from_another():
    async with postgres_database() as dsn:
        hub_a = await PostgresStore(dsn, daily_limit=2.0, pool_size=2).open()
        hub_b = await PostgresStore(dsn, daily_limit=2.0, pool_size=2).open()
        try:
            original = await hub_a.record(record("p-1", wager=2.0, received_at_ns=5))
            assert original.stored
            # the day is full, and the resend of a stored prediction is still a duplicate
            resent = await hub_b.record(record("p-1", wager=2.0, received_at_ns=9))
            assert (resent.stored, resent.rejection) == (False, None)
            assert resent.receipt == original.receipt
            assert await hub_b.receipt("miner", "p-1") == original.receipt
            over = await hub_b.record(record("p-2", wager=0.5))
            assert over.rejection is not None
            assert over.rejection.code == ErrorCode.WAGER_LIMIT
            # the same new prediction through both stores at once: stored once
            both = await asyncio.gather(*(
                store.record(record(f"twin-{i}", hotkey="other", wager=0.01,
                                    received_at_ns=n))
                for i in range(20) for n, store in ((1, hub_a), (2, hub_b))))
            for first, second in zip(both[::2], both[1::2], strict=True):
                assert sorted((first.stored, second.stored)) == [False, True]
                assert first.receipt == second.receipt
        finally:
            await hub_a.close()
            await hub_b.close()
        (row,) = await rows(dsn, "SELECT count(*) AS n FROM predictions WHERE"
                                 " miner_hotkey = 'other'")
        assert row["n"] == 20
        (total,) = await rows(dsn, "SELECT total FROM wager_totals WHERE miner_hotkey ="
                                   " 'other'")
        assert total["total"] == pytest.approx(0.2)


async def test_a_store_that_cannot_connect_names_the_database_without_the_password():
    async with postgres_database() as dsn:
        missing = dsn.replace("://postgres@", "://postgres:secret@") + "_missing"
        with pytest.raises(ConnectionError, match="_missing") as raised:
            await PostgresStore(missing, daily_limit=1.0, pool_size=1,
                                connect_timeout_s=5).open()
        assert "secret" not in str(raised.value)
    assert redact("postgresql://u:pw@h:5/db") == "postgresql://u@h:5/db"


async def test_without_asyncpg_the_store_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "redis", None)
    store = PostgresStore("postgresql://127.0.0.1/none", daily_limit=1.0)
    with pytest.raises(MissingExtraError, match=r"pip install 'bettensor-ws\[ha\]'"):
        await store.open()
    with pytest.raises(MissingExtraError, match="redis"):
        import_extra("redis", "a redis:// backplane")


def test_the_default_hub_never_imports_asyncpg():
    script = ("import sys, server_stub, server_stub.cli, server_stub.testing; "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in "
              "('asyncpg', 'redis')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"


async def test_a_hub_on_postgresql_serves_a_miner_and_keeps_everything_across_a_restart(
        start_hub, miner):
    async with postgres_database() as dsn:
        running = await start_hub(store_url=dsn)
        game = future_game("g1")
        await running.post_games([game])
        prediction = Prediction.for_game(game, "g1-home", 3.0)
        async with miner(running.server.url) as conn:
            receipt = await asyncio.wait_for(conn.submit(prediction), 10)
        assert receipt.status == "accepted"
        assert_verified_receipt(receipt, BOB.ss58_address)
        async with miner(running.server.url) as fresh:  # another outbox: the hub answers
            again = await asyncio.wait_for(fresh.submit(prediction), 10)
        assert again.status == "duplicate"
        assert again.received_at_ns == receipt.received_at_ns
        health = await running.health()
        assert health["store"]["engine"] == "postgresql"
        assert health["store"]["commits"] >= 2  # the games, then the prediction
        await running.server.stop()

        (row,) = await rows(dsn, "SELECT prediction_id, receipt FROM predictions")
        assert row["prediction_id"] == prediction.prediction_id
        assert json.loads(row["receipt"])["received_at_ns"] == str(receipt.received_at_ns)

        restarted = await start_hub(store_url=dsn)
        assert set(restarted.hub.stream.games) == {"g1"}  # the games came back from PG
        async with miner(restarted.server.url) as later:
            resent = await asyncio.wait_for(later.submit(prediction), 10)
        assert resent.status == "duplicate"
        assert resent.received_at_ns == receipt.received_at_ns
        await restarted.server.stop()
        (count,) = await rows(dsn, "SELECT count(*) AS n FROM predictions")
        assert count["n"] == 1


async def test_the_default_hub_reports_its_sqlite_store(start_hub):
    running = await start_hub()
    store = (await running.health())["store"]
    assert store["engine"] == "sqlite"
    assert store["path"] == str(running.store_path)


async def test_serve_with_a_postgresql_store_url_keeps_the_games_there():
    async with postgres_database() as dsn:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server_stub", "serve", "--dev", "--port", str(port),
            "--store", dsn, "--store-pool", "2",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            assert proc.stdout is not None
            banner = ""
            async with asyncio.timeout(30):
                while "  store " not in banner:
                    banner += (await proc.stdout.readline()).decode()
            assert f"  store {dsn} " in banner
            health = await poll_health(port)
            assert health["store"]["engine"] == "postgresql"
            assert health["store"]["pool_size"] == 2
            assert health["games"] > 0
        finally:
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        (row,) = await rows(dsn, "SELECT count(*) AS n FROM games")
        assert row["n"] == health["games"]  # the simulator's games were committed there


def test_a_bettensor_database_and_a_postgresql_store_are_refused_together(tmp_path):
    config = HubConfig(store_url="postgresql://127.0.0.1/none",
                       bettensor_db=tmp_path / "validator.db")
    with pytest.raises(ValueError, match="bettensor_db"):
        create_app(config, signer=VALIDATOR)
    with pytest.raises(ValueError, match="postgresql://"):
        HubConfig(store_url="/var/lib/hub.sqlite3")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def poll_health(port: int, timeout: float = 30.0) -> dict[str, Any]:
    """GET /ws/health until the hub answers (it listens just after its banner)."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(timeout):
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/ws/health") as response:
                    return dict(await response.json())
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)  # the port is being bound: no event to await


async def test_two_hubs_on_one_database_share_a_miners_daily_limit(start_hub, miner):
    """One miner on two hubs at once, 8 predictions of 2.0 against a limit of 10: each
    hub and each outbox sees only 8, yet exactly 5 are accepted; the other 3 come back
    as the validator's signed wager_limit rejections."""
    async with postgres_database() as dsn:
        hubs = [await start_hub(store_url=dsn, daily_wager_limit=10.0) for _ in range(2)]
        game = future_game("g1")
        for running in hubs:
            await running.post_games([game])
        async with miner(hubs[0].server.url) as first, miner(hubs[1].server.url) as second:
            outcomes = await asyncio.wait_for(asyncio.gather(*(
                conn.submit(Prediction.for_game(game, "g1-home", 2.0))
                for conn in (first, second) * 4), return_exceptions=True), 20)
        accepted = [o for o in outcomes if not isinstance(o, BaseException)]
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(accepted) == 5
        for receipt in accepted:
            assert_verified_receipt(receipt, BOB.ss58_address)
        for error in refused:
            assert isinstance(error, PredictionRejected)
            assert error.code == ErrorCode.WAGER_LIMIT
            assert error.confirmation is not None  # signed by the hub, not a local check
            assert verify_receipt(error.confirmation.model_dump(mode="json"),
                                  VALIDATOR.ss58_address)
        (row,) = await rows(dsn, "SELECT count(*) AS n, sum(wager) AS total FROM predictions")
        assert (row["n"], row["total"]) == (5, 10.0)


async def test_postgresql_connections_cut_under_a_hub_acknowledge_nothing_undurable(start_hub):
    """Every server connection of the hub's pool is terminated (as a PostgreSQL restart
    does): a prediction is then either confirmed and stored, or answered with an error
    frame and not stored; its resend goes through once the pool reconnects, stored once."""
    from .kit.wire import send_prediction, welcome_and_snapshot

    async with postgres_database() as dsn:
        running = await start_hub(store_url=dsn)
        game = future_game("g1")
        await running.post_games([game])
        ws = await running.connect(BOB)
        await welcome_and_snapshot(ws)

        async def answer(prediction: Prediction) -> dict[str, Any]:
            await send_prediction(ws, BOB, prediction)
            while True:
                frame = json.loads((await ws.receive(timeout=15)).data)
                data = frame["data"]
                if frame["type"] == "confirmation" and \
                        data["prediction_id"] == prediction.prediction_id:
                    return data
                if frame["type"] == "error" and data["ref"] == prediction.prediction_id:
                    return data

        first = Prediction.for_game(game, 0, 1.0)
        assert (await answer(first))["status"] == "accepted"
        name = dsn.rsplit("/", 1)[1]
        admin = await asyncpg.connect(dsn)
        try:
            cut = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()", name)
        finally:
            await admin.close()
        assert cut >= 1
        second = Prediction.for_game(game, 1, 1.0)
        outcomes = [await answer(second)]
        for _ in range(10):  # bounded: the pool opens new connections on demand
            if outcomes[-1].get("status") in ("accepted", "duplicate"):
                break
            assert outcomes[-1]["code"] == "internal_error", outcomes
            outcomes.append(await answer(second))
        assert outcomes[-1]["status"] in ("accepted", "duplicate"), outcomes
        stored = await rows(dsn, "SELECT prediction_id FROM predictions")
        assert sorted(r["prediction_id"] for r in stored) == sorted(
            [first.prediction_id, second.prediction_id])
        await ws.close()
        await running.server.stop()
