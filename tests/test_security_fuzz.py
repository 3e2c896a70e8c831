"""Hostile input against a live hub (reliability and security suite, item 2).

- A property-based fuzzer (hypothesis) drives ONE live WebSocket connection, written
  by hand on a raw TCP socket (tests.kit.hostile.RawWS) so every message can also be
  fragmented into continuation frames with pings interleaved. It sends random and
  mutated frames: predictions with wrong types, huge numbers (1e308, 1e309, 10**400
  as JSON literals, NaN), unicode (RTL, zero-width, escaped lone surrogates), nested
  JSON bombs, binary messages, random JSON. An independent oracle (written from
  PROTOCOL.md, not from the hub's parser) says which answer each one must get.
- WebSocket protocol violations and oversize fragmented messages: the right close code
  for that connection only.
- Raw HTTP upgrade requests with malformed heads, huge heads and wrong methods.

Throughout, a well-behaved miner (tests.kit.hostile.Bystander) on another connection keeps
receiving every broadcast update and gets every prediction accepted, the hub stays
healthy, and nothing from the hub logs an error or a traceback.

``BT_FUZZ_EXAMPLES=5000 pytest tests/test_security_fuzz.py`` runs a longer fuzz.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.http_exceptions import HttpProcessingError
from bittensor import http_auth
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sdk.models import Prediction
from sdk.signing import canonical_bytes, sign_prediction, verify_receipt

from .kit.games import future_game
from .kit.hostile import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    ConnectionClosed,
    RawWS,
    assert_no_crash_logs,
    build_frame,
    fragmented,
    http_head,
    raw_http,
    split,
    stored_predictions,
    upgrade_headers,
)
from .kit.keys import VALIDATOR, miner_key
from .kit.waiting import eventually

# every raw socket a test opens is aborted before its hub stops
pytestmark = pytest.mark.usefixtures("raw_sockets_aborted")

FUZZ_EXAMPLES = int(os.environ.get("BT_FUZZ_EXAMPLES", "800"))
BOB = miner_key("Bob")  # the fuzzer
CHARLIE = miner_key("Charlie")  # the bystander
DAVE = miner_key("Dave")  # throwaway connections that get closed
MAX_FRAME = 1 << 20
FUZZ_HUB = dict(max_frame_bytes=MAX_FRAME, messages_per_second=100_000.0,
                message_burst=100_000.0, daily_wager_limit=1e12, store_synchronous="OFF",
                heartbeat_interval_s=20.0, connect_burst=1000.0)
GAME = future_game("fz", start_in=timedelta(days=2))  # odds 2.1 / 3.4 / tie 3.3
TO_HUB = ("prediction", "heartbeat", "subscribe")


def crash_records(caplog) -> list[logging.LogRecord]:
    """Records that show a failure inside the hub. aiohttp logs its own refusals of
    unparsable HTTP (an ERROR with an HttpProcessingError traceback, before any hub
    code runs): those are expected for malformed requests and are not counted."""
    return [r for r in caplog.records
            if not (r.name == "aiohttp.server" and r.exc_info is not None
                    and isinstance(r.exc_info[1], HttpProcessingError))]


# -- the oracle ------------------------------------------------------------------------

OK, RULE, UNSURE, BAD = "ok", "rule", "unsure", "bad"
"""Labels of a mutated prediction field: passes type checks and every rule (OK); passes
type checks but a rule may refuse it (RULE); may or may not pass the type check (lax
coercions, UNSURE); certainly fails the type check (BAD)."""

FIELD_ORDER = ("prediction_id", "game_id", "miner_uid", "prediction_date", "predicted_outcome",
               "predicted_odds", "team_a", "team_b", "wager", "team_a_odds", "team_b_odds",
               "tie_odds", "model_name", "confidence_score", "signature")
FIELD_CODE = {"predicted_outcome": "invalid_outcome", "wager": "invalid_wager",
              "confidence_score": "invalid_confidence"}
TYPE_CODES = frozenset({"invalid_prediction", "invalid_outcome", "invalid_wager",
                        "invalid_confidence"})
RULE_CODES = frozenset({"unknown_game", "game_started", "invalid_outcome", "invalid_prediction",
                        "odds_mismatch", "invalid_wager", "wager_limit", "invalid_confidence"})


def echo_ref(text: str) -> str:
    """How the hub echoes an untrusted string: cut to 64, lone surrogates escaped."""
    return text[:64].encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class PredictionMeta:
    """What the fuzzer did to a valid prediction."""

    pid_norm: str | None  # the normalized UUID, or None when the id is not a UUID string
    labels: dict[str, str] = field(default_factory=dict)
    signature_ok: bool = True  # does the signature (if any) verify over what was sent?


@dataclass
class Probe:
    payload: bytes
    opcode: int = OP_TEXT
    kind: str = "text"
    meta: PredictionMeta | None = None
    cuts: list[int] = field(default_factory=list)
    pings: bool = False
    depth: int = 0  # nesting depth of a bomb


@dataclass(frozen=True)
class Answer:
    """One acceptable answer: an error frame, a confirmation, a heartbeat echo or a
    snapshot. ``None`` fields are not checked."""

    kind: str
    codes: frozenset[str] | None = None
    ref: Any = ...
    pid: str | None = None
    statuses: frozenset[str] | None = None
    echo: str | None = None


def error(code: str, ref: Any = ...) -> Answer:
    return Answer("error", frozenset({code}), ref)


def expected(probe: Probe, stored: dict[str, int]) -> list[Answer]:
    """Every answer PROTOCOL.md allows for ``probe`` (one of them must arrive)."""
    if probe.opcode == OP_BINARY:
        return [error("malformed_frame", None)]
    if 850 <= probe.depth <= 2000:
        # Near the decoder's recursion limit, which depends on the stack depth of the
        # caller: the hub may or may not decode it.
        return [error("malformed_frame", None), Answer("heartbeat", echo="5")]
    try:
        envelope = json.loads(probe.payload.decode("utf-8"))
    except (ValueError, RecursionError):
        return [error("malformed_frame", None)]
    if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
        return [error("malformed_frame", None)]
    frame_type = envelope["type"]
    if frame_type not in TO_HUB:
        return [error("unknown_type", echo_ref(frame_type))]
    data = envelope.get("data")
    if not isinstance(data, dict):
        return [error("malformed_frame", frame_type)]
    if frame_type == "heartbeat":
        return expected_heartbeat(data)
    if frame_type == "subscribe":
        return expected_subscribe(data)
    return expected_prediction(data, probe.meta, stored)


def _int_like(value: Any) -> bool | None:
    """True: an int; False: certainly not coercible to int; None: lax coercion may apply."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return True
    if value is None or isinstance(value, list | dict):
        return False
    if isinstance(value, float):
        return None if value == value and abs(value) != float("inf") and value.is_integer() \
            else False
    if isinstance(value, str):
        return None if value.strip().lstrip("+-").isdigit() else False
    return None


