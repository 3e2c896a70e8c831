"""One validator to talk to (``watch``, ``submit``): given, or an in-process dev hub."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.discovery import ValidatorEndpoint
from sdk.signing import WalletLike

from .common import EXIT_USAGE, CliError, WalletOptions, load_signer
from .devhub import dev_hub, dev_miner

if TYPE_CHECKING:
    from server_stub.testing import LocalHub

__all__ = ["Target", "one_validator"]


@dataclass
class Target:
    signer: WalletLike
    endpoint: ValidatorEndpoint
    hub: LocalHub | None = None


@contextlib.asynccontextmanager
async def one_validator(*, dev: bool, validators: list[ValidatorEndpoint],
                        wallet: WalletOptions, dev_port: int = 0,
                        command: str = "this command") -> AsyncIterator[Target]:
    """The signer and the one validator for ``command`` (a dev hub runs while inside)."""
    if dev and validators:
        raise CliError(f"{command}: give either --dev or --validator, not both", EXIT_USAGE)
    if not dev and len(validators) != 1:
        raise CliError(f"{command} talks to one validator: give --validator URL "
                       "--validator-hotkey SS58 (or --validator HOTKEY@URL), or --dev "
                       f"(got {len(validators)})", EXIT_USAGE)
    signer = load_signer(wallet) if (wallet.given or not dev) else dev_miner()
    if not dev:
        yield Target(signer, validators[0])
        return
    async with dev_hub(port=dev_port) as hub:
        yield Target(signer, ValidatorEndpoint(hub.validator_hotkey, hub.url), hub)
