"""Writing the hub's announcement (``bt-ws=<url>``, :mod:`sdk.announce`) into the
validator's chain commitment.

The chain write is a :data:`Committer` so the command line can be tested without a
chain (a committer that records what it would write); :func:`commit_on_chain` is the
real one, through bittensor's ``Commitments.set_commitment`` signed by the hotkey.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["CommitError", "Committer", "commit_on_chain"]

Committer = Callable[[Any, int, str, str], Coroutine[Any, Any, None]]
"""``await commit(wallet, netuid, network, text)``: make ``text`` the plaintext
commitment of the wallet's hotkey on subnet ``netuid`` of ``network``; raises
:class:`CommitError`. ``wallet`` is anything bittensor signs with (a ``Wallet``, a
``Keypair``)."""


class CommitError(RuntimeError):
    """The commitment could not be written; the message says why."""


async def commit_on_chain(wallet: Any, netuid: int, network: str, text: str) -> None:
    """The real :data:`Committer`: one ``Raw`` field holding ``text`` (it replaces
    whatever the hotkey had committed on this subnet), signed by the hotkey and
    waited for until finalized. The fee is charged to the hotkey's coldkey."""
    import bittensor  # imported lazily: only this path talks to a chain

    data = text.encode()
    info = {"fields": [{f"Raw{len(data)}": data}]}
    call = bittensor.calls.Commitments.set_commitment(netuid, info)
    try:
        async with bittensor.Client(network) as client:
            result = await client.submit_call(call, wallet, signer="hotkey")
    except Exception as exc:  # the chain client fails in many types; one error says which
        raise CommitError(f"cannot write the commitment on netuid {netuid} of {network!r}: "
                          f"{type(exc).__name__}: {exc}") from exc
    if not result.success:
        raise CommitError(f"the chain refused the commitment on netuid {netuid} of "
                          f"{network!r}: {result.message}")
