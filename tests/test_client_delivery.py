"""Prediction delivery through a faulty link: every prediction is stored exactly once
at the hub and every submit() resolves with a receipt the validator signed, whatever
the link (cut 20 times) or the hub (restarted mid-burst) does."""

from __future__ import annotations

import asyncio
import gc
import random

import pytest

from sdk.connection import ConnectionState
from sdk.errors import PredictionRejected
from sdk.models import Prediction
from sdk.signing import verify_receipt

from .kit.clientkit import StateLog, assert_verified_receipt, hub_rows_by_id
from .kit.games import future_game
from .kit.keys import VALIDATOR, miner_key
from .kit.waiting import eventually

BOB = miner_key("Bob")
# Room for a 1000-prediction burst: message rate, reconnects (20 cuts), and a send
# queue that holds one group commit's worth of confirmations (the hub answers a whole
# batch at once; a queue smaller than the burst would close the miner as a slow consumer).
BURST = dict(messages_per_second=2000.0, message_burst=2000.0, heartbeat_interval_s=0.5,
             connects_per_minute=600.0, connect_burst=100.0, send_queue_size=4096)


def predictions_for(games, count: int, wager: float = 0.5) -> list[Prediction]:
    return [Prediction.for_game(games[i % len(games)], i % 2, wager) for i in range(count)]


async def submit_staggered(conn, prediction: Prediction, spread: float):
    await asyncio.sleep(random.uniform(0, spread))
    return await conn.submit(prediction)


async def check_delivery(running, conn, predictions, results) -> dict[str, int]:
    """Exactly one stored row per prediction; each submit's receipt verifies and
    matches the stored original (a duplicate carries the original received_at_ns)."""
    rows = await hub_rows_by_id(running.store_path)
    assert set(rows) == {p.prediction_id for p in predictions}
    assert len(rows) == len(predictions)
    statuses: dict[str, int] = {}
    for prediction, confirmation in zip(predictions, results, strict=True):
        assert confirmation.prediction_id == prediction.prediction_id
        assert_verified_receipt(confirmation, BOB.ss58_address)
        stored = rows[prediction.prediction_id]
        assert stored["miner_hotkey"] == BOB.ss58_address
        assert stored["receipt"]["received_at_ns"] == str(confirmation.received_at_ns)
        statuses[confirmation.status] = statuses.get(confirmation.status, 0) + 1
    counts = await conn.outbox.counts(conn.validator_hotkey)
    assert "pending" not in counts
    assert sum(counts.values()) == len(predictions)
    assert set(counts) <= {"accepted", "duplicate"}
    return statuses


async def test_submit_through_the_proxy_returns_a_verified_receipt(start_hub, fault_proxy,
                                                                   miner):
    running = await start_hub()
    game = future_game("g1")
    await running.post_games([game])
    proxy = await fault_proxy(running)
    async with miner(proxy) as conn:
        assert conn.state is ConnectionState.OPEN
        assert set(conn.games) == {"g1"}  # the table is loaded when the connection is ready
        prediction = Prediction.for_game(game, "g1-home", 3.0)
        receipt = await asyncio.wait_for(conn.submit(prediction), 5.0)
        assert receipt.status == "accepted"
        assert_verified_receipt(receipt, BOB.ss58_address)
        # a second submit of the same prediction answers from the outbox at once
        again = await asyncio.wait_for(conn.submit(prediction), 5.0)
        assert again == receipt
    rows = await hub_rows_by_id(running.store_path)
    assert list(rows) == [prediction.prediction_id]
    assert proxy.accepted >= 1


async def test_ready_means_the_game_table_is_loaded(start_hub, fault_proxy, miner):
    """A big snapshot on a slow link arrives after the welcome: ``async with`` (and
    wait_ready) must not return before it, or the first submit() would be refused
    locally as unknown_game."""
    running = await start_hub()
    games = [future_game(f"big{i}", team_a=f"team {i} " + "x" * 150) for i in range(400)]
    await running.post_games(games)
    proxy = await fault_proxy(running)
    proxy.delay(0.02)  # every forwarded chunk waits: the snapshot spans several
    async with miner(proxy) as conn:
        assert len(conn.games) == 400
        receipt = await asyncio.wait_for(
            conn.submit(Prediction.for_game(games[-1], 1, 1.0)), 5.0)
        assert receipt.status == "accepted"