def _ns_like(value: Any) -> bool | None:
    """``_int_like`` for a ``*_ns`` field, which must also fit in 64 bits."""
    verdict = _int_like(value)
    if verdict is False:
        return False
    try:
        number = int(value.strip()) if isinstance(value, str) else int(value)
    except ValueError:
        return verdict
    return verdict if -(2**63) <= number < 2**63 else False


def expected_heartbeat(data: dict[str, Any]) -> list[Answer]:
    fail = error("malformed_frame", "heartbeat")
    if "time_ns" not in data:
        return [fail]
    time_ok = _ns_like(data["time_ns"])
    echo = data.get("echo_ns")
    echo_ok = True if echo is None else _ns_like(echo)
    if time_ok is False or echo_ok is False:
        return [fail]
    if time_ok and echo_ok:  # the hub echoes the value as a decimal string
        return [Answer("heartbeat", echo=str(data["time_ns"]))]
    return [Answer("heartbeat"), fail]


def expected_subscribe(data: dict[str, Any]) -> list[Answer]:
    for name, limit in (("sports", 64), ("leagues", 256)):
        value = data.get(name, [])
        if not (isinstance(value, list) and len(value) <= limit
                and all(isinstance(item, str) for item in value)):
            return [error("malformed_frame", "subscribe")]
    return [Answer("snapshot")]


def expected_prediction(data: dict[str, Any], meta: PredictionMeta | None,
                        stored: dict[str, int]) -> list[Answer]:
    raw = data.get("prediction")
    if not isinstance(raw, dict) or not isinstance(raw.get("prediction_id"), str):
        return [error("invalid_prediction", "prediction")]
    pid = raw["prediction_id"]
    try:
        norm = str(uuid.UUID(pid))
    except ValueError:
        ref = echo_ref(pid)
        if ref in ("", "prediction"):  # indistinguishable from a missing id
            return [error("invalid_prediction", ref)]
        return [Answer("confirmation", frozenset({"invalid_prediction"}), pid=ref,
                       statuses=frozenset({"rejected"}))]
    if norm in stored:  # any refusal of a stored prediction is its original receipt
        return [Answer("confirmation", frozenset({"ok"}), pid=norm,
                       statuses=frozenset({"duplicate"}))]
    if meta is None:  # random content: any processed answer, but for this id
        return [Answer("confirmation", pid=norm,
                       statuses=frozenset({"accepted", "rejected"}))]
    outcomes: set[tuple[str, str]] = set()
    unsure = False
    for name in FIELD_ORDER:
        label = meta.labels.get(name, OK)
        if label == BAD:
            code = FIELD_CODE.get(name, "invalid_prediction")
            if not unsure:
                return [Answer("confirmation", frozenset({code}), pid=norm,
                               statuses=frozenset({"rejected"}))]
            return [Answer("confirmation", TYPE_CODES, pid=norm,
                           statuses=frozenset({"rejected"}))]
        if label == UNSURE:
            unsure = True
            outcomes |= {("rejected", code) for code in TYPE_CODES}
    if not meta.signature_ok:
        outcomes.add(("rejected", "bad_signature"))
    else:
        if any(label in (RULE, UNSURE) for label in meta.labels.values()):
            outcomes |= {("rejected", code) for code in RULE_CODES}
        outcomes.add(("accepted", "ok"))
    return [Answer("confirmation", frozenset({code}), pid=norm, statuses=frozenset({status}))
            for status, code in outcomes]


def mismatch(answer: Answer, frame: dict[str, Any]) -> str | None:
    """Why ``frame`` is not ``answer`` (None: it is)."""
    kind, data = frame["type"], frame["data"]
    if answer.kind == "snapshot":
        return None if kind == "game_update" and data["snapshot"] else "not a snapshot"
    if answer.kind == "heartbeat":
        if kind != "heartbeat":
            return "not a heartbeat echo"
        if answer.echo is not None and data["echo_ns"] != answer.echo:
            return f"echo {data['echo_ns']} != {answer.echo}"
        return None
    if kind != answer.kind:
        return f"{kind} instead of {answer.kind}"
    if answer.codes is not None and data["code"] not in answer.codes:
        return f"code {data['code']!r} not in {sorted(answer.codes)}"
    if kind == "error":
        if answer.ref is not ... and data["ref"] != answer.ref:
            return f"ref {data['ref']!r} != {answer.ref!r}"
        return None
    if answer.pid is not None and data["prediction_id"] != answer.pid:
        return f"prediction_id {data['prediction_id']!r} != {answer.pid!r}"
    if answer.statuses is not None and data["status"] not in answer.statuses:
        return f"status {data['status']!r} not in {sorted(answer.statuses)}"
    return None


# -- strategies --------------------------------------------------------------------------

SURROGATE = '"\\ud800x\\udfff"'
RTL = json.dumps("\u202eevil\u200b")
ZERO_WIDTH = json.dumps("\u200b\ufeff\u2060")
RAW_UNICODE = '"😀 é \u2028 ‮"'  # raw UTF-8 on the wire, not escaped
HUGE_INT = "1" + "0" * 400  # 10**400 as a JSON literal
NEG_HUGE_INT = "-" + HUGE_INT

NUMBER_BAD = ["[]", "{}", '"abc"', SURROGATE, "NaN", "Infinity", "-Infinity", "1e309",
              "-1e400", HUGE_INT, NEG_HUGE_INT, RTL, '""', '{"a": [1, 2]}']
NUMBER_UNSURE = ["true", "false", '"1e3"', '" 2.5 "', '"0x10"', '"inf"', '"1_000"']
NUMBER_RULE = ["1e308", "-1e308", "0", "-0", "1e-400", "5e-324", "-1", "2.1", "3.4", "3.3",
               "1e-9", str(10**300), "1000000", "2.1000000001", "1.79e308"]


def numeric_pool(name: str) -> list[tuple[str, str]]:
    pool = [(v, BAD) for v in NUMBER_BAD] + [(v, UNSURE) for v in NUMBER_UNSURE]
    pool += [(v, RULE) for v in NUMBER_RULE]
    if name in ("tie_odds", "confidence_score"):
        pool.append(("null", OK if name == "confidence_score" else RULE))
    else:
        pool.append(("null", BAD))
    if name == "wager":
        pool += [(v, OK) for v in ("1", "0.5", "10", "1e-3", "7.25")]
    if name == "confidence_score":
        pool = [(v, OK if v in ("0", "-0", "1e-400", "5e-324", "1e-9") else label)
                for v, label in pool]
        pool += [("1", OK), ("0.5", OK), ("1.0000001", RULE)]
    return pool


