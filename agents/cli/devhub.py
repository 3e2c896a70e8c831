"""``--dev``: a local validator hub in this process, with throwaway keys.

The hub is :class:`server_stub.testing.LocalHub`: the real ``server_stub``
application on loopback, signing as ``//Alice``, admitting any valid signature (open
registry), fed by the built-in simulator at a brisk pace so a newcomer sees games,
predictions and receipts flow within seconds. The miner signs as ``//Bob`` unless a
wallet is given.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bittensor.keyfiles import Keypair

from .common import EXIT_FAILURE, CliError

if TYPE_CHECKING:
    from server_stub.testing import LocalHub

__all__ = ["DEV_MINER_URI", "DEV_VALIDATOR_URI", "dev_hub", "dev_miner"]

log = logging.getLogger("agents.cli.dev")

DEV_VALIDATOR_URI = "//Alice"
DEV_MINER_URI = "//Bob"


def dev_miner() -> Keypair:
    return Keypair.create_from_uri(DEV_MINER_URI)


@contextlib.asynccontextmanager
async def dev_hub(*, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[LocalHub]:
    """A started dev hub while inside (stopped gracefully on the way out); a port that
    cannot be bound is a :class:`CliError`."""
    from bittensor.keyfiles import Keypair

    from server_stub.testing import LocalHub  # imported here: only --dev needs the hub

    hub = LocalHub(signer=Keypair.create_from_uri(DEV_VALIDATOR_URI), host=host, port=port)
    try:
        await hub.start()
    except OSError as exc:
        raise CliError(f"cannot start the dev hub on {host}:{port}: {exc.strerror or exc}",
                       EXIT_FAILURE) from None
    log.info("dev hub on %s (validator %s %s, open registry, simulator, store %s)",
             hub.url, DEV_VALIDATOR_URI, hub.validator_hotkey, hub.store_path)
    try:
        yield hub
    finally:
        await hub.stop()
