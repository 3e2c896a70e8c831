"""Canonical bytes: the JSON Canonicalization Scheme (RFC 8785).

Signatures over predictions and receipts cover these bytes (PROTOCOL.md §5). RFC 8785
was chosen over "whatever Python's ``json.dumps`` writes" because every language can
produce it: numbers are IEEE doubles written as ECMAScript's ``Number.prototype.toString``
writes them (``25.0`` and ``25`` are both ``25``, ``1e-7`` not ``1e-07``), object keys
are sorted by their UTF-16 code units, strings escape only ``"``, ``\\`` and control
characters, and there is no whitespace. JavaScript's ``JSON.stringify`` of a parsed
object with sorted keys gives the same bytes.

Integers must be within ±(2**53 - 1): beyond that a double cannot hold them, so a
client that parses JSON numbers as doubles would sign another value. Timestamps in
nanoseconds are therefore strings on the wire.

:func:`canonical_json` takes orjson for the flat dicts that make up the hot path
(every receipt, nearly every prediction), where orjson's output is byte for byte the
RFC's, and :func:`reference_canonical_json`, a direct transcription of the RFC,
otherwise. ``tests/test_contract_canonical.py`` checks both against the RFC's test
vectors and against each other and the ``rfc8785`` package on random input.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from .errors import CanonicalizationError

__all__ = ["MAX_SAFE_INTEGER", "canonical_json", "format_number", "reference_canonical_json"]

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer every JSON implementation that parses numbers as doubles keeps
exactly (JavaScript's ``Number.MAX_SAFE_INTEGER``)."""

_MAX_DEPTH = 256
_FAST_SCALARS = frozenset({str, bool, type(None)})


def canonical_json(obj: Any) -> bytes:
    """The RFC 8785 bytes of ``obj`` (dicts, lists, strings, numbers, booleans, None).

    Raises :class:`~sdk.errors.CanonicalizationError` for what has no canonical form:
    NaN and infinities, integers beyond ±(2**53 - 1), lone surrogates, non-string keys,
    other types, nesting deeper than 256."""
    flat = _orjson_ready(obj)
    if flat is not None:
        try:
            return orjson.dumps(flat, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # a lone surrogate: the reference path raises the right error
    return reference_canonical_json(obj)


def _orjson_ready(obj: Any) -> dict[str, Any] | None:
    """``obj`` (or a copy with whole floats as ints) when orjson writes it as RFC 8785
    does, else None.

    orjson sorts keys by code point, which is UTF-16 order below U+D800; it escapes
    strings as the RFC does; it writes ints in the safe range and floats of magnitude
    1e-4 to 1e16 that are not whole as ECMAScript does (shortest round trip,
    positional). A whole float it writes as ``25.0`` where ECMAScript writes ``25``, so
    those become ints."""
    if type(obj) is not dict:
        return None
    try:
        keys = "".join(obj)
    except TypeError:  # a key that is not a string
        return None
    if not keys.isascii() and max(keys) >= "\ud800":
        return None
    copy: dict[str, Any] | None = None
    for key, value in obj.items():
        kind = type(value)
        if kind in _FAST_SCALARS:
            continue
        if kind is int:
            if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                continue
            return None
        if kind is not float:
            return None
        if value.is_integer():
            if abs(value) > MAX_SAFE_INTEGER:
                return None
            if copy is None:
                copy = dict(obj)
            copy[key] = int(value)
        elif not 1e-4 <= abs(value) < 1e16:
            return None  # also NaN: every comparison with it is false
    return obj if copy is None else copy


def reference_canonical_json(obj: Any) -> bytes:
    """RFC 8785 section 3.2, written out: the definition :func:`canonical_json`'s fast
    path is tested against."""
    parts: list[str] = []
    _write(obj, parts, 0)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CanonicalizationError("a string holds a lone surrogate (not UTF-8)") from exc


def _write(value: Any, parts: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise CanonicalizationError(f"nested deeper than {_MAX_DEPTH} levels")
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, str):
        # json's escapes are the RFC's: \" \\ \b \f \n \r \t, other controls as
        # lowercase \u00xx, everything else (DEL, U+2028, non-ASCII) as is.
        parts.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        parts.append(_format_int(int(value)))
    elif isinstance(value, float):
        parts.append(format_number(value))
    elif isinstance(value, dict):
        parts.append("{")
        for index, key in enumerate(_sorted_keys(value)):
            if index:
                parts.append(",")
            parts.append(json.dumps(key, ensure_ascii=False))
            parts.append(":")
            _write(value[key], parts, depth + 1)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _write(item, parts, depth + 1)
        parts.append("]")
    else:
        raise CanonicalizationError(f"{type(value).__name__} has no JSON form")


def _sorted_keys(obj: dict[Any, Any]) -> list[str]:
    for key in obj:
        if not isinstance(key, str):
            raise CanonicalizationError(f"object key {key!r} is not a string")
    try:
        return sorted(obj, key=lambda key: key.encode("utf-16-be"))
    except UnicodeEncodeError as exc:
        raise CanonicalizationError("an object key holds a lone surrogate") from exc


def _format_int(value: int) -> str:
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise CanonicalizationError(
            f"integer {value} is beyond ±(2**53 - 1): send it as a string")
    return str(value)


def format_number(value: float) -> str:
    """ECMAScript's ``Number.prototype.toString`` of a double (RFC 8785 §3.2.2.3)."""
    if not math.isfinite(value):
        raise CanonicalizationError(f"{value} is not a JSON number")
    if value == 0:
        return "0"  # -0 too
    if value < 0:
        return "-" + format_number(-value)
    # Python's repr is the shortest digit string that reads back as the same double,
    # the closest to it when several are that short: ECMAScript's digits. Only the
    # layout differs.
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # the decimal point sits `point` digits after the first significant digit
    point = len(whole) + int(exponent or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    if len(digits) <= point <= 21:
        return digits + "0" * (point - len(digits))
    if 0 < point <= 21:
        return digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    sign = "+" if point - 1 >= 0 else "-"
    head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{head}e{sign}{abs(point - 1)}"
