"""A subnet's metagraph read from the chain, as plain rows.

The one place that asks ``bittensor`` for a metagraph: the hub admits the hotkeys
registered on its subnet (``server_stub.registry``) and the miner finds the validators
to connect to (``agents.discovery``), both from :func:`fetch_neurons`. Rows are plain
values (stake a float, axon a string) so the callers' selection logic stays pure and
is tested with rows built by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MetagraphError", "NeuronRow", "SubnetNotFound", "commitment_text", "fetch_neurons",
           "neuron_rows", "stake_of"]


class MetagraphError(LookupError):
    """The metagraph could not be fetched, or the subnet does not exist."""


class SubnetNotFound(MetagraphError):
    """The chain has no subnet with this netuid."""


@dataclass(frozen=True, slots=True)
class NeuronRow:
    """What the hub and the miner need of one neuron."""

    uid: int | None
    hotkey: str
    validator_permit: bool
    axon: str | None
    """The served ``"ip:port"`` (None when nothing is served)."""
    total_stake: float
    commitment: str | None = None
    """The plaintext of the neuron's chain commitment (None: none, or not fetched)."""


def commitment_text(value: object) -> str | None:
    """A commitment's plaintext: a bittensor ``NeuronCommitment`` (its ``data``), a
    string as is, None for anything else (no commitment, or a sealed one)."""
    if isinstance(value, str):
        return value or None
    data = getattr(value, "data", None)
    return data if isinstance(data, str) and data else None


def stake_of(neuron: object) -> float:
    """A neuron's total stake as a float (a bittensor ``Balance`` or a number)."""
    value = getattr(neuron, "total_stake", 0.0)
    if value is None:
        return 0.0
    amount = getattr(value, "amount", value)
    try:
        number = float(amount)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def neuron_rows(neurons: Iterable[object]) -> list[NeuronRow]:
    """Plain rows of bittensor neurons (or anything with their attributes)."""
    rows = []
    for neuron in neurons:
        uid = getattr(neuron, "uid", None)
        hotkey = getattr(neuron, "hotkey", None)
        axon = getattr(neuron, "axon", None)
        rows.append(NeuronRow(uid=uid if isinstance(uid, int) else None,
                              hotkey=hotkey if isinstance(hotkey, str) else "",
                              validator_permit=bool(getattr(neuron, "validator_permit", False)),
                              axon=axon if isinstance(axon, str) else None,
                              total_stake=stake_of(neuron),
                              commitment=commitment_text(getattr(neuron, "commitment", None))))
    return rows


async def fetch_neurons(netuid: int, network: str, *, commitments: bool = False,
                        ) -> list[NeuronRow]:
    """Every neuron of subnet ``netuid`` on ``network`` (finney, test, local or
    ws://...), with each one's commitment when ``commitments`` (two more storage
    reads: the miner's discovery wants them, the hub's admission does not). Raises
    :class:`SubnetNotFound` or :class:`MetagraphError`."""
    import bittensor  # imported lazily: only this path talks to a chain

    try:
        async with bittensor.Client(network) as client:
            metagraph = await client.subnets.metagraph(netuid, commitments=commitments)
    except Exception as exc:  # the chain client fails in many types; one error says which
        raise MetagraphError(f"cannot read the metagraph of netuid {netuid} from "
                             f"{network!r}: {type(exc).__name__}: {exc}") from exc
    if metagraph is None:
        raise SubnetNotFound(f"subnet {netuid} does not exist on {network!r}")
    return neuron_rows(metagraph.neurons)
