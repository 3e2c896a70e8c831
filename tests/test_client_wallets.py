"""``sdk.wallets``: one way to load a hotkey (wallet or ``//URI``), the same messages in
``bt-miner`` and ``bt-validator-stub``."""

from __future__ import annotations

from pathlib import Path

import pytest
from bittensor import Wallet
from bittensor.keyfiles import Keypair
from typer.testing import CliRunner

from agents.cli import app as miner_app
from sdk.signing import hotkey_signer
from sdk.wallets import WalletError, hotkey_file, key_from_uri, load_wallet
from server_stub.cli import app as hub_app


def make_wallet(path: Path) -> Wallet:
    wallet = Wallet(name="miner", hotkey="hk", path=str(path))
    wallet.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
    return wallet


def test_loads_a_wallet_that_can_sign(tmp_path: Path) -> None:
    made = make_wallet(tmp_path)
    loaded = load_wallet("miner", "hk", str(tmp_path))
    assert hotkey_signer(loaded).ss58_address == made.hotkey.ss58_address


def test_defaults_name_the_standard_place() -> None:
    assert hotkey_file(None, None, None) == (
        Path("~/.bittensor/wallets").expanduser() / "default" / "hotkeys" / "default")


def test_missing_hotkey_names_the_file(tmp_path: Path) -> None:
    expected = tmp_path / "nope" / "hotkeys" / "default"
    with pytest.raises(WalletError, match=rf"^hotkey file not found: {expected} \(check"):
        load_wallet("nope", None, str(tmp_path))


def test_unusable_hotkey_file_names_the_file(tmp_path: Path) -> None:
    file = hotkey_file("broken", "hk", str(tmp_path))
    file.parent.mkdir(parents=True)
    file.write_text("not a key")
    with pytest.raises(WalletError, match=rf"^cannot sign with the hotkey {file}: "):
        load_wallet("broken", "hk", str(tmp_path))


def test_uri_keys() -> None:
    assert key_from_uri("//Bob").ss58_address == Keypair.create_from_uri("//Bob").ss58_address
    with pytest.raises(WalletError, match=r"^'not a uri' is not a usable key URI: "):
        key_from_uri("not a uri")


def test_both_command_lines_say_the_same(tmp_path: Path) -> None:
    expected = f"error: hotkey file not found: {tmp_path / 'nope' / 'hotkeys' / 'default'}"
    hub = CliRunner().invoke(hub_app, ["serve", "--wallet.name", "nope", "--wallet.path",
                                       str(tmp_path), "--open"])
    miner = CliRunner().invoke(miner_app, [
        "run", "--wallet.name", "nope", "--wallet.path", str(tmp_path), "--validator",
        f"{Keypair.create_from_uri('//Alice').ss58_address}@ws://127.0.0.1:9"])
    assert (hub.exit_code, miner.exit_code) == (2, 2)
    assert expected in hub.output
    assert expected in miner.output
