"""Machine codes of the wire protocol: close codes, error/rejection codes, statuses.

Every code carries its meaning for a client: whether to reconnect after a close,
and which HTTP status a handshake refusal uses. The hub and the SDK both read
these tables, so the retry policy is decided in exactly one place.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

PROTOCOL_VERSION = "bt-ws/1"

ERROR_HEADER = "X-Bt-Error"
"""Response header repeating the ``error`` code of an HTTP refusal (readable by
WebSocket clients that never see the body of a refused upgrade)."""


class CloseCode(IntEnum):
    """WebSocket close codes the hub sends, with the client's retry policy."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    REPLACED = 4001
    DEREGISTERED = 4003
    SLOW_CONSUMER = 4008
    RATE_LIMITED = 4029

    @property
    def retry(self) -> bool:
        """Whether a client should reconnect after the hub closed with this code."""
        return self not in _PERMANENT_CLOSES

    @property
    def description(self) -> str:
        return _CLOSE_DESCRIPTIONS[self]

    @classmethod
    def retry_for(cls, code: int | None) -> bool:
        """Retry policy for any close code, including ones this version does not know.

        Unknown codes (and an abnormal close with no code) are treated as transient:
        a client that gives up on an unknown code would turn every hub upgrade into
        an outage.
        """
        try:
            return cls(code).retry  # type: ignore[arg-type]
        except ValueError:
            return True


_PERMANENT_CLOSES = frozenset({CloseCode.NORMAL, CloseCode.REPLACED, CloseCode.DEREGISTERED})

_CLOSE_DESCRIPTIONS = {
    CloseCode.NORMAL: "normal closure; do not reconnect",
    CloseCode.GOING_AWAY: "hub going away (restart or shutdown); reconnect with backoff",
    CloseCode.POLICY_VIOLATION: "protocol policy violated (e.g. binary frame, heartbeat timeout);"
    " reconnect with backoff",
    CloseCode.MESSAGE_TOO_BIG: "frame larger than limits.max_frame_bytes; reconnect with backoff",
    CloseCode.INTERNAL_ERROR: "hub internal error; reconnect with backoff",
    CloseCode.REPLACED: "replaced by a newer connection of the same hotkey; do not reconnect",
    CloseCode.DEREGISTERED: "hotkey no longer registered; do not reconnect",
    CloseCode.SLOW_CONSUMER: "send queue overflowed (client not reading); reconnect and resume",
    CloseCode.RATE_LIMITED: "sustained rate-limit abuse; reconnect with backoff",
}


class ErrorCode(StrEnum):
    """Codes carried by error frames, rejected confirmations and HTTP error bodies."""

    # Frame-level errors (error frames).
    MALFORMED_FRAME = "malformed_frame"
    UNKNOWN_TYPE = "unknown_type"
    RATE_LIMITED = "rate_limited"
    # Prediction rejections (confirmation.code when status is "rejected").
    INVALID_PREDICTION = "invalid_prediction"
    UNKNOWN_GAME = "unknown_game"
    GAME_STARTED = "game_started"
    ODDS_MISMATCH = "odds_mismatch"
    INVALID_OUTCOME = "invalid_outcome"
    INVALID_WAGER = "invalid_wager"
    WAGER_LIMIT = "wager_limit"
    INVALID_CONFIDENCE = "invalid_confidence"
    BAD_SIGNATURE = "bad_signature"
    # Handshake / HTTP errors ({"error": CODE, "detail": TEXT} bodies).
    MALFORMED_REQUEST = "malformed_request"
    UNAUTHORIZED = "unauthorized"
    STALE_REQUEST = "stale_request"
    REPLAYED_REQUEST = "replayed_request"
    WRONG_RECEIVER = "wrong_receiver"
    NOT_REGISTERED = "not_registered"
    BLACKLISTED = "blacklisted"
    FORBIDDEN = "forbidden"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    SHUTTING_DOWN = "shutting_down"
    UPGRADE_REQUIRED = "upgrade_required"
    NOT_FOUND = "not_found"
    INTERNAL_ERROR = "internal_error"


class ConfirmationStatus(StrEnum):
    """Outcome of a submitted prediction as stated in its confirmation."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


OK_CODE = "ok"
"""``confirmation.code`` for accepted and duplicate confirmations."""
