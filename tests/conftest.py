"""Shared fixtures: a real hub on 127.0.0.1 with a real SQLite store and real keys."""

from __future__ import annotations

import asyncio
import dataclasses
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

from sdk.models import Game, Prediction
from sdk.options import ConnectionOptions
from sdk.signing import sign_prediction
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
                      compress: int = 15, **query: Any) -> aiohttp.ClientWebSocketResponse:
        """Open a btauth/1-signed WebSocket (``compress=0`` declines permessage-deflate)."""
        path = self.ws_path(**query)
        ws = await self.session.ws_connect(self.url(path),
                                           headers=headers or self.signed(key, "GET", path),
                                           autoping=True, heartbeat=None, compress=compress)
        self.sockets.append(ws)
        return ws

    async def request(self, method: str, path: str, *, key: Keypair | None = None,
                      body: bytes = b"", headers: dict[str, str] | None = None,
                      timeout: float = 10.0) -> tuple[int, Any, Any]:
        """A plain HTTP call (signed by ``key`` unless ``headers`` are given); returns
        (status, JSON body or {"raw": text}, response headers)."""
        if headers is None:
            headers = self.signed(key, method, path, body) if key is not None else {}
        headers = dict(headers)
        if body:
            headers.setdefault("Content-Type", "application/json")
        async with self.session.request(method, self.url(path), data=body or None,
                                        headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout)
                                        ) as response:
            text = await response.text()
            try:
                payload = json.loads(text)
            except ValueError:
                payload = {"raw": text}
            return response.status, payload, response.headers

    async def health(self) -> dict[str, Any]:
        status, body, _ = await self.request("GET", "/ws/health")
        assert status == 200, body
        return body

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


def games_body(games: list[Game]) -> bytes:
    return json.dumps({"games": [g.model_dump(mode="json") for g in games]}).encode()


def prediction_data(key: Keypair | None, prediction: Prediction | dict[str, Any],
                    ) -> dict[str, Any]:
    """The ``data`` of a prediction frame, signed by ``key`` (unsigned when None)."""
    wire = prediction.wire() if isinstance(prediction, Prediction) else prediction
    data: dict[str, Any] = {"prediction": wire}
    if key is not None:
        data["signature"] = sign_prediction(key, wire)
    return data


async def send_frame(ws: aiohttp.ClientWebSocketResponse, frame_type: str,
                     data: dict[str, Any]) -> None:
    await ws.send_str(json.dumps({"type": frame_type, "data": data}))


async def send_prediction(ws: aiohttp.ClientWebSocketResponse, key: Keypair | None,
                          prediction: Prediction | dict[str, Any]) -> None:
    await send_frame(ws, "prediction", prediction_data(key, prediction))


async def receive_close(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0,
                        limit: int = 100_000) -> tuple[int | None, list[dict]]:
    """Read until the hub closes the socket (bounded); returns (close code, frames
    read before the close)."""
    frames: list[dict] = []

    async def read() -> int | None:
        for _ in range(limit):
            message = await ws.receive()
            if message.type is aiohttp.WSMsgType.TEXT:
                frames.append(json.loads(message.data))
                continue
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return ws.close_code
        raise AssertionError(f"socket still open after {limit} frames")

    return await asyncio.wait_for(read(), timeout), frames


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0,
                     interval: float = 0.01) -> None:
    """Await until ``predicate()`` is truthy (bounded)."""

    async def poll() -> None:
        while True:
            if predicate():
                return
            await asyncio.sleep(interval)

    await asyncio.wait_for(poll(), timeout)


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


async def stop_hub(running: RunningHub, timeout: float = 15.0) -> list[int | None]:
    """Gracefully stop a hub while its open client sockets keep reading, as real miners
    do (an unread socket cannot answer the close handshake, which then waits for
    ``close_timeout_s``). Returns the close code each open socket saw."""
    open_sockets = [ws for ws in running.sockets if not ws.closed]
    readers = [asyncio.create_task(receive_close(ws, timeout=timeout)) for ws in open_sockets]
    try:
        await asyncio.wait_for(running.server.close(), timeout)
        results = await asyncio.gather(*readers)
    finally:
        for reader in readers:
            reader.cancel()
    return [code for code, _ in results]


# -- client tests: a fault-injecting proxy in front of the hub, and miner connections ----


@pytest.fixture
async def fault_proxy() -> AsyncIterator[Callable[..., Any]]:
    """``await fault_proxy(running_hub)``: a :class:`tests.faultproxy.FaultProxy` on its
    own loopback port forwarding to the hub (closed after the test)."""
    from .faultproxy import FaultProxy

    proxies: list[FaultProxy] = []

    async def make(target: RunningHub | int, **options: Any) -> FaultProxy:
        port = target if isinstance(target, int) else target.server.port
        assert port is not None
        proxy = await FaultProxy(port, **options).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.close()


FAST_CLIENT = ConnectionOptions(
    backoff_base=0.02, backoff_cap=0.25, handshake_timeout=2.0,
    heartbeat_interval_s=0.5, fallback_after=3, ws_probe_interval=0.3,
    long_poll_timeout=1.0, cutoff_margin_s=0.0, ready_timeout=10.0)
"""ValidatorConnection options that keep client tests fast."""
_OPTION_NAMES = frozenset(option.name for option in dataclasses.fields(ConnectionOptions))


@pytest.fixture
async def miner(start_hub: Any, fault_proxy: Any) -> AsyncIterator[Callable[..., Any]]:
    """``miner(url, key=Bob, **overrides)``: a (not yet started) ValidatorConnection with
    fast test timings (:data:`FAST_CLIENT`, an in-memory outbox), closed after the test
    (before the hub and the proxy stop). ``overrides`` may name ConnectionOptions fields
    (they replace FAST_CLIENT's) or other constructor arguments."""
    from sdk.connection import ValidatorConnection

    connections: list[ValidatorConnection] = []

    def make(url: Any, key: Keypair | None = None, **overrides: Any) -> ValidatorConnection:
        target = url if isinstance(url, str) else url.url  # a FaultProxy
        tuning = {name: overrides.pop(name) for name in _OPTION_NAMES & overrides.keys()}
        conn = ValidatorConnection(target, key or miner_key("Bob"), VALIDATOR.ss58_address,
                                   **{"outbox": ":memory:", **overrides},
                                   options=dataclasses.replace(FAST_CLIENT, **tuning))
        connections.append(conn)
        return conn

    yield make
    for conn in connections:
        await asyncio.wait_for(conn.close(), 10.0)


@pytest.fixture
async def raw_sockets_aborted(start_hub: Any) -> AsyncIterator[None]:
    """Set up after (so torn down before) the hub: abort every raw socket
    (:class:`tests.hostile.RawWS`) the test opened."""
    from .hostile import RawWS

    yield
    RawWS.abort_all()


@pytest.fixture
async def bystanders(start_hub: Any) -> AsyncIterator[Callable[..., Any]]:
    """``await bystanders(running, key)``: a started :class:`tests.hostile.Bystander`
    (a well-behaved miner that must miss nothing), stopped at teardown before the hub."""
    from .hostile import Bystander

    made: list[Any] = []

    async def make(running: RunningHub, key: Keypair, **options: Any) -> Any:
        bystander = await Bystander(running, key, **options).start()
        made.append(bystander)
        return bystander

    yield make
    for bystander in made:
        await bystander.__aexit__(None, None, None)
