"""Finding the validators to connect to from a subnet's metagraph.

A validator a miner should connect to is a neuron that holds a **validator permit**
and has a hub address, optionally with at least ``min_stake`` total stake. The hub
address is the URL the validator **announced in its chain commitment**
(``bt-ws=wss://...``, :mod:`sdk.announce`) when there is a valid one: it can carry a
host name, TLS and any port. Otherwise it is the **served axon** (``"ip:port"``; the
hub then listens on that port). Selection is pure (:func:`validators_from_metagraph`);
fetching the metagraph is a separate, injectable step (the default reads it with the
commitments through :func:`sdk.metagraph.fetch_neurons`, the real ``bittensor`` path)::

    found = await discover_validators(30, "finney", min_stake=1000)
    for validator in found:
        print(validator.hotkey, validator.url)      # wss://hub.example.org/ws
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NamedTuple

from sdk.announce import announced_url
from sdk.metagraph import (
    MetagraphError,
    NeuronRow,
    SubnetNotFound,
    commitment_text,
    fetch_neurons,
    stake_of,
)

__all__ = [
    "DiscoveryError",
    "MetagraphFetch",
    "SubnetNotFound",
    "ValidatorEndpoint",
    "axon_url",
    "discover_validators",
    "fetch_with_commitments",
    "validators_from_metagraph",
]

MetagraphFetch = Callable[[int, str], Awaitable[Any]]
"""``await fetch(netuid, network)``: a metagraph (an object with ``neurons``, or an
iterable of neurons such as the rows of :func:`sdk.metagraph.fetch_neurons`); each
neuron has ``hotkey``, ``validator_permit``, ``axon`` (``"ip:port"`` or None) and
``total_stake`` (a number or a bittensor ``Balance``), and may have ``uid`` and
``commitment`` (a bittensor ``NeuronCommitment``, its text, or None); a metagraph's
``commitments`` (uid -> commitment) is read for neurons without their own."""


DiscoveryError = MetagraphError
"""The metagraph could not be fetched, or the subnet does not exist (raised by the
fetch; :class:`~sdk.metagraph.SubnetNotFound` is the missing-subnet case)."""


class ValidatorEndpoint(NamedTuple):
    """A validator to connect to: ``(hotkey, url)`` first, then what was known of it."""

    hotkey: str
    url: str
    uid: int | None = None
    stake: float = 0.0


def axon_url(axon: str | None, scheme: str = "ws") -> str | None:
    """``ws://host:port`` for a served axon (``"ip:port"``, ``"[v6]:port"`` or a bare
    IPv6 address with the port after the last colon); None when nothing usable is
    served (no axon, port 0, address 0.0.0.0 / ::, not an address)."""
    if not axon or not isinstance(axon, str):
        return None
    text = axon.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.rstrip("/")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        return None
    if not 0 < port < 65536 or not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # a host name: accepted as long as it looks like one
        if any(ch.isspace() or ch in "/@?#[]" for ch in host):
            return None
        return f"{scheme}://{host}:{port}"
    if address.is_unspecified:
        return None
    if address.version == 6:
        return f"{scheme}://[{address.compressed}]:{port}"
    return f"{scheme}://{address.compressed}:{port}"


def _commitment_of(neuron: Any, uid: Any, commitments: Any) -> str | None:
    text = commitment_text(getattr(neuron, "commitment", None))
    if text is None and isinstance(uid, int) and hasattr(commitments, "get"):
        text = commitment_text(commitments.get(uid))
    return text


def validators_from_metagraph(metagraph: Any, *, min_stake: float = 0.0,
                              exclude: Iterable[str] = (), scheme: str = "ws",
                              ) -> list[ValidatorEndpoint]:
    """The validators of ``metagraph`` worth connecting to: a validator permit, a hub
    address (the URL announced in the commitment, else the served axon), total stake
    >= ``min_stake``, hotkey not in ``exclude`` (e.g. the miner's own). Largest stake
    first; one entry per hotkey."""
    neurons = getattr(metagraph, "neurons", metagraph)
    commitments = getattr(metagraph, "commitments", None)
    excluded = set(exclude)
    found: dict[str, ValidatorEndpoint] = {}
    for neuron in neurons or ():
        hotkey = getattr(neuron, "hotkey", None)
        if not hotkey or hotkey in excluded or not getattr(neuron, "validator_permit", False):
            continue
        uid = getattr(neuron, "uid", None)
        url = (announced_url(_commitment_of(neuron, uid, commitments))
               or axon_url(getattr(neuron, "axon", None), scheme))
        if url is None:
            continue
        stake = stake_of(neuron)
        if stake < min_stake:
            continue
        endpoint = ValidatorEndpoint(hotkey, url, uid if isinstance(uid, int) else None, stake)
        if hotkey not in found or stake > found[hotkey].stake:
            found[hotkey] = endpoint
    return sorted(found.values(), key=lambda v: (-v.stake, v.hotkey))


async def fetch_with_commitments(netuid: int, network: str) -> list[NeuronRow]:
    """The default :data:`MetagraphFetch`: the neurons with their commitments."""
    return await fetch_neurons(netuid, network, commitments=True)


async def discover_validators(netuid: int, network: str, *, min_stake: float = 0.0,
                              exclude: Iterable[str] = (),
                              fetch: MetagraphFetch | None = None,
                              ) -> list[ValidatorEndpoint]:
    """Fetch the metagraph of ``netuid`` on ``network`` (with ``fetch``, default
    :func:`fetch_with_commitments`) and select its validators
    (:func:`validators_from_metagraph`). Raises :class:`DiscoveryError`."""
    metagraph = await (fetch or fetch_with_commitments)(netuid, network)
    if metagraph is None:
        raise SubnetNotFound(f"subnet {netuid} does not exist on {network!r}")
    return validators_from_metagraph(metagraph, min_stake=min_stake, exclude=exclude)
