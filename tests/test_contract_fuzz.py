"""Property tests: parse_frame is called by the hub on untrusted input and must raise
nothing but ProtocolError, whatever it is given; the error it raises must be echoable
in an error frame; whatever it accepts must re-encode to the same frame."""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sdk.codes import ErrorCode
from sdk.errors import ProtocolError
from sdk.frames import (
    FRAME_TYPES,
    TO_HUB_TYPES,
    ErrorFrame,
    Frame,
    PredictionFrame,
    encode_frame,
    parse_frame,
)
from sdk.signing import verify_object

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

FRAME_CODES = {ErrorCode.MALFORMED_FRAME, ErrorCode.UNKNOWN_TYPE}
PREDICTION_CODES = {ErrorCode.INVALID_PREDICTION, ErrorCode.INVALID_WAGER,
                    ErrorCode.INVALID_CONFIDENCE, ErrorCode.INVALID_OUTCOME}
PID = "0b7c3f0e-4a44-4e0e-9d1c-2f8f8a3e9a11"

GAME = {"game_id": "g-1", "team_a": "Arsenal", "team_b": "Chelsea", "sport": "soccer",
        "league": "EPL", "event_start_date": "2025-06-01T18:00:00Z", "active": True,
        "outcome": 3, "team_a_odds": 2.5, "team_b_odds": 2.9, "tie_odds": 3.3,
        "can_tie": True, "last_update_date": "2025-06-01T12:00:00Z"}
PREDICTION = {"prediction_id": PID, "game_id": "g-1", "miner_uid": 7,
              "prediction_date": "2025-06-01T17:00:00Z", "predicted_outcome": 0,
              "predicted_odds": 2.5, "team_a": "Arsenal", "team_b": "Chelsea", "wager": 25.0,
              "team_a_odds": 2.5, "team_b_odds": 2.9, "tie_odds": 3.3, "model_name": "fav",
              "confidence_score": 0.6}
VALID_DATA: dict[str, dict[str, Any]] = {
    "welcome": {"session_id": "s", "validator_hotkey": "5V", "protocol": "bt-ws/1",
                "server_time_ns": 1, "heartbeat_interval_s": 20.0, "epoch": "e", "seq": 1,
                "resumed": False, "replayed": 0,
                "limits": {"max_frame_bytes": 65536, "messages_per_second": 20.0,
                           "daily_wager_limit": 1000.0, "odds_tolerance": 0.01}},
    "game_update": {"epoch": "e", "seq": 2, "prev_seq": 1, "games": [GAME], "snapshot": False},
    "prediction": {"prediction": PREDICTION, "signature": "0x00"},
    "confirmation": {"prediction_id": PID, "status": "accepted", "code": "ok",
                     "message": "stored", "received_at_ns": 5, "miner_hotkey": "5M",
                     "validator_hotkey": "5V", "signature": "0x01"},
    "heartbeat": {"time_ns": 1, "echo_ns": 0},
    "subscribe": {"sports": ["soccer"], "leagues": []},
    "error": {"code": "malformed_frame", "message": "m", "ref": None},
}


def test_valid_data_covers_every_type_and_parses():
    assert set(VALID_DATA) == set(FRAME_TYPES)
    for frame_type, data in VALID_DATA.items():
        frame = parse_frame(json.dumps({"type": frame_type, "data": data}))
        assert type(frame) is FRAME_TYPES[frame_type]


# --------------------------------------------------------------------------- strategies


@st.composite
def iso_datetimes(draw) -> str:
    """ISO 8601 strings anywhere in datetime's range, with any UTC offset (the
    extremes overflow when converted to UTC), or naive."""
    earliest, latest = datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59)
    moment = draw(st.datetimes(min_value=earliest, max_value=latest)
                  | st.sampled_from([earliest, latest]))  # boundary values
    offset = draw(st.none() | st.integers(min_value=-1439, max_value=1439)
                  | st.sampled_from([-60, 60]))
    if offset is None:
        return moment.isoformat()
    sign = "-" if offset < 0 else "+"
    return f"{moment.isoformat()}{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()  # NaN and infinities included: json.dumps writes NaN/Infinity
    | st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324])
    | st.text(max_size=30)
    | st.sampled_from(["", "tie", "draw", "Arsenal", "chelsea", "0", "1", "2", "3", PID,
                       PID.upper(), "ok", "accepted", "rejected", "soccer", "1e400"])
    | iso_datetimes()
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=12,
)


# Field values: any JSON, with ISO datetimes and contract-flavoured scalars weighted up.
FIELD_VALUES = st.one_of(iso_datetimes(), SCALARS, JSON_VALUES)


