"""Canonical bytes are RFC 8785 (JCS): the RFC's own vectors, the fast path against the
written-out definition and against the independent ``rfc8785`` package."""

from __future__ import annotations

import json
import math
import struct

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk.canonical import (
    MAX_SAFE_INTEGER,
    canonical_json,
    format_number,
    reference_canonical_json,
)
from sdk.errors import CanonicalizationError, ProtocolError

# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
RFC_NUMBERS = [
    ("0000000000000000", "0"), ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"), ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"), ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"), ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), RFC_NUMBERS)
def test_numbers_are_written_as_the_rfc_test_vectors(bits, text):
    number = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert format_number(number) == text
    assert canonical_json({"n": number}) == b'{"n":' + text.encode() + b"}"
    assert canonical_json([number]) == b"[" + text.encode() + b"]"


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinities_have_no_canonical_form(bits):
    number = struct.unpack(">d", bytes.fromhex(bits))[0]
    with pytest.raises(CanonicalizationError):
        canonical_json({"n": number})


def test_the_rfc_serialization_example():
    """RFC 8785 §3.2.2: the input as JSON text, parsed, then canonicalized."""
    text = ('{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],'
            '"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
            '"literals":[null,true,false]}')
    expected = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,'
                '1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert canonical_json(json.loads(text)) == expected.encode("utf-8")


def test_keys_are_sorted_by_utf16_code_units():
    """RFC 8785 §3.2.3: U+1F600 (a surrogate pair in UTF-16) sorts before U+FB33, unlike
    in code point order."""
    obj = {"\u20ac": "Euro Sign", "\r": "Carriage Return",
           "\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One",
           "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
           "\u00f6": "Latin Small Letter O With Diaeresis"}
    keys = list(json.loads(canonical_json(obj)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert canonical_json(obj) == reference_canonical_json(obj) == rfc8785.dumps(obj)


def test_a_whole_float_and_an_int_have_the_same_bytes():
    """What a JavaScript client signs for 25 is what the hub rebuilds from 25.0."""
    assert canonical_json({"wager": 25.0}) == canonical_json({"wager": 25}) == b'{"wager":25}'
    assert canonical_json({"c": 1e-07, "d": 5e-05}) == b'{"c":1e-7,"d":0.00005}'


@pytest.mark.parametrize("value", [MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1,
                                   1795962299804346174])
def test_integers_beyond_the_safe_range_are_refused(value):
    with pytest.raises(CanonicalizationError, match="string"):
        canonical_json({"received_at_ns": value})
    assert canonical_json({"n": MAX_SAFE_INTEGER}) == b'{"n":9007199254740991}'


@pytest.mark.parametrize("obj", [{"a": "\ud800"}, {"\udc00": 1}, {1: "int key"},
                                 {"a": {1, 2}}, {"a": b"bytes"}])
def test_what_has_no_json_form_raises_a_protocol_error(obj):
    with pytest.raises(CanonicalizationError) as caught:
        canonical_json(obj)
    assert isinstance(caught.value, ProtocolError)
    assert isinstance(caught.value, ValueError)


def test_nesting_is_bounded():
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    with pytest.raises(CanonicalizationError, match="deeper"):
        canonical_json({"a": deep})


# Values of every kind and magnitude, with keys and strings that need escaping or sort
# differently in UTF-16.
KEYS = st.text(alphabet=st.characters(codec="utf-8"), max_size=6) | st.sampled_from(
    ["\ufb33", "\U0001f600", "\u20ac", "a", "A", "\x00", "\x7f"])
FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.floats(1e-7, 1e-3) | st.floats(
    1e15, 1e22) | st.integers(-2**60, 2**60).map(float)
INTS = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER) | st.integers(-2**60, 2**60)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, st.text(max_size=8), KEYS)
FLAT = st.dictionaries(KEYS, SCALARS, max_size=10)
NESTED = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(KEYS, inner, max_size=4), max_leaves=20)


def outcome(function, obj):
    try:
        return ("ok", function(obj))
    except (ValueError, TypeError):  # rfc8785's errors are ValueErrors too
        return ("error", None)


@settings(max_examples=1500, deadline=None)
@given(FLAT | NESTED)
def test_fast_path_reference_and_the_rfc8785_package_agree(obj):
    expected = outcome(rfc8785.dumps, obj)
    assert outcome(reference_canonical_json, obj) == expected
    assert outcome(canonical_json, obj) == expected


@settings(max_examples=3000, deadline=None)
@given(FLOATS)
def test_every_float_is_written_as_ecmascript_does(number):
    assert format_number(number) == rfc8785.dumps(number).decode()
    assert float(format_number(number)) == number or (number == 0 and math.copysign(1, number) < 0)


# PROTOCOL.md §5.4, pinned: the bytes, their hash and the published signatures.
WORKED_PREDICTION = {
    "prediction_id": "6f1c2b0e-8d4a-4f3e-9a51-2c7d9e0b4a17", "game_id": "example-laliga-002",
    "miner_uid": 17, "prediction_date": "2030-08-16T18:30:00Z", "predicted_outcome": 0,
    "predicted_odds": 2.4, "team_a": "Atlético Madrid", "team_b": "Sevilla", "wager": 25.0,
    "team_a_odds": 2.4, "team_b_odds": 3.1, "tie_odds": 3.25, "model_name": "value-kelly",
    "confidence_score": 0.62}
BOB = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def test_protocol_worked_example_bytes_and_signatures():
    import hashlib
    from pathlib import Path

    from sdk.signing import verify_prediction, verify_receipt

    data = canonical_json(WORKED_PREDICTION)
    assert data == reference_canonical_json(WORKED_PREDICTION) == rfc8785.dumps(
        WORKED_PREDICTION)
    assert (len(data), hashlib.sha256(data).hexdigest()) == (
        347, "788ba861510a94b6b094b638cc6fe7835786e1c7130cbb8e0d39d520e8ab6a44")
    prediction_signature = (
        "0x4230acc29ba3eda98838c430a35a1572de084d43d746b0fff56c72b6bd8ebe2b12adf0aaab5a80c"
        "aa58c46a39aac84aef3c389ba6b442a56cca69aeab48ec380")
    assert verify_prediction(BOB, WORKED_PREDICTION, prediction_signature)
    receipt = {"prediction_id": WORKED_PREDICTION["prediction_id"], "status": "accepted",
               "code": "ok", "message": "accepted", "received_at_ns": "1913222400123456789",
               "miner_hotkey": BOB, "validator_hotkey": ALICE,
               "signature": "0x6409f4783daa675a677a62815caee1733ec6c39c55aa7502d03bc4c230b147"
                            "66eca0ca6150866de85d11e4f6dffd46452b69b7b95abeaa71cbede967061c4c89"}
    assert verify_receipt(receipt, ALICE)
    content = canonical_json({k: v for k, v in receipt.items() if k != "signature"})
    assert (len(content), hashlib.sha256(content).hexdigest()) == (
        284, "d71904cb27015257640922cae1fe33e310b3ea3370cf4ceb88ca0f4083baf6ab")
    # the document shows exactly these bytes and signatures
    protocol = (Path(__file__).parent.parent / "PROTOCOL.md").read_text("utf-8")
    for shown in (data.decode(), content.decode(), prediction_signature, receipt["signature"]):
        assert shown in protocol
    # a receipt whose timestamp went through a double (JSON.parse of a number) fails
    rounded = dict(receipt, received_at_ns=int(float(1913222400123456789)))
    assert not verify_receipt(rounded, ALICE)