POOLS: dict[str, list[tuple[str, str]]] = {
    name: numeric_pool(name) for name in ("predicted_odds", "wager", "team_a_odds",
                                          "team_b_odds", "tie_odds", "confidence_score")}
POOLS["miner_uid"] = (
    [(v, OK) for v in ("null", "0", "-1", "7", HUGE_INT, NEG_HUGE_INT, str(2**64))]
    + [(v, BAD) for v in ('"abc"', "1.5", "[]", "{}", SURROGATE, "NaN", "1e309", "1e308", RTL)]
    + [(v, UNSURE) for v in ("true", '"12"', "2.0", "1e20", "1e-400")])
POOLS["predicted_outcome"] = (
    [(v, RULE) for v in ("0", "1", "2", "3", "-1", HUGE_INT, NEG_HUGE_INT, '"tie"', '"DRAW"',
                         '" Draw "', '"2"', '"0"', '"3.0"', '"+1"', '"3_0"')]
    + [(v, UNSURE) for v in (json.dumps(GAME.team_a), json.dumps(GAME.team_b.upper()), "2.0",
                             "1e-400", '"1 "')]
    + [(v, BAD) for v in ("true", "false", "null", "[]", "{}", "1.5", '"abc"', SURROGATE, "NaN",
                          "1e309", "1e308", RTL, '"3.5"', '"0x1"')])
TEXT_RULE = [RTL, ZERO_WIDTH, '"\\u0000"', RAW_UNICODE, json.dumps("x" * 200), '"FZ"',
             json.dumps(GAME.team_a + " ")]
TEXT_BAD = ['""', json.dumps("x" * 201), "5", "null", "[]", "true", SURROGATE, "{}", HUGE_INT]
for _name in ("game_id", "team_a", "team_b"):
    POOLS[_name] = [(v, RULE) for v in TEXT_RULE] + [(v, BAD) for v in TEXT_BAD]
POOLS["model_name"] = (
    [(v, OK) for v in ("null", '""', RTL, ZERO_WIDTH, RAW_UNICODE, '"\\u0000"',
                       json.dumps("m" * 200), '"\\"quoted\\\\"')]
    + [(v, BAD) for v in (json.dumps("m" * 201), "5", "[]", SURROGATE, "true", "1e309")])
POOLS["prediction_date"] = (
    [(v, OK) for v in ('"2030-01-01T00:00:00Z"', '"2030-01-01"', '"2030-01-01T00:00:00+05:30"',
                       '"2030-01-01T00:00:00"', '"1970-01-01T00:00:00Z"',
                       '"0001-01-01T00:00:00Z"')]
    + [(v, BAD) for v in ('""', '"yesterday"', SURROGATE, '"9999-12-31T23:59:59-01:00"', "[]",
                          "null", "{}", "1e308", RTL)]
    + [(v, UNSURE) for v in ("0", "1700000000", HUGE_INT, "true", '"2030-13-01"')])
OPTIONAL = {"miner_uid": OK, "prediction_date": OK, "model_name": OK, "confidence_score": OK,
            "tie_odds": RULE}
NASTY_VALUES = ["NaN", HUGE_INT, SURROGATE, RTL, '{"$ref": "#"}', "-0", "1e309", '"\\u0000"',
                RAW_UNICODE]


@st.composite
def pid_variant(draw, base: uuid.UUID) -> tuple[str, str | None, str | None]:
    """(raw JSON of the id, normalized id or None, label) for an id mutation."""
    text = str(base)
    choice = draw(st.sampled_from(["same"] * 8 + ["upper", "braces", "urn", "hex", "notuuid",
                                                "nonstring", "missing"]))
    spelled = {"same": text, "upper": text.upper(), "braces": "{" + text + "}",
               "urn": "urn:uuid:" + text, "hex": base.hex}
    if choice in spelled:
        return json.dumps(spelled[choice]), text, None
    if choice == "notuuid":
        raw = draw(st.sampled_from(['""', '"prediction"', RTL, SURROGATE, json.dumps("z" * 300),
                                    json.dumps(text[:-1]), json.dumps(text + "0"),
                                    json.dumps(" " + text + "\u200b")]))
        return raw, None, "notuuid"
    if choice == "nonstring":
        return draw(st.sampled_from(["5", "null", "[]", "{}", "true", HUGE_INT])), None, "nonstr"
    return "", None, "missing"


@st.composite
def mutated_predictions(draw) -> Probe:
    """A valid prediction for GAME with a few fields mutated, perhaps a duplicated key,
    unknown fields, and a signature that may or may not verify."""
    outcome = draw(st.sampled_from([0, 1, 2]))
    base = Prediction.for_game(GAME, outcome, draw(st.sampled_from([1.0, 2.5, 10.0])),
                               prediction_id=str(draw(st.uuids())),
                               confidence_score=draw(st.sampled_from([None, 0.0, 0.4, 1.0])),
                               model_name=draw(st.sampled_from([None, "fuzz"])))
    base_wire = base.wire()
    items = {name: json.dumps(value) for name, value in base_wire.items()}
    meta = PredictionMeta(pid_norm=base.prediction_id)
    kind = "prediction"
    pid_raw, pid_norm, pid_label = draw(pid_variant(uuid.UUID(base.prediction_id)))
    meta.pid_norm = pid_norm
    if pid_label == "missing":
        del items["prediction_id"]
    else:
        items["prediction_id"] = pid_raw
    if pid_label:
        kind = f"prediction-id-{pid_label}"
    names = draw(st.lists(st.sampled_from(sorted(POOLS)), max_size=3, unique=True))
    for name in names:
        if draw(st.integers(0, 9)) == 0:  # delete the field
            del items[name]
            meta.labels[name] = OPTIONAL.get(name, BAD)
            continue
        value, label = draw(st.sampled_from(POOLS[name]))
        items[name] = value
        meta.labels[name] = label
    pairs = list(items.items())
    if pairs and draw(st.booleans()):  # a decoy earlier duplicate key: the last one wins
        key = draw(st.sampled_from([k for k, _ in pairs]))
        pairs.insert(0, (key, draw(st.sampled_from(["[]", SURROGATE, "NaN", '"decoy"']))))
    for _ in range(draw(st.integers(0, 2))):  # unknown fields with nasty values
        key = draw(st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
                   | st.sampled_from(["\u202ekey", "\\ud800", "__proto__", ""]))
        if key in base_wire:
            continue
        depth = draw(st.integers(0, 200))
        value = "[" * depth + draw(st.sampled_from(NASTY_VALUES)) + "]" * depth
        pairs.append((key, value))
    body = "{" + ",".join(f"{_key_json(k)}:{v}" for k, v in pairs) + "}"
    data_pairs = [("prediction", body)]
    raw = json.loads(body)
    outcome = raw.get("predicted_outcome")
    if (meta.labels.get("predicted_outcome") == BAD and isinstance(outcome, str)
            and {"team_a", "team_b"} & set(meta.labels)):
        meta.labels["predicted_outcome"] = UNSURE  # it may now name a (mutated) team
    sig_kind = draw(st.sampled_from(["absent", "null", "valid", "valid", "stale", "other",
                                     "garbage", "nonstring"]))
    signature, meta.signature_ok = _signature(sig_kind, raw, base_wire, draw)
    if sig_kind == "nonstring":
        meta.labels["signature"] = BAD
    if signature is not None:
        data_pairs.append(("signature", signature))
    if draw(st.booleans()):
        data_pairs.append(("extra\u200b", draw(st.sampled_from(NASTY_VALUES))))
    data = "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in data_pairs) + "}"
    text = '{"type":"prediction","data":' + data + "}"
    event(f"{kind} signature={sig_kind} labels={sorted(set(meta.labels.values()))}")
    return Probe(text.encode("utf-8"), kind=kind, meta=meta)


