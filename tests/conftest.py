"""Shared fixtures: a real hub on 127.0.0.1 with a real SQLite store and real keys."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from bittensor import http_auth
from bittensor.keyfiles import Keypair
from yarl import URL

from sdk.models import Game
from server_stub import HUB_KEY, Hub, HubConfig, create_app

VALIDATOR = Keypair.create_from_uri("//Alice")


def miner_key(name: str) -> Keypair:
    return Keypair.create_from_uri(f"//{name}")


def future_game(game_id: str = "g1", *, sport: str = "soccer", league: str = "EPL",
                start_in: timedelta = timedelta(hours=2), **overrides: Any) -> Game:
    values: dict[str, Any] = dict(
        game_id=game_id, team_a=f"{game_id}-home", team_b=f"{game_id}-away", sport=sport,
        league=league, event_start_date=datetime.now(UTC) + start_in, team_a_odds=2.1,
        team_b_odds=3.4, tie_odds=3.3 if sport == "soccer" else None,
        can_tie=sport == "soccer")
    values.update(overrides)
    return Game(**values)


@dataclass
class RunningHub:
    """A hub served on loopback, with helpers to talk to it like a miner would."""

    server: TestServer
    session: aiohttp.ClientSession
    store_path: Path
    config: HubConfig
    sockets: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)

    @property
    def hub(self) -> Hub:
        return self.server.app[HUB_KEY]

    @property
    def validator_hotkey(self) -> str:
        return VALIDATOR.ss58_address

    def url(self, path: str) -> URL:
        return URL(f"http://127.0.0.1:{self.server.port}{path}", encoded=True)

    def signed(self, key: Keypair, method: str, path: str, body: bytes = b"",
               receiver: str | None = None) -> dict[str, str]:
        return http_auth.sign(key, method=method, path=path, body=body,
                              receiver_ss58=receiver or self.validator_hotkey)

    def ws_path(self, **query: Any) -> str:
        params = {k: v for k, v in query.items() if v is not None}
        return "/ws" + (f"?{urlencode(params)}" if params else "")

    async def connect(self, key: Keypair, *, headers: dict[str, str] | None = None,
                      **query: Any) -> aiohttp.ClientWebSocketResponse:
        path = self.ws_path(**query)
        ws = await self.session.ws_connect(self.url(path),
                                           headers=headers or self.signed(key, "GET", path),
                                           autoping=True, heartbeat=None)
        self.sockets.append(ws)
        return ws

    async def handshake_status(self, key: Keypair | None, *,
                               headers: dict[str, str] | None = None,
                               **query: Any) -> tuple[int, dict[str, Any], Any]:
        """Attempt an upgrade; return (status, JSON body, response headers) of a refusal."""
        path = self.ws_path(**query)
        if headers is None and key is not None:
            headers = self.signed(key, "GET", path)
        headers = dict(headers or {})
        headers.update({"Upgrade": "websocket", "Connection": "Upgrade",
                        "Sec-WebSocket-Version": "13",
                        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        async with self.session.get(self.url(path), headers=headers) as response:
            text = await response.text()
            try:
                body = json.loads(text)
            except ValueError:
                body = {"raw": text}
            return response.status, body, response.headers

    async def post_games(self, games: list[Game], key: Keypair = VALIDATOR) -> dict[str, Any]:
        body = json.dumps({"games": [g.model_dump(mode="json") for g in games]}).encode()
        headers = self.signed(key, "POST", "/admin/games", body)
        headers["Content-Type"] = "application/json"
        async with self.session.post(self.url("/admin/games"), data=body,
                                     headers=headers) as response:
            assert response.status == 200, await response.text()
            return await response.json()


async def receive_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict:
    message = await asyncio.wait_for(ws.receive(), timeout)
    assert message.type is aiohttp.WSMsgType.TEXT, f"expected text, got {message!r}"
    return json.loads(message.data)


async def receive_type(ws: aiohttp.ClientWebSocketResponse, frame_type: str,
                       timeout: float = 5.0, limit: int = 200) -> dict:
    """Next frame of ``frame_type``, skipping heartbeats and others (bounded)."""
    for _ in range(limit):
        frame = await receive_json(ws, timeout)
        if frame["type"] == frame_type:
            return frame
    raise AssertionError(f"no {frame_type} frame within {limit} frames")


async def welcome_and_snapshot(ws: aiohttp.ClientWebSocketResponse) -> tuple[dict, dict]:
    welcome = await receive_json(ws)
    assert welcome["type"] == "welcome"
    snapshot = await receive_json(ws)
    assert snapshot["type"] == "game_update"
    return welcome["data"], snapshot["data"]


HubFactory = Callable[..., "asyncio.Future[RunningHub]"]


@pytest.fixture
async def start_hub(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start hubs on loopback: ``await start_hub(config_overrides..., store_path=...)``."""
    running: list[RunningHub] = []
    session = aiohttp.ClientSession()

    async def start(*, store_path: Path | None = None, registry: Any = None, feed: Any = None,
                    clock: Any = None, **overrides: Any) -> RunningHub:
        config = HubConfig(**{"heartbeat_interval_s": 5.0, **overrides})
        path = store_path or tmp_path / "hub.sqlite3"
        app = create_app(config, signer=VALIDATOR, store_path=path, registry=registry,
                         feed=feed, clock=clock)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        hub = RunningHub(server=server, session=session, store_path=path, config=config)
        running.append(hub)
        return hub

    yield start
    for hub in running:
        for ws in hub.sockets:
            await ws.close()
        await hub.server.close()
    await session.close()


async def stop_hub(running: RunningHub) -> None:
    await running.server.close()
