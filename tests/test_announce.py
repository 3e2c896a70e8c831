"""Announcing the hub URL in the validator's chain commitment: the ``bt-ws=`` format,
``bt-validator-stub announce`` with an injected committer (no chain), and the miner's
discovery preferring the announced URL over the axon."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bittensor import Balance, NeuronCommitment, Wallet
from bittensor.keyfiles import Keypair
from typer.testing import CliRunner

from agents.cli.run import RunConfig, resolve_validators
from agents.discovery import discover_validators, validators_from_metagraph
from sdk.announce import (
    MAX_COMMITMENT_BYTES,
    AnnounceError,
    announced_url,
    announcement,
    check_hub_url,
)
from sdk.metagraph import neuron_rows
from server_stub.announce import CommitError
from server_stub.cli import app

# -- the format ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "wss://hub.example.org/ws",
    "ws://203.0.113.7:8091",
    "wss://[2001:db8::1]:443/ws",
    "wss://hub.example.org:8443/validators/alice/ws",
])
def test_a_ws_or_wss_url_with_a_host_is_announced_as_is(url: str) -> None:
    assert announcement(url) == f"bt-ws={url}"
    assert announced_url(announcement(url)) == url


@pytest.mark.parametrize(("url", "reason"), [
    ("https://hub.example.org/ws", "must start with ws:// or wss://"),
    ("hub.example.org:8091", "must start with ws:// or wss://"),
    ("wss:///ws", "has no host"),
    ("wss://user:pw@hub.example.org/ws", "must not carry user info"),
    ("wss://hub.example.org/ws?x=1", "must not carry a query or fragment"),
    ("wss://hub.example.org/ws#top", "must not carry a query or fragment"),
    ("wss://hub.example.org/a\tb", "whitespace"),
    ("", "empty"),
    ("wss://hub.example.org:99999/ws", "is not a URL"),
    ("wss://hub.example.org:0/ws", "port 0"),
    ("wss://" + "h" * 120 + ".org/ws", "too long"),
])
def test_anything_else_is_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(AnnounceError, match=reason):
        check_hub_url(url)
    if url.split() == [url]:  # whitespace separates entries: only a whole entry is read
        assert announced_url(f"bt-ws={url}") is None


def test_the_longest_url_that_fits_one_commitment_field() -> None:
    host_len = MAX_COMMITMENT_BYTES - len("bt-ws=wss://") - len(".org")
    url = "wss://" + "h" * host_len + ".org"
    assert len(announcement(url).encode()) == MAX_COMMITMENT_BYTES
    with pytest.raises(AnnounceError, match="too long"):
        announcement(url[:6] + "h" + url[6:])


@pytest.mark.parametrize(("text", "url"), [
    ("bt-ws=wss://hub.example.org/ws", "wss://hub.example.org/ws"),
    ("other=1 bt-ws=wss://a.example/ws\nsha256:0xab", "wss://a.example/ws"),
    ("bt-ws=http://a.example/ws bt-ws=wss://b.example/ws", None),  # the first one decides
    ("wss://hub.example.org/ws", None),  # no bt-ws= entry
    ("bt-ws=", None),
    ("", None),
    (None, None),
])
def test_reading_a_commitment(text: str | None, url: str | None) -> None:
    assert announced_url(text) == url


# -- discovery -----------------------------------------------------------------------------


def commitment(hotkey: str, uid: int, data: str) -> NeuronCommitment:
    """A commitment as bittensor 11 returns it in ``Metagraph.commitments``."""
    return NeuronCommitment(hotkey=hotkey, netuid=30, uid=uid, block=100, queried_block=110,
                            deposit=Balance.from_rao(0), data=data, encrypted=False,
                            reveal_round=None, revealed=[], fields=[])


@dataclass
class Neuron:
    uid: int
    hotkey: str
    validator_permit: bool
    axon: str | None
    total_stake: float
    commitment: NeuronCommitment | None = None


@dataclass
class Metagraph:
    neurons: list[Neuron]
    commitments: dict[int, NeuronCommitment] = field(default_factory=dict)


def graph() -> Metagraph:
    neurons = [
        Neuron(0, "hk-announced", True, "203.0.113.7:8091", 900.0),
        Neuron(1, "hk-invalid", True, "198.51.100.2:9000", 800.0),
        Neuron(2, "hk-absent", True, "192.0.2.1:8091", 700.0),
        Neuron(3, "hk-no-axon", True, None, 600.0),
        Neuron(4, "hk-no-axon-invalid", True, None, 500.0),
        Neuron(5, "hk-miner", False, "192.0.2.5:8091", 400.0),
        Neuron(6, "hk-own", True, "192.0.2.6:8091", 300.0,
               commitment("hk-own", 6, "bt-ws=wss://own.example/ws")),
    ]
    return Metagraph(neurons, {
        0: commitment("hk-announced", 0, "bt-ws=wss://hub.example.org/ws"),
        1: commitment("hk-invalid", 1, "bt-ws=https://hub.example.org/ws"),
        3: commitment("hk-no-axon", 3, "bt-ws=wss://[2001:db8::3]/ws"),
        4: commitment("hk-no-axon-invalid", 4, "hello"),
        5: commitment("hk-miner", 5, "bt-ws=wss://miner.example/ws"),
    })


EXPECTED = [
    ("hk-announced", "wss://hub.example.org/ws"),   # announced beats the axon
    ("hk-invalid", "ws://198.51.100.2:9000"),       # invalid announcement: the axon
    ("hk-absent", "ws://192.0.2.1:8091"),           # no commitment: the axon
    ("hk-no-axon", "wss://[2001:db8::3]/ws"),       # announced, nothing served: found
    ("hk-own", "wss://own.example/ws"),             # the neuron's own commitment
]


def test_discovery_prefers_the_announced_url_and_falls_back_to_the_axon() -> None:
    found = validators_from_metagraph(graph())
    assert [(v.hotkey, v.url) for v in found] == EXPECTED
    assert [v.uid for v in found] == [0, 1, 2, 3, 6]


def test_plain_rows_carry_the_commitment_text() -> None:
    metagraph = graph()
    for neuron in metagraph.neurons:
        neuron.commitment = neuron.commitment or metagraph.commitments.get(neuron.uid)
    rows = neuron_rows(metagraph.neurons)
    assert rows[0].commitment == "bt-ws=wss://hub.example.org/ws"
    assert rows[2].commitment is None
    assert [(v.hotkey, v.url) for v in validators_from_metagraph(rows)] == EXPECTED


async def test_the_miner_cli_connects_to_the_announced_url() -> None:
    async def fetch(netuid: int, network: str) -> Metagraph:
        return graph()

    found = await discover_validators(30, "test", fetch=fetch)
    assert found[0].url == "wss://hub.example.org/ws"
    resolved = await resolve_validators(RunConfig(netuid=30, metagraph_fetch=fetch), "hk-own")
    assert [(v.hotkey, v.url) for v in resolved] == EXPECTED[:-1]


# -- bt-validator-stub announce -----------------------------------------------------------


@dataclass
class Recorder:
    """A committer that records what would be written on chain (or fails as told)."""

    calls: list[tuple[str, int, str, str]] = field(default_factory=list)
    fail: str | None = None

    async def __call__(self, wallet: Any, netuid: int, network: str, text: str) -> None:
        if self.fail is not None:
            raise CommitError(self.fail)
        self.calls.append((hotkey_of(wallet), netuid, network, text))


def hotkey_of(wallet: Any) -> str:
    key = wallet.hotkey if isinstance(wallet, Wallet) else wallet
    return str(key.ss58_address)


def announce(recorder: Recorder, *args: str) -> Any:
    return CliRunner().invoke(app, ["announce", *args], obj={"committer": recorder})


def test_announce_writes_the_format_with_the_validator_hotkey() -> None:
    recorder = Recorder()
    result = announce(recorder, "--url", "wss://hub.example.org/ws", "--netuid", "30",
                      "--network", "test", "--validator-uri", "//Alice")
    alice = Keypair.create_from_uri("//Alice").ss58_address
    assert result.exit_code == 0, result.output
    assert recorder.calls == [(alice, 30, "test", "bt-ws=wss://hub.example.org/ws")]
    assert f"announced bt-ws=wss://hub.example.org/ws for hotkey {alice}" in result.output


def test_announce_signs_with_the_wallet_hotkey(tmp_path: Path) -> None:
    wallet = Wallet(name="validator", hotkey="hk", path=str(tmp_path))
    wallet.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
    recorder = Recorder()
    result = announce(recorder, "--url", "ws://203.0.113.7:8091/ws", "--netuid", "30",
                      "--wallet.name", "validator", "--wallet.hotkey", "hk",
                      "--wallet.path", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert recorder.calls == [(wallet.hotkey.ss58_address, 30, "finney",
                               "bt-ws=ws://203.0.113.7:8091/ws")]


def test_a_bad_url_exits_2_and_writes_nothing() -> None:
    recorder = Recorder()
    result = announce(recorder, "--url", "https://hub.example.org/ws", "--netuid", "30",
                      "--validator-uri", "//Alice")
    assert result.exit_code == 2
    assert "error: --url: hub URL 'https://hub.example.org/ws' must start with ws:// or " \
           "wss://" in result.output
    assert recorder.calls == []


def test_a_missing_identity_or_wallet_exits_2(tmp_path: Path) -> None:
    recorder = Recorder()
    none = announce(recorder, "--url", "wss://hub.example.org/ws", "--netuid", "30")
    assert none.exit_code == 2
    assert "give the validator identity" in none.output
    missing = announce(recorder, "--url", "wss://hub.example.org/ws", "--netuid", "30",
                       "--wallet.name", "nope", "--wallet.path", str(tmp_path))
    assert missing.exit_code == 2
    assert f"hotkey file not found: {tmp_path / 'nope' / 'hotkeys' / 'default'}" \
        in missing.output
    assert recorder.calls == []


def test_a_chain_failure_exits_1_with_the_reason() -> None:
    recorder = Recorder(fail="the chain refused the commitment: AccountNotAllowedCommit")
    result = announce(recorder, "--url", "wss://hub.example.org/ws", "--netuid", "30",
                      "--validator-uri", "//Alice")
    assert result.exit_code == 1
    assert "error: the chain refused the commitment: AccountNotAllowedCommit" in result.output


def test_netuid_is_required() -> None:
    result = announce(Recorder(), "--url", "wss://hub.example.org/ws",
                      "--validator-uri", "//Alice")
    assert result.exit_code == 2
    assert "--netuid" in result.output


def test_the_real_committer_against_an_unreachable_chain_exits_1() -> None:
    with socket.socket() as sock:  # a port on 127.0.0.1 that refuses connections
        sock.bind(("127.0.0.1", 0))
        network = f"ws://127.0.0.1:{sock.getsockname()[1]}"
    result = CliRunner().invoke(app, ["announce", "--url", "wss://hub.example.org/ws",
                                      "--netuid", "30", "--network", network,
                                      "--validator-uri", "//Alice"])
    assert result.exit_code == 1, result.output
    assert f"error: cannot write the commitment on netuid 30 of {network!r}" in result.output
