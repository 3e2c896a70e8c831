"""A real hub in this process, on loopback: for tests, notebooks and ``bt-miner --dev``.

:class:`LocalHub` serves the real :func:`~server_stub.create_app` application (real
sockets, real signatures, a real SQLite or PostgreSQL store) on a free port. By default it signs as
``//Alice``, admits any valid signature (open registry), keeps its store in a temp
dir it deletes, and is fed by :func:`brisk_simulator` (a kick-off every ~10 s,
matches of ~10 s, odds drifting every tick) so games, predictions and receipts flow
within seconds. Every part can be replaced.
"""

from __future__ import annotations

import ssl
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from aiohttp import web
from bittensor.keyfiles import Keypair

from sdk.signing import Signer

from .app import create_app
from .clock import HubClock
from .config import HubConfig
from .feed import GameFeed
from .http_api import HUB_KEY
from .hub import Hub
from .registry import MinerRegistry, OpenRegistry
from .simulator import GameSimulator

__all__ = ["DEFAULT_VALIDATOR_URI", "LocalHub", "brisk_config", "brisk_simulator"]

DEFAULT_VALIDATOR_URI = "//Alice"
"""The throwaway key a :class:`LocalHub` signs with unless given a signer."""


def brisk_simulator(*, seed: int = 0, games: int = 10, start: datetime | None = None,
                    kickoff_spacing: timedelta = timedelta(seconds=10),
                    match_duration: timedelta = timedelta(seconds=10),
                    drift: float = 0.03) -> GameSimulator:
    """The simulator at a newcomer's pace: something happens every few seconds."""
    return GameSimulator(seed=seed, start=start or datetime.now(UTC), games=games,
                         kickoff_spacing=kickoff_spacing, match_duration=match_duration,
                         drift=drift)


def brisk_config(**overrides: Any) -> HubConfig:
    """The default :class:`LocalHub` config: a feed tick every 0.5 s, heartbeats every
    5 s, and a store that does not fsync every commit (it is thrown away anyway)."""
    values: dict[str, Any] = {"tick_interval_s": 0.5, "heartbeat_interval_s": 5.0,
                              "store_synchronous": "NORMAL"}
    return HubConfig(**{**values, **overrides})


class LocalHub:
    """``async with LocalHub() as local``: a hub at ``local.url`` (``ws://``) and
    ``local.http_url``, signing as ``local.validator_hotkey``; ``local.hub`` is the
    :class:`~server_stub.Hub`, ``local.app`` its aiohttp application.

    ``feed`` is ``"simulator"`` (:func:`brisk_simulator`), any :class:`GameFeed`, or
    None (games only through ``POST /admin/games``). :meth:`stop` is a graceful
    shutdown: every miner gets 1001, the store is flushed, the temp dir (if the hub
    made one) is deleted. :meth:`start` raises :class:`OSError` when it cannot bind.
    """

    def __init__(self, *, config: HubConfig | None = None, signer: Signer | None = None,
                 registry: MinerRegistry | None = None,
                 feed: GameFeed | Literal["simulator"] | None = "simulator",
                 clock: HubClock | None = None, store_path: str | Path | None = None,
                 host: str = "127.0.0.1", port: int = 0,
                 keepalive_timeout: float = 75.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = config or brisk_config()
        self.signer = signer if signer is not None else Keypair.create_from_uri(
            DEFAULT_VALIDATOR_URI)
        self.validator_hotkey: str = self.signer.ss58_address
        self.registry = registry if registry is not None else OpenRegistry()
        self._feed = feed
        self.feed: GameFeed | None = None  # the feed in use, once started
        self.clock = clock
        self.host = host
        self.port = port
        self.keepalive_timeout = keepalive_timeout
        self.ssl_context = ssl_context
        self._given_store_path = Path(store_path) if store_path is not None else None
        self.store_path: Path | None = self._given_store_path
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._runner: web.AppRunner | None = None
        self._app: web.Application | None = None

    @property
    def app(self) -> web.Application:
        if self._app is None:
            raise RuntimeError("the LocalHub is not started")
        return self._app

    @property
    def hub(self) -> Hub:
        return self.app[HUB_KEY]

    @property
    def runner(self) -> web.AppRunner | None:
        """The aiohttp runner while started (``runner.server.connections``...)."""
        return self._runner

    @property
    def url(self) -> str:
        """The WebSocket base URL (``ws://host:port``, ``wss://`` with ``ssl_context``), as
        miners are given it."""
        return f"{'wss' if self.ssl_context else 'ws'}://{self._netloc}"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self._netloc}"

    @property
    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def __aenter__(self) -> LocalHub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the LocalHub is already started")
        store_path = self._given_store_path
        if store_path is None and self.config.store_url is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="bt-local-hub-")
            store_path = Path(self._tmp.name) / "hub.sqlite3"
        self.store_path = store_path
        # built now, not in __init__: the simulator's first kick-off counts from start()
        self.feed = brisk_simulator() if self._feed == "simulator" else self._feed
        app = create_app(self.config, signer=self.signer, store_path=store_path,
                         registry=self.registry, feed=self.feed, clock=self.clock)
        runner = web.AppRunner(app, handle_signals=False, access_log=None,
                               shutdown_timeout=5.0, keepalive_timeout=self.keepalive_timeout)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port, ssl_context=self.ssl_context).start()
        except OSError:
            await runner.cleanup()
            self._delete_tmp()
            raise
        self._app = app
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Graceful: miners get 1001, the store is flushed (idempotent)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._delete_tmp()

    def _delete_tmp(self) -> None:
        if self._tmp is not None:
            tmp, self._tmp = self._tmp, None
            tmp.cleanup()