@st.composite
def mutated(draw, base: dict[str, Any], *, heavy: bool = False) -> dict[str, Any]:
    """``base`` with some keys replaced by random values or deleted, and maybe unknown
    keys added. Light (default): a few keys, often one, so the rest stays valid and
    the frame may still parse. Heavy: each key independently, half of them on average."""
    data = dict(base)
    if heavy:
        keys = [key for key in base if draw(st.booleans())]
    else:
        keys = draw(st.lists(st.sampled_from(sorted(base)), unique=True))
    for key in keys:
        if draw(st.integers(min_value=0, max_value=3)) == 0:
            del data[key]
        else:
            data[key] = draw(FIELD_VALUES)
    data.update(draw(st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=2)))
    return data


@st.composite
def random_data(draw, frame_type: str) -> dict[str, Any]:
    """The valid ``data`` of ``frame_type`` with random fields (nested ones too) broken."""
    base = VALID_DATA[frame_type]
    data = draw(mutated(base))
    if frame_type == "prediction" and draw(st.booleans()):
        data["prediction"] = draw(mutated(PREDICTION))
    elif frame_type == "game_update" and draw(st.booleans()):
        data["games"] = draw(st.lists(mutated(GAME), max_size=3))
    elif frame_type == "welcome" and draw(st.booleans()):
        data["limits"] = draw(mutated(base["limits"]))
    return data


# --------------------------------------------------------------------------- checks


def parse_or_protocol_error(text: str | bytes, *,
                            allowed: frozenset[str] | None = None) -> Frame | ProtocolError:
    """Parse; any exception but ProtocolError fails the test. Checks the error is
    well-formed and echoable, or that the frame is of the announced type."""
    try:
        frame = parse_frame(text, allowed=allowed)
    except ProtocolError as caught:
        error = caught
    else:
        assert isinstance(frame, Frame)
        assert allowed is None or frame.TYPE in allowed
        return frame
    assert error.code in FRAME_CODES | PREDICTION_CODES, error.code
    assert isinstance(error.message, str)
    assert error.message
    assert error.ref is None or isinstance(error.ref, str)
    # The hub can always echo the error back to the miner.
    echoed = ErrorFrame(code=str(error.code), message=error.message, ref=error.ref)
    assert parse_frame(encode_frame(echoed)) == echoed
    return error


def expected_ref(raw_id: Any) -> str:
    """The ``ref`` of a refused prediction (PROTOCOL.md): its id in the normalized UUID
    form, or as sent (cut to 64 characters) when it is not a UUID, or "prediction"
    when it has no string id."""
    if not isinstance(raw_id, str):
        return "prediction"
    try:
        return str(uuid.UUID(raw_id))
    except ValueError:
        return raw_id[:64].encode("utf-8", "backslashreplace").decode("utf-8")


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON (NaN equals NaN here, unlike ==)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def assert_reencodes(frame: Frame) -> None:
    again = parse_frame(encode_frame(frame))
    if isinstance(frame, PredictionFrame):
        assert isinstance(again, PredictionFrame)
        assert again.prediction == frame.prediction
        assert again.signature == frame.signature
    else:
        assert again == frame


# --------------------------------------------------------------------------- properties


@FUZZ
@given(st.text())
def test_arbitrary_text(text):
    parse_or_protocol_error(text)
    parse_or_protocol_error(text, allowed=TO_HUB_TYPES)


@FUZZ
@given(st.binary())
def test_arbitrary_bytes(data):
    parse_or_protocol_error(data)


@FUZZ
@given(st.text(alphabet='{}[]":,0123456789.-eE \\untrlfasu\ud800', max_size=60))
def test_json_alphabet_soup(text):
    parse_or_protocol_error(text)
    parse_or_protocol_error(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(JSON_VALUES)
def test_arbitrary_json_values(value):
    result = parse_or_protocol_error(json.dumps(value))
    if not isinstance(value, dict):
        assert isinstance(result, ProtocolError)
        assert result.code == ErrorCode.MALFORMED_FRAME


@FUZZ
@given(st.sampled_from(sorted(FRAME_TYPES)) | st.text(max_size=10) | JSON_VALUES, JSON_VALUES)
def test_arbitrary_envelopes(frame_type, data):
    text = json.dumps({"type": frame_type, "data": data})
    result = parse_or_protocol_error(text)
    known = isinstance(frame_type, str) and frame_type in FRAME_TYPES
    if known and not isinstance(data, dict):
        assert isinstance(result, ProtocolError)
        assert (result.code, result.ref) == (ErrorCode.MALFORMED_FRAME, frame_type)
    elif isinstance(frame_type, str) and not known:
        assert isinstance(result, ProtocolError)
        assert result.code == ErrorCode.UNKNOWN_TYPE
    elif not isinstance(frame_type, str):
        assert isinstance(result, ProtocolError)
        assert (result.code, result.ref) == (ErrorCode.MALFORMED_FRAME, None)


@pytest.mark.parametrize("frame_type", sorted(FRAME_TYPES))
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_valid_envelopes_with_random_data(frame_type, data_strategy):
    data = data_strategy.draw(random_data(frame_type))
    text = json.dumps({"type": frame_type, "data": data})
    result = parse_or_protocol_error(text)
    if isinstance(result, ProtocolError):
        assert result.code != ErrorCode.UNKNOWN_TYPE
        if frame_type == "prediction":
            assert result.code in PREDICTION_CODES
            raw = data.get("prediction")
            raw_id = raw.get("prediction_id") if isinstance(raw, dict) else None
            assert result.ref == expected_ref(raw_id)
        else:
            assert result.code == ErrorCode.MALFORMED_FRAME
            assert result.ref == frame_type
    else:
        assert type(result) is FRAME_TYPES[frame_type]
        if isinstance(result, PredictionFrame):
            assert same_json(result.raw_prediction, data["prediction"])
        assert_reencodes(result)
    restricted = parse_or_protocol_error(text, allowed=TO_HUB_TYPES)
    if frame_type not in TO_HUB_TYPES:
        assert isinstance(restricted, ProtocolError)
        assert restricted.code == ErrorCode.UNKNOWN_TYPE


@FUZZ
@given(mutated(PREDICTION, heavy=True),
       st.none() | SCALARS)
@example(dict(PREDICTION, prediction_id="A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", wager=-1),
         None)
def test_predictions_with_random_fields(prediction, signature):
    data = {"prediction": prediction, "signature": signature}
    result = parse_or_protocol_error(json.dumps({"type": "prediction", "data": data}),
                                     allowed=TO_HUB_TYPES)
    if isinstance(result, ProtocolError):
        assert result.code in PREDICTION_CODES
        assert result.ref == expected_ref(prediction.get("prediction_id"))
    else:
        assert isinstance(result, PredictionFrame)
        assert same_json(result.raw_prediction, prediction)
        assert result.signature == signature
        assert_reencodes(result)



# Strings that may hold lone surrogates: json.dumps writes them as "\udXXX" escapes,
# which json.loads turns back into unencodable str values.
SURROGATE_TEXT = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=70)


