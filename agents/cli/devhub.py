"""``--dev``: a local validator hub in this process, with throwaway keys.

The hub is the real ``server_stub`` application (real sockets on loopback, real
signatures, a real SQLite store in a temp dir), signing as ``//Alice``, admitting any
valid signature (open registry) and fed by the built-in simulator at a brisk pace
(a kick-off every ~10 s, matches of ~10 s, odds drifting every tick) so a newcomer
sees games, predictions and receipts flow within seconds. The miner signs as ``//Bob``
unless a wallet is given.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["DEV_MINER_URI", "DEV_VALIDATOR_URI", "LocalHub", "dev_miner"]

log = logging.getLogger("agents.cli.dev")

DEV_VALIDATOR_URI = "//Alice"
DEV_MINER_URI = "//Bob"


def dev_miner() -> Any:
    from bittensor.keyfiles import Keypair

    return Keypair.create_from_uri(DEV_MINER_URI)


class LocalHub:
    """``async with LocalHub() as hub``: ``hub.url``, ``hub.validator_hotkey``,
    ``hub.hub`` (the :class:`server_stub.Hub`). Stopping it closes every miner with
    1001, flushes the store and deletes the temp dir."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, seed: int = 0,
                 games: int = 10, kickoff_spacing_s: float = 10.0,
                 match_duration_s: float = 10.0, drift: float = 0.03,
                 tick_interval_s: float = 0.5, heartbeat_interval_s: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.seed = seed
        self.games = games
        self.kickoff_spacing = timedelta(seconds=kickoff_spacing_s)
        self.match_duration = timedelta(seconds=match_duration_s)
        self.drift = drift
        self.tick_interval_s = tick_interval_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.url = ""
        self.validator_hotkey = ""
        self.store_path: Path | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._runner: web.AppRunner | None = None
        self.hub: Any = None

    async def __aenter__(self) -> LocalHub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        from bittensor.keyfiles import Keypair

        from server_stub import HUB_KEY, HubConfig, OpenRegistry, create_app
        from server_stub.feed import GameSimulator

        signer = Keypair.create_from_uri(DEV_VALIDATOR_URI)
        self.validator_hotkey = signer.ss58_address
        self._tmp = tempfile.TemporaryDirectory(prefix="bt-miner-dev-")
        self.store_path = Path(self._tmp.name) / "hub.sqlite3"
        feed = GameSimulator(seed=self.seed, start=datetime.now(UTC), games=self.games,
                             kickoff_spacing=self.kickoff_spacing,
                             match_duration=self.match_duration, drift=self.drift)
        config = HubConfig(tick_interval_s=self.tick_interval_s,
                           heartbeat_interval_s=self.heartbeat_interval_s,
                           store_synchronous="NORMAL")
        app = create_app(config, signer=signer, store_path=self.store_path,
                         registry=OpenRegistry(), feed=feed)
        self.hub = app[HUB_KEY]
        runner = web.AppRunner(app, handle_signals=False, access_log=None,
                               shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            self._tmp.cleanup()
            from .common import EXIT_FAILURE, CliError

            raise CliError(f"cannot start the dev hub on {self.host}:{self.port}: "
                           f"{exc.strerror or exc}", EXIT_FAILURE) from None
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"ws://{host}:{self.port}"
        log.info("dev hub on %s (validator %s %s, open registry, simulator, store %s)",
                 self.url, DEV_VALIDATOR_URI, self.validator_hotkey, self.store_path)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._tmp is not None:
            tmp, self._tmp = self._tmp, None
            tmp.cleanup()
