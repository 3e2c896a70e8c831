"""The orjson fast paths write and read exactly what json does (PROTOCOL.md §5 bytes)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk.errors import ProtocolError
from sdk.frames import load_json
from sdk.jsontext import canonical_json, compact_json, orjson_writes_as_json, storage_json

FLAT_VALUES = st.one_of(st.text(), st.integers(), st.booleans(), st.none(),
                        st.integers(min_value=2**63 - 5, max_value=2**66), st.floats(),
                        st.floats(min_value=1e-5, max_value=1e-3),
                        st.floats(min_value=1e15, max_value=1e17))
FLAT = st.dictionaries(st.text(), FLAT_VALUES, max_size=10)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


def reference_canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def outcome(function, *args):
    try:
        return ("ok", function(*args))
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        return ("error", type(exc).__name__)


@settings(max_examples=400, deadline=None)
@given(FLAT)
def test_canonical_json_of_a_flat_dict_is_json_dumps_byte_for_byte(obj):
    assert outcome(canonical_json, obj)[0] == outcome(reference_canonical, obj)[0]
    if outcome(reference_canonical, obj)[0] == "ok":
        assert canonical_json(obj) == reference_canonical(obj)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_canonical_json_of_anything_is_json_dumps(obj):
    assert outcome(canonical_json, obj) == outcome(reference_canonical, obj) or (
        outcome(reference_canonical, obj)[0] == "error" == outcome(canonical_json, obj)[0])


@settings(max_examples=400, deadline=None)
@given(FLAT)
def test_compact_json_is_json_dumps_byte_for_byte(obj):
    assert compact_json(obj) == json.dumps(obj, separators=(",", ":"))


@pytest.mark.parametrize(("obj", "flat"), [
    ({"a": "x", "b": 1, "c": None, "d": False}, True), ({"a": 1.0, "b": -0.0}, True),
    ({"a": 1e-05}, False), ({"a": 1e16}, False), ({"a": float("nan")}, False),
    ({"a": [1]}, False), ({1: "a"}, False), ({"a": {"b": 1}}, False), ([1], False)])
def test_only_flat_dicts_of_text_and_ints_take_the_fast_path(obj, flat):
    assert orjson_writes_as_json(obj) is flat


@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_float_orjson_writes_is_written_as_pythons_repr(number):
    if orjson_writes_as_json({"x": number}):
        assert canonical_json({"x": number}) == reference_canonical({"x": number})


def test_floats_keep_pythons_repr_in_canonical_bytes():
    assert canonical_json({"w": 25.0, "c": 1e-07}) == b'{"c":1e-07,"w":25.0}'


def test_a_lone_surrogate_fails_as_with_json():
    with pytest.raises(UnicodeEncodeError):
        canonical_json({"a": "\ud800"})
    assert compact_json({"a": "\ud800"}) == '{"a":"\\ud800"}'


def reference_load(text):
    try:
        return ("ok", json.loads(text))
    except (ValueError, RecursionError):
        return ("error", None)


def fast_load(text):
    try:
        return ("ok", load_json(text))
    except ProtocolError:
        return ("error", None)


def same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


HOSTILE = ["1" + "0" * 400, "-" + "9" * 30, str(2**64), str(-(2**63) - 1), str(2**63),
           "1e400", "-1e309", "NaN", "Infinity", '"\\ud800"', '"\\udfff\\ud800"', "1.5e308",
           '{"a":1,"a":2}', "[" * 1100 + "]" * 1100, '{"x":[' + str(2**70) + "]}", "",
           "\ufeff{}", "{}x", '"\x01"', "[1,]", "5e-324", "0.30000000000000004",
           '{"a":{"b":[1.8446744073709552e19]}}', "true", "null", "[" * 300 + "]" * 300,
           '{"a":' * 250 + "1" + "}" * 250]


@pytest.mark.parametrize("text", HOSTILE)
def test_load_json_decides_and_decodes_as_json_loads_on_hostile_text(text):
    expected, got = reference_load(text), fast_load(text)
    assert expected[0] == got[0]
    assert same(expected[1], got[1])


@settings(max_examples=400, deadline=None)
@given(JSON_VALUES)
def test_load_json_decodes_as_json_loads(obj):
    text = json.dumps(obj)  # writes NaN/Infinity too: json.loads reads them back
    expected, got = reference_load(text), fast_load(text)
    assert expected[0] == got[0]
    assert same(expected[1], got[1])


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_load_json_reads_every_float_as_python_does(number):
    for text in (repr(number), f"{number:.17e}", f"{number:.3e}"):
        assert same(json.loads(text), load_json(text))


@settings(max_examples=400, deadline=None)
@given(JSON_VALUES)
def test_storage_json_reads_back_to_the_same_value(obj):
    assert same(json.loads(storage_json(obj)), obj)


@pytest.mark.parametrize("obj", [{"a": float("nan")}, [1, [float("-inf")]], {"a": 2**70},
                                 {1: "int key"}, {"a": "\ud800"}, 1e-07, "x"])
def test_storage_json_falls_back_to_json_for_what_orjson_writes_differently(obj):
    assert storage_json(obj) == json.dumps(obj) or same(json.loads(storage_json(obj)), obj)


def test_compact_json_escapes_del_as_json_does():
    assert compact_json({"\x7f": "a\x7f"}) == '{"\\u007f":"a\\u007f"}'


WORKED_PREDICTION = {
    "prediction_id": "6f1c2b0e-8d4a-4f3e-9a51-2c7d9e0b4a17", "game_id": "example-laliga-002",
    "miner_uid": 17, "prediction_date": "2030-08-16T18:30:00Z", "predicted_outcome": 0,
    "predicted_odds": 2.4, "team_a": "Atlético Madrid", "team_b": "Sevilla", "wager": 25.0,
    "team_a_odds": 2.4, "team_b_odds": 3.1, "tie_odds": 3.25, "model_name": "value-kelly",
    "confidence_score": 0.62}
BOB = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def test_protocol_worked_example_bytes_and_signatures_still_verify():
    """PROTOCOL.md §5.4, now that orjson writes these bytes: same length, same hash,
    and the published signatures verify."""
    import hashlib

    from sdk.signing import verify_prediction, verify_receipt

    assert orjson_writes_as_json(WORKED_PREDICTION)  # the fast path is the one tested
    data = canonical_json(WORKED_PREDICTION)
    assert len(data) == 349
    assert hashlib.sha256(data).hexdigest() == (
        "97143ca53b6f6a7df96b72268fc2816db5c8a2ef9e8ec9acf1837408ee546d27")
    assert verify_prediction(BOB, WORKED_PREDICTION, (
        "0x004c634e1edf6c920f94c18ec213d2d191f75d02f933639d0ce82f778c24a11fa76cb3064a681b9e7"
        "85265355ce65cd5219f0b51b530347d133d5437a46f5582"))
    receipt = {"prediction_id": WORKED_PREDICTION["prediction_id"], "status": "accepted",
               "code": "ok", "message": "accepted", "received_at_ns": 1913222400123456789,
               "miner_hotkey": BOB, "validator_hotkey": ALICE,
               "signature": "0x3a28bfbdb1851414ee7d0b5f16c9b793d87da078ca125b935216a62f0ab9b8"
                            "5c377e7dabd656775409b83408f00900635035bd38856a2654f403cba7fc125c88"}
    assert verify_receipt(receipt, ALICE)
