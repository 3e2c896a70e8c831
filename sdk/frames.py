"""Frames of wire protocol bt-ws/1 and the one parser that turns text into them.

A frame is one JSON object per WebSocket text frame: ``{"type": ..., "data": {...}}``.
Each frame type is a pydantic model whose fields are exactly the wire fields of
``data``; :func:`encode_frame` and :func:`parse_frame` convert between the two.
:func:`parse_frame` raises nothing but :class:`~sdk.errors.ProtocolError`,
whatever bytes it is given: the hub calls it on untrusted input.

Text is decoded with orjson (:func:`load_json`), with ``json.loads`` deciding whatever
orjson refuses, so what parses and to which values is ``json.loads``'s.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from .codes import PROTOCOL_VERSION, ConfirmationStatus, ErrorCode
from .errors import ProtocolError
from .models import FiniteFloat, Game, NsTimestamp, Prediction

_FRAME_CONFIG = ConfigDict(extra="ignore", frozen=True)

FilterList = list[str]


class Frame(BaseModel):
    """Base of every frame; ``TYPE`` is the wire ``type``."""

    model_config = _FRAME_CONFIG
    TYPE: ClassVar[str] = ""

    def encode(self) -> str:
        return encode_frame(self)


class Limits(BaseModel):
    """Limits the hub enforces, announced in the welcome so clients can respect them."""

    model_config = _FRAME_CONFIG

    max_frame_bytes: int
    # Finite: JSON has no NaN/Infinity, so a non-finite value would be encoded as null,
    # which no client (this parser included) can read back.
    messages_per_second: FiniteFloat
    daily_wager_limit: FiniteFloat
    odds_tolerance: FiniteFloat


class Welcome(Frame):
    """First frame of every connection (hub -> miner)."""

    TYPE: ClassVar[str] = "welcome"

    session_id: str
    validator_hotkey: str
    protocol: str = PROTOCOL_VERSION
    server_time_ns: NsTimestamp
    heartbeat_interval_s: FiniteFloat
    epoch: str
    seq: int
    resumed: bool
    replayed: int
    limits: Limits


class GameUpdate(Frame):
    """Changed games (or, with ``snapshot``, the full state for the miner's filter).

    ``prev_seq`` is the seq of the previous update that matched this miner's filter:
    a client whose last seen seq is lower than ``prev_seq`` missed an update and must
    resync. Plain seq gaps are normal under a filter, because other sports' updates
    advance ``seq`` too.
    """

    TYPE: ClassVar[str] = "game_update"

    epoch: str
    seq: int
    prev_seq: int = 0
    games: list[Game]
    snapshot: bool = False


class PredictionFrame(Frame):
    """A miner submits one prediction (miner -> hub)."""

    TYPE: ClassVar[str] = "prediction"

    prediction: Prediction
    signature: str | None = None
    _raw_prediction: dict[str, Any] | None = PrivateAttr(default=None)

    @property
    def raw_prediction(self) -> dict[str, Any]:
        """The prediction exactly as received: the signature covers these values."""
        # Read from pydantic's private dict: ``self._raw_prediction`` goes through
        # BaseModel.__getattr__ (~2.6 us), and the hub reads this once or twice per
        # prediction (bench/README.md, "Predictions: a lean hot path").
        private = self.__pydantic_private__
        raw: dict[str, Any] | None = (None if private is None
                                       else private.get("_raw_prediction"))
        if raw is not None:
            return raw
        return self.prediction.wire()

    def __eq__(self, other: object) -> bool:
        # pydantic's __eq__ also compares private attributes, so a parsed frame (which
        # holds the received dict) never equalled the frame it was encoded from.
        # Compare what the private dict stands for instead: the signed values.
        if not isinstance(other, PredictionFrame):
            return NotImplemented
        return (self.prediction == other.prediction and self.signature == other.signature
                and self.raw_prediction == other.raw_prediction)


class Confirmation(Frame):
    """The hub's validator-signed answer to one prediction (hub -> that miner)."""

    TYPE: ClassVar[str] = "confirmation"

    prediction_id: str
    status: ConfirmationStatus
    code: str
    message: str
    received_at_ns: NsTimestamp
    miner_hotkey: str
    validator_hotkey: str
    signature: str = ""

    def signed_content(self) -> dict[str, Any]:
        """What the validator signed: every field but ``signature``."""
        return self.model_dump(mode="json", exclude={"signature"})


class Heartbeat(Frame):
    """Liveness and clock probe (both ways).

    ``echo_ns`` is set only on a reply: the ``time_ns`` of the heartbeat it answers.
    The hub replies at once to every miner heartbeat; nobody replies to a reply.
    """

    TYPE: ClassVar[str] = "heartbeat"

    time_ns: NsTimestamp
    echo_ns: NsTimestamp | None = None


class Subscribe(Frame):
    """Change the sports/leagues filter (empty = all); answered by a snapshot."""

    TYPE: ClassVar[str] = "subscribe"

    sports: FilterList = Field(default_factory=list, max_length=64)
    leagues: FilterList = Field(default_factory=list, max_length=256)


class ErrorFrame(Frame):
    """A frame the hub could not act on (hub -> miner)."""

    TYPE: ClassVar[str] = "error"

    code: str
    message: str
    ref: str | None = None


FRAME_TYPES: dict[str, type[Frame]] = {
    cls.TYPE: cls
    for cls in (Welcome, GameUpdate, PredictionFrame, Confirmation, Heartbeat, Subscribe,
                ErrorFrame)
}
TO_HUB_TYPES = frozenset({PredictionFrame.TYPE, Heartbeat.TYPE, Subscribe.TYPE})

# A prediction field that fails its type check is reported with the code a
# rule failure of that field would get, so clients see one code per mistake.
_FIELD_CODES = {
    "predicted_outcome": ErrorCode.INVALID_OUTCOME,
    "wager": ErrorCode.INVALID_WAGER,
    "confidence_score": ErrorCode.INVALID_CONFIDENCE,
}


def encode_frame(frame: Frame) -> str:
    """Serialise a frame to its wire text."""
    return f'{{"type":"{frame.TYPE}","data":{frame.model_dump_json()}}}'


def encode_frame_data(frame_type: str, data_json: str) -> str:
    """Wrap already-serialised ``data`` JSON (lets a broadcast serialise once)."""
    return f'{{"type":"{frame_type}","data":{data_json}}}'


_INT64 = float(2**63)
_MAX_FAST_DEPTH = 200
"""Nesting past this is decoded by ``json.loads`` too: its limit (the interpreter's
recursion limit, so it depends on the caller's stack) is not orjson's (1024)."""


def _json_would_differ(node: Any, depth: int = 0) -> bool:
    """Whether ``json.loads`` might decode what orjson decoded to ``node`` otherwise: a
    float of magnitude >= 2**63 (orjson's reading of an integer beyond 64 bits, which
    json keeps exact) or nesting deep enough to approach json's recursion limit."""
    if depth > _MAX_FAST_DEPTH:
        return True
    values = node.values() if type(node) is dict else node
    for value in values:
        kind = type(value)
        if kind is float:
            if value >= _INT64 or value <= -_INT64:
                return True
        elif (kind is dict or kind is list) and _json_would_differ(value, depth + 1):
            return True
    return False


def load_json(text: str | bytes) -> Any:
    """``json.loads`` that reports every failure (bad UTF-8, nesting bombs, huge
    integers) as a ProtocolError.

    orjson decodes first (about 3x faster); whatever it refuses (NaN and Infinity,
    numbers out of range, lone surrogates, its own nesting limit) is decoded again by
    ``json.loads``, so what is accepted and the value it decodes to are exactly
    ``json.loads``'s."""
    if type(text) is str:
        try:
            value = orjson.loads(text)
            if not _json_would_differ((value,)):
                return value
        except orjson.JSONDecodeError:
            pass  # json.loads decides, with its own error message
    try:
        return json.loads(text)
    except (ValueError, RecursionError, TypeError) as exc:
        raise ProtocolError(f"frame is not valid JSON: {_short(exc)}") from None


def parse_frame(text: str | bytes, *, allowed: frozenset[str] | None = None) -> Frame:
    """Parse one text frame into its typed model.

    ``allowed`` restricts the accepted types (the hub passes the miner -> hub types).
    Raises :class:`ProtocolError` with code ``malformed_frame``, ``unknown_type``, or
    for predictions the code of the failing field (``invalid_prediction`` by default),
    with ``ref`` set to the frame type or prediction id when known.
    """
    return parse_envelope(load_json(text), allowed=allowed)


def parse_envelope(envelope: Any, *, allowed: frozenset[str] | None = None) -> Frame:
    """:func:`parse_frame` for an already-decoded frame object, with the same errors.

    A reader that also needs the received ``data`` dict decodes once with
    :func:`load_json` and calls this: a confirmation's receipt is verified over the
    dict exactly as received, never over a re-serialisation of the model.
    """
    if not isinstance(envelope, dict):
        raise ProtocolError("frame must be a JSON object with 'type' and 'data'")
    frame_type = envelope.get("type")
    if not isinstance(frame_type, str):
        raise ProtocolError("frame has no string 'type'")
    cls = FRAME_TYPES.get(frame_type)
    if cls is None or (allowed is not None and frame_type not in allowed):
        raise ProtocolError(
            f"unknown frame type {frame_type[:64]!r}", code=ErrorCode.UNKNOWN_TYPE,
            ref=_ref(frame_type),
        )
    data = envelope.get("data")
    if cls is PredictionFrame:
        return parse_prediction_data(data)
    if not isinstance(data, dict):
        raise ProtocolError(f"{frame_type} frame has no object 'data'", ref=frame_type)
    try:
        return cls.model_validate(data)
    except (ValidationError, ValueError, TypeError, RecursionError) as exc:
        raise ProtocolError(f"invalid {frame_type} frame: {_short(exc)}", ref=frame_type) from None


def parse_prediction_data(data: Any) -> PredictionFrame:
    """Parse the already-decoded ``data`` of a prediction frame (the body of the HTTP
    fallback's ``POST /predictions``), with the same errors as :func:`parse_frame`."""
    if not isinstance(data, dict):
        raise ProtocolError(f"{PredictionFrame.TYPE} frame has no object 'data'",
                            ref=PredictionFrame.TYPE)
    return _parse_prediction(data)


def _parse_prediction(data: dict[str, Any]) -> PredictionFrame:
    raw = data.get("prediction")
    if not isinstance(raw, dict):
        raise ProtocolError("prediction frame has no object 'prediction'",
                            code=ErrorCode.INVALID_PREDICTION, ref=PredictionFrame.TYPE)
    if not isinstance(raw.get("prediction_id"), str):
        # the id is the idempotency key: a hub must never make one up for the miner
        raise ProtocolError("prediction.prediction_id is required (a UUID string)",
                            code=ErrorCode.INVALID_PREDICTION, ref=PredictionFrame.TYPE)
    try:
        frame = PredictionFrame.model_validate(data)
    except ValidationError as exc:
        ref = _prediction_ref(raw["prediction_id"])
        code = ErrorCode.INVALID_PREDICTION
        errors = exc.errors(include_url=False, include_input=False)
        loc = errors[0]["loc"] if errors else ()
        if len(loc) >= 2 and loc[0] == "prediction":
            code = _FIELD_CODES.get(str(loc[1]), ErrorCode.INVALID_PREDICTION)
        where = ".".join(str(part) for part in loc) or "prediction"
        message = errors[0]["msg"] if errors else "invalid"
        raise ProtocolError(f"{where}: {message}", code=code,
                            ref=ref) from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise ProtocolError(f"invalid prediction: {_short(exc)}",
                            code=ErrorCode.INVALID_PREDICTION,
                            ref=_prediction_ref(raw["prediction_id"])) from None
    frame._raw_prediction = raw
    return frame


def _prediction_ref(prediction_id: str) -> str:
    """The id a rejection names: normalised as confirmations carry it when it is a UUID
    (only computed for a rejection: the model normalises an accepted one)."""
    try:
        return str(uuid.UUID(prediction_id))
    except ValueError:
        return _ref(prediction_id)


def _ref(text: str, limit: int = 64) -> str:
    """An untrusted string cut to ``limit`` and made UTF-8-encodable (JSON escapes can
    decode to lone surrogates), so the hub can always echo it in an error frame."""
    return text[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:limit]
