"""The fault-injecting proxy itself: it must forward faithfully when told nothing, and
do exactly the fault it is told to (the client tests rely on it)."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from .kit.games import future_game, games_body
from .kit.keys import VALIDATOR, miner_key
from .kit.waiting import eventually

BOB = miner_key("Bob")


async def get(session: aiohttp.ClientSession, url: str, **kwargs) -> tuple[int, str]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=5), **kwargs) as response:
        return response.status, await response.text()


async def test_plain_http_keeps_flowing_on_one_link_while_upgrades_get_426(start_hub,
                                                                          fault_proxy):
    running = await start_hub()
    proxy = await fault_proxy(running)
    proxy.refuse_upgrades(True)
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            status, _ = await get(session, proxy.url + "/ws/health")
            assert status == 200
        assert proxy.accepted == 1  # keep-alive: heads are parsed on a reused link
        path = "/ws"
        headers = running.signed(BOB, "GET", path)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(proxy.url + path, headers=headers)
        assert refused.value.status == 426
        # a POST with a body (Content-Length framing), then more requests
        body = games_body([future_game("p1")])
        headers = {**running.signed(VALIDATOR, "POST", "/admin/games", body),
                   "Content-Type": "application/json"}
        async with session.post(proxy.url + "/admin/games", data=body,
                                headers=headers) as response:
            assert response.status == 200, await response.text()
        status, _ = await get(session, proxy.url + "/ws/health")
        assert status == 200
    assert proxy.refused == 1
    assert len(proxy.upgrade_requests) == 1
    assert "p1" in running.hub.stream.games
    assert running.hub.stats.connections_total == 0  # the hub never saw the upgrade


async def test_a_refused_upgrade_leaves_the_link_usable_and_allowed_ones_pass(start_hub,
                                                                             fault_proxy):
    running = await start_hub(connects_per_minute=30.0, connect_burst=1.0)
    proxy = await fault_proxy(running)
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(proxy.url + "/ws",
                                      headers=running.signed(BOB, "GET", "/ws"))
        welcome = await asyncio.wait_for(ws.receive_json(), 5.0)
        assert welcome["type"] == "welcome"
        await ws.close()
        for _ in range(2):  # connect limit: the hub answers 429 (a plain HTTP answer)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(proxy.url + "/ws",
                                         headers=running.signed(BOB, "GET", "/ws"))
            assert refused.value.status == 429
        status, _ = await get(session, proxy.url + "/ws/health")
        assert status == 200
    assert len(proxy.upgrade_requests) == 3
    assert proxy.refused == 0


async def test_cut_aborts_links_and_stall_holds_bytes_until_resume(start_hub, fault_proxy):
    running = await start_hub()
    proxy = await fault_proxy(running)
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(proxy.url + "/ws",
                                      headers=running.signed(BOB, "GET", "/ws"))
        assert (await asyncio.wait_for(ws.receive_json(), 5.0))["type"] == "welcome"
        assert proxy.links == 1
        assert proxy.cut() == 1
        assert proxy.cuts == 1
        assert proxy.links == 0
        message = await asyncio.wait_for(ws.receive(), 5.0)
        while message.type is aiohttp.WSMsgType.TEXT:  # the snapshot may be in flight
            message = await asyncio.wait_for(ws.receive(), 5.0)
        assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR,
                                aiohttp.WSMsgType.CLOSE)
        assert proxy.cut() == 0

        proxy.stall()
        request = asyncio.create_task(get(session, proxy.url + "/ws/health"))
        done, _ = await asyncio.wait({request}, timeout=0.3)
        assert not done, "nothing may pass a stalled proxy"
        proxy.resume()
        assert (await asyncio.wait_for(request, 5.0))[0] == 200

        proxy.delay(0.2)
        started = time.monotonic()
        assert (await get(session, proxy.url + "/ws/health"))[0] == 200
        assert time.monotonic() - started >= 0.4  # request and answer each held 0.2 s
        proxy.delay(0)


async def test_close_cancels_everything_and_retarget_moves_new_links(start_hub, fault_proxy):
    first = await start_hub()
    second = await start_hub(store_path=first.store_path.with_name("second.sqlite3"))
    proxy = await fault_proxy(first)
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(proxy.url + "/ws",
                                      headers=first.signed(BOB, "GET", "/ws"))
        assert (await asyncio.wait_for(ws.receive_json(), 5.0))["type"] == "welcome"
        proxy.retarget(second.server.port)
        async with aiohttp.ClientSession() as fresh:  # a new link goes to the new hub
            _, text = await get(fresh, proxy.url + "/ws/health")
        health = json.loads(text)
        assert health["connections"] == 0
        assert health["epoch"] == second.hub.stream.epoch
        assert first.hub.stats.connections_total == 1  # the old link stayed where it was
        proxy.stall()
        stalled = asyncio.create_task(get(session, proxy.url + "/ws/health"))
        await eventually(lambda: proxy.accepted >= 3, 5.0)
        await proxy.close()
        assert proxy.links == 0
        assert not [t for t in asyncio.all_tasks()
                    if t.get_name().startswith("proxy-") and not t.done()]
        await asyncio.gather(stalled, return_exceptions=True)
        await ws.close()
