"""Replay protection and one connection per hotkey across the hubs of one validator.

Two real hubs (:class:`LocalHub`, each with its own SQLite store) sign as the same
validator and share a real Redis under a prefix of this test's own
(:func:`redis_prefix`), as ``bt-validator-stub serve --backplane redis://...`` does.
Miners are aiohttp WebSockets, raw sockets and the real SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bittensor import http_auth
from bittensor.keyfiles import Keypair
from redis.exceptions import ConnectionError as RedisConnectionError

from sdk.errors import ReplacedError
from sdk.models import Prediction
from server_stub.backplane.base import BackplaneUnavailable
from server_stub.backplane.connect import redis_client
from server_stub.backplane.presence import Presence, PresenceClaim, parse_claim
from server_stub.testing import LocalHub, brisk_config

from .kit.games import future_game, games_body
from .kit.hostile import raw_http, signed_upgrade
from .kit.keys import VALIDATOR, miner_key
from .kit.services import private_redis, redis_prefix
from .kit.waiting import eventually, within
from .kit.wire import prediction_data, receive_close, receive_type, welcome_and_snapshot

BOB = miner_key("Bob")


def hub_config(url: str | None, prefix: str | None, **overrides: Any) -> Any:
    return brisk_config(backplane_url=url, redis_prefix=prefix, connect_burst=1000.0,
                        connects_per_minute=6000.0, **overrides)


@pytest.fixture
async def hubs() -> AsyncIterator[tuple[LocalHub, LocalHub]]:
    """Hubs A and B of one validator, sharing Redis."""
    async with redis_prefix() as (url, prefix), contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(LocalHub(config=hub_config(url, prefix), feed=None))
        b = await stack.enter_async_context(LocalHub(config=hub_config(url, prefix), feed=None))
        yield a, b


def signed(key: Keypair, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    return http_auth.sign(key, method=method, path=path, body=body,
                          receiver_ss58=VALIDATOR.ss58_address)


async def connect(session: aiohttp.ClientSession, hub: LocalHub,
                  key: Keypair = BOB) -> aiohttp.ClientWebSocketResponse:
    """A signed WebSocket to ``hub``, its welcome and snapshot read."""
    ws = await session.ws_connect(f"{hub.http_url}/ws", headers=signed(key, "GET", "/ws"),
                                  autoping=True)
    await welcome_and_snapshot(ws)
    return ws


async def assert_answers(ws: aiohttp.ClientWebSocketResponse, stamp: int) -> None:
    """The socket is open and the hub behind it answers a heartbeat."""
    await ws.send_str(json.dumps({"type": "heartbeat", "data": {"time_ns": str(stamp)}}))
    for _ in range(50):
        frame = await receive_type(ws, "heartbeat")
        if frame["data"].get("echo_ns") == str(stamp):
            return
    raise AssertionError("no heartbeat echo")


def refused(response: Any, status: int, code: str) -> None:
    assert response.status == status, (response.status, response.body[:300])
    assert response.json()["error"] == code, response.body


# -- replay protection ---------------------------------------------------------------------


async def test_an_upgrade_admitted_by_one_hub_is_refused_as_replayed_by_the_other(hubs):
    a, b = hubs
    request = signed_upgrade(BOB)
    first = await raw_http(a.port, request)
    assert first.status == 101, first.body
    refused(await raw_http(b.port, request), 401, "replayed_request")
    refused(await raw_http(a.port, request), 401, "replayed_request")
    assert len(b.hub.sessions) == 0
    assert b.hub.stats.handshake_refusals[401] == 1
    health = b.hub.health()["shared_auth"]
    assert health["nonce_replays"] == 1
    assert health["nonce_failures"] == 0


async def test_concurrent_copies_of_one_upgrade_on_two_hubs_admit_exactly_one(hubs):
    a, b = hubs
    request = signed_upgrade(BOB)
    answers = await asyncio.gather(*(raw_http(hub.port, request)
                                     for _ in range(10) for hub in (a, b)))
    assert sorted(r.status for r in answers) == [101] + [401] * 19
    assert {r.json()["error"] for r in answers if r.status == 401} == {"replayed_request"}
    # the one admitted enters its hub's table once its presence claim is answered
    await eventually(lambda: a.hub.stats.connections_total + b.hub.stats.connections_total
                     == 1)


async def test_a_prediction_posted_to_one_hub_is_refused_as_replayed_by_the_other(hubs):
    a, b = hubs
    game = future_game("g1")
    body = games_body([game])
    admin_headers = signed(VALIDATOR, "POST", "/admin/games", body)
    async with aiohttp.ClientSession() as http:
        for hub in (a, b):  # each hub its own stream here (the game stream is not shared)
            async with http.post(f"{hub.http_url}/admin/games", data=body,
                                 headers=signed(VALIDATOR, "POST", "/admin/games", body)) as r:
                assert r.status == 200, await r.text()
        # the admin's signed request, replayed on the other hub
        async with http.post(f"{a.http_url}/admin/games", data=body,
                             headers=admin_headers) as r:
            assert r.status == 200
        async with http.post(f"{b.http_url}/admin/games", data=body,
                             headers=admin_headers) as r:
            assert (r.status, (await r.json())["error"]) == (401, "replayed_request")

        prediction = Prediction.for_game(game, 0, 1.0)
        payload = json.dumps(prediction_data(BOB, prediction)).encode()
        headers = {**signed(BOB, "POST", "/predictions", payload),
                   "Content-Type": "application/json"}
        async with http.post(f"{a.http_url}/predictions", data=payload,
                             headers=headers) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["status"] == "accepted"
        async with http.post(f"{b.http_url}/predictions", data=payload,
                             headers=headers) as r:
            assert r.status == 401
            assert (await r.json())["error"] == "replayed_request"
    assert b.hub.stats.predictions.get("accepted", 0) == 0


async def test_without_a_backplane_each_hub_remembers_only_its_own_nonces(tmp_path: Path):
    """Today's behaviour, kept when no backplane is configured (and the reason for one):
    the same headers get in at a second hub."""
    async with LocalHub(config=hub_config(None, None), feed=None) as a, \
            LocalHub(config=hub_config(None, None), feed=None) as b:
        request = signed_upgrade(BOB)
        assert (await raw_http(a.port, request)).status == 101
        assert (await raw_http(b.port, request)).status == 101
        assert a.hub.presence is None
        assert a.hub.admission.nonce_guard is None
        assert "shared_auth" not in a.hub.health()


async def test_a_claimed_nonce_expires_from_redis_after_the_freshness_window(hubs):
    a, _ = hubs
    request = signed_upgrade(BOB)
    assert (await raw_http(a.port, request)).status == 101
    guard = a.hub.admission.nonce_guard
    assert guard is not None
    keys = [key async for key in guard.client.scan_iter(match=f"{guard.prefix}:nonce:*")]
    assert len(keys) == 1
    assert BOB.ss58_address in keys[0].decode()
    ttl_ms = await guard.client.pttl(keys[0])
    window_ms = (a.config.auth_max_age_s + a.config.auth_allowed_skew_s) * 1000
    assert window_ms < ttl_ms <= guard.retention_ms, ttl_ms


# -- one connection per hotkey ---------------------------------------------------------------


async def test_a_miner_connecting_to_the_other_hub_closes_its_first_connection_with_4001(hubs):
    a, b = hubs
    async with aiohttp.ClientSession() as http:
        on_a = await connect(http, a)
        on_b = await connect(http, b)
        code, _ = await receive_close(on_a, timeout=5.0)
        assert code == 4001
        assert on_a.close_code == 4001
        await assert_answers(on_b, 1)
        assert BOB.ss58_address in b.hub.sessions
        await eventually(lambda: BOB.ss58_address not in a.hub.sessions)
        assert a.hub.stats.closes[4001] == 1
        assert b.hub.stats.closes[4001] == 0
        await on_b.close()


async def test_the_sdk_replaced_on_another_hub_stops_for_good(hubs, miner):
    a, b = hubs
    first = miner(a.url)
    await first.start()
    await first.wait_ready(10.0)
    second = miner(b.url)
    async with second:
        await eventually(lambda: first.error is not None, 10.0)
        assert isinstance(first.error, ReplacedError)
        assert first.error.close_code == 4001
        # no reconnect fight: the second stays connected, the first stays down
        await eventually(lambda: b.hub.stats.messages_in.get("heartbeat", 0) >= 3, 10.0)
        assert list(b.hub.sessions) == [BOB.ss58_address]
        assert len(a.hub.sessions) == 0
        assert a.hub.stats.connections_total == 1


class Reader:
    """Reads one socket until it closes, in a task of its own (never cancelled mid-read)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(message.data))

    @property
    def closed(self) -> bool:
        return self.task.done()

    async def echoes(self, stamp: int) -> None:
        await self.ws.send_str(json.dumps({"type": "heartbeat",
                                           "data": {"time_ns": str(stamp)}}))
        await eventually(lambda: any(f["type"] == "heartbeat"
                                     and f["data"].get("echo_ns") == str(stamp)
                                     for f in self.frames))


