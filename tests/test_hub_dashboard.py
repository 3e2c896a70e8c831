"""The operator's dashboard over real sockets: ``GET /dashboard/state`` shows the connected
SDK miners (UIDs, RTT, today's accepted and rejected predictions), the games and the
counters; ``--dashboard off|local|public`` decides who gets the page."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from sdk.frames import Heartbeat
from sdk.models import Prediction
from server_stub import AllowListRegistry
from server_stub.activity import PredictionActivity
from server_stub.config import DashboardAccess, HubConfig
from server_stub.dashboard import access_allowed
from server_stub.testing import LocalHub

from .kit.games import future_game
from .kit.keys import VALIDATOR, miner_key
from .kit.waiting import eventually
from .kit.wire import receive_type, send_prediction, welcome_and_snapshot

BOB, CHARLIE, DAVE = miner_key("Bob"), miner_key("Charlie"), miner_key("Dave")
UIDS = {BOB.ss58_address: 11, CHARLIE.ss58_address: 12, DAVE.ss58_address: 13}


async def get(url: str) -> tuple[int, Any, Any]:
    """(status, JSON body or text, headers) of a plain GET."""
    async with aiohttp.ClientSession() as session, session.get(
            url, timeout=aiohttp.ClientTimeout(total=10)) as response:
        if response.content_type == "application/json":
            return response.status, await response.json(), response.headers
        return response.status, await response.text(), response.headers


async def state_of(http_url: str) -> dict[str, Any]:
    status, body, headers = await get(f"{http_url}/dashboard/state")
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    return body


async def state_when(http_url: str, predicate: Callable[[dict[str, Any]], bool],
                     timeout: float) -> dict[str, Any]:
    """The first state (polled like the page does) for which ``predicate`` holds."""
    async with asyncio.timeout(timeout):
        while True:
            state = await state_of(http_url)
            if predicate(state):
                return state
            await asyncio.sleep(0.05)


async def keep_alive(ws: aiohttp.ClientWebSocketResponse) -> None:
    """A hand-driven miner's heartbeats (so the hub does not drop it as silent) and
    reads (aiohttp answers the hub's pings while something reads)."""

    async def read() -> None:
        async for _ in ws:
            pass

    reader = asyncio.create_task(read())
    try:
        while True:
            await ws.send_str(Heartbeat(time_ns=time.time_ns()).encode())
            await asyncio.sleep(0.1)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


# -- the state document ---------------------------------------------------------------


async def test_state_shows_each_connected_miner_with_uid_rtt_and_todays_predictions(
        start_hub, miner):
    running = await start_hub(registry=AllowListRegistry(UIDS), heartbeat_interval_s=0.3)
    games = [future_game("g1"), future_game("g2", sport="basketball", league="NBA")]
    await running.post_games(games)
    bob, charlie = miner(running.server.url, BOB), miner(running.server.url, CHARLIE)
    for conn in (bob, charlie):
        await conn.start()
        await conn.wait_ready(10)
    receipt = await bob.submit(Prediction.for_game(bob.games["g1"], 0, 2.0), timeout=10)
    assert receipt.status == "accepted"
    # Dave speaks the wire by hand: the SDK would refuse an unknown game before sending
    dave = await running.connect(DAVE)
    await welcome_and_snapshot(dave)
    await send_prediction(dave, DAVE, Prediction.for_game(
        future_game("no-such-game"), 1, 1.0))
    rejected = await receive_type(dave, "confirmation")
    assert rejected["data"]["code"] == "unknown_game"
    alive = asyncio.create_task(keep_alive(dave))  # as the SDK miners do by themselves
    try:
        # the RTT comes with the first pong after a heartbeat (every 0.3 s here)
        state = await state_when(running.server.http_url, lambda state: all(
            m["rtt_ms"] is not None for m in state["miners"]["shown"]), timeout=10)
    finally:
        alive.cancel()
        await asyncio.gather(alive, return_exceptions=True)
    assert state["miners"]["total"] == 3
    rows = {row["hotkey"]: row for row in state["miners"]["shown"]}
    assert set(rows) == set(UIDS)
    assert [row["uid"] for row in state["miners"]["shown"]] == [11, 12, 13]  # by UID
    assert (rows[BOB.ss58_address]["accepted"], rows[BOB.ss58_address]["rejected"]) == (1, 0)
    assert (rows[CHARLIE.ss58_address]["accepted"],
            rows[CHARLIE.ss58_address]["rejected"]) == (0, 0)
    assert (rows[DAVE.ss58_address]["accepted"], rows[DAVE.ss58_address]["rejected"]) == (0, 1)
    for row in rows.values():
        assert row["address"] == "127.0.0.1"
        assert 0 < row["rtt_ms"] < 10_000
        assert row["since_ms"] <= row["last_seen_ms"] <= state["now_ms"]
    assert state["rejections"] == {"unknown_game": 1}
    assert state["predictions"]["by_status"] == {"accepted": 1, "rejected": 1}
    assert state["predictions"]["miners_today"] == 2
    assert sum(row[1] for row in state["predictions"]["per_minute"][-2:]) == 2
    assert len(state["predictions"]["per_minute"]) == 60
    assert state["games"]["total"] == 2
    shown = {game["id"]: game for game in state["games"]["shown"]}
    assert shown["g1"]["odds"] == [2.1, 3.4, 3.3]
    assert shown["g2"]["odds"] == [2.1, 3.4, None]
    assert shown["g2"]["league"] == "NBA"
    assert shown["g1"]["kickoff_ms"] == int(games[0].event_start_date.timestamp() * 1000)
    hub = running.hub
    assert state["stream"] == {"epoch": hub.stream.epoch, "seq": hub.stream.seq, "games": 2,
                               "broadcasts": hub.stats.broadcasts}
    assert state["store"]["commits"] >= 1
    assert state["connections"]["active"] == 3
    assert state["hub"]["validator_hotkey"] == VALIDATOR.ss58_address


async def test_a_miner_that_leaves_leaves_the_state_but_its_counts_stay_for_today(
        start_hub, miner):
    running = await start_hub(registry=AllowListRegistry(UIDS))
    await running.post_games([future_game("g1")])
    bob = miner(running.server.url, BOB)
    await bob.start()
    await bob.wait_ready(10)
    await bob.submit(Prediction.for_game(bob.games["g1"], 1, 1.0), timeout=10)
    assert (await state_of(running.server.http_url))["miners"]["total"] == 1
    await bob.close()
    await eventually(lambda: not running.hub.sessions, timeout=5)
    state = await state_of(running.server.http_url)
    assert state["miners"] == {"total": 0, "shown": []}
    assert state["predictions"]["miners_today"] == 1
    back = miner(running.server.url, BOB)
    await back.start()
    await back.wait_ready(10)
    state = await state_of(running.server.http_url)
    assert [(m["hotkey"], m["accepted"]) for m in state["miners"]["shown"]] == [
        (BOB.ss58_address, 1)]


def test_activity_counts_per_utc_day_and_per_minute_in_a_ring():
    now = [datetime(2026, 3, 1, 23, 59, 30, tzinfo=UTC).timestamp()]
    activity = PredictionActivity(minutes=3, now=lambda: now[0])
    activity.record("bob", "accepted", "ok")
    activity.record("bob", "rejected", "odds_mismatch")
    activity.record("bob", "duplicate", "ok")
    today = activity.today("bob")
    assert today is not None
    assert (today.accepted, today.rejected, today.duplicate) == (1, 1, 1)
    assert activity.per_minute()[-1][1:] == (3, 1)
    now[0] += 60  # past midnight UTC: a new day for every miner
    assert activity.today("bob") is None
    assert activity.miners_today == 0
    activity.record("bob", "accepted", "ok")
    today = activity.today("bob")
    assert today is not None
    assert (today.accepted, today.rejected) == (1, 0)
    assert [row[1] for row in activity.per_minute()] == [0, 3, 1]
    now[0] += 3 * 60  # the ring wrapped: stale buckets read as zero
    assert [row[1] for row in activity.per_minute()] == [0, 0, 0]
    assert activity.rejections == {"odds_mismatch": 1}


# -- who may see it -----------------------------------------------------------------------

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))