async def test_thousand_predictions_survive_twenty_cuts(start_hub, fault_proxy, miner):
    random.seed(20)
    running = await start_hub(**BURST)
    games = [future_game(f"g{i}") for i in range(5)]
    await running.post_games(games)
    proxy = await fault_proxy(running)
    conn = miner(proxy, heartbeat_interval_s=0.5)
    states = StateLog(conn)
    await conn.start()
    await conn.wait_ready(10.0)

    predictions = predictions_for(games, 1000)
    assert sum(p.wager for p in predictions) <= running.config.daily_wager_limit
    submits = [asyncio.create_task(submit_staggered(conn, p, 3.0)) for p in predictions]
    cuts_with_work_in_flight = 0

    async def cutter() -> None:
        nonlocal cuts_with_work_in_flight
        effective = 0
        while effective < 20:
            opened = states.count(ConnectionState.OPEN)
            await states.wait_until(
                lambda opened=opened: states.count(ConnectionState.OPEN) > opened
                or conn.state is ConnectionState.OPEN, 15.0)
            await asyncio.sleep(random.uniform(0.0, 0.15))
            in_flight = sum(not task.done() for task in submits)
            if proxy.cut():
                effective += 1
                cuts_with_work_in_flight += in_flight > 0

    await asyncio.wait_for(cutter(), 60.0)
    results = await asyncio.wait_for(asyncio.gather(*submits), 60.0)

    assert proxy.cuts >= 20
    assert cuts_with_work_in_flight >= 10, "the cuts should hit the burst, not its aftermath"
    assert conn.reconnects >= 10
    statuses = await check_delivery(running, conn, predictions, results)
    assert statuses["accepted"] + statuses.get("duplicate", 0) == 1000
    assert running.hub.stats.predictions["accepted"] == 1000
    await states.stop()


async def test_hub_restart_mid_burst_loses_nothing_and_stores_nothing_twice(
        start_hub, fault_proxy, miner):
    random.seed(7)
    running = await start_hub(**BURST)
    games = [future_game(f"r{i}") for i in range(4)]
    await running.post_games(games)
    proxy = await fault_proxy(running)
    conn = miner(proxy)
    states = StateLog(conn)
    await conn.start()
    await conn.wait_ready(10.0)
    first_epoch = conn.epoch

    predictions = predictions_for(games, 400)
    submits = [asyncio.create_task(submit_staggered(conn, p, 1.5)) for p in predictions]
    # restart once a part of the burst is confirmed and the rest is still coming
    await eventually(lambda: sum(t.done() for t in submits) >= 60, 20.0)
    await running.server.stop()
    stored_before = len(await hub_rows_by_id(running.store_path))
    assert 0 < stored_before < len(predictions)
    restarted = await start_hub(store_path=running.store_path, **BURST)
    proxy.retarget(restarted.server.port)

    results = await asyncio.wait_for(asyncio.gather(*submits), 60.0)
    await check_delivery(restarted, conn, predictions, results)
    assert restarted.hub.stats.predictions["accepted"] + stored_before == len(predictions)
    # the new hub has a new epoch: the client resynced from a snapshot of the stored games
    assert conn.epoch == restarted.hub.stream.epoch != first_epoch
    assert conn.games == restarted.hub.stream.games
    assert states.count(ConnectionState.OPEN) >= 2
    await states.stop()



