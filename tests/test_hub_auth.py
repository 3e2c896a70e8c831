"""Admission of miners: every refusal is an HTTP answer before any upgrade.

Each test drives a real hub on loopback with real btauth/1 signatures and checks
the status, the ``{"error", "detail"}`` body and ``Retry-After`` where the protocol
asks for it; a refusal never leaves an upgraded socket (or a session) behind.
"""

from __future__ import annotations

import time

import aiohttp
import pytest
from bittensor import http_auth

from server_stub import AllowListRegistry, OpenRegistry

from .kit.keys import VALIDATOR, miner_key
from .kit.wire import welcome_and_snapshot

BOB = miner_key("Bob")
CHARLIE = miner_key("Charlie")


def assert_refusal(status: int, body: dict, expected_status: int, code: str) -> None:
    assert status == expected_status, body
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]


async def test_valid_signature_upgrades_and_counts_nothing_refused(start_hub):
    running = await start_hub()
    ws = await running.connect(BOB)
    welcome, _ = await welcome_and_snapshot(ws)
    assert welcome["validator_hotkey"] == VALIDATOR.ss58_address
    assert BOB.ss58_address in running.hub.sessions
    assert sum(running.hub.stats.handshake_refusals.values()) == 0


async def test_missing_headers_is_401(start_hub):
    running = await start_hub()
    status, body, _ = await running.handshake_status(None, headers={})
    assert_refusal(status, body, 401, "unauthorized")
    assert "btauth" in body["detail"]
    assert running.hub.sessions == {}


@pytest.mark.parametrize("mutate", [
    pytest.param(lambda h: h.update({http_auth.HEADER_NONCE: "not-a-number"}), id="nonce"),
    pytest.param(lambda h: h.update({http_auth.HEADER_SIGNATURE: "0xzz"}), id="signature-hex"),
    pytest.param(lambda h: h.update({http_auth.HEADER_VERSION: "9"}), id="version"),
    pytest.param(lambda h: h.update({http_auth.HEADER_CRYPTO: "rot13"}), id="crypto"),
    pytest.param(lambda h: h.update({http_auth.HEADER_HOTKEY: "not-an-ss58"}), id="hotkey"),
    pytest.param(lambda h: h.pop(http_auth.HEADER_NONCE), id="nonce-missing"),
])
async def test_malformed_headers_are_400(start_hub, mutate):
    running = await start_hub()
    headers = running.signed(BOB, "GET", "/ws")
    mutate(headers)
    status, body, _ = await running.handshake_status(None, headers=headers)
    assert_refusal(status, body, 400, "malformed_request")
    assert running.hub.stats.handshake_refusals[400] == 1
    assert running.hub.sessions == {}


async def test_bad_signature_is_401(start_hub):
    running = await start_hub()
    # A real signature, but over another path: it cannot verify for /ws.
    headers = running.signed(BOB, "GET", "/ws?sports=soccer")
    status, body, _ = await running.handshake_status(None, headers=headers)
    assert_refusal(status, body, 401, "unauthorized")
    # Someone else's signature under Bob's name.
    forged = running.signed(CHARLIE, "GET", "/ws")
    forged[http_auth.HEADER_HOTKEY] = BOB.ss58_address
    status, body, _ = await running.handshake_status(None, headers=forged)
    assert_refusal(status, body, 401, "unauthorized")
    assert running.hub.sessions == {}


async def test_stale_nonce_is_401(start_hub):
    running = await start_hub(auth_max_age_s=10.0)
    old = http_auth.sign(BOB, method="GET", path="/ws", receiver_ss58=VALIDATOR.ss58_address,
                         nonce_ns=time.time_ns() - 60 * 10**9)
    status, body, _ = await running.handshake_status(None, headers=old)
    assert_refusal(status, body, 401, "stale_request")
    future = http_auth.sign(BOB, method="GET", path="/ws",
                            receiver_ss58=VALIDATOR.ss58_address,
                            nonce_ns=time.time_ns() + 60 * 10**9)
    status, body, _ = await running.handshake_status(None, headers=future)
    assert_refusal(status, body, 401, "stale_request")


async def test_replayed_headers_are_401(start_hub):
    running = await start_hub()
    headers = running.signed(BOB, "GET", "/ws")
    ws = await running.connect(BOB, headers=dict(headers))
    await welcome_and_snapshot(ws)
    await ws.close()
    status, body, _ = await running.handshake_status(None, headers=dict(headers))
    assert_refusal(status, body, 401, "replayed_request")


