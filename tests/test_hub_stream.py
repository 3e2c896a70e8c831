"""The game stream over real WebSockets: welcome, snapshot, filtered broadcasts,
subscribe, resume with epoch+since, replacement and heartbeats."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from .kit.games import future_game, games_body
from .kit.hubkit import stop_hub
from .kit.keys import VALIDATOR, miner_key
from .kit.waiting import eventually
from .kit.wire import receive_close, receive_json, receive_type, send_frame, welcome_and_snapshot

BOB = miner_key("Bob")
CHARLIE = miner_key("Charlie")
DAVE = miner_key("Dave")
EVE = miner_key("Eve")


def bad_odds_body() -> bytes:
    """Two games, the second with a string for its odds."""
    games = [future_game("ok").model_dump(mode="json"), future_game("bad").model_dump(mode="json")]
    games[1]["team_a_odds"] = "x"
    return json.dumps({"games": games}).encode()


def ids(update: dict) -> list[str]:
    return [game["game_id"] for game in update["games"]]


# -- welcome and snapshot -------------------------------------------------------------


async def test_welcome_has_every_contract_field_then_snapshot(start_hub):
    running = await start_hub(heartbeat_interval_s=7.5, max_frame_bytes=32 * 1024,
                              messages_per_second=12.0, daily_wager_limit=500.0,
                              odds_tolerance=0.02)
    await running.post_games([future_game("g1"), future_game("n1", sport="basketball",
                                                             league="NBA")])
    before = time.time_ns()
    ws = await running.connect(BOB)
    welcome = await receive_json(ws)
    after = time.time_ns()
    assert welcome["type"] == "welcome"
    data = welcome["data"]
    assert set(data) >= {"session_id", "validator_hotkey", "protocol", "server_time_ns",
                         "heartbeat_interval_s", "epoch", "seq", "resumed", "replayed",
                         "limits"}
    assert isinstance(data["session_id"], str)
    assert data["session_id"]
    assert data["session_id"] == running.hub.sessions[BOB.ss58_address].session_id
    assert data["validator_hotkey"] == VALIDATOR.ss58_address
    assert data["protocol"] == "bt-ws/1"
    assert isinstance(data["server_time_ns"], str)  # PROTOCOL.md §3.2: beyond 2**53
    assert before <= int(data["server_time_ns"]) <= after
    assert data["heartbeat_interval_s"] == 7.5
    assert isinstance(data["epoch"], str)
    assert data["epoch"] == running.hub.stream.epoch
    assert isinstance(data["seq"], int)
    assert data["seq"] == 1
    assert data["resumed"] is False
    assert data["replayed"] == 0
    assert data["limits"] == {"max_frame_bytes": 32 * 1024, "messages_per_second": 12.0,
                              "daily_wager_limit": 500.0, "odds_tolerance": 0.02}

    snapshot = await receive_json(ws)
    assert snapshot["type"] == "game_update"
    assert snapshot["data"]["snapshot"] is True
    assert snapshot["data"]["epoch"] == data["epoch"]
    assert snapshot["data"]["seq"] == 1
    assert sorted(ids(snapshot["data"])) == ["g1", "n1"]

    # A second miner gets its own session id.
    ws2 = await running.connect(CHARLIE)
    welcome2, _ = await welcome_and_snapshot(ws2)
    assert welcome2["session_id"] != data["session_id"]


async def test_snapshot_respects_query_filters(start_hub):
    running = await start_hub()
    await running.post_games([future_game("g1"), future_game("n1", sport="basketball",
                                                             league="NBA"),
                              future_game("g2", league="LaLiga")])
    ws = await running.connect(BOB, sports="Soccer")
    _, snapshot = await welcome_and_snapshot(ws)
    assert sorted(ids(snapshot)) == ["g1", "g2"]
    ws = await running.connect(CHARLIE, leagues="laliga,NBA")
    _, snapshot = await welcome_and_snapshot(ws)
    assert sorted(ids(snapshot)) == ["g2", "n1"]


# -- broadcasts ---------------------------------------------------------------------------


async def test_broadcast_reaches_matching_miners_only(start_hub):
    running = await start_hub()
    everyone = await running.connect(BOB)
    soccer = await running.connect(CHARLIE, sports="soccer")
    nba = await running.connect(DAVE, leagues="NBA")
    subscriber = await running.connect(EVE)
    for ws in (everyone, soccer, nba, subscriber):
        await welcome_and_snapshot(ws)
    # Eve narrows her filter with a subscribe frame; the answer is a snapshot.
    await send_frame(subscriber, "subscribe", {"sports": [], "leagues": ["NBA"]})
    resub = await receive_type(subscriber, "game_update")
    assert resub["data"]["snapshot"] is True
    assert resub["data"]["games"] == []

    answer = await running.post_games([future_game("g1")])
    assert answer["seq"] == 1
    assert answer["epoch"] == running.hub.stream.epoch
    for ws in (everyone, soccer):
        update = await receive_type(ws, "game_update")
        assert update["data"]["seq"] == 1
        assert ids(update["data"]) == ["g1"]
        assert update["data"]["snapshot"] is False

    answer = await running.post_games([future_game("n1", sport="basketball", league="NBA")])
    assert answer["seq"] == 2
    for ws in (everyone, nba, subscriber):
        update = await receive_type(ws, "game_update")
        assert update["data"]["seq"] == 2
        assert ids(update["data"]) == ["n1"]
    # The soccer-only and NBA-only miners did not get the other update: their next
    # frame is the following one that matches them (with prev_seq pointing back).
    await running.post_games([future_game("g3"), future_game("n3", sport="basketball",
                                                             league="NBA")])
    update = await receive_type(soccer, "game_update")
    assert (update["data"]["seq"], update["data"]["prev_seq"], ids(update["data"])) == (
        3, 1, ["g3"])
    for ws in (nba, subscriber):
        update = await receive_type(ws, "game_update")
        assert (update["data"]["seq"], update["data"]["prev_seq"], ids(update["data"])) == (
            3, 2, ["n3"])
    update = await receive_type(everyone, "game_update")
    assert sorted(ids(update["data"])) == ["g3", "n3"]
    assert update["data"]["prev_seq"] == 2


async def test_one_game_update_per_admin_post(start_hub):
    running = await start_hub()
    ws = await running.connect(BOB)
    await welcome_and_snapshot(ws)
    games = [future_game(f"g{i}") for i in range(5)]
    answer = await running.post_games(games)
    assert answer["seq"] == 1
    assert answer["changed"] == 5
    update = await receive_type(ws, "game_update")
    assert sorted(ids(update["data"])) == [f"g{i}" for i in range(5)]
    # Re-posting the same state changes nothing and broadcasts nothing; a changed
    # game does, and is the very next frame.
    answer = await running.post_games(games)
    assert answer["seq"] == 1
    assert answer["changed"] == 0
    changed = games[2].model_copy(update={"team_a_odds": 1.9})
    answer = await running.post_games([changed, games[3]])
    assert answer["seq"] == 2
    assert answer["changed"] == 1
    update = await receive_type(ws, "game_update")
    assert update["data"]["seq"] == 2
    assert ids(update["data"]) == ["g2"]
    assert update["data"]["games"][0]["team_a_odds"] == 1.9
    assert running.hub.stats.broadcasts == 2


async def test_admin_refuses_miner_key_and_bad_bodies(start_hub):
    running = await start_hub()
    ws = await running.connect(BOB)
    await welcome_and_snapshot(ws)
    body = games_body([future_game("g1")])
    status, answer, _ = await running.request("POST", "/admin/games", key=BOB, body=body)
    assert status == 403
    assert answer["error"] == "forbidden"
    assert answer["detail"]
    status, answer, _ = await running.request("POST", "/admin/games", body=body)
    assert status == 401
    assert answer["error"] == "unauthorized"
    bad_bodies = [
        b"not json",
        b"[]",
        b'{"games": {"g1": 1}}',
        b'{"nothing": []}',
        b'{"games": [{"game_id": "g1"}]}',
        bad_odds_body(),
    ]
    for bad in bad_bodies:
        status, answer, _ = await running.request("POST", "/admin/games", key=VALIDATOR,
                                                  body=bad)
        assert status == 400, (bad, answer)
        assert answer["error"] == "malformed_request", bad
        assert answer["detail"], bad
    status, answer, _ = await running.request("POST", "/admin/games", key=VALIDATOR,
                                              body=bad_odds_body())
    assert status == 400
    assert "games[1].team_a_odds" in answer["detail"]
    # Nothing was published by any refused post.
    assert running.hub.stream.seq == 0
    assert running.hub.stream.games == {}
    # An admin hotkey the validator was given may post.
    assert await stop_hub(running) == [1001]
    running = await start_hub(admin_hotkeys=frozenset({DAVE.ss58_address}),
                              store_path=running.store_path.with_name("admin.sqlite3"))
    answer = await running.post_games([future_game("g1")], key=DAVE)
    assert answer["seq"] == 1


async def test_subscribe_with_bad_fields_is_an_error_and_keeps_filter(start_hub):
    running = await start_hub()
    ws = await running.connect(BOB, sports="soccer")
    await welcome_and_snapshot(ws)
    await send_frame(ws, "subscribe", {"sports": "soccer"})  # not a list
    error = await receive_type(ws, "error")
    assert error["data"]["code"] == "malformed_frame"
    assert error["data"]["ref"] == "subscribe"
    await running.post_games([future_game("n1", sport="basketball", league="NBA"),
                              future_game("g1")])
    update = await receive_type(ws, "game_update")
    assert ids(update["data"]) == ["g1"]


# -- resume ----------------------------------------------------------------------------------


async def test_resume_replays_exactly_the_missed_updates_in_order(start_hub):
    running = await start_hub()
    await running.post_games([future_game("g0")])
    ws = await running.connect(BOB, sports="soccer")
    welcome, snapshot = await welcome_and_snapshot(ws)
    epoch, since = welcome["epoch"], snapshot["seq"]
    assert since == 1
    await ws.close()
    # Missed while away: soccer at 2, 4, 5; basketball at 3 and 6 (filtered out).
    await running.post_games([future_game("g2")])
    await running.post_games([future_game("n3", sport="basketball", league="NBA")])
    await running.post_games([future_game("g4")])
    await running.post_games([future_game("g5"), future_game("n5", sport="basketball",
                                                             league="NBA")])
    await running.post_games([future_game("n6", sport="basketball", league="NBA")])

    ws = await running.connect(BOB, epoch=epoch, since=since, sports="soccer")
    welcome = await receive_json(ws)
    assert welcome["type"] == "welcome"
    assert welcome["data"]["resumed"] is True
    assert welcome["data"]["replayed"] == 3
    assert welcome["data"]["seq"] == 6
    assert welcome["data"]["epoch"] == epoch
    replayed = [(await receive_json(ws))["data"] for _ in range(3)]
    assert [u["seq"] for u in replayed] == [2, 4, 5]
    assert [u["prev_seq"] for u in replayed] == [1, 2, 4]
    assert [ids(u) for u in replayed] == [["g2"], ["g4"], ["g5"]]
    assert not any(u["snapshot"] for u in replayed)
    # Live updates continue the chain from the last replayed seq.
    await running.post_games([future_game("g7")])
    live = await receive_json(ws)
    assert live["type"] == "game_update"
    assert (live["data"]["seq"], live["data"]["prev_seq"], ids(live["data"])) == (7, 5, ["g7"])


async def test_resume_with_nothing_missed_sends_no_snapshot(start_hub):
    running = await start_hub()
    await running.post_games([future_game("g1")])
    ws = await running.connect(BOB)
    welcome, snapshot = await welcome_and_snapshot(ws)
    await ws.close()
    ws = await running.connect(BOB, epoch=welcome["epoch"], since=snapshot["seq"])
    welcome = await receive_json(ws)
    assert welcome["data"]["resumed"] is True
    assert welcome["data"]["replayed"] == 0
    await running.post_games([future_game("g2")])
    update = await receive_json(ws)  # the very next frame is the live update
    assert update["type"] == "game_update"
    assert update["data"]["snapshot"] is False
    assert (update["data"]["seq"], update["data"]["prev_seq"]) == (2, 1)


async def test_resume_out_of_history_gets_snapshot(start_hub):
    running = await start_hub(history_size=2)
    await running.post_games([future_game("g1")])
    ws = await running.connect(BOB)
    welcome, snapshot = await welcome_and_snapshot(ws)
    await ws.close()
    for i in range(2, 6):
        await running.post_games([future_game(f"g{i}")])
    ws = await running.connect(BOB, epoch=welcome["epoch"], since=snapshot["seq"])
    welcome, snapshot = await welcome_and_snapshot(ws)
    assert welcome["resumed"] is False
    assert welcome["replayed"] == 0
    assert snapshot["snapshot"] is True
    assert snapshot["seq"] == 5
    assert sorted(ids(snapshot)) == [f"g{i}" for i in range(1, 6)]
    # Just inside the history (since = oldest - 1) still replays.
    await ws.close()
    ws = await running.connect(BOB, epoch=welcome["epoch"], since=3)
    welcome = await receive_json(ws)
    assert welcome["data"]["resumed"] is True
    assert welcome["data"]["replayed"] == 2


@pytest.mark.parametrize("query", [
    pytest.param({"epoch": "another-epoch", "since": 1}, id="other-epoch"),
    pytest.param({"since": 1}, id="no-epoch"),
    pytest.param({"epoch": None, "since": 99}, id="since-ahead"),
])
async def test_resume_with_unusable_point_gets_snapshot(start_hub, query):
    running = await start_hub()
    await running.post_games([future_game("g1")])
    await running.post_games([future_game("g2")])
    if "epoch" in query and query["epoch"] is None:
        query = {**query, "epoch": running.hub.stream.epoch}
    ws = await running.connect(BOB, **query)
    welcome, snapshot = await welcome_and_snapshot(ws)
    assert welcome["resumed"] is False
    assert snapshot["snapshot"] is True
    assert sorted(ids(snapshot)) == ["g1", "g2"]


async def test_epoch_changes_across_restart_and_resume_gets_snapshot(start_hub):
    running = await start_hub()
    await running.post_games([future_game("g1")])
    ws = await running.connect(BOB)
    welcome, snapshot = await welcome_and_snapshot(ws)
    assert await stop_hub(running) == [1001]
    restarted = await start_hub(store_path=running.store_path)
    ws = await restarted.connect(BOB, epoch=welcome["epoch"], since=snapshot["seq"])
    welcome2, snapshot2 = await welcome_and_snapshot(ws)
    assert welcome2["epoch"] != welcome["epoch"]
    assert welcome2["resumed"] is False
    assert snapshot2["snapshot"] is True
    assert ids(snapshot2) == ["g1"]  # games survive in the store


# -- replacement and heartbeats -------------------------------------------------------------


async def test_second_connection_of_a_hotkey_replaces_the_first_with_4001(start_hub):
    running = await start_hub()
    first = await running.connect(BOB)
    await welcome_and_snapshot(first)
    second = await running.connect(BOB)
    await welcome_and_snapshot(second)
    code, _ = await receive_close(first)
    assert code == 4001
    assert len(running.hub.sessions) == 1
    await running.post_games([future_game("g1")])
    update = await receive_type(second, "game_update")
    assert ids(update["data"]) == ["g1"]
    assert running.hub.stats.closes[4001] == 1


async def test_close_code_reaches_a_miner_that_reads_late(start_hub):
    """The hub finishes the close handshake before dropping TCP, so a miner busy
    elsewhere when it is replaced still learns 4001 (not an abnormal 1006) and knows
    not to reconnect-fight."""
    running = await start_hub()
    first = await running.connect(BOB)
    await welcome_and_snapshot(first)
    second = await running.connect(BOB)
    await welcome_and_snapshot(second)
    await eventually(lambda: running.hub.stats.closes[4001] == 1)
    await asyncio.sleep(0.3)  # the first socket is not read meanwhile
    code, frames = await receive_close(first)
    assert code == 4001
    assert frames == []


async def test_heartbeat_gets_an_immediate_echo(start_hub):
    running = await start_hub(heartbeat_interval_s=30.0)
    ws = await running.connect(BOB)
    await welcome_and_snapshot(ws)
    sent = time.time_ns()
    await send_frame(ws, "heartbeat", {"time_ns": sent})
    reply = await receive_json(ws, timeout=2.0)
    assert reply["type"] == "heartbeat"
    assert reply["data"]["echo_ns"] == str(sent)
    assert abs(int(reply["data"]["time_ns"]) - time.time_ns()) < 5 * 10**9


async def test_hub_sends_heartbeats_and_drops_a_silent_miner(start_hub):
    interval = 0.2
    running = await start_hub(heartbeat_interval_s=interval)
    started = time.monotonic()  # before the hub's first sight of the silent miner
    silent = await running.connect(BOB)
    talker = await running.connect(CHARLIE)
    await welcome_and_snapshot(silent)
    await welcome_and_snapshot(talker)

    async def keep_talking() -> None:
        while True:
            await send_frame(talker, "heartbeat", {"time_ns": time.time_ns()})
            await asyncio.sleep(interval / 2)

    chatter = asyncio.create_task(keep_talking())
    try:
        code, frames = await receive_close(silent, timeout=10 * interval + 3)
        elapsed = time.monotonic() - started
        assert code == 1008
        hub_beats = [f for f in frames if f["type"] == "heartbeat"]
        assert len(hub_beats) >= 2
        assert all(f["data"]["echo_ns"] is None for f in hub_beats)
        assert 3 * interval <= elapsed <= 3 * interval + 3
        # The miner that kept talking is still connected and served.
        assert CHARLIE.ss58_address in running.hub.sessions
        assert BOB.ss58_address not in running.hub.sessions
    finally:
        chatter.cancel()
        await asyncio.gather(chatter, return_exceptions=True)
    await running.post_games([future_game("g1")])
    update = await receive_type(talker, "game_update")
    assert ids(update["data"]) == ["g1"]


async def test_many_miners_each_get_every_update_exactly_once(start_hub):
    running = await start_hub()
    keys = [miner_key(f"Miner{i}") for i in range(12)]
    sockets = [await running.connect(key) for key in keys]
    for ws in sockets:
        await welcome_and_snapshot(ws)
    for i in range(5):
        await running.post_games([future_game(f"g{i}-{uuid.uuid4().hex[:4]}")])
    for ws in sockets:
        seqs = [(await receive_type(ws, "game_update"))["data"]["seq"] for _ in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
    await eventually(lambda: running.hub.stats.messages_out >= len(keys) * 7)
