"""The HTTP side of the hub: the prediction / long-poll fallback, health and metrics."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

from prometheus_client.parser import text_string_to_metric_families

from sdk.models import Prediction
from sdk.signing import verify_receipt
from server_stub import AllowListRegistry

from .kit.games import future_game
from .kit.keys import VALIDATOR, miner_key
from .kit.waiting import within
from .kit.wire import prediction_data, receive_close, receive_type, send_frame, welcome_and_snapshot

BOB = miner_key("Bob")
CHARLIE = miner_key("Charlie")
DAVE = miner_key("Dave")


def body_of(key, prediction) -> bytes:
    return json.dumps(prediction_data(key, prediction)).encode()


# -- POST /predictions ------------------------------------------------------------------


async def test_post_prediction_returns_the_signed_confirmation(start_hub):
    game = future_game("g1")
    running = await start_hub()
    await running.post_games([game])
    prediction = Prediction.for_game(game, 0, 20.0)
    body = body_of(BOB, prediction)
    status, data, _ = await running.request("POST", "/predictions", key=BOB, body=body)
    assert status == 200, data
    assert data["prediction_id"] == prediction.prediction_id
    assert (data["status"], data["code"]) == ("accepted", "ok")
    assert data["miner_hotkey"] == BOB.ss58_address
    assert verify_receipt(data, VALIDATOR.ss58_address)
    db = sqlite3.connect(running.store_path)
    assert db.execute("SELECT COUNT(*) FROM predictions WHERE prediction_id = ?",
                      (prediction.prediction_id,)).fetchone()[0] == 1
    db.close()
    # The resend (fresh auth headers, same body) is a duplicate with the original time.
    status, again, _ = await running.request("POST", "/predictions", key=BOB, body=body)
    assert status == 200
    assert again["status"] == "duplicate"
    assert again["received_at_ns"] == data["received_at_ns"]
    assert verify_receipt(again, VALIDATOR.ss58_address)
    # The same prediction over the WebSocket is a duplicate too: one pipeline.
    ws = await running.connect(BOB)
    await welcome_and_snapshot(ws)
    await send_frame(ws, "prediction", prediction_data(BOB, prediction))
    frame = await receive_type(ws, "confirmation")
    assert frame["data"]["status"] == "duplicate"
    assert frame["data"]["received_at_ns"] == data["received_at_ns"]


async def test_post_prediction_rejections_and_bad_bodies(start_hub):
    game = future_game("g1")
    running = await start_hub()
    await running.post_games([game])
    wire = Prediction.for_game(game, 0, 20.0).wire()
    status, data, _ = await running.request(
        "POST", "/predictions", key=BOB, body=body_of(BOB, {**wire, "game_id": "nope"}))
    assert status == 200
    assert (data["status"], data["code"]) == ("rejected", "unknown_game")
    assert verify_receipt(data, VALIDATOR.ss58_address)
    status, data, _ = await running.request(
        "POST", "/predictions", key=BOB, body=body_of(CHARLIE, wire))
    assert status == 200
    assert (data["status"], data["code"]) == ("rejected", "bad_signature")
    status, data, _ = await running.request(
        "POST", "/predictions", key=BOB, body=body_of(None, {**wire, "wager": "x"}))
    assert status == 200
    assert (data["status"], data["code"]) == ("rejected", "invalid_wager")
    for bad in (b"not json", b"[]", b'{"prediction": 5}', b'{"signature": "0x00"}'):
        status, data, _ = await running.request("POST", "/predictions", key=BOB, body=bad)
        assert status == 400, (bad, data)
        assert set(data) == {"error", "detail"}
        assert data["error"] in ("malformed_frame", "invalid_prediction"), data
    db = sqlite3.connect(running.store_path)
    assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 0
    db.close()


async def test_http_endpoints_require_auth(start_hub):
    game = future_game("g1")
    running = await start_hub(registry=AllowListRegistry([BOB.ss58_address]))
    body = body_of(BOB, Prediction.for_game(game, 0, 1.0))
    status, data, _ = await running.request("POST", "/predictions", body=body)
    assert status == 401
    assert data["error"] == "unauthorized"
    status, data, _ = await running.request("GET", "/games")
    assert status == 401
    assert data["error"] == "unauthorized"
    # Signed over another body: the hash does not match.
    headers = running.signed(BOB, "POST", "/predictions", b"{}")
    status, data, _ = await running.request("POST", "/predictions", body=body,
                                            headers=headers)
    assert status == 401
    # Registered checks apply as on the WebSocket.
    status, data, _ = await running.request("POST", "/predictions", key=CHARLIE, body=body)
    assert status == 403
    assert data["error"] == "not_registered"
    status, data, _ = await running.request("GET", "/games", key=CHARLIE)
    assert status == 403
    assert data["error"] == "not_registered"
    # Replay of a request's headers is refused.
    headers = running.signed(BOB, "GET", "/games")
    status, _, _ = await running.request("GET", "/games", headers=headers)
    assert status == 200
    status, data, _ = await running.request("GET", "/games", headers=headers)
    assert status == 401
    assert data["error"] == "replayed_request"


# -- GET /games long-poll ---------------------------------------------------------------


async def test_get_games_snapshot_then_updates_after_since(start_hub):
    running = await start_hub()
    await running.post_games([future_game("g1"), future_game("n1", sport="basketball",
                                                             league="NBA")])
    status, data, _ = await running.request("GET", "/games?sports=soccer", key=BOB)
    assert status == 200
    assert data["epoch"] == running.hub.stream.epoch
    assert data["seq"] == 1
    assert abs(int(data["server_time_ns"]) - time.time_ns()) < 5 * 10**9
    [snapshot] = data["updates"]
    assert snapshot["snapshot"] is True
    assert [g["game_id"] for g in snapshot["games"]] == ["g1"]
    epoch = data["epoch"]
    await running.post_games([future_game("g2")])
    await running.post_games([future_game("n2", sport="basketball", league="NBA")])
    await running.post_games([future_game("g3")])
    # There is news: answered at once, long before the poll's 30 s timeout.
    path = f"/games?epoch={epoch}&since=1&sports=soccer&timeout=30"
    status, data, _ = await within(running.request("GET", path, key=BOB, timeout=20.0), 10.0,
                                   "a poll with news waiting was not answered at once")
    assert status == 200
    assert [(u["seq"], u["prev_seq"]) for u in data["updates"]] == [(2, 1), (4, 2)]
    assert [[g["game_id"] for g in u["games"]] for u in data["updates"]] == [["g2"], ["g3"]]
    assert not any(u["snapshot"] for u in data["updates"])
    # An unknown epoch gets a snapshot instead.
    status, data, _ = await running.request("GET", "/games?epoch=old&since=1&timeout=1",
                                            key=BOB)
    assert data["updates"][0]["snapshot"] is True
    assert len(data["updates"][0]["games"]) == 5


async def poll_in_flight(running, path: str) -> asyncio.Task:
    """Start a long-poll and return once the hub has answered a request sent after it
    (a health check): one event loop runs client and hub, so by then the poll has
    reached the hub, and news posted now arrives while it waits."""
    poll = asyncio.create_task(running.request("GET", path, key=BOB, timeout=20.0))
    await running.health()
    return poll


async def test_long_poll_waits_and_returns_when_a_post_arrives(start_hub):
    running = await start_hub()
    answer = await running.post_games([future_game("g1")])
    path = f"/games?epoch={answer['epoch']}&since={answer['seq']}&timeout=30"
    poll = await poll_in_flight(running, path)
    assert not poll.done(), f"a poll with no news was answered at once: {poll.result()}"
    await running.post_games([future_game("g2")])
    status, data, _ = await within(poll, 10.0, "the waiting poll did not return the news")
    assert status == 200
    assert [(u["seq"], [g["game_id"] for g in u["games"]]) for u in data["updates"]] == [
        (2, ["g2"])], "the poll did not wait for the news posted while it was in flight"


async def test_long_poll_is_bounded_by_its_timeout(start_hub):
    running = await start_hub()
    answer = await running.post_games([future_game("g1")])
    path = f"/games?epoch={answer['epoch']}&since={answer['seq']}&timeout=1"
    started = time.monotonic()
    status, data, _ = await within(running.request("GET", path, key=BOB, timeout=20.0), 10.0,
                                   "a 1 s poll without news did not end")
    assert time.monotonic() - started >= 0.9  # it did wait for news
    assert status == 200
    assert data["updates"] == []
    assert data["seq"] == 1
    # An update of other games is no news for a filtered poll: it keeps waiting.
    path = f"/games?epoch={answer['epoch']}&since=1&timeout=1&sports=basketball"
    started = time.monotonic()
    poll = await poll_in_flight(running, path)
    await running.post_games([future_game("g2")])
    status, data, _ = await within(poll, 10.0, "a 1 s filtered poll did not end")
    assert time.monotonic() - started >= 0.9, "soccer news ended a basketball poll"
    assert status == 200
    assert data["updates"] == []
    assert data["seq"] == 2
    for bad in ("timeout=abc", "timeout=-1", "timeout=61", "since=x"):
        status, data, _ = await running.request("GET", f"/games?{bad}", key=BOB)
        assert status == 400, bad
        assert data["error"] == "malformed_request", bad


# -- health and metrics --------------------------------------------------------------------


async def test_health_reports_connections_share_and_counters(start_hub):
    running = await start_hub(registry=AllowListRegistry([BOB.ss58_address,
                                                          CHARLIE.ss58_address,
                                                          DAVE.ss58_address,
                                                          miner_key("Eve").ss58_address]))
    health = await running.health()
    assert health["status"] == "ok"
    assert health["validator_hotkey"] == VALIDATOR.ss58_address
    assert (health["connections"], health["active_connections"]) == (0, 0)
    assert health["registered_miners"] == 4
    assert health["connected_share"] == 0
    assert health["uptime_s"] >= 0
    ws = await running.connect(BOB)
    await welcome_and_snapshot(ws)
    ws2 = await running.connect(CHARLIE)
    await welcome_and_snapshot(ws2)
    await ws2.close()
    await send_frame(ws, "heartbeat", {"time_ns": 1})
    await receive_type(ws, "heartbeat")
    await ws.send_str("garbage")
    await receive_type(ws, "error")
    await running.handshake_status(miner_key("Mallory"))  # refused: not registered
    later = await running.health()
    assert later["connections"] == 2
    assert later["active_connections"] == 1
    assert later["registered_miners"] == 4
    assert later["connected_share"] == 0.25
    assert later["uptime_s"] > health["uptime_s"]
    assert later["messages_in"] >= 2  # the heartbeat and the garbage
    assert later["messages_out"] >= 5  # 2 welcomes, 2 snapshots, the echo
    assert later["errors"] >= 1
    assert later["errors_by_code"].get("malformed_frame") == 1
    assert later["epoch"] == running.hub.stream.epoch
    closing = asyncio.create_task(receive_close(ws))
    await running.hub.stop()
    assert (await closing)[0] == 1001
    assert (await running.health())["status"] == "shutting_down"


async def test_health_without_a_bounded_registry(start_hub):
    running = await start_hub()
    health = await running.health()
    assert health["registered_miners"] is None
    assert health["connected_share"] is None
    assert set(health) >= {"status", "connections", "active_connections", "registered_miners",
                           "connected_share", "uptime_s", "messages_in", "messages_out",
                           "errors"}


async def test_metrics_serve_prometheus_text(start_hub):
    game = future_game("g1")
    running = await start_hub()
    await running.post_games([game])
    ws = await running.connect(BOB)
    await welcome_and_snapshot(ws)
    await send_frame(ws, "heartbeat", {"time_ns": 1})
    await receive_type(ws, "heartbeat")
    await send_frame(ws, "prediction", prediction_data(BOB, Prediction.for_game(game, 0, 1.0)))
    await receive_type(ws, "confirmation")
    await running.handshake_status(None, headers={})  # one 401
    async with running.session.get(running.url("/metrics")) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert all(name.startswith("bt_hub_") for name in families)
    assert families["bt_hub_connections"].type == "counter"
    assert samples[("bt_hub_connections_total", ())] == 1
    assert samples[("bt_hub_active_connections", ())] == 1
    assert samples[("bt_hub_uptime_seconds", ())] > 0
    assert samples[("bt_hub_broadcasts_total", ())] == 1
    assert samples[("bt_hub_messages_in_total", (("type", "heartbeat"),))] == 1
    assert samples[("bt_hub_messages_in_total", (("type", "prediction"),))] == 1
    assert samples[("bt_hub_predictions_total", (("status", "accepted"),))] == 1
    assert samples[("bt_hub_handshake_refusals_total", (("status", "401"),))] == 1
    assert samples[("bt_hub_games", ())] == 1
    assert samples[("bt_hub_seq", ())] == 1
    assert samples[("bt_hub_messages_out_total", ())] >= 4
    assert ("bt_hub_store_commits", ()) in samples
    assert ("bt_hub_nonce_store_entries", ()) in samples
    assert ("bt_hub_queued_frames", ()) in samples


async def test_http_bodies_are_compact_json_like_frames(start_hub):
    """PROTOCOL.md conventions: every JSON body is compact, as frames are."""
    running = await start_hub()
    async with running.session.get(running.url("/ws/health")) as response:
        text = await response.text()
    assert response.status == 200
    assert text.startswith('{"')
    assert '": ' not in text
    assert ', "' not in text
    async with running.session.get(running.url("/games")) as response:  # unsigned: 401
        text = await response.text()
    assert response.status == 401
    assert text == json.dumps(json.loads(text), separators=(",", ":"))
