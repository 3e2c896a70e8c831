"""Start, feed and graceful shutdown of a real hub: 1001 to every miner, predictions
in flight confirmed and durably stored, a bounded stop even with a miner that
never reads, and a feed that drives the stream."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
import struct
import time
from datetime import UTC, datetime
from pathlib import Path

from sdk.models import Prediction
from server_stub import GameSimulator

from .kit.games import future_game
from .kit.hostile import assert_no_crash_logs
from .kit.hubkit import stop_hub
from .kit.keys import miner_key
from .kit.waiting import eventually
from .kit.wire import receive_close, receive_type, send_prediction, welcome_and_snapshot

BOB = miner_key("Bob")
CHARLIE = miner_key("Charlie")


def count_rows(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    finally:
        db.close()


def wal_exists(path: Path) -> bool:
    return Path(f"{path}-wal").exists()


async def test_graceful_shutdown_sends_1001_to_every_miner(start_hub):
    running = await start_hub()
    sockets = [await running.connect(key) for key in (BOB, CHARLIE)]
    for ws in sockets:
        await welcome_and_snapshot(ws)
    started = time.monotonic()
    closing = asyncio.create_task(running.server.stop())
    codes = [(await receive_close(ws))[0] for ws in sockets]
    await asyncio.wait_for(closing, 10)
    assert codes == [1001, 1001]
    assert time.monotonic() - started < 5
    assert running.hub.shutting_down
    assert running.hub.sessions == {}
    assert running.hub.stats.closes[1001] == 2


async def test_shutdown_confirms_and_stores_every_prediction_in_flight(start_hub):
    game = future_game("g1")
    running = await start_hub(messages_per_second=1000.0, message_burst=1000.0)
    await running.post_games([game])
    ws = await running.connect(BOB)
    await welcome_and_snapshot(ws)
    predictions = [Prediction.for_game(game, 1, 1.0) for _ in range(40)]
    for prediction in predictions:
        await send_prediction(ws, BOB, prediction)
    # As soon as the hub has read them all, stop it: commits may still be pending.
    await eventually(lambda: running.hub.stats.messages_in["prediction"] == 40)
    closing = asyncio.create_task(running.server.stop())
    code, frames = await receive_close(ws, timeout=10)
    await asyncio.wait_for(closing, 10)
    assert code == 1001
    confirmed = {f["data"]["prediction_id"]: f["data"]["status"] for f in frames
                 if f["type"] == "confirmation"}
    assert confirmed == {p.prediction_id: "accepted" for p in predictions}
    # Flushed and closed cleanly: every row is in the file and the WAL is gone.
    assert count_rows(running.store_path) == 40
    assert not wal_exists(running.store_path)


async def test_shutdown_is_bounded_with_a_miner_that_never_reads(start_hub):
    running = await start_hub(send_queue_size=100_000, close_timeout_s=0.5,
                              connect_burst=100.0, compress=False, store_synchronous="OFF")
    stalled = await running.connect(BOB, compress=0)
    healthy = await running.connect(CHARLIE)
    await welcome_and_snapshot(stalled)
    await welcome_and_snapshot(healthy)
    session = running.hub.sessions[BOB.ss58_address]
    for batch in range(200):  # until the socket is full and frames wait in the queue
        await running.post_games([future_game(f"b{batch}-{i}", team_a="x" * 200,
                                              team_b=f"{batch}-{i}" + "y" * 190)
                                  for i in range(1000)])
        await receive_type(healthy, "game_update")
        if session.queued >= 3:
            break
    assert session.queued >= 3, "the stalled miner's socket never filled"
    started = time.monotonic()
    closing = asyncio.create_task(running.server.stop())
    code, _ = await receive_close(healthy)
    assert code == 1001
    await asyncio.wait_for(closing, 10)
    # drain (0.5 s) + close handshake (0.5 s), then the unsent bytes are dropped
    assert time.monotonic() - started < 4
    assert running.hub.sessions == {}
    transport = session.request.transport
    assert transport is None or transport.is_closing()


async def test_store_is_reusable_after_restart_and_counts_survive(start_hub):
    game = future_game("g1")
    running = await start_hub()
    await running.post_games([game])
    ws = await running.connect(BOB)
    await welcome_and_snapshot(ws)
    await send_prediction(ws, BOB, Prediction.for_game(game, 0, 5.0))
    await receive_type(ws, "confirmation")
    assert await stop_hub(running) == [1001]
    restarted = await start_hub(store_path=running.store_path)
    assert await restarted.hub.store.count() == 1
    assert await restarted.hub.store.count(BOB.ss58_address) == 1
    assert list(restarted.hub.stream.games) == ["g1"]


async def test_simulator_feed_streams_initial_games_and_ticks(start_hub):
    feed = GameSimulator(seed=3, start=datetime.now(UTC), games=6, drift=500.0)
    running = await start_hub(feed=feed, tick_interval_s=0.05)
    ws = await running.connect(BOB)
    welcome, snapshot = await welcome_and_snapshot(ws)
    assert len(snapshot["games"]) >= 6
    assert welcome["seq"] >= 1
    update = await receive_type(ws, "game_update", timeout=5)
    assert update["data"]["snapshot"] is False
    assert update["data"]["seq"] > snapshot["seq"]
    assert update["data"]["prev_seq"] == snapshot["seq"]
    assert update["data"]["games"]
    # The feed's games are real, predictable games.
    game = next(g for g in running.hub.stream.games.values()
                if g.event_start_date > datetime.now(UTC))
    await send_prediction(ws, BOB, Prediction.for_game(game, 0, 1.0))
    confirmation = await receive_type(ws, "confirmation")
    # Odds may move between reading them and the hub checking them.
    assert confirmation["data"]["status"] == "accepted" or \
        confirmation["data"]["code"] == "odds_mismatch"


async def test_a_link_lost_during_the_upgrade_is_no_error_in_the_hub_log(start_hub, caplog):
    """Found by the soak (bench/soak.py): a miner whose link dies between admission and
    the 101 made aiohttp log "Error handling request" with a traceback. The hub now
    counts it (``upgrade_aborted``) and carries on; other miners are unaffected."""
    caplog.set_level(logging.WARNING)
    running = await start_hub()
    port = running.server.port
    for _ in range(10):
        headers = {**running.signed(BOB, "GET", "/ws"), "Host": f"127.0.0.1:{port}",
                   "Upgrade": "websocket", "Connection": "Upgrade",
                   "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        head = "GET /ws HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        # RST at once: the request is parsed, but the transport is gone by the upgrade
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                   struct.pack("ii", 1, 0))
        writer.write((head + "\r\n").encode())
        await writer.drain()
        writer.transport.abort()
    await eventually(lambda: running.hub.stats.errors["upgrade_aborted"] > 0)
    ws = await running.connect(CHARLIE)
    welcome, _ = await welcome_and_snapshot(ws)  # the hub still serves everyone else
    assert welcome["validator_hotkey"] == running.validator_hotkey
    assert_no_crash_logs(caplog.records)


def broken_prediction_text(index: int) -> tuple[str, str]:
    """A prediction frame whose id reads but whose wager does not: answered with a
    signed rejection after a stored-duplicate lookup (PROTOCOL.md §7.1)."""
    pid = f"00000000-0000-4000-8000-{index:012d}"
    prediction = {"prediction_id": pid, "game_id": "g1", "predicted_outcome": 0,
                  "predicted_odds": 2.0, "team_a": "A", "team_b": "B", "wager": "lots",
                  "team_a_odds": 2.0, "team_b_odds": 2.0}
    return pid, json.dumps({"type": "prediction", "data": {"prediction": prediction}})


async def test_a_prediction_read_while_the_store_closes_gets_shutting_down(start_hub, caplog):
    """PROTOCOL.md §7.3: the rejection path's duplicate lookup meets a closed store and
    answers shutting_down with the prediction id, instead of a traceback and silence."""
    caplog.set_level(logging.WARNING)
    running = await start_hub()
    ws = await running.connect(BOB)
    await welcome_and_snapshot(ws)
    await running.hub.store.close()  # as Hub.stop does before it closes the sockets
    pid, text = broken_prediction_text(1)
    await ws.send_str(text)
    error = await receive_type(ws, "error")
    assert error["data"] == {"code": "shutting_down", "message": error["data"]["message"],
                             "ref": pid}
    assert running.hub.stats.errors["shutting_down"] == 1
    assert_no_crash_logs(caplog.records)


async def test_stop_during_a_burst_of_broken_predictions_answers_each_once(start_hub, caplog):
    """Thousands of broken predictions queued when the hub is told to stop: each one read
    is answered once (a rejection, or shutting_down), none with a traceback."""
    caplog.set_level(logging.WARNING)
    running = await start_hub(messages_per_second=1e6, message_burst=1e6)
    ws = await running.connect(BOB)
    await welcome_and_snapshot(ws)
    frames = [broken_prediction_text(index) for index in range(3000)]
    for _, text in frames:
        await ws.send_str(text)
    # broken frames are counted as "invalid" messages
    await eventually(lambda: running.hub.stats.messages_in["invalid"] >= 200)
    closing = asyncio.create_task(running.server.stop())
    code, received = await receive_close(ws, timeout=30)
    await asyncio.wait_for(closing, 30)
    assert code == 1001
    answers: dict[str, list[str]] = {}
    for frame in received:
        data = frame["data"]
        if frame["type"] == "confirmation":
            answers.setdefault(data["prediction_id"], []).append(data["code"])
        elif frame["type"] == "error":
            answers.setdefault(data["ref"], []).append(data["code"])
    sent = {pid for pid, _ in frames}
    assert set(answers) <= sent
    assert all(codes in (["invalid_wager"], ["shutting_down"]) for codes in answers.values())
    assert len(answers) >= 200
    assert_no_crash_logs(caplog.records)
