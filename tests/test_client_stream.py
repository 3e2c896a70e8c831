"""The game stream seen through ValidatorConnection over a faulty link: resume with
epoch+since replays exactly what was missed, a gap beyond the hub's history becomes a
snapshot, and a reader that never reads does not hold anything up."""

from __future__ import annotations

import asyncio
import time

from sdk.connection import ConnectionState
from sdk.models import Prediction

from .kit.clientkit import StateLog, UpdateLog, assert_verified_receipt
from .kit.games import future_game
from .kit.keys import miner_key
from .kit.waiting import eventually

BOB = miner_key("Bob")


def moved(game_id: str, step: int, **overrides):
    """The same game with new odds (each step is a real change)."""
    return future_game(game_id, team_a_odds=round(1.5 + step / 100, 2), **overrides)


async def post_changes(running, count: int, game_ids=("a", "b", "c"), start: int = 1,
                       **overrides) -> list[int]:
    """Post ``count`` updates one by one; returns their seqs."""
    seqs = []
    for step in range(start, start + count):
        answer = await running.post_games([moved(game_ids[step % len(game_ids)], step,
                                                 **overrides)])
        seqs.append(answer["seq"])
    return seqs


async def test_updates_sent_into_a_half_open_link_are_replayed_in_order(start_hub,
                                                                       fault_proxy, miner):
    running = await start_hub(heartbeat_interval_s=0.5)
    await running.post_games([future_game(g) for g in ("a", "b", "c")])
    proxy = await fault_proxy(running)
    conn = miner(proxy, heartbeat_interval_s=0.3)
    updates = UpdateLog(conn)
    states = StateLog(conn)
    await conn.start()
    await conn.wait_ready(10.0)
    await updates.wait_until(lambda: updates.snapshots, 5.0)
    live = await post_changes(running, 3)
    await updates.wait_until(lambda: updates.seen_seq(live[-1]), 5.0)

    proxy.stall()  # the hub keeps writing into the link; nothing reaches the miner
    opened = states.count(ConnectionState.OPEN)
    missed = await post_changes(running, 6, start=10)
    await states.wait_for(ConnectionState.BACKOFF, after=len(states.changes), timeout=5.0)
    proxy.resume()
    await states.wait_until(lambda: states.count(ConnectionState.OPEN) > opened, 10.0)
    await updates.wait_until(lambda: updates.seen_seq(missed[-1]), 10.0)
    after = await post_changes(running, 2, start=30)
    await updates.wait_until(lambda: updates.seen_seq(after[-1]), 5.0)

    assert len(updates.snapshots) == 1, "resume must replay, not resnapshot"
    assert updates.incremental_seqs == live + missed + after  # in order, none missing/twice
    assert conn.games == running.hub.stream.games
    assert conn.reconnects >= 1
    await updates.stop()
    await states.stop()


async def test_beyond_the_hub_history_a_snapshot_replaces_the_table(start_hub, fault_proxy,
                                                                     miner):
    running = await start_hub(history_size=4)
    await running.post_games([future_game(g) for g in ("a", "b", "c")])
    proxy = await fault_proxy(running)
    conn = miner(proxy, http_fallback=False)
    updates = UpdateLog(conn)
    states = StateLog(conn)
    await conn.start()
    await conn.wait_ready(10.0)

    # cut the miner off: the link is cut and upgrades are refused (no HTTP fallback)
    proxy.refuse_upgrades(True)
    refused = proxy.refused
    proxy.cut()
    await eventually(lambda: proxy.refused > refused, 5.0)
    seqs = await post_changes(running, 10)
    # a game that left the hub's table while the miner was away must leave the miner's
    running.hub.stream.forget(["c"])
    await running.post_games([moved("d", 99)])
    assert running.hub.stream.oldest_seq > seqs[0]  # the gap is no longer in history
    opened = states.count(ConnectionState.OPEN)
    proxy.refuse_upgrades(False)
    await states.wait_until(lambda: states.count(ConnectionState.OPEN) > opened, 10.0)
    await updates.wait_until(lambda: len(updates.snapshots) == 2, 5.0)

    resync = updates.snapshots[-1]
    assert resync.seq == running.hub.stream.seq
    assert {g.game_id for g in resync.games} == {"a", "b", "d"}
    assert updates.incremental_seqs == []  # nothing partial was passed on
    assert conn.games == running.hub.stream.games
    assert conn.seq == running.hub.stream.seq
    await updates.stop()
    await states.stop()


