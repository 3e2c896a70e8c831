"""The exception hierarchy of bettensor-ws.

Everything the SDK raises on purpose derives from :class:`BettensorWSError` and
carries a machine ``code`` (an :class:`~sdk.codes.ErrorCode` value, a close code,
or an HTTP status) plus ``retryable``: whether trying again later can succeed.
Catch the family you care about::

    BettensorWSError
    ├── ProtocolError              a frame that breaks the wire contract
    │   └── CanonicalizationError  a value with no RFC 8785 form (also a ValueError)
    ├── PredictionRejected         the hub (or the local pre-check) refused a prediction
    ├── ReceiptError               a receipt whose validator signature does not verify
    ├── SigningError               the wallet cannot sign
    └── LinkError                  anything about the link to a validator
        ├── HubUnreachableError    no TCP connection to the hub (down, restarting)
        │   └── CertificateError   the hub's TLS certificate does not verify (permanent)
        ├── HandshakeError         the upgrade was refused with an HTTP status
        │   ├── AuthenticationError   401: signature, freshness, receiver
        │   ├── NotRegisteredError    403: hotkey not registered / blacklisted (permanent)
        │   ├── RateLimitedError      429: too many connections or connects (Retry-After)
        │   └── ServiceUnavailableError 503: hub shutting down (Retry-After)
        └── ConnectionClosedError  the open socket was closed with a close code
            ├── ReplacedError         4001 (permanent)
            └── DeregisteredError     4003 (permanent)
"""

from __future__ import annotations

from typing import Any

from .codes import CloseCode, ErrorCode


class BettensorWSError(Exception):
    """Base of every error raised by bettensor-ws."""

    code: str | int | None = None
    retryable: bool = False

    def __init__(self, message: str, *, code: str | int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}" if self.code is not None else self.message


class ProtocolError(BettensorWSError):
    """A frame broke the wire contract (not JSON, wrong shape, unknown type, bad field).

    ``ref`` names the offending frame's type or prediction id when it could be read,
    so the hub can echo it in the error frame.
    """

    def __init__(self, message: str, *, code: str = ErrorCode.MALFORMED_FRAME,
                 ref: str | None = None) -> None:
        super().__init__(message, code=code)
        self.ref = ref


class CanonicalizationError(ProtocolError, ValueError):
    """A value has no canonical form (RFC 8785): NaN or an infinity, an integer beyond
    ±(2**53 - 1), a lone surrogate, a non-string key, a type JSON does not have. Such a
    value cannot be signed, and a signature over it never verifies."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=ErrorCode.MALFORMED_FRAME)


class PredictionRejected(BettensorWSError):
    """A prediction was refused, by the hub or by the SDK's local pre-check.

    ``code`` is the rejection code (e.g. ``game_started``); ``confirmation`` holds the
    hub's signed confirmation when the hub rejected it, ``None`` for a local rejection.
    """

    def __init__(self, message: str, *, code: str, prediction_id: str | None = None,
                 confirmation: Any = None) -> None:
        super().__init__(message, code=code)
        self.prediction_id = prediction_id
        self.confirmation = confirmation


class ReceiptError(BettensorWSError):
    """A confirmation's validator signature did not verify: it proves nothing."""

    code = ErrorCode.BAD_SIGNATURE


class SigningError(BettensorWSError):
    """The wallet could not sign (missing key file, locked key, unsupported key)."""

    code = "signing_error"


class LinkError(BettensorWSError):
    """Anything that went wrong with the link to a validator."""

    retryable = True


class HubUnreachableError(LinkError):
    """No TCP connection to the hub at all (down, restarting, wrong address).

    Unlike a failed upgrade this says nothing about WebSockets, so it never sends the
    client to the HTTP fallback."""


class CertificateError(HubUnreachableError):
    """The hub's TLS certificate does not verify (signed by a CA we were not given, for
    another host name, expired). Permanent: retrying would fail the same way forever."""

    retryable = False


class HandshakeError(LinkError):
    """The WebSocket upgrade was answered with an HTTP error status."""

    def __init__(self, message: str, *, status: int, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, code=code or str(status))
        self.status = status
        self.retry_after = retry_after


class AuthenticationError(HandshakeError):
    """401: bad signature, stale or replayed nonce, or signed for another validator.

    Retried (a fresh nonce fixes a replay, a corrected clock a stale one), except
    ``wrong_receiver``: the connection names the wrong validator hotkey and no retry
    can fix that."""

    def __init__(self, message: str, *, status: int, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, status=status, code=code, retry_after=retry_after)
        self.retryable = code != ErrorCode.WRONG_RECEIVER


class NotRegisteredError(HandshakeError):
    """403: the hotkey is not registered with (or is blacklisted by) the validator."""

    retryable = False


class RateLimitedError(HandshakeError):
    """429: too many connections or connects; wait ``retry_after`` seconds."""


class ServiceUnavailableError(HandshakeError):
    """503: the hub is shutting down; wait ``retry_after`` seconds."""


class ConnectionClosedError(LinkError):
    """The hub closed an open connection; ``close_code`` says why."""

    def __init__(self, message: str, *, close_code: int | None) -> None:
        super().__init__(message, code=close_code)
        self.close_code = close_code
        self.retryable = CloseCode.retry_for(close_code)


class ReplacedError(ConnectionClosedError):
    """4001: a newer connection with the same hotkey replaced this one."""


class DeregisteredError(ConnectionClosedError):
    """4003: the hotkey was deregistered from the subnet."""


def handshake_error(status: int, body: dict[str, Any] | None,
                    retry_after: float | None = None) -> HandshakeError:
    """Map a refused upgrade (HTTP status and JSON error body) to the right exception."""
    body = body or {}
    code = str(body.get("error") or status)
    detail = str(body.get("detail") or f"HTTP {status}")
    cls: type[HandshakeError] = {
        401: AuthenticationError,
        403: NotRegisteredError,
        429: RateLimitedError,
        503: ServiceUnavailableError,
    }.get(status, HandshakeError)
    return cls(detail, status=status, code=code, retry_after=retry_after)


def close_error(close_code: int | None, reason: str = "") -> ConnectionClosedError:
    """Map a close code from the hub to the right exception."""
    cls: type[ConnectionClosedError] = {
        CloseCode.REPLACED: ReplacedError,
        CloseCode.DEREGISTERED: DeregisteredError,
    }.get(close_code, ConnectionClosedError)  # type: ignore[call-overload]
    text = reason or "connection closed"
    return cls(f"{text} (close code {close_code})", close_code=close_code)


class MissingExtraError(BettensorWSError, ImportError):
    """An optional part was asked for (``--backplane``, ``--store postgresql://``) whose
    package is not installed; the message names the extra to install."""
