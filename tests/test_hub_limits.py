"""Bad and abusive miners: malformed frames, oversize frames, floods, slow consumers.

The hub answers each bad frame and carries on; it closes a connection only for the
protocol's reasons (1009, 4029, 4008), and never lets one miner hurt another.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import aiohttp
import pytest

from sdk.models import Prediction

from .kit.games import future_game
from .kit.keys import miner_key
from .kit.waiting import eventually
from .kit.wire import (
    receive_close,
    receive_json,
    receive_type,
    send_frame,
    send_prediction,
    welcome_and_snapshot,
)

BOB = miner_key("Bob")
CHARLIE = miner_key("Charlie")


async def assert_alive(ws, key=None, timeout: float = 5.0) -> None:
    """The connection still answers: a heartbeat gets its echo."""
    stamp = time.time_ns()
    await send_frame(ws, "heartbeat", {"time_ns": stamp})
    reply = await receive_type(ws, "heartbeat", timeout=timeout)
    assert reply["data"]["echo_ns"] == str(stamp)


# -- malformed frames --------------------------------------------------------------------


MALFORMED = [
    pytest.param("not json at all", "malformed_frame", None, id="not-json"),
    pytest.param("[1, 2, 3]", "malformed_frame", None, id="not-object"),
    pytest.param('{"data": {}}', "malformed_frame", None, id="no-type"),
    pytest.param('{"type": 5, "data": {}}', "malformed_frame", None, id="type-not-str"),
    pytest.param('{"type": "teleport", "data": {}}', "unknown_type", "teleport",
                 id="unknown-type"),
    pytest.param('{"type": "welcome", "data": {}}', "unknown_type", "welcome",
                 id="hub-only-type"),
    pytest.param('{"type": "heartbeat", "data": []}', "malformed_frame", "heartbeat",
                 id="data-not-object"),
    pytest.param('{"type": "heartbeat", "data": {"time_ns": "soon"}}', "malformed_frame",
                 "heartbeat", id="heartbeat-field-type"),
    pytest.param('{"type": "subscribe", "data": {"sports": 5}}', "malformed_frame",
                 "subscribe", id="subscribe-field-type"),
    pytest.param('{"type": "prediction", "data": {"prediction": "x"}}', "invalid_prediction",
                 "prediction", id="prediction-not-object"),
    pytest.param('{"type": "prediction", "data": {"prediction": {"prediction_id": 12}}}',
                 "invalid_prediction", "prediction", id="prediction-id-unreadable"),
    pytest.param('{"type": "prediction", "data": {"signature": "0x00"}}',
                 "invalid_prediction", "prediction", id="prediction-missing"),
    pytest.param('{"type": "\\ud800x", "data": {}}', "unknown_type", "\\ud800x",
                 id="escaped-lone-surrogate"),
    pytest.param("[" * 100_000 + "]" * 100_000, "malformed_frame", None, id="nesting-bomb"),
]


@pytest.mark.parametrize(("text", "code", "ref"), MALFORMED)
async def test_malformed_text_frame_gets_error_and_everyone_carries_on(start_hub, text, code,
                                                                      ref):
    running = await start_hub(max_frame_bytes=512 * 1024)
    bad = await running.connect(BOB)
    other = await running.connect(CHARLIE)
    await welcome_and_snapshot(bad)
    await welcome_and_snapshot(other)
    await bad.send_str(text)
    frame = await receive_json(bad)
    # No prediction id could be read from the prediction cases either, so there is
    # no confirmation to send: an error frame names the frame type instead.
    assert frame["type"] == "error", frame
    assert frame["data"]["code"] == code
    assert frame["data"]["ref"] == ref
    assert frame["data"]["message"]
    await assert_alive(bad)
    await running.post_games([future_game("g1")])
    for ws in (bad, other):
        update = await receive_type(ws, "game_update")
        assert update["data"]["games"][0]["game_id"] == "g1"
    assert running.hub.health()["errors"] >= 1
    assert len(running.hub.sessions) == 2


async def test_binary_frame_gets_error_and_connection_lives(start_hub):
    running = await start_hub()
    ws = await running.connect(BOB)
    await welcome_and_snapshot(ws)
    await ws.send_bytes(b'{"type":"heartbeat","data":{"time_ns":1}}')
    frame = await receive_json(ws)
    assert frame["type"] == "error"
    assert frame["data"]["code"] == "malformed_frame"
    assert "binary" in frame["data"]["message"]
    await assert_alive(ws)


async def test_invalid_utf8_text_frame_closes_with_1007_and_spares_others(start_hub):
    """Invalid UTF-8 in a text frame breaks the WebSocket layer itself (RFC 6455
    says close with 1007); the hub survives it and serves everyone else."""
    running = await start_hub()
    bad = await running.connect(BOB, compress=0)
    other = await running.connect(CHARLIE)
    await welcome_and_snapshot(bad)
    await welcome_and_snapshot(other)
    await bad._writer.send_frame(b'{"type": "\xed\xa0\x80"}', aiohttp.WSMsgType.TEXT)
    code, _ = await receive_close(bad)
    assert code == 1007
    await assert_alive(other)
    await running.post_games([future_game("g1")])
    assert (await receive_type(other, "game_update"))["data"]["seq"] == 1


async def test_oversize_frame_closes_with_1009_and_spares_others(start_hub):
    running = await start_hub(max_frame_bytes=2048)
    big = await running.connect(BOB, compress=0)
    other = await running.connect(CHARLIE)
    await welcome_and_snapshot(big)
    await welcome_and_snapshot(other)
    # Exactly at the limit is fine...
    padding = "x" * (2048 - len('{"type":"heartbeat","data":{"time_ns":1,"pad":""}}'))
    text = '{"type":"heartbeat","data":{"time_ns":1,"pad":"' + padding + '"}}'
    assert len(text) == 2048
    await big.send_str(text)
    assert (await receive_type(big, "heartbeat"))["data"]["echo_ns"] == "1"
    # ...one byte more is not.
    await big.send_str(text.replace('"pad":"', '"pad":"y'))
    code, _ = await receive_close(big)
    assert code == 1009
    await eventually(lambda: BOB.ss58_address not in running.hub.sessions)
    await assert_alive(other)


async def test_compressed_frame_is_limited_by_its_inflated_size(start_hub):
    running = await start_hub(max_frame_bytes=2048)
    ws = await running.connect(BOB)  # permessage-deflate offered and accepted
    await welcome_and_snapshot(ws)
    text = '{"type":"heartbeat","data":{"time_ns":1,"pad":"' + "z" * 50_000 + '"}}'
    await ws.send_str(text)  # compresses to a few hundred bytes
    code, _ = await receive_close(ws)
    assert code == 1009


# -- rate limits -----------------------------------------------------------------------


async def test_flood_gets_rate_limited_then_closed_with_4029(start_hub):
    running = await start_hub(messages_per_second=2.0, message_burst=3.0,
                              rate_limit_strikes=4)
    flooder = await running.connect(BOB)
    other = await running.connect(CHARLIE)
    await welcome_and_snapshot(flooder)
    await welcome_and_snapshot(other)
    for i in range(20):
        await send_frame(flooder, "heartbeat", {"time_ns": i + 1})
    code, frames = await receive_close(flooder)
    assert code == 4029
    echoes = [f["data"]["echo_ns"] for f in frames if f["type"] == "heartbeat"]
    errors = [f["data"] for f in frames if f["type"] == "error"]
    assert echoes == ["1", "2", "3"]  # the burst
    assert len(errors) == 4  # one per tolerated strike, then the close
    assert {e["code"] for e in errors} == {"rate_limited"}
    assert {e["ref"] for e in errors} == {"heartbeat"}
    assert running.hub.stats.closes[4029] == 1
    await assert_alive(other)  # another hotkey has its own bucket


async def test_rate_limited_predictions_get_rejected_confirmations(start_hub):
    game = future_game("g1")
    running = await start_hub(messages_per_second=1.0, message_burst=2.0,
                              rate_limit_strikes=10)
    await running.post_games([game])
    ws = await running.connect(BOB)
    await welcome_and_snapshot(ws)
    predictions = [Prediction.for_game(game, 0, 1.0) for _ in range(4)]
    for prediction in predictions:
        await send_prediction(ws, BOB, prediction)
    answers: dict[str, Any] = {}
    for _ in predictions:
        data = (await receive_type(ws, "confirmation"))["data"]
        answers[data["prediction_id"]] = data
    statuses = [(answers[p.prediction_id]["status"], answers[p.prediction_id]["code"])
                for p in predictions]
    assert statuses == [("accepted", "ok")] * 2 + [("rejected", "rate_limited")] * 2
    # The rejected ones are not stored, so a later resend is accepted, not duplicate.
    await asyncio.sleep(1.1)
    await send_prediction(ws, BOB, predictions[2])
    data = (await receive_type(ws, "confirmation"))["data"]
    assert (data["prediction_id"], data["status"]) == (predictions[2].prediction_id,
                                                       "accepted")


# -- slow consumers -------------------------------------------------------------------------


def bulky_games(batch: int, count: int) -> list:
    """Games whose JSON does not compress and is large (about 600 bytes each)."""
    return [future_game(f"b{batch}-{i}", team_a=os.urandom(90).hex(),
                        team_b=os.urandom(90).hex()) for i in range(count)]


async def test_stalled_reader_is_dropped_with_4008_while_others_get_everything(start_hub):
    """Bob never reads; the hub fills the kernel buffers, then Bob's bounded queue, and
    drops him with 4008. Charlie reads and receives every update. When Bob finally
    reads he sees a gap-free prefix of the stream followed by close code 4008."""
    running = await start_hub(send_queue_size=8, connect_burst=100.0, compress=False,
                              store_synchronous="OFF", close_timeout_s=20.0)
    stalled = await running.connect(BOB, compress=0)
    reader = await running.connect(CHARLIE, compress=0)
    await welcome_and_snapshot(stalled)
    await welcome_and_snapshot(reader)
    charlie_seqs: list[int] = []

    async def read_all() -> None:
        while True:
            frame = await receive_json(reader, timeout=30.0)
            if frame["type"] == "game_update":
                charlie_seqs.append(frame["data"]["seq"])

    reading = asyncio.create_task(read_all())
    posts = 0
    try:
        while running.hub.stats.closes[4008] == 0:
            posts += 1
            assert posts <= 200, "the stalled miner was never dropped"
            await running.post_games(bulky_games(posts, 1000))  # ~600 kB per update
        assert BOB.ss58_address not in running.hub.sessions
        # More updates after the drop still reach the healthy miner.
        for extra in range(3):
            posts += 1
            await running.post_games([future_game(f"after-{extra}")])
        await eventually(lambda: len(charlie_seqs) == posts, timeout=20.0)
        assert charlie_seqs == list(range(1, posts + 1))
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)

    code, frames = await receive_close(stalled, timeout=20.0)
    assert code == 4008
    seqs = [f["data"]["seq"] for f in frames if f["type"] == "game_update"]
    assert seqs == list(range(1, len(seqs) + 1))  # a prefix: nothing skipped silently
    assert len(seqs) < posts
    assert running.hub.stats.closes[4008] == 1
    assert running.hub.health()["active_connections"] == 1


async def test_queue_size_alone_bounds_a_burst(start_hub):
    """A burst larger than the queue, arriving while the miner's socket is full,
    overflows even though the miner reads later: the bound is per connection and
    absolute (frames wait in the queue only behind a full socket)."""
    running = await start_hub(send_queue_size=8, compress=False, store_synchronous="OFF",
                              close_timeout_s=20.0)
    ws = await running.connect(BOB, compress=0)
    await welcome_and_snapshot(ws)
    session = running.hub.sessions[BOB.ss58_address]
    posts = 0
    while session.queued == 0:  # Bob does not read yet: his socket fills
        posts += 1
        assert posts <= 200, "the socket never filled"
        await running.post_games(bulky_games(posts, 1000))
    assert not session.closing
    for i in range(9):  # one after another, Bob still not reading
        await running.hub.publish([future_game(f"burst-{i}")])
    assert session.closing
    total = posts + 9
    code, frames = await receive_close(ws, timeout=20.0)
    assert code == 4008
    seqs = [f["data"]["seq"] for f in frames if f["type"] == "game_update"]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) < total
    # Reconnecting with epoch+since recovers exactly what was missed.
    last = seqs[-1] if seqs else 0
    ws = await running.connect(BOB, epoch=running.hub.stream.epoch, since=last, compress=0)
    welcome = await receive_json(ws, timeout=20.0)
    assert welcome["data"]["resumed"] is True
    assert welcome["data"]["replayed"] == total - last
    replay = [(await receive_json(ws, timeout=20.0))["data"]["seq"]
              for _ in range(total - last)]
    assert replay == list(range(last + 1, total + 1))
