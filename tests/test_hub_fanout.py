"""Fan-out: broadcasts framed once and written straight to every miner's socket.

Real hubs on loopback, real aiohttp clients (which inflate permessage-deflate
themselves) and a hand-made client for the deflate offers aiohttp cannot make.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import zlib
from typing import Any

import pytest

from sdk.codes import CloseCode
from sdk.frames import encode_frame
from server_stub.stream import ALL_GAMES

from .kit.clientkit import UpdateLog
from .kit.games import future_game
from .kit.hostile import open_tcp, read_response, signed_upgrade
from .kit.keys import miner_key
from .kit.waiting import eventually
from .kit.wire import receive_close, receive_json, welcome_and_snapshot

BOB = miner_key("Bob")
CHARLIE = miner_key("Charlie")
TRAILER = b"\x00\x00\xff\xff"


def bulky_games(batch: int, count: int) -> list:
    """Games whose JSON does not compress and is large (about 600 bytes each)."""
    return [future_game(f"b{batch}-{i}", team_a=os.urandom(90).hex(),
                        team_b=os.urandom(90).hex()) for i in range(count)]


def send_tasks() -> list[asyncio.Task[Any]]:
    """The sessions' drain tasks still alive (they exist only while frames wait)."""
    return [task for task in asyncio.all_tasks()
            if task.get_name().startswith("send-") and not task.done()]


async def fill_socket(running: Any, session: Any) -> int:
    """Post bulky updates until frames wait in ``session``'s queue (its miner does not
    read); returns how many were posted."""
    posts = 0
    while session.queued == 0:
        posts += 1
        assert posts <= 200, "the miner's socket never filled"
        await running.post_games(bulky_games(posts, 1000))  # ~600 kB per update
    return posts


async def test_a_broadcast_reaches_plain_and_deflate_miners_byte_for_byte(start_hub):
    running = await start_hub()
    plain = await running.connect(BOB, compress=0)
    deflated = await running.connect(CHARLIE, compress=15)
    assert (plain.compress, deflated.compress) == (0, 15)
    await welcome_and_snapshot(plain)
    await welcome_and_snapshot(deflated)
    record = await running.hub.publish([future_game(f"g{i}", team_a="Alpha") for i in range(50)])
    assert record is not None
    expected = encode_frame(running.hub.stream.broadcast_update(record, ALL_GAMES))
    for ws in (plain, deflated):
        message = await asyncio.wait_for(ws.receive(), 5.0)
        assert message.data == expected
    assert running.hub.stats.messages_out == 3 * 2  # welcome, snapshot, the update


async def test_the_sdk_client_with_deflate_follows_the_stream(start_hub, miner):
    running = await start_hub()
    await running.post_games([future_game("a"), future_game("b")])
    conn = miner(f"ws://127.0.0.1:{running.server.port}", compress=True)
    updates = UpdateLog(conn)
    await conn.start()
    await conn.wait_ready(10.0)
    await updates.wait_until(lambda: updates.snapshots, 5.0)
    assert running.hub.sessions[BOB.ss58_address].deflate == 15  # negotiated
    seqs = [(await running.post_games([future_game(f"g{i}", team_a="Alpha" * 30)]))["seq"]
            for i in range(5)]
    await updates.wait_until(lambda: updates.seen_seq(seqs[-1]), 5.0)
    assert updates.incremental_seqs == seqs
    assert conn.games == running.hub.stream.games
    await updates.stop()


async def raw_deflate_client(port: int, offer: str) -> tuple[Any, Any, dict[str, str]]:
    reader, writer = await open_tcp(port)
    writer.write(signed_upgrade(BOB, extra=[("Sec-WebSocket-Extensions", offer)]))
    response = await read_response(reader)
    assert response.status == 101
    return reader, writer, response.headers


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """(opcode, rsv1, payload) of the next frame, which must be final and unmasked."""
    b0, b1 = await asyncio.wait_for(reader.readexactly(2), 5.0)
    assert b0 & 0x80, "FIN"
    assert not b0 & 0x30, "RSV2/RSV3"
    assert not b1 & 0x80, "mask"
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, bool(b0 & 0x40), await reader.readexactly(length)


