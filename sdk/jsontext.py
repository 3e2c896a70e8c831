"""JSON text written by orjson where it is byte for byte what ``json.dumps`` writes.

The canonical bytes of a receipt (PROTOCOL.md §5) and the compact text of a
confirmation are defined as ``json.dumps`` output. orjson writes the same bytes for a
flat dict of strings, ints, bools and None (same escapes, keys sorted by code point
with ``OPT_SORT_KEYS``) about ten times faster, but not for floats (``1e-7`` where
Python writes ``1e-07``), nor ints beyond 64 bits or lone surrogates (it refuses
them). So these functions take orjson only for such dicts and ``json`` otherwise;
``tests/test_contract_jsontext.py`` compares both on random and hostile input.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

__all__ = ["canonical_json", "compact_json", "flat_text_and_ints", "storage_json"]

_EXACT_TYPES = frozenset({str, int, bool, type(None)})


def flat_text_and_ints(obj: Any) -> bool:
    """A dict with string keys whose values are strings, ints, bools or None (exact
    types: an IntEnum or a str subclass is left to json)."""
    if type(obj) is not dict:
        return False
    for key, value in obj.items():
        if type(key) is not str or type(value) not in _EXACT_TYPES:
            return False
    return True


def canonical_json(obj: Any) -> bytes:
    """``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    allow_nan=False).encode("utf-8")``, with the same errors."""
    if flat_text_and_ints(obj):
        try:
            return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # an int beyond 64 bits or a lone surrogate: json decides
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def compact_json(obj: Any) -> str:
    """``json.dumps(obj, separators=(",", ":"))`` (insertion order, non-ASCII escaped
    as ``\\uXXXX``)."""
    if flat_text_and_ints(obj):
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