def _key_json(key: str) -> str:
    return f'"{key}"' if key == "\\ud800" else json.dumps(key)


def _canonical(obj: Any) -> bytes | None:
    try:
        return canonical_bytes(obj)
    except (ValueError, TypeError, RecursionError):
        return None


def _signature(kind: str, raw: Any, base: dict[str, Any], draw) -> tuple[str | None, bool]:
    """(raw JSON of the signature field or None, whether the hub can verify it)."""
    signed = _canonical(raw)
    if kind == "absent":
        return None, True
    if kind == "null":
        return "null", True
    if kind == "valid":
        if signed is None:  # NaN or a lone surrogate: nobody can sign this
            return None, True
        return json.dumps(sign_prediction(BOB, raw)), True
    if kind == "stale":  # signed before the mutation
        return json.dumps(sign_prediction(BOB, base)), signed == canonical_bytes(base)
    if kind == "other" and signed is not None:
        return json.dumps(sign_prediction(CHARLIE, raw)), False
    if kind == "nonstring":
        return draw(st.sampled_from(["5", "[]", "{}", "true", HUGE_INT])), False
    garbage = draw(st.sampled_from(["0x", "0x00", "0x" + "ab" * 64, "0x" + "ab" * 5000,
                                    "zz", "0x\u202e", "\\ud800"]))
    return (f'"{garbage}"' if garbage == "\\ud800" else json.dumps(garbage)), False


JSON_LEAVES = (st.none() | st.booleans() | st.integers() | st.floats()
               | st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
               | st.sampled_from([10**400, -(10**30)]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda children: st.lists(children, max_size=5)
                           | st.dictionaries(st.text(max_size=8), children, max_size=5),
                           max_leaves=25)
TYPE_NAMES = st.sampled_from([*TO_HUB, "welcome", "confirmation", "error", "game_update",
                              "", "Prediction", "heartbeat ", "\u202eheartbeat"]) \
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=80)


@st.composite
def random_frames(draw) -> Probe:
    """Random JSON envelopes: known and unknown types, random data."""
    envelope: dict[str, Any] = {"type": draw(TYPE_NAMES | JSON_VALUES)}
    if draw(st.integers(0, 5)):
        envelope["data"] = draw(JSON_VALUES)
    if draw(st.booleans()):
        envelope[draw(st.text(max_size=5))] = draw(JSON_VALUES)
    return Probe(json.dumps(envelope).encode("utf-8", "surrogatepass"), kind="random-json")


INT_LITERALS = ["0", "-1", "1", str(time.time_ns()), HUGE_INT, NEG_HUGE_INT, "9" * 4300,
                str(2**63), str(-(2**63) - 1)]
OTHER_LITERALS = ["true", "false", "null", "[]", "{}", '"12"', '" 7 "', '"soon"', "1.5", "2.0",
                  "1e308", "NaN", "-Infinity", SURROGATE, RTL, "1e-400", '"1e3"']


@st.composite
def heartbeats(draw) -> Probe:
    fields = []
    if draw(st.integers(0, 9)):
        fields.append('"time_ns":' + draw(st.sampled_from(INT_LITERALS + OTHER_LITERALS)))
    if draw(st.booleans()):
        fields.append('"echo_ns":' + draw(st.sampled_from(INT_LITERALS + OTHER_LITERALS)))
    text = '{"type":"heartbeat","data":{' + ",".join(fields) + "}}"
    return Probe(text.encode(), kind="heartbeat")


FILTER_ITEMS = st.sampled_from(["soccer", "SOCCER", " EPL ", "La Liga", "", "\u202esoccer",
                                "\u200b", "x" * 5000]) \
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=30)


@st.composite
def subscribes(draw) -> Probe:
    data: dict[str, Any] = {}
    for name, limit in (("sports", 64), ("leagues", 256)):
        shape = draw(st.sampled_from(["absent", "list", "list", "long", "odd"]))
        if shape == "list":
            data[name] = draw(st.lists(FILTER_ITEMS, max_size=5))
        elif shape == "long":
            data[name] = ["a"] * draw(st.integers(limit - 1, limit + 2))
        elif shape == "odd":
            data[name] = draw(st.sampled_from(["soccer", 5, None, {}, [1], [True], ["\ud800"],
                                               [["soccer"]]]))
    text = json.dumps({"type": "subscribe", "data": data})
    return Probe(text.encode("utf-8", "surrogatepass"), kind="subscribe")


@st.composite
def bombs(draw) -> Probe:
    """Deep nesting (the JSON decoder's recursion limit sits near 1000), wide arrays,
    long strings, and digit strings past Python's int conversion limit."""
    shape = draw(st.sampled_from(["list", "dict", "in-heartbeat", "wide", "long-string",
                                  "digits"]))
    depth = draw(st.integers(1, 1200) | st.integers(1, 150_000))
    if shape == "list":
        text = "[" * depth + "]" * depth
    elif shape == "dict":
        text = '{"a":' * depth + "1" + "}" * depth
    elif shape == "in-heartbeat":
        text = '{"type":"heartbeat","data":{"time_ns":5,"x":' + "[" * depth + "]" * depth + "}}"
    elif shape == "wide":
        text = '{"type":"heartbeat","data":{"time_ns":6,"x":[' + ",".join(["0"] * depth) + "]}}"
    elif shape == "long-string":
        text = '{"type":"heartbeat","data":{"time_ns":7,"x":"' + "\u200b" * depth + '"}}'
    else:
        text = '{"type":"heartbeat","data":{"time_ns":' + "7" * min(depth, 200_000) + "}}"
    event(f"bomb {shape}")
    nested = shape in ("list", "dict", "in-heartbeat")
    return Probe(text.encode("utf-8"), kind=f"bomb-{shape}", depth=depth if nested else 0)


