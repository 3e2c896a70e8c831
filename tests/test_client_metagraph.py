"""``sdk.metagraph``: the one metagraph read, as plain rows, used by the hub's admission
and the miner's discovery alike."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import pytest
from bittensor import Balance

from agents.discovery import DiscoveryError, discover_validators, validators_from_metagraph
from sdk.metagraph import MetagraphError, NeuronRow, fetch_neurons, neuron_rows, stake_of
from server_stub.registry import Decision, MetagraphRegistry, metagraph_fetch


@dataclass
class Neuron:
    uid: Any
    hotkey: Any
    validator_permit: bool
    axon: Any
    total_stake: Any


NEURONS = [
    Neuron(0, "hk-validator", True, "203.0.113.7:8091", Balance.from_alpha(5000, 30)),
    Neuron(1, "hk-miner", False, None, 12.5),
    Neuron("2", None, True, 8091, float("nan")),  # garbage in every field
]


def closed_port() -> int:
    """A port on 127.0.0.1 that refuses connections (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_rows_are_plain_values() -> None:
    assert neuron_rows(NEURONS) == [
        NeuronRow(0, "hk-validator", True, "203.0.113.7:8091", pytest.approx(5000.0)),
        NeuronRow(1, "hk-miner", False, None, 12.5),
        NeuronRow(None, "", True, None, 0.0),
    ]
    assert stake_of(object()) == 0.0
    assert stake_of(NEURONS[1]) == 12.5


def test_discovery_selects_the_same_from_rows_and_from_neurons() -> None:
    from_rows = validators_from_metagraph(neuron_rows(NEURONS))
    assert from_rows == validators_from_metagraph(NEURONS)
    assert [(v.hotkey, v.url) for v in from_rows] == [("hk-validator", "ws://203.0.113.7:8091")]


async def test_an_unreachable_chain_is_a_metagraph_error() -> None:
    network = f"ws://127.0.0.1:{closed_port()}"
    with pytest.raises(MetagraphError, match=r"cannot read the metagraph of netuid 30 from"):
        await fetch_neurons(30, network)
    # the miner's discovery raises it as its DiscoveryError
    with pytest.raises(DiscoveryError, match="netuid 30"):
        await discover_validators(30, network)


async def test_the_hub_registry_reads_the_same_metagraph() -> None:
    registry = MetagraphRegistry(metagraph_fetch(30, f"ws://127.0.0.1:{closed_port()}"),
                                 retry_interval=3600)

    async def on_removed(hotkeys: set[str]) -> None:
        raise AssertionError(f"nothing was registered, nothing removed: {hotkeys}")

    await registry.start(on_removed)
    try:
        assert registry.failures == 1
        assert registry.check("hk-validator") is Decision.UNAVAILABLE
    finally:
        await registry.stop()