@FUZZ
@given(SURROGATE_TEXT, SURROGATE_TEXT, st.sampled_from(["prediction_id", "game_id", "wager",
                                                        "team_a", "predicted_outcome"]))
def test_errors_stay_echoable_with_lone_surrogates(frame_type, value, field):
    parse_or_protocol_error(json.dumps({"type": frame_type, "data": {}}))
    prediction = dict(PREDICTION, **{field: value})
    result = parse_or_protocol_error(json.dumps({"type": "prediction",
                                                 "data": {"prediction": prediction}}))
    if field == "prediction_id" and isinstance(result, ProtocolError):
        assert result.ref == value[:64].encode("utf-8", "backslashreplace").decode("utf-8")


# --------------------------------------------------------------------------- nesting bombs


def _nest(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


DEEP_INPUTS = [
    "[" * 100_000,
    "{" * 100_000,
    '{"a":' * 100_000,
    _nest(100_000),
    _nest(100_000, "1"),
    '{"type":"heartbeat","data":' + '{"a":' * 100_000,
    '{"type":"subscribe","data":{"sports":' + _nest(100_000) + "}}",
    '{"type":"subscribe","data":{"sports":' + _nest(500) + "}}",
    '{"type":"game_update","data":{"epoch":"e","seq":1,"games":' + _nest(900) + "}}",
    '{"type":"prediction","data":{"prediction":{"prediction_id":"' + PID
    + '","wager":' + _nest(100_000) + "}}}",
    '{"type":"prediction","data":{"prediction":{"prediction_id":"' + PID
    + '","wager":' + _nest(900) + "}}}",
    '{"type":"prediction","data":{"prediction":' + json.dumps(PREDICTION)[:-1]
    + ',"extra":' + _nest(900) + "}}}",
]


@pytest.mark.parametrize("text", DEEP_INPUTS, ids=lambda t: f"{t[:30]}..{len(t)}")
def test_deeply_nested(text):
    parse_or_protocol_error(text)
    parse_or_protocol_error(text.encode())
    parse_or_protocol_error(text, allowed=TO_HUB_TYPES)


def test_deeply_nested_is_rejected_not_accepted():
    result = parse_or_protocol_error('{"type":"heartbeat","data":' + '{"a":' * 100_000)
    assert isinstance(result, ProtocolError)
    assert result.code == ErrorCode.MALFORMED_FRAME


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=150_000), st.sampled_from(["[", "{\"k\":", "[{\"a\":"]),
       st.booleans())
def test_random_depth_nesting(depth, opener, closed):
    closer = {"[": "]", '{"k":': "}", '[{"a":': "}]"}[opener]
    text = opener * depth + ("0" + closer * depth if closed else "")
    parse_or_protocol_error(text)
    parse_or_protocol_error('{"type":"heartbeat","data":{"time_ns":' + text + "}}")


# --------------------------------------------------------------------------- signatures


@FUZZ
@given(st.text(max_size=60) | st.none() | st.integers(),
       st.text(max_size=200) | st.none() | st.integers() | st.binary(max_size=80).map(
           lambda b: "0x" + b.hex()),
       JSON_VALUES)
def test_verify_object_never_raises(address, signature, obj):
    assert verify_object(address, obj, signature) is False