GARBAGE_TEXT = st.text(st.characters(exclude_categories=("Cs",))
                       | st.sampled_from(["\u202e", "\u200b", "\ufeff", "\u2028", "\x00", "{",
                                          '"', "\\"]), max_size=300)


@st.composite
def hostile_probes(draw) -> Probe:
    probe = draw(st.one_of(
        mutated_predictions(), mutated_predictions(), mutated_predictions(),
        mutated_predictions(), random_frames(), heartbeats(),
        subscribes(), bombs(),
        GARBAGE_TEXT.map(lambda t: Probe(t.encode(), kind="garbage-text")),
        st.binary(max_size=3000).map(lambda b: Probe(b, OP_BINARY, kind="binary")),
        mutated_predictions().map(lambda p: Probe(p.payload, OP_BINARY, kind="binary-json"))))
    if draw(st.integers(0, 2)) == 0:  # fragment the message
        probe.cuts = draw(st.lists(st.integers(0, len(probe.payload)), max_size=12))
        probe.pings = draw(st.booleans())
        event("fragmented")
    return probe


# -- the fuzz target -------------------------------------------------------------------


def _is_noise(frame: dict[str, Any]) -> bool:
    """Frames that are not an answer: the hub's own heartbeats and live broadcasts."""
    if frame["type"] == "heartbeat" and frame["data"].get("echo_ns") is None:
        return True
    return frame["type"] == "game_update" and not frame["data"]["snapshot"]


@dataclass
class FuzzTarget:
    ws: RawWS
    stored: dict[str, str] = field(default_factory=dict)  # pid -> received_at_ns
    counts: Counter[str] = field(default_factory=Counter)
    sentinel: int = -(2**62)  # far from any fuzzed stamp, and within int64

    async def exchange(self, probe: Probe) -> None:
        answers = expected(probe, self.stored)
        pieces = split(probe.payload, probe.cuts)
        pongs_before = len(self.ws.pongs)
        await self.ws.send_raw(fragmented(probe.opcode, pieces, ping_between=probe.pings))
        self.sentinel -= 1
        await self.ws.send_json("heartbeat", {"time_ns": self.sentinel})
        frames = []
        while True:
            frame = await self.ws.recv_json(timeout=10.0)
            if frame["type"] == "heartbeat" and frame["data"].get("echo_ns") == str(self.sentinel):
                break
            if not _is_noise(frame):
                frames.append(frame)
        # A confirmation is delivered from a callback (accepted and duplicate ones only
        # after the commit), so it may come after the hub has answered the sentinel.
        may_settle_late = any(a.kind == "confirmation" for a in answers)
        if not frames and may_settle_late:
            while not frames:
                frame = await self.ws.recv_json(timeout=10.0)
                if not _is_noise(frame):
                    frames.append(frame)
        if probe.pings:
            assert self.ws.pongs[pongs_before:] == [b"p%d" % i for i in range(len(pieces) - 1)]
        assert len(frames) == 1, f"{probe.kind}: expected one answer, got {frames}"
        frame = frames[0]
        reasons = [mismatch(answer, frame) for answer in answers]
        assert None in reasons, (f"{probe.kind}: {probe.payload[:300]!r}\n got {frame}\n"
                                 f" allowed {answers}\n because {reasons}")
        if frame["type"] == "confirmation":
            data = frame["data"]
            assert verify_receipt(data, VALIDATOR.ss58_address), data
            assert data["miner_hotkey"] == BOB.ss58_address
            if data["status"] == "accepted":
                self.stored[data["prediction_id"]] = data["received_at_ns"]
            elif data["status"] == "duplicate":
                assert data["received_at_ns"] == self.stored[data["prediction_id"]], data
            self.counts[f"confirmation:{data['status']}:{data['code']}"] += 1
        else:
            self.counts[f"{frame['type']}:{frame['data'].get('code', '')}"] += 1


async def test_fuzzed_frames_on_one_live_connection(start_hub, bystanders, caplog):
    """Random and mutated frames on one connection: exactly one right answer each, the
    connection stays open, a bystander loses nothing, the hub never fails."""
    caplog.set_level(logging.WARNING)
    running = await start_hub(**FUZZ_HUB)
    await running.post_games([GAME])
    bystander = await bystanders(running, CHARLIE)
    ws = await RawWS.connect(running.server.port, BOB)
    assert (await ws.recv_json())["type"] == "welcome"
    assert (await ws.recv_json())["data"]["snapshot"] is True
    session_id = running.hub.sessions[BOB.ss58_address].session_id
    target = FuzzTarget(ws)
    loop = asyncio.get_running_loop()

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(probe=hostile_probes())
    def fuzz(probe: Probe) -> None:
        asyncio.run_coroutine_threadsafe(target.exchange(probe), loop).result(timeout=60)

    started = time.monotonic()
    await asyncio.to_thread(fuzz)
    elapsed = time.monotonic() - started
    figures = await bystander.stop()

    # the fuzzed connection was never dropped or replaced
    assert running.hub.sessions[BOB.ss58_address].session_id == session_id
    await assert_fuzzed_alive(ws)
    health = await running.health()
    assert health["status"] == "ok"
    assert health["active_connections"] == 2
    assert running.hub.stats.errors["internal_error"] == 0
    # exactly the accepted predictions are stored, once each, with their receipts
    rows = await asyncio.to_thread(stored_predictions, running.store_path, BOB.ss58_address)
    assert {pid: str(row["received_at_ns"]) for (_, pid), row in rows.items()} == target.stored
    assert all(verify_receipt(row["receipt"], VALIDATOR.ss58_address) for row in rows.values())
    assert_no_crash_logs(crash_records(caplog))
    ws.abort()
    print(f"\nfuzz: {FUZZ_EXAMPLES} examples in {elapsed:.1f}s, answers {dict(target.counts)}")
    print(f"bystander during fuzz: {figures}")


async def assert_fuzzed_alive(ws: RawWS) -> None:
    await ws.send_json("heartbeat", {"time_ns": 424242})
    for _ in range(1000):
        frame = await ws.recv_json()
        if frame["type"] == "heartbeat" and frame["data"].get("echo_ns") == "424242":
            return
    raise AssertionError("the fuzzed connection does not answer")


