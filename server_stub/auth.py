"""``btauth/1`` verification of HTTP requests (the WebSocket upgrade included).

Maps every failure to the HTTP status and error code of the protocol *before*
anything is upgraded: 400 malformed, 401 bad signature / stale / replayed /
wrong receiver. The nonce store is bounded in size as well as in time, so a
flood of valid signatures cannot grow memory without limit.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bittensor import http_auth

from sdk.codes import ErrorCode


@dataclass(slots=True)
class HubHTTPError(Exception):
    """An HTTP refusal: status, machine code, human detail, optional Retry-After."""

    status: int
    code: str
    detail: str
    retry_after: float | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.detail}"


class NonceStoreFull(Exception):
    """Too many fresh nonces to remember: refuse rather than forget one early."""


class BoundedNonceStore:
    """Remembers accepted (hotkey, nonce) pairs for ``retention`` seconds, at most
    ``max_entries`` of them.

    Entries leave in insertion order once older than ``retention``. When the store
    is full of still-fresh entries it refuses new ones (the caller answers 429)
    instead of evicting early, because an evicted nonce could be replayed.
    """

    def __init__(self, retention: float = 15.0, max_entries: int = 200_000) -> None:
        self.retention = retention
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, int], float] = OrderedDict()

    def check_and_store(self, hotkey_ss58: str, nonce_ns: int) -> bool:
        now = time.monotonic()
        while self._seen:
            key, stamp = next(iter(self._seen.items()))
            if now - stamp < self.retention:
                break
            del self._seen[key]
        key = (hotkey_ss58, nonce_ns)
        if key in self._seen:
            return False
        if len(self._seen) >= self.max_entries:
            raise NonceStoreFull("nonce store is full")
        self._seen[key] = now
        return True

    def __len__(self) -> int:
        return len(self._seen)


class GatedNonceStore:
    """A view of a nonce store that remembers nonces only of hotkeys that will be let
    in. ``http_auth.verify`` stores a nonce as soon as the signature verifies, before
    the registry is asked; without the gate, anyone can mint throwaway keys and fill
    the store (refusing everyone) with requests that end in 403 anyway. A refused
    hotkey's replay needs no protection: it is refused again."""

    def __init__(self, store: BoundedNonceStore, admitted: Callable[[str], bool]) -> None:
        self.store = store
        self.admitted = admitted
        self.retention = store.retention

    def check_and_store(self, hotkey_ss58: str, nonce_ns: int) -> bool:
        if not self.admitted(hotkey_ss58):
            return True
        return self.store.check_and_store(hotkey_ss58, nonce_ns)


_STATUS_BY_ERROR: tuple[tuple[type[http_auth.AuthError], int, ErrorCode], ...] = (
    (http_auth.MalformedAuth, 400, ErrorCode.MALFORMED_REQUEST),
    (http_auth.WrongReceiver, 401, ErrorCode.WRONG_RECEIVER),
    (http_auth.StaleRequest, 401, ErrorCode.STALE_REQUEST),
    (http_auth.ReplayedRequest, 401, ErrorCode.REPLAYED_REQUEST),
    (http_auth.BadSignature, 401, ErrorCode.UNAUTHORIZED),
)


def authenticate(headers: Mapping[str, str], body: bytes, *, method: str, path: str,
                 validator_hotkey: str, nonce_store: BoundedNonceStore | GatedNonceStore,
                 max_age: float = http_auth.DEFAULT_MAX_AGE,
                 allowed_skew: float = http_auth.DEFAULT_ALLOWED_SKEW) -> str:
    """Verify ``btauth/1`` headers; return the caller's hotkey or raise HubHTTPError
    (:func:`authenticate_caller` without its nonce)."""
    return authenticate_caller(
        headers, body, method=method, path=path, validator_hotkey=validator_hotkey,
        nonce_store=nonce_store, max_age=max_age, allowed_skew=allowed_skew).hotkey_ss58


def authenticate_caller(headers: Mapping[str, str], body: bytes, *, method: str, path: str,
                        validator_hotkey: str,
                        nonce_store: BoundedNonceStore | GatedNonceStore,
                        max_age: float = http_auth.DEFAULT_MAX_AGE,
                        allowed_skew: float = http_auth.DEFAULT_ALLOWED_SKEW
                        ) -> http_auth.Caller:
    """Verify ``btauth/1`` headers; return the caller (hotkey and nonce, which a shared
    nonce store claims next) or raise HubHTTPError.

    ``path`` is the request target as sent (path and query, undecoded).
    """
    if http_auth.HEADER_HOTKEY not in headers and http_auth.HEADER_SIGNATURE not in headers:
        raise HubHTTPError(401, ErrorCode.UNAUTHORIZED,
                           "missing btauth/1 headers (X-Bittensor-Hotkey, -Signature, ...)")
    try:
        caller = http_auth.verify(
            headers, body, method=method, path=path, self_hotkey_ss58=validator_hotkey,
            max_age=max_age, allowed_skew=allowed_skew, nonce_store=nonce_store,
        )
    except NonceStoreFull:
        raise HubHTTPError(429, ErrorCode.TOO_MANY_CONNECTIONS,
                           "too many authenticated requests; try again shortly",
                           retry_after=1.0) from None
    except http_auth.AuthError as exc:
        for error_type, status, code in _STATUS_BY_ERROR:
            if isinstance(exc, error_type):
                raise HubHTTPError(status, code, str(exc)) from None
        raise HubHTTPError(401, ErrorCode.UNAUTHORIZED, str(exc)) from None
    except (ValueError, TypeError, UnicodeError) as exc:
        raise HubHTTPError(400, ErrorCode.MALFORMED_REQUEST, f"bad auth headers: {exc}") from None
    return caller