async def test_concurrent_connects_of_one_hotkey_on_two_hubs_leave_exactly_one(hubs):
    """Ten miners each connect to A and B at the same moment: per miner, exactly one
    socket is closed with 4001 (possibly right after the 101, before any welcome) and
    the other is welcomed, stays open and is served."""
    a, b = hubs
    keys = [miner_key(f"Racer{i}") for i in range(10)]

    async def upgrade(http: aiohttp.ClientSession, hub: LocalHub, key: Keypair) -> Reader:
        return Reader(await http.ws_connect(f"{hub.http_url}/ws",
                                            headers=signed(key, "GET", "/ws")))

    async with aiohttp.ClientSession() as http:
        pairs = await asyncio.gather(*(asyncio.gather(upgrade(http, a, key),
                                                      upgrade(http, b, key))
                                       for key in keys))
        readers = [reader for pair in pairs for reader in pair]
        await eventually(lambda: sum(r.closed for r in readers) >= len(keys), 10.0)
        for key, pair in zip(keys, pairs, strict=True):
            closed = [r for r in pair if r.closed]
            assert len(closed) == 1, (key.ss58_address, [r.ws.close_code for r in pair])
            assert closed[0].ws.close_code == 4001
            survivor = next(r for r in pair if not r.closed)
            await survivor.echoes(7)
            assert survivor.frames[0]["type"] == "welcome"
            live = [hub for hub in (a, b) if key.ss58_address in hub.hub.sessions]
            assert len(live) == 1, key.ss58_address
        assert sum(r.closed for r in readers) == len(keys)  # still one each
        for reader in readers:
            await reader.ws.close()
            await within(reader.task, 5.0, "reader ended")