async def test_nesting_depth_at_the_decoder_limit(start_hub, caplog):
    """Around the JSON decoder's recursion limit, in an unknown field of a signed
    prediction (re-encoded for the signature check and the store) and over HTTP: the
    answer is a confirmation or malformed_frame, never a hub failure."""
    caplog.set_level(logging.WARNING)
    running = await start_hub(**FUZZ_HUB)
    await running.post_games([GAME])
    ws = await RawWS.connect(running.server.port, BOB)
    await ws.recv_json()
    await ws.recv_json()
    seen: Counter[str] = Counter()
    # The decoder's limit counts the Python frames below it too, so where it falls
    # depends on how deep in the hub the frame is parsed (~940 levels today).
    for depth in range(900, 1020):
        wire = Prediction.for_game(GAME, 0, 1.0).wire()
        raw = json.dumps(wire)[:-1] + ',"x":' + "[" * depth + "]" * depth + "}"
        signature = sign_prediction(BOB, wire)  # over the prediction without "x": bad
        await ws.send_text('{"type":"prediction","data":{"prediction":' + raw
                           + ',"signature":"' + signature + '"}}')
        frame = await ws.recv_json()
        seen[f"ws:{frame['data'].get('code')}"] += 1
        assert (frame["type"], frame["data"]["code"]) in (
            ("confirmation", "bad_signature"), ("error", "malformed_frame")), frame
        body = ('{"prediction":' + raw + "}").encode()
        status, answer, _ = await running.request("POST", "/predictions", key=BOB, body=body)
        seen[f"http:{status}"] += 1
        assert (status, answer.get("status") or answer.get("error")) in (
            (200, "accepted"), (400, "malformed_frame")), (status, answer)
    assert seen["ws:bad_signature"]
    assert seen["ws:malformed_frame"]
    assert running.hub.stats.errors["internal_error"] == 0
    assert_no_crash_logs(crash_records(caplog))
    print(f"\nnesting sweep 900..1019: {dict(seen)}")


# -- fragmented messages and WebSocket protocol violations ------------------------------

HEARTBEAT = b'{"type":"heartbeat","data":{"time_ns":%d}}'


def _padded_heartbeat(stamp: int, size: int) -> bytes:
    head = b'{"type":"heartbeat","data":{"time_ns":%d,"pad":"' % stamp
    return head + "é".encode() * ((size - len(head) - 3) // 2) + b'"}}'


async def test_fragmented_messages_are_reassembled(start_hub, bystanders, caplog):
    """Legal fragmentation: many continuation frames, empty fragments, pings between
    fragments, a multibyte character cut across fragments, a message just under the
    size limit in 1-byte to 4 KiB pieces: each is one message to the hub."""
    caplog.set_level(logging.WARNING)
    running = await start_hub(max_frame_bytes=64 * 1024, connect_burst=100.0)
    bystander = await bystanders(running, CHARLIE)
    ws = await RawWS.connect(running.server.port, BOB)
    await ws.recv_json()
    await ws.recv_json()
    big = _padded_heartbeat(5, 64 * 1024)
    assert len(big) <= 64 * 1024
    cases: list[tuple[str, int, bytes, list[bytes], bool]] = [
        ("two-pieces", 1, HEARTBEAT % 1, split(HEARTBEAT % 1, [10]), False),
        ("bytewise", 2, HEARTBEAT % 2, [bytes([b]) for b in HEARTBEAT % 2], False),
        ("empty-pieces", 3, HEARTBEAT % 3, split(HEARTBEAT % 3, [0, 0, 5, 5, 5, 40, 40]), True),
        ("utf8-cut", 4, _padded_heartbeat(4, 200), split(_padded_heartbeat(4, 200),
                                                          range(41, 60)), True),
        ("64KiB-in-1KiB", 5, big, split(big, range(1024, len(big), 1024)), True),
        ("64KiB-mixed", 5, big, split(big, [1, 2, 3, 4096, 4097, 30000, 65000]), True),
    ]
    for name, stamp, _payload, pieces, pings in cases:
        before = len(ws.pongs)
        await ws.send_raw(fragmented(OP_TEXT, pieces, ping_between=pings))
        frame = await ws.recv_json()
        while _is_noise(frame):
            frame = await ws.recv_json()
        assert frame["type"] == "heartbeat", (name, frame)
        assert frame["data"]["echo_ns"] == str(stamp), (name, frame)
        assert len(ws.pongs) - before == (len(pieces) - 1 if pings else 0), name
    # a fragmented binary message is still a binary message
    await ws.send_raw(fragmented(OP_BINARY, [b"ab", b"", b"cd"]))
    frame = await ws.recv_json()
    while _is_noise(frame):
        frame = await ws.recv_json()
    assert frame["data"]["code"] == "malformed_frame"
    assert "binary" in frame["data"]["message"]
    await bystander.stop()
    assert BOB.ss58_address in running.hub.sessions
    assert_no_crash_logs(crash_records(caplog))


VIOLATIONS = [
    # (name, bytes, close code the hub must send)
    ("continuation-without-start", build_frame(OP_CONT, b"x"), 1002),
    ("new-message-inside-fragmented", build_frame(OP_TEXT, b"{", fin=False)
     + build_frame(OP_TEXT, b"}"), 1002),
    ("fragmented-ping", build_frame(OP_PING, b"a", fin=False), 1002),
    ("ping-over-125-bytes", build_frame(OP_PING, b"a" * 126), 1002),
    ("reserved-bits", build_frame(OP_TEXT, HEARTBEAT % 1, rsv=4), 1002),
    ("reserved-opcode-3", build_frame(3, b"x"), 1002),
    ("reserved-opcode-11", build_frame(11, b"x"), 1002),
    ("close-code-999", build_frame(OP_CLOSE, (999).to_bytes(2, "big")), 1002),
    ("close-1-byte", build_frame(OP_CLOSE, b"\x03"), 1002),
    ("invalid-utf8-across-fragments", fragmented(OP_TEXT, [b'{"a":"\xe2\x82', b'\x28"}']), 1007),
    ("invalid-utf8-close-reason", build_frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"\xff"),
     1007),
    ("oversize-in-small-fragments", fragmented(OP_TEXT, [b"a" * 1000] * 70), 1009),
    ("oversize-single-frame", build_frame(OP_TEXT, b"a" * (64 * 1024 + 1)), 1009),
    ("2**63-length-header", bytes([0x81, 0xFF]) + (2**63 - 1).to_bytes(8, "big") + b"abcd",
     1009),
]


