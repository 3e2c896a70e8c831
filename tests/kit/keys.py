"""The real bittensor keys the tests sign with: the validator's and any miner's."""

from __future__ import annotations

from bittensor.keyfiles import Keypair

VALIDATOR = Keypair.create_from_uri("//Alice")


def miner_key(name: str) -> Keypair:
    return Keypair.create_from_uri(f"//{name}")