async def test_many_miners_spread_over_two_hubs_all_stay_connected(hubs):
    """300 different hotkeys connecting at once, half to each hub (as after a restart):
    each is admitted (the Redis pool queues the burst rather than refusing it with
    503) and presence closes nobody (a claim is about its own hotkey only)."""
    a, b = hubs
    count = 300
    keys = [miner_key(f"Spread{i}") for i in range(count)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets = await asyncio.gather(*(connect(http, (a, b)[i % 2], key)
                                         for i, key in enumerate(keys)))
        await eventually(lambda: len(a.hub.sessions) + len(b.hub.sessions) == count)
        await asyncio.gather(*(assert_answers(ws, 9) for ws in sockets[:4]))
        assert a.hub.stats.closes[4001] + b.hub.stats.closes[4001] == 0
        await asyncio.gather(*(ws.close() for ws in sockets))


def test_presence_messages_that_are_not_claims_are_ignored():
    assert parse_claim(b"hub1 5Hot 1732900000000001") == PresenceClaim(
        hotkey="5Hot", generation=1732900000000001, hub_id="hub1")
    for junk in (b"", b"hub1 5Hot", b"hub1 5Hot -3", b"hub1 5Hot 1e15", b"a b c d",
                 "hub1 5Hot ²".encode()):
        assert parse_claim(junk) is None, junk


# -- Redis lost and back -----------------------------------------------------------------------


async def test_redis_down_refuses_new_callers_with_503_then_both_features_come_back(tmp_path):
    """Nonces fail closed (503 + Retry-After: admitting would let one set of headers in
    at every hub); connections already open stay open. Redis restarted *empty*: new
    callers are admitted again, and a newer connection still closes the older one on
    the other hub (generations come from Redis' clock, not a counter that restarted)."""
    async with private_redis(tmp_path) as server:
        config = hub_config(server.url, "ha-auth")
        async with LocalHub(config=config, feed=None) as a, \
                LocalHub(config=config, feed=None) as b, aiohttp.ClientSession() as http:
            on_a = await connect(http, a)
            await server.stop()

            refusal = await raw_http(b.port, signed_upgrade(BOB))
            refused(refusal, 503, "shutting_down")
            assert refusal.headers["retry-after"] == "2"
            assert "backplane" in refusal.json()["detail"]
            payload = b"{}"
            async with http.post(f"{b.http_url}/predictions", data=payload,
                                 headers=signed(BOB, "POST", "/predictions", payload)) as r:
                assert r.status == 503
                assert r.headers["Retry-After"] == "2"
            await assert_answers(on_a, 2)  # an open connection needs no Redis
            # the validator's own game post falls back to the local nonce check: it is
            # admitted and meets the stream's 503 (games stored, "post them again")
            body = games_body([future_game("g9")])
            async with http.post(f"{b.http_url}/admin/games", data=body,
                                 headers=signed(VALIDATOR, "POST", "/admin/games", body)) as r:
                assert r.status == 503
                assert (await r.json())["error"] == "internal_error"
            assert b.hub.health()["shared_auth"]["nonce_failures"] == 3
            await eventually(lambda: not b.hub.health()["shared_auth"]["presence_subscribed"])

            await server.start()
            await within(eventually(lambda: a.hub.presence is not None
                                    and a.hub.presence.subscribed, 15.0), 20.0,
                         "hub A subscribed again")
            on_b = await connect(http, b)
            code, _ = await receive_close(on_a, timeout=10.0)
            assert code == 4001
            await assert_answers(on_b, 3)
            await on_b.close()


async def test_a_hub_does_not_start_when_its_backplane_is_unreachable(tmp_path):
    async with private_redis(tmp_path) as server:
        url = server.url  # nothing listens there once it is stopped
    hub = LocalHub(config=hub_config(url, "nowhere"), feed=None)
    with pytest.raises((BackplaneUnavailable, RedisConnectionError)):
        await hub.start()
    await hub.stop()
    # presence on its own says so too (the stream's start happens to fail first)
    client = redis_client(url)
    presence = Presence(client, "nowhere")
    with pytest.raises(BackplaneUnavailable):
        await presence.start(lambda claim: None, list)
    assert not presence.subscribed
    await client.aclose()


async def test_presence_survives_a_lost_subscription_by_reconciling(hubs):
    """Claims published while a hub's subscription was down are not lost: on
    resubscribing it compares its sessions with the stored generations."""
    a, b = hubs
    presence = a.hub.presence
    assert presence is not None
    async with aiohttp.ClientSession() as http:
        on_a = await connect(http, a)
        await presence.stop()  # A's subscription is gone: it hears nothing now
        on_b = await connect(http, b)
        await assert_answers(on_a, 4)  # A missed the claim
        await presence.start(a.hub._on_presence, lambda: list(a.hub.sessions))
        code, _ = await receive_close(on_a, timeout=5.0)
        assert code == 4001
        await assert_answers(on_b, 5)
        await on_b.close()