async def test_websocket_protocol_violations_close_only_that_connection(start_hub, bystanders,
                                                                        caplog):
    """Each violation closes the offending connection with the RFC 6455 code (1002
    protocol error, 1007 invalid UTF-8, 1009 too big, counted over all fragments);
    the bystander and the hub carry on and no session is left behind."""
    caplog.set_level(logging.WARNING)
    running = await start_hub(max_frame_bytes=64 * 1024, connect_burst=100.0)
    bystander = await bystanders(running, CHARLIE)
    failures = []
    for name, data, code in VIOLATIONS:
        ws = await RawWS.connect(running.server.port, DAVE)
        await ws.recv_json()
        await ws.recv_json()
        await ws.send_raw(data)
        got, frames = await ws.recv_close(timeout=5.0)
        ws.abort()
        if got != code or any(not _is_noise(f) for f in frames):
            failures.append((name, got, frames))
    assert not failures, failures
    # an unmasked client frame: RFC 6455 says fail the connection; aiohttp accepts it
    # (recorded in the report). Either way the hub must answer sanely, not fail.
    ws = await RawWS.connect(running.server.port, DAVE)
    await ws.recv_json()
    await ws.recv_json()
    await ws.send_raw(build_frame(OP_TEXT, HEARTBEAT % 99, mask=False))
    try:
        frame = await ws.recv_json()
    except ConnectionClosed as closed:
        close_code: int | None = closed.code
    else:
        close_code = None
    if close_code is not None:  # what RFC 6455 asks for
        assert close_code == 1002
    else:  # what aiohttp does
        assert frame["type"] == "heartbeat", frame
        assert frame["data"]["echo_ns"] == "99", frame
    ws.abort()
    await bystander.stop()
    await eventually(lambda: DAVE.ss58_address not in running.hub.sessions)
    assert set(running.hub.sessions) == {CHARLIE.ss58_address}
    assert (await running.health())["status"] == "ok"
    assert_no_crash_logs(crash_records(caplog))


# -- raw HTTP: malformed heads, huge heads, wrong methods -----------------------------------


def _signed(method: str, path: str, key=BOB, **changes: str) -> list[tuple[str, str]]:
    headers = http_auth.sign(key, method=method, path=path, body=b"",
                             receiver_ss58=VALIDATOR.ss58_address)
    for suffix, value in changes.items():
        name = next(n for n in headers if n.lower().endswith(suffix))
        headers[name] = value
    return list(headers.items())


def raw_cases() -> list[tuple[str, bytes, set[int], str | None]]:
    """(name, request bytes, allowed statuses, JSON error code or None for plain text)."""
    up = upgrade_headers
    return [
        ("garbage-request-line", b"GARBAGE\r\n\r\n", {400}, None),
        ("bad-method-token", b"G@T /ws HTTP/1.1\r\nHost: x\r\n\r\n", {400}, None),
        ("header-without-colon", b"GET /ws HTTP/1.1\r\nHost: x\r\nBadHeader\r\n\r\n", {400}, None),
        ("space-before-colon", b"GET /ws HTTP/1.1\r\nHost : x\r\n\r\n", {400}, None),
        ("nul-in-auth-header", b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Bittensor-Hotkey: a\x00b"
         b"\r\n\r\n", {400}, None),
        ("control-char-in-value", b"GET /ws HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", {400},
         None),
        ("obsolete-line-folding", b"GET /ws HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n",
         {400}, None),
        ("bare-LF-line-ends", b"GET /ws HTTP/1.1\nHost: x\n\n", {400}, None),
        ("header-value-9000-bytes", http_head("GET", "/ws", [("X-Big", "a" * 9000)]),
         {400, 431}, None),
        ("header-name-9000-bytes", http_head("GET", "/ws", [("X-" + "a" * 9000, "1")]),
         {400, 431}, None),
        ("200-headers", http_head("GET", "/ws", [(f"X-H{i}", "1") for i in range(200)]),
         {400, 431}, None),
        ("request-target-9000-bytes", http_head("GET", "/ws?x=" + "a" * 9000), {400, 414},
         None),
        ("content-length-and-chunked", http_head("GET", "/ws", [
            ("Content-Length", "5"), ("Transfer-Encoding", "chunked")]), {400}, None),
        ("two-content-lengths", http_head("GET", "/ws", [("Content-Length", "5"),
                                                          ("Content-Length", "6")]), {400}, None),
        ("negative-content-length", http_head("POST", "/predictions",
                                              [("Content-Length", "-1")]), {400}, None),
        ("POST-/ws-signed-upgrade", http_head("POST", "/ws", [*up(), *_signed("POST", "/ws")]),
         {405}, None),
        ("PUT-/ws", http_head("PUT", "/ws", up()), {405}, None),
        ("DELETE-/ws", http_head("DELETE", "/ws"), {405}, None),
        ("OPTIONS-/ws", http_head("OPTIONS", "/ws"), {405}, None),
        ("HEAD-/ws-signed-upgrade", http_head("HEAD", "/ws", [*up(), *_signed("HEAD", "/ws")]),
         {405}, None),
        ("GET-/admin/games", http_head("GET", "/admin/games"), {405}, None),
        ("GET-/predictions", http_head("GET", "/predictions"), {405}, None),
        ("unknown-path", http_head("GET", "/ws2", up()), {404}, None),
        ("dot-segments", http_head("GET", "/x/../ws", [*up(), *_signed("GET", "/x/../ws")]),
         {404}, None),
        ("no-sec-websocket-key", http_head("GET", "/ws", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"),
            *_signed("GET", "/ws")]), {426}, "upgrade_required"),
        ("short-sec-websocket-key", http_head("GET", "/ws", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "short"),
            ("Sec-WebSocket-Version", "13"), *_signed("GET", "/ws")]), {426}, "upgrade_required"),
        ("websocket-version-99", http_head("GET", "/ws", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "99"),
            *_signed("GET", "/ws")]), {426}, "upgrade_required"),
        ("upgrade-h2c", http_head("GET", "/ws", [("Upgrade", "h2c"), ("Connection", "Upgrade"),
                                                 *_signed("GET", "/ws")]), {426},
         "upgrade_required"),
        ("unsigned-upgrade", http_head("GET", "/ws", up()), {401}, "unauthorized"),
        ("latin-1-in-signature", http_head("GET", "/ws", [
            *up(), *_signed("GET", "/ws", signature="0xab\xe9")]), {400}, "malformed_request"),
        ("5000-digit-nonce", http_head("GET", "/ws", [*up(), *_signed("GET", "/ws",
                                                                      nonce="9" * 5000)]),
         {400}, "malformed_request"),
        ("negative-nonce", http_head("GET", "/ws", [*up(), *_signed("GET", "/ws", nonce="-5")]),
         {401}, "stale_request"),
        ("8000-byte-signature", http_head("GET", "/ws", [
            *up(), *_signed("GET", "/ws", signature="0x" + "ab" * 4000)]), {400},
         "malformed_request"),
        ("utf8-rtl-hotkey", b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Bittensor-Version: 1\r\n"
         b"X-Bittensor-Hotkey: \xe2\x80\xae5Grw\r\nX-Bittensor-Nonce: 1\r\n"
         b"X-Bittensor-Signature: 0x00\r\nX-Bittensor-Receiver: "
         + VALIDATOR.ss58_address.encode() + b"\r\n\r\n", {401}, "stale_request"),
        ("since-5000-digits", http_head("GET", "/ws?since=" + "9" * 5000, [
            *up(), *_signed("GET", "/ws?since=" + "9" * 5000)]), {400}, "malformed_request"),
    ]