@pytest.mark.parametrize(("offer", "wbits"), [
    ("permessage-deflate", 15),
    ("permessage-deflate; client_max_window_bits", 15),
    ("permessage-deflate; client_no_context_takeover", 15),
    ("permessage-deflate; client_no_context_takeover; client_max_window_bits=9", 15),
    ("permessage-deflate; server_no_context_takeover", 15),
    ("permessage-deflate; server_max_window_bits=10; client_max_window_bits=12", 10),
])
async def test_every_deflate_offer_is_answered_without_server_context_takeover(
        start_hub, offer, wbits):
    """Each message then inflates on its own, and through one kept decompressor too
    (a peer may keep its context even though the hub does not)."""
    running = await start_hub()
    reader, writer, headers = await raw_deflate_client(running.server.port, offer)
    try:
        answer = "permessage-deflate; server_no_context_takeover"
        if wbits < 15:
            answer += f"; server_max_window_bits={wbits}"
        assert headers["sec-websocket-extensions"] == answer
        kept = zlib.decompressobj(-wbits)
        frames = []
        for publish in (False, False, True):  # welcome, snapshot, then a broadcast
            if publish:
                await running.hub.publish([future_game("g1", team_a="Alpha" * 20)])
            opcode, rsv1, payload = await read_frame(reader)
            assert (opcode, rsv1) == (1, True)
            alone = zlib.decompressobj(-wbits).decompress(payload + TRAILER)
            assert kept.decompress(payload + TRAILER) == alone
            frames.append(json.loads(alone))
        assert [frame["type"] for frame in frames] == ["welcome", "game_update", "game_update"]
        assert frames[2]["data"]["games"][0]["team_a"] == "Alpha" * 20
    finally:
        writer.transport.abort()


async def test_a_slow_miners_frames_keep_their_order_when_its_socket_drains(start_hub):
    running = await start_hub(send_queue_size=10_000, compress=False,
                              store_synchronous="OFF", close_timeout_s=20.0)
    ws = await running.connect(BOB, compress=0)
    await welcome_and_snapshot(ws)
    session = running.hub.sessions[BOB.ss58_address]
    posts = await fill_socket(running, session)
    for extra in range(3):  # small ones, queued behind the bulky ones
        await running.hub.publish([future_game(f"small-{extra}")])
    assert session.queued >= 4
    total = posts + 3
    seqs = [(await receive_json(ws, timeout=20.0))["data"]["seq"] for _ in range(total)]
    assert seqs == list(range(1, total + 1))
    await eventually(lambda: session.queued == 0 and not send_tasks())
    await running.hub.publish([future_game("after")])
    assert (await receive_json(ws))["data"]["seq"] == total + 1
    assert running.hub.stats.closes[int(CloseCode.SLOW_CONSUMER)] == 0


async def test_a_miner_that_never_reads_is_closed_with_4008_in_bounded_time(start_hub):
    running = await start_hub(send_queue_size=8, store_synchronous="OFF",
                              close_timeout_s=1.0, connect_burst=100.0)
    stalled = await running.connect(BOB, compress=15)
    healthy = await running.connect(CHARLIE, compress=15)
    await welcome_and_snapshot(stalled)
    await welcome_and_snapshot(healthy)
    posts = 0
    while running.hub.stats.closes[4008] == 0:
        posts += 1
        assert posts <= 200, "the stalled miner was never dropped"
        await running.post_games(bulky_games(posts, 1000))
        assert (await receive_json(healthy, timeout=20.0))["data"]["seq"] == posts
    assert BOB.ss58_address not in running.hub.sessions
    # it never reads, so its close handshake cannot finish: the hub drops it
    await eventually(lambda: running.hub.sessions.closing == 0, timeout=10.0)
    assert not send_tasks()
    assert list(running.hub.sessions) == [CHARLIE.ss58_address]


async def test_a_close_during_a_queued_broadcast_delivers_a_prefix_then_the_code(start_hub):
    running = await start_hub(send_queue_size=10_000, compress=False,
                              store_synchronous="OFF", close_timeout_s=20.0)
    ws = await running.connect(BOB, compress=0)
    await welcome_and_snapshot(ws)
    session = running.hub.sessions[BOB.ss58_address]
    posts = await fill_socket(running, session)
    running.hub.sessions.close(session, CloseCode.DEREGISTERED, "hotkey deregistered")
    assert session.send('{"type":"heartbeat","data":{}}') is False  # nothing after the close
    code, frames = await receive_close(ws, timeout=20.0)
    assert code == int(CloseCode.DEREGISTERED)
    seqs = [frame["data"]["seq"] for frame in frames]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) <= posts
    await eventually(lambda: running.hub.sessions.closing == 0, timeout=20.0)
    assert not send_tasks()
    assert session.queued == 0


async def test_a_shared_snapshot_follows_every_change_of_the_game_table(start_hub):
    """Snapshots are framed once per table version: a publish or a pruned game makes
    the next connecting miner's snapshot new."""
    running = await start_hub(connect_burst=100.0)
    await running.post_games([future_game("a"), future_game("b")])

    async def snapshot_ids(key: Any, compress: int) -> set[str]:
        ws = await running.connect(key, compress=compress)
        _, snapshot = await welcome_and_snapshot(ws)
        await ws.close()
        return {game["game_id"] for game in snapshot["games"]}

    assert await snapshot_ids(BOB, 0) == {"a", "b"}
    assert await snapshot_ids(CHARLIE, 15) == {"a", "b"}
    await running.post_games([future_game("c")])
    assert await snapshot_ids(BOB, 15) == {"a", "b", "c"}
    running.hub.stream.forget(["a"])
    assert await snapshot_ids(CHARLIE, 0) == {"b", "c"}