async def test_unconfirmed_predictions_survive_a_miner_restart_in_the_outbox_file(
        start_hub, fault_proxy, miner, tmp_path, caplog):
    running = await start_hub()
    game = future_game("o1")
    await running.post_games([game])
    proxy = await fault_proxy(running)
    outbox = tmp_path / "miner-outbox.sqlite3"
    first = miner(proxy, outbox=outbox, http_fallback=False)
    await first.start()
    await first.wait_ready(10.0)
    # the link goes away for good just before the submit
    proxy.refuse_upgrades(True)
    proxy.cut()
    prediction = Prediction.for_game(game, 0, 4.0)
    try:
        await first.submit(prediction, timeout=0.3)
        raise AssertionError("nothing can confirm it now")
    except TimeoutError:
        pass
    await first.close()
    gc.collect()  # an abandoned submit() future must not be reported as a lost error
    assert "exception was never retrieved" not in caplog.text
    assert await hub_rows_by_id(running.store_path) == {}

    # the next run of the miner, same outbox file: it resends without being asked
    proxy.refuse_upgrades(False)
    second = miner(proxy, outbox=outbox)
    confirmations = second.confirmations()
    await second.start()
    confirmation = await asyncio.wait_for(anext(confirmations), 10.0)
    assert confirmation.prediction_id == prediction.prediction_id
    assert confirmation.status == "accepted"
    assert_verified_receipt(confirmation, BOB.ss58_address)
    entry = await second.outbox.get(prediction.prediction_id)
    assert entry is not None
    assert entry.status == "accepted"
    assert entry.receipt == confirmation.model_dump(mode="json")
    # and submit() of the same prediction answers from the outbox
    assert await asyncio.wait_for(second.submit(prediction), 5.0) == confirmation
    assert list(await hub_rows_by_id(running.store_path)) == [prediction.prediction_id]


async def test_a_hub_rejection_raises_with_the_signed_confirmation(start_hub, fault_proxy,
                                                                   miner):
    # another process of this hotkey (its own outbox) already used most of today's budget
    running = await start_hub(daily_wager_limit=100.0)
    game = future_game("w1")
    await running.post_games([game])
    proxy = await fault_proxy(running)
    async with miner(proxy) as other:
        assert (await other.submit(Prediction.for_game(game, 0, 80.0))).status == "accepted"
    async with miner(proxy) as conn:
        confirmations = conn.confirmations()
        with pytest.raises(PredictionRejected) as rejected:
            await asyncio.wait_for(conn.submit(Prediction.for_game(game, 1, 30.0)), 5.0)
        assert rejected.value.code == "wager_limit"
        assert rejected.value.confirmation is not None
        data = rejected.value.confirmation.model_dump(mode="json")
        assert data["status"] == "rejected"
        assert verify_receipt(data, VALIDATOR.ss58_address)
        seen = await asyncio.wait_for(anext(confirmations), 5.0)
        assert (seen.status, seen.code) == ("rejected", "wager_limit")
        assert await conn.outbox.counts() == {"rejected:wager_limit": 1}
        # the local pre-check refuses what the hub would, without sending it
        before = running.hub.stats.messages_in["prediction"]
        with pytest.raises(PredictionRejected) as rejected:  # odds differ from the table
            await conn.submit(Prediction.for_game(game, 0, 1.0).model_copy(
                update={"team_a_odds": 9.9}))
        assert rejected.value.code == "odds_mismatch"
        assert rejected.value.confirmation is None
        assert running.hub.stats.messages_in["prediction"] == before


async def test_reconnects_do_not_overrun_the_hub_message_rate(start_hub, fault_proxy, miner):
    """The hub's rate limit is per hotkey and outlives a connection; the client's pacing
    must too, or every reconnect (with its outbox resend) starts with a fresh burst."""
    running = await start_hub(messages_per_second=20.0, message_burst=20.0)
    games = [future_game(f"p{i}") for i in range(2)]
    await running.post_games(games)
    proxy = await fault_proxy(running)
    conn = miner(proxy, heartbeat_interval_s=1.0)
    states = StateLog(conn)
    await conn.start()
    await conn.wait_ready(10.0)
    predictions = predictions_for(games, 40)
    submits = [asyncio.create_task(conn.submit(p)) for p in predictions]
    for _ in range(3):
        opened = states.count(ConnectionState.OPEN)
        await asyncio.sleep(0.4)
        proxy.cut()
        await states.wait_until(lambda opened=opened: states.count(ConnectionState.OPEN)
                                > opened, 10.0)
    results = await asyncio.wait_for(asyncio.gather(*submits), 30.0)
    await check_delivery(running, conn, predictions, results)
    assert running.hub.stats.errors["rate_limited"] == 0
    await states.stop()