async def test_malformed_http_requests_are_refused_cleanly(start_hub, bystanders, caplog):
    """Every malformed, oversized or wrongly-methoded request gets its HTTP status
    (aiohttp's own plain-text 400/405/404, or the hub's JSON refusal), never a 500 or
    an upgrade; no session is created; the bystander is unaffected."""
    caplog.set_level(logging.WARNING)
    running = await start_hub(connect_burst=1000.0)
    bystander = await bystanders(running, CHARLIE)
    port = running.server.port
    failures = []
    for name, request, statuses, code in raw_cases():
        response = await raw_http(port, request, local_host="127.0.0.5")
        body = response.body
        problem = None
        if response.status not in statuses:
            problem = f"status {response.status}"
        elif code is not None:
            if response.json() != {"error": code, "detail": response.json().get("detail")}:
                problem = f"body {body[:200]!r}"
        elif body.startswith(b"{"):
            problem = f"expected aiohttp's plain text, got {body[:200]!r}"
        if response.status == 405 and not response.headers.get("allow"):
            problem = "405 without an Allow header"
        if problem:
            failures.append((name, problem))
    assert not failures, failures
    assert set(running.hub.sessions) == {CHARLIE.ss58_address}
    figures = await bystander.stop()
    health = await running.health()
    assert health["status"] == "ok"
    assert health["active_connections"] == 1
    assert_no_crash_logs(crash_records(caplog))
    # aiohttp logs each unparsable request at ERROR with a traceback (before the hub
    # sees it): count them for the report
    parser_errors = len(caplog.records) - len(crash_records(caplog))
    print(f"\nraw HTTP cases: {len(raw_cases())}; aiohttp parser ERROR records: "
          f"{parser_errors}; bystander: {figures['rounds']} rounds")


KNOWN_HEADERS = st.sampled_from([
    "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "X-Bittensor-Version",
    "X-Bittensor-Hotkey", "X-Bittensor-Nonce", "X-Bittensor-Signature", "X-Bittensor-Receiver",
    "X-Bittensor-Crypto", "Host", "Sec-WebSocket-Extensions", "Sec-WebSocket-Protocol", "Expect",
    "Origin", "x-bittensor-hotkey", "X-Forwarded-For"])
HEADER_NAMES = st.one_of(*[KNOWN_HEADERS] * 7,
                         st.binary(min_size=1, max_size=20).map(lambda b: b.decode("latin-1")))
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)
HEADER_VALUES = st.one_of(
    PRINTABLE, PRINTABLE, PRINTABLE, PRINTABLE,
    st.sampled_from(["websocket", "Upgrade", "upgrade, keep-alive", "13", "8", "1", "0", "0x00",
                     "", "100-continue", "permessage-deflate; client_max_window_bits=0",
                     "permessage-deflate; server_max_window_bits=7", "-1", "9" * 30,
                     "ed25519", VALIDATOR.ss58_address, BOB.ss58_address]),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")))
NO_BODY_HEADERS = ("content-length", "transfer-encoding")  # a body that never comes: see
# test_security_limits for slow bodies
RANDOM_HEAD_STATUSES = {101, 200, 400, 401, 403, 404, 405, 413, 417, 426, 429, 431}


async def test_random_request_heads_never_break_the_hub(start_hub, bystanders, caplog):
    """Random header names and bytes on upgrade-shaped requests, signed or not: every
    answer is a well-formed refusal or success (never a 500, never a hang), and the
    hub and a bystander carry on."""
    caplog.set_level(logging.WARNING)
    running = await start_hub(connect_burst=1000.0)
    bystander = await bystanders(running, CHARLIE)
    port = running.server.port
    loop = asyncio.get_running_loop()
    statuses: Counter[int] = Counter()

    async def one(method: str, target: str, extra: list[tuple[str, str]], signed: bool) -> None:
        extra = [(n, v) for n, v in extra if n.strip().lower() not in NO_BODY_HEADERS
                 and not (n.lower() == "expect" and not v.isascii())]  # see the xfail below
        headers = [*upgrade_headers(), *(_signed(method, target) if signed else []), *extra]
        response = await raw_http(port, http_head(method, target, headers),
                                  local_host="127.0.0.6")
        statuses[response.status] += 1
        assert response.status in RANDOM_HEAD_STATUSES, (response.status, response.body[:300])

    @settings(max_examples=int(os.environ.get("BT_FUZZ_HTTP_EXAMPLES", "80")), deadline=None,
              database=None, suppress_health_check=list(HealthCheck))
    @given(method=st.sampled_from(["GET", "GET", "GET", "POST", "HEAD", "PUT"]),
           target=st.sampled_from(["/ws", "/ws?since=1&epoch=x", "/ws/health", "/games",
                                   "/predictions", "/admin/games", "/ws?sports=%ff"]),
           extra=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8),
           signed=st.booleans())
    def fuzz(method, target, extra, signed) -> None:
        asyncio.run_coroutine_threadsafe(one(method, target, extra, signed),
                                         loop).result(timeout=30)

    await asyncio.to_thread(fuzz)
    await bystander.stop()
    health = await running.health()
    assert health["status"] == "ok"
    assert_no_crash_logs(crash_records(caplog))
    print(f"\nrandom request heads: statuses {dict(statuses)}")


@pytest.mark.xfail(strict=True, reason=(
    "aiohttp 3.14.5 bug, before any hub code: the default Expect handler echoes the value "
    "into its 417 text, which cannot be encoded when the header held a non-UTF-8 byte; the "
    "client gets a 500 and the server logs an ERROR traceback, for any path"))
async def test_expect_header_with_a_non_utf8_byte_gets_417(start_hub):
    running = await start_hub()
    port = running.server.port
    responses = [await raw_http(port, http_head("GET", path, [("Expect", "\x80")]))
                 for path in ("/ws/health", "/no-such-path")]
    assert (await running.health())["status"] == "ok"  # the hub itself is unaffected
    assert [r.status for r in responses] == [417, 417]