async def test_wrong_receiver_is_401(start_hub):
    running = await start_hub()
    headers = running.signed(BOB, "GET", "/ws", receiver=CHARLIE.ss58_address)
    status, body, _ = await running.handshake_status(None, headers=headers)
    assert_refusal(status, body, 401, "wrong_receiver")
    unbound = http_auth.sign(BOB, method="GET", path="/ws")  # no receiver at all
    status, body, _ = await running.handshake_status(None, headers=unbound)
    assert_refusal(status, body, 401, "wrong_receiver")


async def test_not_registered_is_403(start_hub):
    running = await start_hub(registry=AllowListRegistry([BOB.ss58_address]))
    status, body, _ = await running.handshake_status(CHARLIE)
    assert_refusal(status, body, 403, "not_registered")
    ws = await running.connect(BOB)  # the listed hotkey still gets in
    welcome, _ = await welcome_and_snapshot(ws)
    assert welcome["protocol"] == "bt-ws/1"


@pytest.mark.parametrize("registry", [
    pytest.param(lambda: OpenRegistry(denied=[CHARLIE.ss58_address]), id="open"),
    pytest.param(lambda: AllowListRegistry([CHARLIE.ss58_address],
                                           denied=[CHARLIE.ss58_address]), id="allowlist"),
])
async def test_blacklisted_is_403(start_hub, registry):
    running = await start_hub(registry=registry())
    status, body, _ = await running.handshake_status(CHARLIE)
    assert_refusal(status, body, 403, "blacklisted")
    assert running.hub.stats.handshake_refusals[403] == 1


async def test_too_many_connections_is_429_with_retry_after(start_hub):
    running = await start_hub(max_connections=1)
    ws = await running.connect(BOB)
    await welcome_and_snapshot(ws)
    status, body, headers = await running.handshake_status(CHARLIE)
    assert_refusal(status, body, 429, "too_many_connections")
    assert int(headers["Retry-After"]) >= 1
    # The same hotkey may still replace its own connection at the limit.
    ws2 = await running.connect(BOB)
    welcome, _ = await welcome_and_snapshot(ws2)
    assert welcome["session_id"]


async def test_connect_flood_per_hotkey_is_429_with_retry_after(start_hub):
    running = await start_hub(connects_per_minute=6.0, connect_burst=2.0)
    for _ in range(2):
        ws = await running.connect(BOB)
        await welcome_and_snapshot(ws)
        await ws.close()
    status, body, headers = await running.handshake_status(BOB)
    assert_refusal(status, body, 429, "rate_limited")
    # 6 per minute: one token every 10 s.
    assert 1 <= int(headers["Retry-After"]) <= 10
    # Another hotkey from the same address is not affected by Bob's bucket.
    ws = await running.connect(CHARLIE)
    await welcome_and_snapshot(ws)


async def test_shutting_down_is_503_with_retry_after(start_hub):
    running = await start_hub(shutdown_retry_after_s=7.0)
    await running.hub.stop()  # the hub's graceful stop, while the listener still runs
    status, body, headers = await running.handshake_status(BOB)
    assert_refusal(status, body, 503, "shutting_down")
    assert headers["Retry-After"] == "7"


async def test_plain_get_without_upgrade_is_426(start_hub):
    running = await start_hub()
    status, body, _ = await running.request("GET", "/ws", key=BOB)
    assert_refusal(status, body, 426, "upgrade_required")
    assert running.hub.sessions == {}
    assert running.hub.stats.handshake_refusals[426] == 1


async def test_bad_since_query_is_400(start_hub):
    running = await start_hub()
    status, body, _ = await running.handshake_status(BOB, since="later")
    assert_refusal(status, body, 400, "malformed_request")


async def test_refused_upgrade_raises_in_a_websocket_client(start_hub):
    """A real WebSocket client sees the refusal as a handshake error with the status."""
    running = await start_hub(registry=AllowListRegistry([BOB.ss58_address]))
    path = running.ws_path()
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await running.session.ws_connect(running.url(path),
                                         headers=running.signed(CHARLIE, "GET", path))
    assert info.value.status == 403


async def test_refusals_repeat_the_error_code_in_a_header(start_hub):
    """WebSocket clients never see a refused upgrade's body; the code must be in a header."""
    running = await start_hub()
    status, body, headers = await running.handshake_status(
        miner_key("Bob"), headers=running.signed(miner_key("Bob"), "GET", "/ws",
                                                 receiver=miner_key("Carol").ss58_address))
    assert status == 401
    assert body["error"] == "wrong_receiver"
    assert headers["X-Bt-Error"] == "wrong_receiver"
