"""Unit tests for sdk.signing: canonical bytes, prediction and receipt signatures, with
real bittensor sr25519 keys."""

from __future__ import annotations

import json
import math
from pathlib import Path

import bittensor
import pytest
from bittensor.keyfiles import Keypair

from sdk.codes import ConfirmationStatus
from sdk.errors import CanonicalizationError, SigningError
from sdk.frames import Confirmation, PredictionFrame, encode_frame, parse_frame
from sdk.models import Prediction
from sdk.signing import (
    canonical_bytes,
    hotkey_signer,
    receipt_content,
    sign_object,
    sign_prediction,
    sign_receipt,
    verify_object,
    verify_prediction,
    verify_receipt,
)

PID = "0b7c3f0e-4a44-4e0e-9d1c-2f8f8a3e9a11"


@pytest.fixture(scope="module")
def alice() -> Keypair:
    return Keypair.create_from_uri("//Alice")


@pytest.fixture(scope="module")
def bob() -> Keypair:
    return Keypair.create_from_uri("//Bob")


def prediction_wire(**overrides) -> dict:
    fields = dict(
        prediction_id=PID, game_id="g-1", miner_uid=7,
        prediction_date="2025-06-01T17:00:00Z", predicted_outcome=0, predicted_odds=2.5,
        team_a="Arsenal", team_b="Chelsea", wager=25.0, team_a_odds=2.5, team_b_odds=2.9,
        tie_odds=3.3, model_name="fav", confidence_score=0.6,
    )
    fields.update(overrides)
    return Prediction.model_validate(fields).wire()


def confirmation_dict(validator: Keypair, **overrides) -> dict:
    fields = dict(prediction_id=PID, status=ConfirmationStatus.ACCEPTED, code="ok",
                  message="stored", received_at_ns=1_717_000_000_123_456_789,
                  miner_hotkey="5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty",
                  validator_hotkey=validator.ss58_address)
    fields.update(overrides)
    return Confirmation(**fields).model_dump(mode="json")


def signed_receipt(signer: Keypair, **overrides) -> dict:
    receipt = confirmation_dict(signer, **overrides)
    receipt["signature"] = sign_receipt(signer, receipt)
    return receipt