async def test_a_reader_that_never_reads_does_not_delay_confirmations(start_hub, fault_proxy,
                                                                       miner):
    running = await start_hub(messages_per_second=500.0, message_burst=500.0)
    games = [future_game(f"s{i}") for i in range(3)]
    await running.post_games(games)
    proxy = await fault_proxy(running)
    conn = miner(proxy)
    await conn.start()
    await conn.wait_ready(10.0)
    never_read = conn.game_updates(buffer=8)  # registered, never iterated (until the end)

    async def timed_submit(prediction: Prediction) -> float:
        started = time.monotonic()
        receipt = await conn.submit(prediction)
        assert_verified_receipt(receipt, BOB.ss58_address)
        return time.monotonic() - started

    async def flood() -> list[int]:
        seqs: list[int] = []
        for batch in range(20):
            answers = await asyncio.gather(*(
                running.post_games([moved(f"x{batch}-{i}", batch, sport="mlb",
                                          league="MLB")]) for i in range(15)))
            seqs.extend(answer["seq"] for answer in answers)
        return seqs

    async def predict() -> list[float]:
        latencies = []
        for _ in range(10):
            batch = [Prediction.for_game(games[i % 3], 1, 0.5) for i in range(5)]
            latencies += await asyncio.gather(*(timed_submit(p) for p in batch))
            await asyncio.sleep(0.01)
        return latencies

    seqs, latencies = await asyncio.wait_for(asyncio.gather(flood(), predict()), 30.0)
    assert len(seqs) == 300
    assert max(latencies) < 2.0, f"confirmations waited for the update reader: {latencies}"
    assert conn.reconnects == 0
    assert conn.state is ConnectionState.OPEN

    # the idle reader kept at most its buffer, coalesced to the latest state per game
    marker = await running.post_games([moved("marker", 1)])
    received = []
    async with asyncio.timeout(5.0):
        async for update in never_read:
            received.append(update)
            if update.seq == marker["seq"]:
                break
    assert len(received) <= 8 + 1
    latest = {}
    for update in received:
        for game in update.games:
            latest[game.game_id] = game
    for game_id, game in running.hub.stream.games.items():
        if game_id.startswith("x"):
            assert latest[game_id] == game
    assert conn.games == running.hub.stream.games



async def test_filters_and_subscribe_see_only_their_games_without_false_gaps(
        start_hub, fault_proxy, miner):
    running = await start_hub()
    await running.post_games([future_game("a"), future_game("b"),
                              future_game("m1", sport="mlb", league="MLB"),
                              future_game("m2", sport="mlb", league="MLB")])
    proxy = await fault_proxy(running)
    conn = miner(proxy, sports=["mlb"])
    updates = UpdateLog(conn)
    await conn.start()
    await conn.wait_ready(10.0)
    assert set(conn.games) == {"m1", "m2"}

    await post_changes(running, 3, game_ids=("a", "b"))  # other sports advance seq
    mlb = await post_changes(running, 1, game_ids=("m1",), start=50, sport="mlb",
                             league="MLB")
    await updates.wait_until(lambda: updates.seen_seq(mlb[-1]), 5.0)
    assert updates.incremental_seqs == mlb  # the seq jump is not a gap: no resync

    await conn.subscribe(sports=["soccer"])
    await updates.wait_until(lambda: len(updates.snapshots) == 2, 5.0)
    assert set(conn.games) == {"a", "b"}
    # the new filter also holds across a reconnect (resumed with epoch + since)
    opened = running.hub.stats.connections_total
    proxy.cut()
    await eventually(lambda: running.hub.stats.connections_total > opened, 5.0)
    await post_changes(running, 1, game_ids=("m2",), start=60, sport="mlb", league="MLB")
    soccer = await post_changes(running, 2, game_ids=("a",), start=70)
    await updates.wait_until(lambda: updates.seen_seq(soccer[-1]), 5.0)
    assert updates.incremental_seqs == mlb + soccer
    assert len(updates.snapshots) == 2
    assert conn.games == {g: running.hub.stream.games[g] for g in ("a", "b")}
    await updates.stop()
