"""Validator discovery from a metagraph: permit + served axon (+ min stake), with the
metagraph fetch injected (no chain)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from bittensor import Balance

from agents.cli.common import EXIT_FAILURE, EXIT_USAGE, CliError
from agents.cli.run import RunConfig, resolve_validators
from agents.discovery import (
    DiscoveryError,
    SubnetNotFound,
    ValidatorEndpoint,
    axon_url,
    discover_validators,
    validators_from_metagraph,
)


@dataclass
class Neuron:
    uid: int
    hotkey: str
    validator_permit: bool
    axon: str | None
    total_stake: Any


@dataclass
class Metagraph:
    neurons: list[Neuron]


def graph() -> Metagraph:
    return Metagraph([
        Neuron(0, "hk-validator-big", True, "203.0.113.7:8091", Balance.from_alpha(5000, 30)),
        Neuron(1, "hk-validator-small", True, "198.51.100.2:9000", 10.0),
        Neuron(2, "hk-miner", False, "192.0.2.1:8091", 50_000.0),          # no permit
        Neuron(3, "hk-validator-no-axon", True, None, 9_000.0),            # nothing served
        Neuron(4, "hk-validator-unserved", True, "0.0.0.0:0", 9_000.0),    # placeholder axon
        Neuron(5, "hk-validator-v6", True, "[2001:db8::1]:8091", 700.0),
        Neuron(6, "hk-self", True, "192.0.2.9:8091", 1e6),
    ])


def test_permit_and_served_axon_only_largest_stake_first() -> None:
    found = validators_from_metagraph(graph(), exclude={"hk-self"})
    assert [(v.hotkey, v.url) for v in found] == [
        ("hk-validator-big", "ws://203.0.113.7:8091"),
        ("hk-validator-v6", "ws://[2001:db8::1]:8091"),
        ("hk-validator-small", "ws://198.51.100.2:9000"),
    ]
    assert found[0].uid == 0
    assert found[0].stake == pytest.approx(5000.0)
    hotkey, url, *_ = found[0]  # unpacks as (hotkey, url, ...)
    assert (hotkey, url) == ("hk-validator-big", "ws://203.0.113.7:8091")


def test_min_stake_filters() -> None:
    found = validators_from_metagraph(graph(), min_stake=500, exclude={"hk-self"})
    assert [v.hotkey for v in found] == ["hk-validator-big", "hk-validator-v6"]
    assert validators_from_metagraph(graph(), min_stake=1e9) == []


def test_plain_iterable_of_neurons_and_duplicates() -> None:
    neurons = [Neuron(0, "hk", True, "10.0.0.1:1", 1.0), Neuron(1, "hk", True, "10.0.0.2:2", 3.0)]
    expected = [ValidatorEndpoint("hk", "ws://10.0.0.2:2", 1, 3.0)]
    assert validators_from_metagraph(neurons) == expected


@pytest.mark.parametrize(("axon", "url"), [
    ("1.2.3.4:8091", "ws://1.2.3.4:8091"),
    ("2001:db8::5:8091", "ws://[2001:db8::5]:8091"),  # bare IPv6, port after the last colon
    ("validator.example.org:443", "ws://validator.example.org:443"),
    (None, None), ("", None), ("1.2.3.4", None), ("1.2.3.4:0", None), ("1.2.3.4:70000", None),
    ("0.0.0.0:8091", None), ("[::]:8091", None), ("bad host:1", None),
])
def test_axon_url(axon: str | None, url: str | None) -> None:
    assert axon_url(axon) == url


async def test_discover_with_injected_fetch() -> None:
    calls: list[tuple[int, str]] = []

    async def fetch(netuid: int, network: str) -> Metagraph:
        calls.append((netuid, network))
        return graph()

    found = await discover_validators(30, "test", min_stake=100, exclude={"hk-self"},
                                      fetch=fetch)
    assert calls == [(30, "test")]
    assert [v.hotkey for v in found] == ["hk-validator-big", "hk-validator-v6"]


async def test_missing_subnet_and_fetch_failure() -> None:
    async def missing(netuid: int, network: str) -> None:
        return None

    with pytest.raises(SubnetNotFound):
        await discover_validators(99, "test", fetch=missing)

    # the CLI: a missing subnet is a configuration error, an empty one a runtime failure
    with pytest.raises(CliError) as info:
        await resolve_validators(RunConfig(netuid=99, network="test", metagraph_fetch=missing),
                                 "hk-self")
    assert info.value.code == EXIT_USAGE
    assert "subnet 99" in info.value.message

    async def empty(netuid: int, network: str) -> Metagraph:
        return Metagraph([Neuron(0, "hk-miner", False, "1.2.3.4:1", 1.0)])

    with pytest.raises(CliError) as info:
        await resolve_validators(RunConfig(netuid=30, min_stake=5, metagraph_fetch=empty), "x")
    assert info.value.code == EXIT_FAILURE
    assert "validator permit and a hub address" in info.value.message

    async def broken(netuid: int, network: str) -> Metagraph:
        raise DiscoveryError("cannot read the metagraph: connection refused")

    with pytest.raises(CliError) as info:
        await resolve_validators(RunConfig(netuid=30, metagraph_fetch=broken), "x")
    assert info.value.code == EXIT_FAILURE

    async def slow(netuid: int, network: str) -> Metagraph:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    with pytest.raises(CliError) as info:
        await resolve_validators(RunConfig(netuid=30, metagraph_fetch=slow,
                                           discovery_timeout=0.05), "x")
    assert info.value.code == EXIT_FAILURE
    assert "took more than" in info.value.message


async def test_cli_excludes_own_hotkey() -> None:
    async def fetch(netuid: int, network: str) -> Metagraph:
        return graph()

    found = await resolve_validators(RunConfig(netuid=30, metagraph_fetch=fetch), "hk-self")
    assert "hk-self" not in {v.hotkey for v in found}
