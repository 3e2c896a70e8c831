"""A hub served on loopback (:class:`RunningHub`, made by the ``start_hub`` fixture) and
its graceful stop while miners keep reading (:func:`stop_hub`)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from bittensor import http_auth
from bittensor.keyfiles import Keypair
from yarl import URL

from sdk.models import Game
from server_stub import Hub, HubConfig
from server_stub.testing import LocalHub

from .keys import VALIDATOR
from .wire import receive_close


@dataclass
class RunningHub:
    """A hub served on loopback, with helpers to talk to it like a miner would."""

    server: LocalHub
    session: aiohttp.ClientSession
    store_path: Path
    config: HubConfig
    sockets: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)

    @property
    def hub(self) -> Hub:
        return self.server.hub

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


async def stop_hub(running: RunningHub, timeout: float = 15.0) -> list[int | None]:
    """Gracefully stop a hub while its open client sockets keep reading, as real miners
    do (an unread socket cannot answer the close handshake, which then waits for
    ``close_timeout_s``). Returns the close code each open socket saw."""
    open_sockets = [ws for ws in running.sockets if not ws.closed]
    readers = [asyncio.create_task(receive_close(ws, timeout=timeout)) for ws in open_sockets]
    try:
        await asyncio.wait_for(running.server.stop(), timeout)
        results = await asyncio.gather(*readers)
    finally:
        for reader in readers:
            reader.cancel()
    return [code for code, _ in results]
