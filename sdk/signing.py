"""Canonical bytes and hotkey signatures for predictions and receipts.

Canonical bytes: the object in the JSON Canonicalization Scheme (RFC 8785,
:mod:`sdk.canonical`), which any language can reproduce. Signatures are
``0x``-prefixed hex over those bytes, made by the hotkey (sr25519 by default) and
verifiable with ``bittensor.keyfiles.Keypair(ss58_address=...).verify``.

Signatures always cover the object *as sent on the wire* (the JSON dict), never a
re-serialisation of a parsed model, so a client in another language signs what it
sends and the verifier checks what it received.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import bittensor
from bittensor import Signer
from bittensor.keyfiles import Keypair
from bittensor.signing import WalletLike

from .canonical import canonical_json
from .errors import SigningError

__all__ = [
    "Signer",
    "WalletLike",
    "canonical_bytes",
    "hotkey_signer",
    "receipt_content",
    "sign_object",
    "sign_prediction",
    "sign_receipt",
    "verify_object",
    "verify_prediction",
    "verify_receipt",
]

# ``Signer`` is bittensor's protocol for a key that signs (``ss58_address``,
# ``public_key``, ``crypto_type``, ``sign(bytes) -> bytes``): a ``Keypair`` is one, and
# ``hotkey_signer`` turns a ``Wallet`` (anything in ``WalletLike``) into one.


def canonical_bytes(obj: Any) -> bytes:
    """The bytes that are signed for ``obj`` (a JSON-compatible dict)."""
    return canonical_json(obj)


def hotkey_signer(wallet: WalletLike) -> Signer:
    """The hotkey signer for anything bittensor accepts as a wallet (Wallet, Keypair,
    Signer). Raises :class:`SigningError` with the reason when it cannot sign."""
    try:
        signer = bittensor.resolve_signer(wallet, role="hotkey")
        signer.ss58_address  # noqa: B018 - touch the key now so a missing file fails here
    except SigningError:
        raise
    except Exception as exc:  # keyfile errors come in many types
        raise SigningError(f"wallet cannot sign with its hotkey: {exc}") from exc
    return signer


def sign_object(signer: Signer, obj: Any) -> str:
    """Sign the canonical bytes of ``obj``; returns ``0x``-hex. Raises
    :class:`CanonicalizationError` when ``obj`` has no canonical form."""
    message = canonical_bytes(obj)
    try:
        signature = signer.sign(message)
    except Exception as exc:  # signers are pluggable (hardware, remote): any failure
        raise SigningError(f"signing failed: {exc}") from exc
    if not isinstance(signature, bytes | bytearray):
        raise SigningError("signer returned no bytes (asynchronous signers are not supported)")
    return "0x" + bytes(signature).hex()


@lru_cache(maxsize=4096)
def _public_key(ss58_address: str, crypto_type: int) -> Keypair:
    return Keypair(ss58_address=ss58_address, crypto_type=crypto_type)


def verify_object(ss58_address: str, obj: Any, signature: str | None, *,
                  crypto_type: int = 1) -> bool:
    """True when ``signature`` is ``ss58_address``'s signature over ``obj``'s canonical
    bytes. Never raises on bad input: a malformed address or signature is False."""
    if not isinstance(signature, str) or not isinstance(ss58_address, str):
        return False
    try:
        raw = bytes.fromhex(signature.removeprefix("0x"))
        return bool(_public_key(ss58_address, crypto_type).verify(canonical_bytes(obj), raw))
    except (ValueError, TypeError, OverflowError):
        return False


def sign_prediction(signer: Signer, prediction_wire: dict[str, Any]) -> str:
    """The miner's signature over a prediction's wire dict."""
    return sign_object(signer, prediction_wire)


def verify_prediction(miner_hotkey: str, prediction_wire: dict[str, Any],
                      signature: str | None) -> bool:
    return verify_object(miner_hotkey, prediction_wire, signature)


def receipt_content(confirmation: dict[str, Any]) -> dict[str, Any]:
    """A confirmation dict without its signature: what the validator signs."""
    return {key: value for key, value in confirmation.items() if key != "signature"}


def sign_receipt(signer: Signer, confirmation: dict[str, Any]) -> str:
    """The validator's signature over a confirmation (its ``signature`` key ignored)."""
    return sign_object(signer, receipt_content(confirmation))


def verify_receipt(confirmation: dict[str, Any], validator_hotkey: str | None = None) -> bool:
    """True when the confirmation is signed by ``validator_hotkey`` (by default the
    ``validator_hotkey`` it names; pass the key you expect to pin it)."""
    named = confirmation.get("validator_hotkey")
    if validator_hotkey is not None and named != validator_hotkey:
        return False
    expected = validator_hotkey or named
    if not isinstance(expected, str):
        return False
    return verify_object(expected, receipt_content(confirmation), confirmation.get("signature"))
