"""Unit tests for sdk.frames (encode/parse of wire protocol bt-ws/1), plus the code
tables of sdk.codes and the exception mapping of sdk.errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from sdk.codes import (
    OK_CODE,
    PROTOCOL_VERSION,
    CloseCode,
    ConfirmationStatus,
    ErrorCode,
)
from sdk.errors import (
    AuthenticationError,
    BettensorWSError,
    ConnectionClosedError,
    DeregisteredError,
    HandshakeError,
    LinkError,
    NotRegisteredError,
    PredictionRejected,
    ProtocolError,
    RateLimitedError,
    ReceiptError,
    ReplacedError,
    ServiceUnavailableError,
    SigningError,
    close_error,
    handshake_error,
)
from sdk.frames import (
    FRAME_TYPES,
    TO_HUB_TYPES,
    Confirmation,
    ErrorFrame,
    Frame,
    GameUpdate,
    Heartbeat,
    Limits,
    PredictionFrame,
    Subscribe,
    Welcome,
    encode_frame,
    encode_frame_data,
    load_json,
    parse_frame,
)
from sdk.models import Game, Prediction

START = datetime(2025, 6, 1, 18, 0, tzinfo=UTC)
PID = "0b7c3f0e-4a44-4e0e-9d1c-2f8f8a3e9a11"


def game(game_id="g-1", **overrides) -> Game:
    fields = dict(game_id=game_id, team_a="Arsenal", team_b="Chelsea", sport="soccer",
                  league="EPL", event_start_date=START, team_a_odds=2.5, team_b_odds=2.9,
                  tie_odds=3.3, can_tie=True, last_update_date=START - timedelta(hours=3))
    fields.update(overrides)
    return Game(**fields)


def prediction_dict(**overrides) -> dict:
    fields = dict(
        prediction_id=PID, game_id="g-1", miner_uid=7,
        prediction_date="2025-06-01T17:00:00Z", predicted_outcome=0, predicted_odds=2.5,
        team_a="Arsenal", team_b="Chelsea", wager=25.0, team_a_odds=2.5, team_b_odds=2.9,
        tie_odds=3.3, model_name="fav", confidence_score=0.6,
    )
    fields.update(overrides)
    return fields


def envelope(frame_type, data) -> str:
    return json.dumps({"type": frame_type, "data": data})


def prediction_text(**overrides) -> str:
    return envelope("prediction", {"prediction": prediction_dict(**overrides)})


SAMPLE_FRAMES: list[Frame] = [
    Welcome(session_id="s-1", validator_hotkey="5Grw", server_time_ns=1_700_000_000_000_000_000,
            heartbeat_interval_s=20.0, epoch="ep-1", seq=42, resumed=True, replayed=3,
            limits=Limits(max_frame_bytes=65536, messages_per_second=20.0,
                          daily_wager_limit=1000.0, odds_tolerance=0.01)),
    GameUpdate(epoch="ep-1", seq=43, prev_seq=40, games=[game(), game("g-2", tie_odds=None,
                                                                    can_tie=False)],
               snapshot=True),
    GameUpdate(epoch="ep-1", seq=1, games=[]),
    PredictionFrame(prediction=Prediction.model_validate(prediction_dict()), signature="0xab"),
    PredictionFrame(prediction=Prediction.model_validate(prediction_dict(confidence_score=None))),
    Confirmation(prediction_id=PID, status=ConfirmationStatus.ACCEPTED, code=OK_CODE,
                 message="stored", received_at_ns=123, miner_hotkey="5Miner",
                 validator_hotkey="5Val", signature="0x01"),
    Confirmation(prediction_id=PID, status=ConfirmationStatus.REJECTED,
                 code=ErrorCode.GAME_STARTED, message="too late", received_at_ns=1,
                 miner_hotkey="5M", validator_hotkey="5V"),
    Heartbeat(time_ns=10),
    Heartbeat(time_ns=10, echo_ns=9),
    Subscribe(),
    Subscribe(sports=["soccer", "basketball"], leagues=["EPL"]),
    ErrorFrame(code="malformed_frame", message="bad", ref="prediction"),
    ErrorFrame(code="unknown_type", message="ünïcödé ✓"),
]


def test_samples_cover_every_frame_type():
    assert {type(frame) for frame in SAMPLE_FRAMES} == set(FRAME_TYPES.values())
    assert set(FRAME_TYPES) == {"welcome", "game_update", "prediction", "confirmation",
                                "heartbeat", "subscribe", "error"}
    assert frozenset({"prediction", "heartbeat", "subscribe"}) == TO_HUB_TYPES


@pytest.mark.parametrize("frame", SAMPLE_FRAMES, ids=lambda f: f.TYPE)
def test_round_trip(frame):
    text = encode_frame(frame)
    assert frame.encode() == text
    parsed = parse_frame(text)
    assert type(parsed) is type(frame)
    assert parsed == frame
    assert encode_frame(parsed) == text
    assert parse_frame(text.encode("utf-8")) == frame


@pytest.mark.parametrize("frame", SAMPLE_FRAMES, ids=lambda f: f.TYPE)
def test_encoded_envelope_shape(frame):
    decoded = json.loads(encode_frame(frame))
    assert set(decoded) == {"type", "data"}
    assert decoded["type"] == frame.TYPE
    assert decoded["data"] == frame.model_dump(mode="json")


def test_welcome_wire_fields():
    data = json.loads(encode_frame(SAMPLE_FRAMES[0]))["data"]
    assert data["protocol"] == PROTOCOL_VERSION == "bt-ws/1"
    assert set(data) == {"session_id", "validator_hotkey", "protocol", "server_time_ns",
                         "heartbeat_interval_s", "epoch", "seq", "resumed", "replayed",
                         "limits"}
    assert set(data["limits"]) == {"max_frame_bytes", "messages_per_second",
                                   "daily_wager_limit", "odds_tolerance"}


def test_confirmation_signed_content_excludes_signature():
    confirmation = SAMPLE_FRAMES[5]
    content = confirmation.signed_content()
    assert "signature" not in content
    assert content == {k: v for k, v in confirmation.model_dump(mode="json").items()
                       if k != "signature"}
    assert content["status"] == "accepted"


def test_encode_frame_data_wraps_serialised_data():
    frame = SAMPLE_FRAMES[1]
    text = encode_frame_data(GameUpdate.TYPE, frame.model_dump_json())
    assert text == encode_frame(frame)
    assert parse_frame(text) == frame


def test_frames_are_frozen():
    with pytest.raises(ValueError, match="Instance is frozen"):
        SAMPLE_FRAMES[7].time_ns = 11  # type: ignore[misc]


def test_extra_data_fields_ignored():
    parsed = parse_frame(envelope("heartbeat", {"time_ns": 5, "future_field": [1, 2]}))
    assert parsed == Heartbeat(time_ns=5)
    parsed = parse_frame('{"type":"heartbeat","data":{"time_ns":5},"extra":1}')
    assert parsed == Heartbeat(time_ns=5)


# --------------------------------------------------------------------------- errors


def raises_protocol(text, **kwargs) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_frame(text, **kwargs)
    return info.value


@pytest.mark.parametrize("frame_type", ["nope", "Welcome", "PREDICTION", "", " heartbeat"])
def test_unknown_type(frame_type):
    error = raises_protocol(envelope(frame_type, {}))
    assert error.code == ErrorCode.UNKNOWN_TYPE
    assert error.ref == frame_type


def test_unknown_type_ref_is_truncated():
    error = raises_protocol(envelope("x" * 1000, {}))
    assert error.code == "unknown_type"
    assert error.ref == "x" * 64


def test_unknown_type_ref_with_lone_surrogate_is_echoable():
    # Regression: a JSON escape like "\ud800" decodes to a lone surrogate; the ref must
    # still be encodable so the hub can echo it in an error frame.
    error = raises_protocol('{"type":"a\\ud800b","data":{}}')
    assert error.code == "unknown_type"
    assert error.ref == "a\\ud800b"
    echoed = ErrorFrame(code=error.code, message=error.message, ref=error.ref)
    assert parse_frame(encode_frame(echoed)) == echoed


def test_unknown_type_checked_before_data():
    error = raises_protocol('{"type":"bogus"}')
    assert (error.code, error.ref) == ("unknown_type", "bogus")


@pytest.mark.parametrize("frame", SAMPLE_FRAMES, ids=lambda f: f.TYPE)
def test_allowed_restriction(frame):
    text = encode_frame(frame)
    if frame.TYPE in TO_HUB_TYPES:
        assert parse_frame(text, allowed=TO_HUB_TYPES) == frame
    else:
        error = raises_protocol(text, allowed=TO_HUB_TYPES)
        assert (error.code, error.ref) == ("unknown_type", frame.TYPE)
    error = raises_protocol(text, allowed=frozenset())
    assert (error.code, error.ref) == ("unknown_type", frame.TYPE)
    assert parse_frame(text, allowed=frozenset({frame.TYPE})) == frame


@pytest.mark.parametrize(
    "text",
    ["", "   ", "not json", "{", '{"type": "heartbeat", "data": {"time_ns": 1}', "[]",
     "[1, 2]", "1", "1.5", '"heartbeat"', "null", "true", "NaN", "{}",
     '{"data": {"time_ns": 1}}', '{"type": null, "data": {}}', '{"type": 5, "data": {}}',
     '{"type": ["heartbeat"], "data": {}}', b"\xff\xfe\xfa", b"\x80abc", "1" * 5000],
)
def test_malformed_envelopes(text):
    error = raises_protocol(text)
    assert error.code == ErrorCode.MALFORMED_FRAME
    assert error.ref is None
    assert str(error).startswith("[malformed_frame] ")


@pytest.mark.parametrize("frame_type", sorted(FRAME_TYPES))
@pytest.mark.parametrize("data", ["missing", None, [], "x", 1, True])
def test_missing_or_non_object_data(frame_type, data):
    text = (json.dumps({"type": frame_type}) if data == "missing"
            else envelope(frame_type, data))
    error = raises_protocol(text)
    assert error.code == ErrorCode.MALFORMED_FRAME
    assert error.ref == frame_type


VALID_DATA: dict[str, dict] = {}
for _frame in SAMPLE_FRAMES:  # the first (fullest) sample of each type
    if _frame.TYPE != "prediction":
        VALID_DATA.setdefault(_frame.TYPE, json.loads(encode_frame(_frame))["data"])


@pytest.mark.parametrize(
    ("frame_type", "field", "bad"),
    [
        ("welcome", "session_id", 5),
        ("welcome", "seq", "many"),
        ("welcome", "resumed", [True]),
        ("welcome", "limits", "none"),
        ("welcome", "limits", {"max_frame_bytes": 1}),
        ("welcome", "server_time_ns", 1.5),
        ("game_update", "games", {"g": 1}),
        ("game_update", "games", [{"game_id": "g"}]),
        ("game_update", "seq", None),
        ("game_update", "epoch", {"e": 1}),
        ("confirmation", "status", "maybe"),
        ("confirmation", "received_at_ns", "later"),
        ("confirmation", "prediction_id", None),
        ("heartbeat", "time_ns", "now"),
        ("heartbeat", "time_ns", None),
        ("heartbeat", "echo_ns", [1]),
        ("subscribe", "sports", "soccer"),
        ("subscribe", "sports", [1]),
        ("subscribe", "leagues", ["x"] * 257),
        ("error", "code", None),
        ("error", "ref", 5),
    ],
)
def test_wrong_field_types(frame_type, field, bad):
    data = dict(VALID_DATA[frame_type])
    parse_frame(envelope(frame_type, data))  # the unmodified data is valid
    data[field] = bad
    error = raises_protocol(envelope(frame_type, data))
    assert error.code == ErrorCode.MALFORMED_FRAME
    assert error.ref == frame_type


@pytest.mark.parametrize(
    ("frame_type", "field"),
    [("welcome", "limits"), ("welcome", "epoch"), ("game_update", "games"),
     ("confirmation", "status"), ("heartbeat", "time_ns"), ("error", "message")],
)
def test_missing_required_field(frame_type, field):
    data = dict(VALID_DATA[frame_type])
    del data[field]
    error = raises_protocol(envelope(frame_type, data))
    assert (error.code, error.ref) == ("malformed_frame", frame_type)


def test_game_update_with_non_finite_odds_rejected():
    data = dict(VALID_DATA["game_update"])
    bad_game = dict(data["games"][0], team_a_odds=float("inf"))
    data["games"] = [bad_game]
    error = raises_protocol(envelope("game_update", data))  # json.dumps writes Infinity
    assert (error.code, error.ref) == ("malformed_frame", "game_update")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("field", ["heartbeat_interval_s", "limits.messages_per_second",
                                   "limits.daily_wager_limit", "limits.odds_tolerance"])
def test_welcome_non_finite_numbers_rejected(field, bad):
    # Regression: JSON has no NaN/Infinity, so such a welcome encoded them as null and
    # its own parser could not read it back.
    data = json.loads(json.dumps(VALID_DATA["welcome"]))
    if field.startswith("limits."):
        data["limits"][field.removeprefix("limits.")] = bad
    else:
        data[field] = bad
    error = raises_protocol(envelope("welcome", data))
    assert (error.code, error.ref) == ("malformed_frame", "welcome")
    with pytest.raises(ValueError, match="finite"):
        Welcome.model_validate(data)


def test_subscribe_filter_limits():
    assert parse_frame(envelope("subscribe", {"sports": ["s"] * 64})).sports == ["s"] * 64
    error = raises_protocol(envelope("subscribe", {"sports": ["s"] * 65}))
    assert error.code == "malformed_frame"


# --------------------------------------------------------------------------- predictions


def test_prediction_parses():
    frame = parse_frame(prediction_text(), allowed=TO_HUB_TYPES)
    assert isinstance(frame, PredictionFrame)
    assert frame.prediction == Prediction.model_validate(prediction_dict())
    assert frame.signature is None


@pytest.mark.parametrize(
    ("field", "bad", "code"),
    [
        ("wager", "lots", ErrorCode.INVALID_WAGER),
        ("wager", None, ErrorCode.INVALID_WAGER),
        ("wager", [1], ErrorCode.INVALID_WAGER),
        ("wager", float("nan"), ErrorCode.INVALID_WAGER),
        ("wager", float("inf"), ErrorCode.INVALID_WAGER),
        ("wager", 10**400, ErrorCode.INVALID_WAGER),
        ("confidence_score", "high", ErrorCode.INVALID_CONFIDENCE),
        ("confidence_score", float("nan"), ErrorCode.INVALID_CONFIDENCE),
        ("confidence_score", {"v": 1}, ErrorCode.INVALID_CONFIDENCE),
        ("predicted_outcome", "Liverpool", ErrorCode.INVALID_OUTCOME),
        ("predicted_outcome", True, ErrorCode.INVALID_OUTCOME),
        ("predicted_outcome", None, ErrorCode.INVALID_OUTCOME),
        ("predicted_outcome", 1.5, ErrorCode.INVALID_OUTCOME),
        ("predicted_outcome", [0], ErrorCode.INVALID_OUTCOME),
        ("game_id", "", ErrorCode.INVALID_PREDICTION),
        ("game_id", 5, ErrorCode.INVALID_PREDICTION),
        ("team_a", None, ErrorCode.INVALID_PREDICTION),
        ("predicted_odds", "x", ErrorCode.INVALID_PREDICTION),
        ("team_a_odds", float("nan"), ErrorCode.INVALID_PREDICTION),
        ("miner_uid", "seven", ErrorCode.INVALID_PREDICTION),
        ("prediction_date", "yesterday", ErrorCode.INVALID_PREDICTION),
        ("prediction_date", "9999-12-31T23:59:59-01:00", ErrorCode.INVALID_PREDICTION),
        ("model_name", "m" * 201, ErrorCode.INVALID_PREDICTION),
    ],
)
def test_prediction_field_codes(field, bad, code):
    error = raises_protocol(prediction_text(**{field: bad}))
    assert error.code == code
    assert error.ref == PID
    assert field in error.message


@pytest.mark.parametrize("field", ["game_id", "wager", "predicted_outcome", "team_b"])
def test_prediction_missing_field(field):
    fields = prediction_dict()
    del fields[field]
    error = raises_protocol(envelope("prediction", {"prediction": fields}))
    expected = {"wager": "invalid_wager", "predicted_outcome": "invalid_outcome"}.get(
        field, "invalid_prediction")
    assert (error.code, error.ref) == (expected, PID)


def test_prediction_string_outcome_with_non_string_team_is_a_protocol_error():
    # Regression: parse_outcome called .strip() on a non-string team name.
    error = raises_protocol(prediction_text(predicted_outcome="Arsenal", team_a=5))
    assert error.code in {"invalid_outcome", "invalid_prediction"}
    assert error.ref == PID


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1234"])
def test_prediction_bad_id_ref_is_the_received_id(bad_id):
    error = raises_protocol(prediction_text(prediction_id=bad_id))
    assert (error.code, error.ref) == ("invalid_prediction", bad_id)


def test_prediction_long_bad_id_ref_is_truncated():
    error = raises_protocol(prediction_text(prediction_id="z" * 500))
    assert (error.code, error.ref) == ("invalid_prediction", "z" * 64)


@pytest.mark.parametrize("bad_id", [5, None, ["x"], {"id": 1}])
def test_prediction_unreadable_id_ref_is_the_type(bad_id):
    error = raises_protocol(prediction_text(prediction_id=bad_id))
    assert (error.code, error.ref) == ("invalid_prediction", "prediction")


def test_prediction_ref_when_another_field_fails_and_id_missing():
    fields = prediction_dict(wager="x")
    del fields["prediction_id"]
    error = raises_protocol(envelope("prediction", {"prediction": fields}))
    assert (error.code, error.ref) == ("invalid_prediction", "prediction")


def test_prediction_without_id_is_refused_not_given_one():
    # the id is the idempotency key: inventing one would store every resend again
    fields = prediction_dict()
    del fields["prediction_id"]
    error = raises_protocol(envelope("prediction", {"prediction": fields}))
    assert (error.code, error.ref) == ("invalid_prediction", "prediction")
    assert "prediction_id" in error.message


def test_prediction_ref_is_the_canonical_uuid():
    error = raises_protocol(prediction_text(prediction_id="6F9619FF-8B86-D011-B42D-00C04FC964FF",
                                            wager="x"))
    assert error.ref == "6f9619ff-8b86-d011-b42d-00c04fc964ff"


@pytest.mark.parametrize("payload", [None, [], "x", 5, "missing"])
def test_prediction_not_an_object(payload):
    data = {} if payload == "missing" else {"prediction": payload}
    error = raises_protocol(envelope("prediction", data))
    assert (error.code, error.ref) == ("invalid_prediction", "prediction")


@pytest.mark.parametrize("signature", [5, ["0x00"], {"s": 1}])
def test_prediction_bad_signature_type(signature):
    text = envelope("prediction", {"prediction": prediction_dict(), "signature": signature})
    error = raises_protocol(text)
    assert (error.code, error.ref) == ("invalid_prediction", PID)
    assert "signature" in error.message


def test_prediction_first_failing_field_decides_the_code():
    error = raises_protocol(prediction_text(predicted_outcome="nobody", wager="x",
                                            confidence_score="y"))
    assert error.code == "invalid_outcome"
    error = raises_protocol(prediction_text(wager="x", confidence_score="y"))
    assert error.code == "invalid_wager"


def test_raw_prediction_keeps_exact_received_dict():
    raw = prediction_dict(predicted_outcome="arsenal", wager=25, prediction_id=PID.upper(),
                          unknown_extra={"nested": [1, 2]},
                          prediction_date="2025-06-01T19:00+02:00")
    frame = parse_frame(envelope("prediction", {"prediction": raw, "signature": "0x12"}))
    assert isinstance(frame, PredictionFrame)
    assert frame.raw_prediction == raw
    assert type(frame.raw_prediction["wager"]) is int
    assert frame.raw_prediction["predicted_outcome"] == "arsenal"
    assert frame.raw_prediction["prediction_id"] == PID.upper()
    # The typed model is normalised; the raw dict is not.
    assert frame.prediction.predicted_outcome == 0
    assert frame.prediction.prediction_id == PID
    assert frame.prediction.prediction_date == START - timedelta(hours=1)
    assert frame.raw_prediction != frame.prediction.wire()
    assert frame.signature == "0x12"


def test_raw_prediction_of_a_constructed_frame_is_the_wire_dict():
    prediction = Prediction.model_validate(prediction_dict())
    frame = PredictionFrame(prediction=prediction)
    assert frame.raw_prediction == prediction.wire()


def test_prediction_frames_with_different_received_bytes_are_not_equal():
    prediction = Prediction.model_validate(prediction_dict())
    by_name = parse_frame(envelope("prediction",
                                   {"prediction": prediction_dict(predicted_outcome="Arsenal")}))
    assert by_name.prediction == prediction
    assert by_name != PredictionFrame(prediction=prediction)
    assert PredictionFrame(prediction=prediction, signature="0x1") != PredictionFrame(
        prediction=prediction, signature="0x2")
    assert PredictionFrame(prediction=prediction) != Heartbeat(time_ns=1)


# --------------------------------------------------------------------------- load_json


def test_load_json():
    assert load_json('{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    assert load_json(b'{"a": "\xc3\xa9"}') == {"a": "é"}


@pytest.mark.parametrize(("bad", "reason"), [
    pytest.param("[" * 100_000, "recursion", id="nesting-bomb"),
    pytest.param("{", "Expecting property name", id="truncated"),
    pytest.param(b"\xff", "can't decode byte 0xff", id="bad-utf8"),
    pytest.param("1" * 5000, "digits", id="huge-integer"),
])
def test_load_json_reports_bad_input_as_a_malformed_frame(bad, reason):
    with pytest.raises(ProtocolError, match=f"frame is not valid JSON: .*{reason}") as info:
        load_json(bad)
    assert info.value.code == "malformed_frame"


# --------------------------------------------------------------------------- codes


def test_error_codes_of_the_brief():
    brief = {"malformed_frame", "unknown_type", "invalid_prediction", "unknown_game",
             "game_started", "odds_mismatch", "invalid_outcome", "invalid_wager",
             "wager_limit", "invalid_confidence", "bad_signature", "rate_limited"}
    assert brief <= {code.value for code in ErrorCode}
    assert ErrorCode("game_started") is ErrorCode.GAME_STARTED
    assert ErrorCode.GAME_STARTED == "game_started"
    assert json.dumps({"c": ErrorCode.WAGER_LIMIT}) == '{"c": "wager_limit"}'
    assert {s.value for s in ConfirmationStatus} == {"accepted", "duplicate", "rejected"}
    assert OK_CODE == "ok"


@pytest.mark.parametrize(
    ("code", "value", "retry"),
    [(CloseCode.NORMAL, 1000, False), (CloseCode.GOING_AWAY, 1001, True),
     (CloseCode.POLICY_VIOLATION, 1008, True), (CloseCode.MESSAGE_TOO_BIG, 1009, True),
     (CloseCode.INTERNAL_ERROR, 1011, True), (CloseCode.REPLACED, 4001, False),
     (CloseCode.DEREGISTERED, 4003, False), (CloseCode.SLOW_CONSUMER, 4008, True),
     (CloseCode.RATE_LIMITED, 4029, True)],
)
def test_close_codes(code, value, retry):
    assert code == value
    assert code.retry is retry
    assert CloseCode.retry_for(value) is retry
    assert code.description
    assert ("do not reconnect" in code.description) is not retry


@pytest.mark.parametrize("value", [None, 1006, 4999, 0, 3000])
def test_unknown_close_codes_are_retried(value):
    assert CloseCode.retry_for(value) is True


# --------------------------------------------------------------------------- errors


def test_error_hierarchy_and_defaults():
    for cls in (ProtocolError, PredictionRejected, ReceiptError, SigningError,
                LinkError):
        assert issubclass(cls, BettensorWSError)
    assert issubclass(AuthenticationError, HandshakeError)
    assert issubclass(HandshakeError, LinkError)
    assert issubclass(ReplacedError, ConnectionClosedError)
    error = ProtocolError("bad frame")
    assert (error.code, error.ref, error.retryable) == ("malformed_frame", None, False)
    assert str(error) == "[malformed_frame] bad frame"
    assert str(BettensorWSError("plain")) == "plain"
    assert ReceiptError("x").code == "bad_signature"
    assert SigningError("x").code == "signing_error"
    rejected = PredictionRejected("late", code="game_started", prediction_id=PID)
    assert (rejected.code, rejected.prediction_id, rejected.confirmation) == (
        "game_started", PID, None)


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [(401, AuthenticationError, True), (403, NotRegisteredError, False),
     (429, RateLimitedError, True), (503, ServiceUnavailableError, True),
     (400, HandshakeError, True), (500, HandshakeError, True)],
)
def test_handshake_error_mapping(status, cls, retryable):
    error = handshake_error(status, {"error": "some_code", "detail": "why"}, retry_after=2.5)
    assert type(error) is cls
    assert (error.status, error.code, error.message, error.retry_after) == (
        status, "some_code", "why", 2.5)
    assert error.retryable is retryable
    bare = handshake_error(status, None)
    assert (bare.code, bare.message, bare.retry_after) == (str(status), f"HTTP {status}", None)


@pytest.mark.parametrize(
    ("close_code", "cls", "retryable"),
    [(4001, ReplacedError, False), (4003, DeregisteredError, False),
     (1001, ConnectionClosedError, True), (1000, ConnectionClosedError, False),
     (4008, ConnectionClosedError, True), (None, ConnectionClosedError, True),
     (4321, ConnectionClosedError, True)],
)
def test_close_error_mapping(close_code, cls, retryable):
    error = close_error(close_code, "bye")
    assert type(error) is cls
    assert error.close_code == close_code
    assert error.retryable is retryable
    assert f"(close code {close_code})" in error.message
    assert error.message.startswith("bye")
    assert close_error(close_code).message.startswith("connection closed")
