"""JSON text written by orjson where it is byte for byte what ``json.dumps`` writes.

The compact text of a confirmation frame is defined as ``json.dumps`` output (its
signature covers the RFC 8785 bytes of the values, :mod:`sdk.canonical`, not this
text). orjson writes the same bytes
for a flat dict of strings, ints, bools, None and floats of magnitude 1e-4 to 1e16 or
zero (same escapes, keys sorted by code point with ``OPT_SORT_KEYS``, floats as the
shortest repr that round-trips, as Python's ``repr``) about ten times faster. Outside
that band it writes floats differently (``0.00001`` where Python writes ``1e-05``),
and it refuses ints beyond 64 bits and lone surrogates. So these functions take
orjson only for such dicts and ``json`` otherwise; ``tests/test_contract_jsontext.py``
compares both on random and hostile input.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

__all__ = ["compact_json", "orjson_writes_as_json", "storage_json"]

_EXACT_TYPES = frozenset({str, int, bool, type(None)})


def orjson_writes_as_json(obj: Any) -> bool:
    """A dict with string keys whose values are strings, ints, bools, None or floats
    that orjson writes as Python does (exact types: an IntEnum or a str subclass is
    left to json)."""
    if type(obj) is not dict:
        return False
    for key, value in obj.items():
        if type(key) is not str:
            return False
        kind = type(value)
        if kind is float:
            # NaN fails both tests; Python's repr uses exponents below 1e-4 (and from
            # 1e16, where orjson agrees, but the band is kept to what was checked)
            if not (1e-4 <= abs(value) < 1e16 or value == 0.0):
                return False
        elif kind not in _EXACT_TYPES:
            return False
    return True


def compact_json(obj: Any) -> str:
    """``json.dumps(obj, separators=(",", ":"))`` (insertion order, non-ASCII escaped
    as ``\\uXXXX``)."""
    if orjson_writes_as_json(obj):
        try:
            text = orjson.dumps(obj)
        except orjson.JSONEncodeError:
            pass
        else:
            # ensure_ascii escapes everything outside " "..."~": non-ASCII and DEL
            if text.isascii() and b"\x7f" not in text:
                return text.decode("ascii")
    return json.dumps(obj, separators=(",", ":"))


def storage_json(obj: Any) -> str:
    """JSON text that ``json.loads`` reads back to a value equal to ``obj`` (for
    storage, where the text itself is not signed): orjson's, unless ``obj`` holds what
    orjson would write differently (NaN and Infinity, which it writes as null) or
    refuses (ints beyond 64 bits, non-string keys, lone surrogates)."""
    try:
        if not _has_non_finite(obj):
            return orjson.dumps(obj).decode("utf-8")
    except (orjson.JSONEncodeError, RecursionError):
        pass
    return json.dumps(obj)


def _has_non_finite(node: Any) -> bool:
    values = node.values() if type(node) is dict else node if type(node) is list else (node,)
    for value in values:
        kind = type(value)
        if kind is float:
            if not math.isfinite(value):
                return True
        elif (kind is dict or kind is list) and _has_non_finite(value):
            return True
    return False