@pytest.mark.parametrize(("access", "peer", "allowed"), [
    (DashboardAccess.LOCAL, "127.0.0.1", True),
    (DashboardAccess.LOCAL, "127.0.0.2", True),  # all of 127/8 is loopback
    (DashboardAccess.LOCAL, "::1", True),
    (DashboardAccess.LOCAL, "::ffff:127.0.0.1", True),
    (DashboardAccess.LOCAL, "10.1.2.3", True),  # a trusted proxy
    (DashboardAccess.LOCAL, "2001:db8::7", True),
    (DashboardAccess.LOCAL, "192.0.2.7", False),
    (DashboardAccess.LOCAL, "::ffff:192.0.2.7", False),
    (DashboardAccess.LOCAL, "2001:db9::1", False),
    (DashboardAccess.LOCAL, None, False),
    (DashboardAccess.LOCAL, "", False),
    (DashboardAccess.LOCAL, "not-an-address", False),
    (DashboardAccess.PUBLIC, "192.0.2.7", True),
    (DashboardAccess.PUBLIC, None, True),
    (DashboardAccess.OFF, "127.0.0.1", False),
])
def test_who_may_see_the_dashboard_depends_on_the_tcp_peer_alone(access, peer, allowed):
    assert access_allowed(access, peer, TRUSTED) is allowed