def tampered(value):
    """A different value of the same JSON kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.001
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return 0
    raise AssertionError(value)


# --------------------------------------------------------------------------- canonical


def test_canonical_bytes_sorted_compact_utf8():
    obj = {"b": 1, "a": {"z": [1, 2.5, None, True], "é": "ünï ✓"}, "c": "x y"}
    data = canonical_bytes(obj)
    assert data == '{"a":{"z":[1,2.5,null,true],"é":"ünï ✓"},"b":1,"c":"x y"}'.encode()
    assert "é".encode() in data  # kept as UTF-8, not \\u00e9
    assert b"\\u" not in data
    assert json.loads(data) == obj


def test_canonical_bytes_independent_of_key_order():
    assert canonical_bytes({"x": 1, "y": 2}) == canonical_bytes({"y": 2, "x": 1})
    assert canonical_bytes({}) == b"{}"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_canonical_bytes_refuses_non_finite(bad):
    with pytest.raises(ValueError, match="not a JSON number"):
        canonical_bytes({"wager": bad})


# --------------------------------------------------------------------------- predictions


def test_prediction_sign_verify_round_trip(alice):
    wire = prediction_wire()
    signature = sign_prediction(alice, wire)
    assert signature.startswith("0x")
    assert len(signature) == 2 + 128
    int(signature, 16)
    assert verify_prediction(alice.ss58_address, wire, signature)
    assert verify_object(alice.ss58_address, wire, signature)
    # Verifiable with bittensor's own Keypair.verify, as the contract says.
    public = Keypair(ss58_address=alice.ss58_address)
    assert public.verify(canonical_bytes(wire), bytes.fromhex(signature[2:]))
    # Without the 0x prefix too.
    assert verify_prediction(alice.ss58_address, wire, signature[2:])


def test_prediction_signature_ignores_key_order(alice):
    wire = prediction_wire()
    signature = sign_prediction(alice, wire)
    reordered = dict(reversed(list(wire.items())))
    assert list(reordered) != list(wire)
    assert verify_prediction(alice.ss58_address, reordered, signature)


def test_prediction_from_other_key_fails(alice, bob):
    wire = prediction_wire()
    signature = sign_prediction(bob, wire)
    assert verify_prediction(bob.ss58_address, wire, signature)
    assert not verify_prediction(alice.ss58_address, wire, signature)


@pytest.mark.parametrize("field", list(prediction_wire()))
def test_tampering_any_prediction_field_breaks_verification(alice, field):
    wire = prediction_wire()
    signature = sign_prediction(alice, wire)
    changed = dict(wire)
    changed[field] = tampered(wire[field])
    assert changed != wire
    assert not verify_prediction(alice.ss58_address, changed, signature)


def test_adding_or_removing_a_field_breaks_verification(alice):
    wire = prediction_wire()
    signature = sign_prediction(alice, wire)
    assert not verify_prediction(alice.ss58_address, {**wire, "extra": 1}, signature)
    smaller = dict(wire)
    del smaller["model_name"]
    assert not verify_prediction(alice.ss58_address, smaller, signature)


def test_flipping_a_signature_bit_breaks_verification(alice):
    wire = prediction_wire()
    signature = sign_prediction(alice, wire)
    raw = bytearray.fromhex(signature[2:])
    raw[10] ^= 0x01
    assert not verify_prediction(alice.ss58_address, wire, "0x" + raw.hex())


def test_signature_covers_the_raw_received_dict(alice):
    # A client signs what it sends; the hub verifies what it received (raw_prediction),
    # not a re-serialisation of the parsed model.
    sent = dict(prediction_wire(), predicted_outcome="Arsenal", wager=25)
    signature = sign_prediction(alice, sent)
    text = json.dumps({"type": "prediction",
                       "data": {"prediction": sent, "signature": signature}})
    frame = parse_frame(text)
    assert isinstance(frame, PredictionFrame)
    assert verify_prediction(alice.ss58_address, frame.raw_prediction, frame.signature)
    assert not verify_prediction(alice.ss58_address, frame.prediction.wire(), frame.signature)


def test_signature_survives_the_wire(alice):
    prediction = Prediction.model_validate(prediction_wire(model_name="模型 ✓"))
    frame = PredictionFrame(prediction=prediction,
                            signature=sign_prediction(alice, prediction.wire()))
    parsed = parse_frame(encode_frame(frame))
    assert verify_prediction(alice.ss58_address, parsed.raw_prediction, parsed.signature)


# --------------------------------------------------------------------------- receipts


def test_receipt_round_trip(alice):
    receipt = signed_receipt(alice)
    assert verify_receipt(receipt)
    assert verify_receipt(receipt, alice.ss58_address)
    assert verify_object(alice.ss58_address, receipt_content(receipt), receipt["signature"])
    frame = Confirmation.model_validate(receipt)
    assert frame.signed_content() == receipt_content(receipt)
    parsed = parse_frame(encode_frame(frame))
    assert verify_receipt(parsed.model_dump(mode="json"), alice.ss58_address)


def test_receipt_content_drops_only_signature():
    content = receipt_content({"a": 1, "signature": "0x", "b": None})
    assert content == {"a": 1, "b": None}


def test_sign_receipt_ignores_an_existing_signature(alice):
    receipt = confirmation_dict(alice)
    with_old = dict(receipt, signature="0xdeadbeef")
    receipt["signature"] = sign_receipt(alice, with_old)
    assert verify_receipt(receipt, alice.ss58_address)


@pytest.mark.parametrize(
    "field", ["prediction_id", "status", "code", "message", "received_at_ns", "miner_hotkey"]
)
def test_tampering_any_receipt_field_breaks_verification(alice, field):
    receipt = signed_receipt(alice)
    changed = dict(receipt)
    changed[field] = ("rejected" if field == "status" else tampered(receipt[field]))
    assert changed[field] != receipt[field]
    assert not verify_receipt(changed)
    assert not verify_receipt(changed, alice.ss58_address)


def test_receipt_claiming_another_validator_fails(alice, bob):
    receipt = signed_receipt(alice)
    receipt["validator_hotkey"] = bob.ss58_address
    assert not verify_receipt(receipt)
    assert not verify_receipt(receipt, bob.ss58_address)
    assert not verify_receipt(receipt, alice.ss58_address)


def test_receipt_signed_by_another_key_fails_when_pinned(alice, bob):
    # Bob signs a self-consistent receipt naming himself: valid on its face, but not
    # from the validator the miner expected.
    receipt = signed_receipt(bob)
    assert verify_receipt(receipt)
    assert verify_receipt(receipt, bob.ss58_address)
    assert not verify_receipt(receipt, alice.ss58_address)


def test_receipt_signed_by_wrong_key_naming_validator_fails(alice, bob):
    receipt = confirmation_dict(alice)
    receipt["signature"] = sign_receipt(bob, receipt)
    assert not verify_receipt(receipt)
    assert not verify_receipt(receipt, alice.ss58_address)


@pytest.mark.parametrize("signature", [None, "", "0x", "0x00", "not hex", 5])
def test_receipt_without_valid_signature_fails(alice, signature):
    receipt = confirmation_dict(alice)
    if signature is not None:
        receipt["signature"] = signature
    else:
        receipt.pop("signature", None)
    assert not verify_receipt(receipt)
    assert not verify_receipt(receipt, alice.ss58_address)


def test_receipt_without_validator_hotkey_fails(alice):
    receipt = signed_receipt(alice)
    del receipt["validator_hotkey"]
    assert not verify_receipt(receipt)


# --------------------------------------------------------------------------- garbage


@pytest.mark.parametrize(
    ("address", "signature"),
    [
        ("garbage", "0x" + "00" * 64),
        ("", "0x" + "00" * 64),
        ("5" * 48, "0x" + "00" * 64),
        (None, "0x" + "00" * 64),
        (12345, "0x" + "00" * 64),
        ("ALICE", None),
        ("ALICE", 12345),
        ("ALICE", b"\x00" * 64),
        ("ALICE", ""),
        ("ALICE", "0x"),
        ("ALICE", "zz"),
        ("ALICE", "0x0"),
        ("ALICE", "0x" + "00" * 3),
        ("ALICE", "0x" + "00" * 64),
        ("ALICE", "0x" + "ff" * 64),
        ("ALICE", "0x" + "00" * 65),
        ("ALICE", "0x" + "ab" * 10_000),
        ("ALICE", "0x" + "é" * 128),
        ("ALICE", "\ud800"),
    ],
)
def test_garbage_returns_false_never_raises(alice, address, signature):
    address = alice.ss58_address if address == "ALICE" else address
    assert verify_object(address, {"a": 1}, signature) is False
    assert verify_prediction(address, prediction_wire(), signature) is False


def test_unverifiable_objects_return_false(alice):
    signature = sign_object(alice, {"a": 1})
    assert verify_object(alice.ss58_address, {"a": 1}, signature) is True
    assert verify_object(alice.ss58_address, {"a": math.nan}, signature) is False
    assert verify_object(alice.ss58_address, {"a": object()}, signature) is False
    assert verify_object(alice.ss58_address, {"a": "\ud800"}, signature) is False


def test_ed25519_needs_explicit_crypto_type():
    ed = Keypair.create_from_uri("//Alice", crypto_type=0)
    signature = sign_object(ed, {"a": 1})
    assert verify_object(ed.ss58_address, {"a": 1}, signature, crypto_type=0)
    assert not verify_object(ed.ss58_address, {"a": 1}, signature)


# --------------------------------------------------------------------------- signers


def test_sign_object_errors_are_signing_errors(alice):
    # what cannot be canonicalized is the object's fault, not the signer's
    with pytest.raises(CanonicalizationError, match="not a JSON number"):
        sign_object(alice, {"a": math.nan})

    class Broken:
        def sign(self, data):
            raise RuntimeError("key is locked")

    with pytest.raises(SigningError, match="key is locked"):
        sign_object(Broken(), {})

    class Textual:
        def sign(self, data):
            return "0x00"

    with pytest.raises(SigningError, match="no bytes"):
        sign_object(Textual(), {})


def test_sign_object_accepts_bytearray_signers():
    class Fixed:
        def sign(self, data):
            return bytearray(b"\x01\x02")

    assert sign_object(Fixed(), {}) == "0x0102"


def test_hotkey_signer_from_keypair(alice):
    signer = hotkey_signer(alice)
    assert signer.ss58_address == alice.ss58_address
    signature = sign_object(signer, {"a": 1})
    assert verify_object(alice.ss58_address, {"a": 1}, signature)


def test_hotkey_signer_from_wallet(tmp_path: Path):
    wallet = bittensor.Wallet(name="miner", hotkey="hk", path=str(tmp_path))
    wallet.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
    signer = hotkey_signer(wallet)
    assert signer.ss58_address == wallet.hotkey.ss58_address
    signature = sign_prediction(signer, prediction_wire())
    assert verify_prediction(wallet.hotkey.ss58_address, prediction_wire(), signature)


def test_hotkey_signer_missing_wallet_raises_signing_error(tmp_path: Path):
    missing = tmp_path / "no-such-dir"
    wallet = bittensor.Wallet(name="ghost", hotkey="nohk", path=str(missing))
    with pytest.raises(SigningError) as info:
        hotkey_signer(wallet)
    error = info.value
    assert error.code == "signing_error"
    assert "hotkey" in error.message
    assert "does not exist" in error.message
    assert str(missing / "ghost" / "hotkeys" / "nohk") in error.message
    assert not missing.exists()


@pytest.mark.parametrize("not_a_wallet", [None, object(), "//Alice", 5])
def test_hotkey_signer_rejects_non_wallets(not_a_wallet):
    with pytest.raises(SigningError, match="cannot sign"):
        hotkey_signer(not_a_wallet)
