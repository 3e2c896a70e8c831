"""Several hub processes of one validator, as an operator runs them: each is
``python -m server_stub serve --dev`` (signing as //Alice) on its own port, sharing a
PostgreSQL store and a Redis backplane. A hub can be killed (SIGKILL), stopped
(SIGTERM, graceful) and started again on the same port, so miners that know the
fleet's URLs can come back to it."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from bittensor import http_auth

from sdk.models import Game

from .keys import VALIDATOR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FleetHub:
    """One hub process of the fleet (``proc`` is None while it is down)."""

    index: int
    port: int
    args: list[str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    exits: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class HubFleet:
    """``count`` hubs of the //Alice validator on ``store`` and ``backplane``."""

    def __init__(self, tmp_path: Path, count: int, *, store: str, backplane: str | None,
                 prefix: str | None = None, extra: tuple[str, ...] = ()) -> None:
        self.tmp_path = tmp_path
        self.hubs: list[FleetHub] = []
        for index in range(count):
            args = ["serve", "--dev", "--feed", "none", "--heartbeat", "5",
                    "--store", store, "--dashboard", "off", *extra]
            if backplane is not None:
                args += ["--backplane", backplane]
            if prefix is not None:
                args += ["--redis-prefix", prefix]
            self.hubs.append(FleetHub(index, free_port(), args,
                                      tmp_path / f"hub{index}.log"))
        self.session: aiohttp.ClientSession | None = None

    @property
    def urls(self) -> list[str]:
        return [hub.url for hub in self.hubs]

    async def __aenter__(self) -> HubFleet:
        self.session = aiohttp.ClientSession()
        await asyncio.gather(*(self.start(hub.index) for hub in self.hubs))
        return self

    async def __aexit__(self, *_: object) -> None:
        for hub in self.hubs:
            if hub.proc is not None and hub.proc.returncode is None:
                hub.proc.kill()
                await hub.proc.wait()
            hub.proc = None
        if self.session is not None:
            await self.session.close()

    async def start(self, index: int, *, timeout: float = 30.0) -> None:
        hub = self.hubs[index]
        log = hub.log_path.open("ab")
        try:
            hub.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "server_stub", *hub.args, "--port", str(hub.port),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        await self.wait_healthy(index, timeout=timeout)

    async def wait_healthy(self, index: int, *, timeout: float = 30.0) -> dict[str, Any]:
        hub = self.hubs[index]
        assert self.session is not None
        deadline = time.monotonic() + timeout
        while True:
            if hub.proc is not None and hub.proc.returncode is not None:
                raise AssertionError(f"hub {index} exited with {hub.proc.returncode}:\n"
                                     f"{hub.log()[-3000:]}")
            try:
                async with self.session.get(f"{hub.http_url}/ws/health",
                                            timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status == 200:
                        body: dict[str, Any] = await response.json()
                        return body
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"hub {index} not healthy in {timeout} s:\n"
                                     f"{hub.log()[-3000:]}")
            await asyncio.sleep(0.1)  # a process starting up: nothing to await but its port

    async def kill(self, index: int) -> None:
        """SIGKILL: no goodbye, no flush."""
        await self._signal(index, signal.SIGKILL)

    async def stop(self, index: int) -> None:
        """SIGTERM: a graceful stop (1001 to its miners, store flushed)."""
        await self._signal(index, signal.SIGTERM)

    async def _signal(self, index: int, sig: signal.Signals) -> None:
        hub = self.hubs[index]
        assert hub.proc is not None, f"hub {index} is not running"
        hub.proc.send_signal(sig)
        hub.exits.append(await asyncio.wait_for(hub.proc.wait(), 30))
        hub.proc = None

    async def health(self, index: int) -> dict[str, Any]:
        return await self.wait_healthy(index, timeout=5.0)

    async def post_games(self, index: int, games: list[Game]) -> dict[str, Any]:
        """``POST /admin/games`` on hub ``index``, signed by the validator."""
        assert self.session is not None
        body = json.dumps({"games": [game.model_dump(mode="json") for game in games]}).encode()
        headers = http_auth.sign(VALIDATOR, method="POST", path="/admin/games", body=body,
                                 receiver_ss58=VALIDATOR.ss58_address)
        headers["Content-Type"] = "application/json"
        async with self.session.post(f"{self.hubs[index].http_url}/admin/games", data=body,
                                     headers=headers) as response:
            answer: dict[str, Any] = await response.json()
            assert response.status == 200, answer
            return answer
