"""Shared fixtures: a real hub on 127.0.0.1 with a real SQLite store and real keys.

Fixtures only; the helpers the tests share live in :mod:`tests.kit`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bittensor.keyfiles import Keypair

from sdk.options import ConnectionOptions
from server_stub import HubConfig
from server_stub.testing import LocalHub

from .kit.clientkit import FAST_CLIENT
from .kit.hubkit import RunningHub
from .kit.keys import VALIDATOR, miner_key


@pytest.fixture
async def start_hub(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start hubs on loopback: ``await start_hub(config_overrides..., store_path=...)``."""
    running: list[RunningHub] = []
    session = aiohttp.ClientSession()

    async def start(*, store_path: Path | None = None, registry: Any = None, feed: Any = None,
                    clock: Any = None, **overrides: Any) -> RunningHub:
        config = HubConfig(**{"heartbeat_interval_s": 5.0, **overrides})
        path = store_path or tmp_path / "hub.sqlite3"
        server = LocalHub(config=config, signer=VALIDATOR, store_path=path, registry=registry,
                          feed=feed, clock=clock)
        await server.start()
        hub = RunningHub(server=server, session=session, store_path=path, config=config)
        running.append(hub)
        return hub

    yield start
    for hub in running:
        for ws in hub.sockets:
            await ws.close()
        await hub.server.stop()
    await session.close()


# -- client tests: a fault-injecting proxy in front of the hub, and miner connections ----


@pytest.fixture
async def fault_proxy() -> AsyncIterator[Callable[..., Any]]:
    """``await fault_proxy(running_hub)``: a :class:`tests.kit.faultproxy.FaultProxy` on its
    own loopback port forwarding to the hub (closed after the test)."""
    from .kit.faultproxy import FaultProxy

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


_OPTION_NAMES = frozenset(option.name for option in dataclasses.fields(ConnectionOptions))


@pytest.fixture
async def miner(start_hub: Any, fault_proxy: Any) -> AsyncIterator[Callable[..., Any]]:
    """``miner(url, key=Bob, **overrides)``: a (not yet started) ValidatorConnection (``url``:
    a URL, a FaultProxy, or a list of either: the hubs of one validator) with
    fast test timings (:data:`FAST_CLIENT`, an in-memory outbox), closed after the test
    (before the hub and the proxy stop). ``overrides`` may name ConnectionOptions fields
    (they replace FAST_CLIENT's) or other constructor arguments."""
    from sdk.connection import ValidatorConnection

    connections: list[ValidatorConnection] = []

    def make(url: Any, key: Keypair | None = None, **overrides: Any) -> ValidatorConnection:
        urls = url if isinstance(url, list) else [url]
        target = [u if isinstance(u, str) else u.url for u in urls]  # u.url: a FaultProxy
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
    (:class:`tests.kit.hostile.RawWS`) the test opened."""
    from .kit.hostile import RawWS

    yield
    RawWS.abort_all()


@pytest.fixture
async def bystanders(start_hub: Any) -> AsyncIterator[Callable[..., Any]]:
    """``await bystanders(running, key)``: a started :class:`tests.kit.hostile.Bystander`
    (a well-behaved miner that must miss nothing), stopped at teardown before the hub."""
    from .kit.hostile import Bystander

    made: list[Any] = []

    async def make(running: RunningHub, key: Keypair, **options: Any) -> Any:
        bystander = await Bystander(running, key, **options).start()
        made.append(bystander)
        return bystander

    yield make
    for bystander in made:
        await bystander.__aexit__(None, None, None)


@pytest.fixture
def venv_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``python3`` Jupyter kernel spec that runs this interpreter (JUPYTER_PATH comes
    first), so a kernel spec of another Python elsewhere on the machine cannot be picked
    up by the notebook tests."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (bettensor-ws tests)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return "python3"
