"""Loading a signing hotkey the way both command lines take it: a bittensor wallet by
name / hotkey / path, or a throwaway key from a ``//URI``.

Failures are :class:`WalletError` with a one-line message naming what was looked at,
so each command line prints it as is (``bt-miner`` and ``bt-validator-stub`` alike).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bittensor import Wallet
    from bittensor.keyfiles import Keypair

__all__ = ["DEFAULT_WALLET_PATH", "WalletError", "hotkey_file", "key_from_uri", "load_wallet"]

DEFAULT_WALLET_PATH = "~/.bittensor/wallets"


class WalletError(ValueError):
    """The wallet or key cannot be used; the message says which file or URI and why."""


def hotkey_file(name: str | None, hotkey: str | None, path: str | None) -> Path:
    """Where bittensor keeps the hotkey ``hotkey`` of wallet ``name`` under ``path``
    (each ``default`` / :data:`DEFAULT_WALLET_PATH` when None)."""
    return (Path(path or DEFAULT_WALLET_PATH).expanduser() / (name or "default")
            / "hotkeys" / (hotkey or "default"))


def load_wallet(name: str | None, hotkey: str | None, path: str | None) -> Wallet:
    """The bittensor wallet, checked now: its hotkey file exists and can sign."""
    from bittensor import Wallet

    from .errors import SigningError
    from .signing import hotkey_signer

    file = hotkey_file(name, hotkey, path)
    if not file.is_file():
        raise WalletError(f"hotkey file not found: {file} (check --wallet.name, "
                          "--wallet.hotkey and --wallet.path)")
    wallet = Wallet(name=name or "default", hotkey=hotkey or "default",
                    path=str(Path(path or DEFAULT_WALLET_PATH).expanduser()))
    try:
        hotkey_signer(wallet)
    except SigningError as exc:
        raise WalletError(f"cannot sign with the hotkey {file}: {exc.message}") from None
    return wallet


def key_from_uri(uri: str) -> Keypair:
    """A throwaway key from a URI such as ``//Alice`` (development and tests)."""
    from bittensor.keyfiles import Keypair

    try:
        return Keypair.create_from_uri(uri)
    except ValueError as exc:  # invalid secret uri: InvalidPhrase, InvalidFormat...
        raise WalletError(f"{uri!r} is not a usable key URI: {exc}") from None