def test_the_dashboard_is_local_by_default():
    assert HubConfig().dashboard is DashboardAccess.LOCAL


async def test_by_default_a_loopback_browser_gets_the_page_and_its_script(start_hub):
    running = await start_hub()
    base = running.server.http_url
    status, page, headers = await get(base + "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert VALIDATOR.ss58_address in page
    assert '<script src="/dashboard/dashboard.js"' in page
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    status, script, headers = await get(base + "/dashboard/dashboard.js")
    assert status == 200
    assert "/dashboard/state" in script
    assert headers["Content-Type"].startswith("text/javascript")
    status, _, headers = await get(base + "/dashboard/dashboard.css")
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")


async def test_dashboard_off_serves_nothing_but_the_hub_goes_on(start_hub):
    running = await start_hub(dashboard="off")
    base = running.server.http_url
    for path in ("/", "/dashboard/state", "/dashboard/dashboard.js"):
        status, _, _ = await get(base + path)
        assert status == 404, path
    status, health, _ = await get(base + "/ws/health")
    assert status == 200
    assert health["status"] == "ok"


def non_loopback_address() -> str | None:
    """An address of this machine outside 127/8 (the source a UDP route would use)."""
    for target in ("192.0.2.1", "10.255.255.255", "2001:db8::1"):
        family = socket.AF_INET6 if ":" in target else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect((target, 9))
            except OSError:
                continue
            address = probe.getsockname()[0]
        if not ipaddress.ip_address(address).is_loopback:
            return str(address)
    return None


@pytest.fixture
def outside_address() -> str:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no address outside loopback to connect from")
    return address


async def hub_on_all_interfaces(**config: Any) -> LocalHub:
    host = "::" if config.pop("ipv6", False) else "0.0.0.0"
    hub = LocalHub(config=HubConfig(**config), signer=VALIDATOR, feed=None, host=host)
    await hub.start()
    return hub


def url_for(address: str, port: int, path: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}{path}"


async def test_local_refuses_a_peer_outside_loopback_with_forbidden(outside_address):
    hub = await hub_on_all_interfaces(ipv6=":" in outside_address)
    try:
        for path in ("/", "/dashboard/state", "/dashboard/dashboard.js"):
            status, body, _ = await get(url_for(outside_address, hub.port, path))
            assert status == 403, path
            assert body["error"] == "forbidden"
            assert "--dashboard public" in body["detail"]
        status, _, _ = await get(url_for("127.0.0.1" if "." in outside_address else "::1",
                                         hub.port, "/dashboard/state"))
        assert status == 200
        # a header naming a loopback client changes nothing: only the TCP peer counts
        async with aiohttp.ClientSession() as session, session.get(
                url_for(outside_address, hub.port, "/"),
                headers={"Forwarded": "for=127.0.0.1", "X-Forwarded-For": "127.0.0.1"}
        ) as response:
            assert response.status == 403
    finally:
        await hub.stop()


async def test_local_serves_a_trusted_proxy_and_public_serves_anyone(outside_address):
    network = ipaddress.ip_network(outside_address)
    for config in ({"trusted_proxies": (network,)}, {"dashboard": "public"}):
        hub = await hub_on_all_interfaces(ipv6=":" in outside_address, **config)
        try:
            status, body, _ = await get(url_for(outside_address, hub.port, "/dashboard/state"))
            assert status == 200, (config, body)
            assert body["miners"]["total"] == 0
        finally:
            await hub.stop()
