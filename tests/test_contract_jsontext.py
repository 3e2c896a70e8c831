"""The orjson fast paths write and read exactly what json does (confirmation text,
storage JSON, frame parsing); canonical bytes are tested in test_contract_canonical."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdk.errors import ProtocolError
from sdk.frames import load_json
from sdk.jsontext import compact_json, orjson_writes_as_json, storage_json

FLAT_VALUES = st.one_of(st.text(), st.integers(), st.booleans(), st.none(),
                        st.integers(min_value=2**63 - 5, max_value=2**66), st.floats(),
                        st.floats(min_value=1e-5, max_value=1e-3),
                        st.floats(min_value=1e15, max_value=1e17))
FLAT = st.dictionaries(st.text(), FLAT_VALUES, max_size=10)
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


def outcome(function, *args):
    try:
        return ("ok", function(*args))
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        return ("error", type(exc).__name__)


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


def test_a_lone_surrogate_is_escaped_as_json_does():
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

