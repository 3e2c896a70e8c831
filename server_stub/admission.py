"""Who may talk to the hub, and how often: every check that runs *before* the
WebSocket upgrade or an HTTP API call (shutdown, per-address rate, btauth/1 signature
and nonce, miner registry, connect rate, connection limit), plus the per-hotkey
message rate and the strikes that end a WebSocket flooding it.

With several hubs (``nonce_guard``, :mod:`server_stub.backplane.nonces`) a nonce is
also claimed in Redis once every other check has passed, so the same signed headers
are admitted by one hub only. Rate limits stay per hub.

A refusal is a :class:`~server_stub.auth.HubHTTPError`: the caller answers it with
:func:`~server_stub.http_errors.error_response`, never with a socket.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from aiohttp import web

from sdk.codes import ErrorCode

from .auth import BoundedNonceStore, GatedNonceStore, HubHTTPError, authenticate_caller
from .backplane.base import BackplaneUnavailable
from .backplane.nonces import SharedNonces
from .config import HubConfig
from .forwarded import client_address
from .http_errors import retry_after_seconds
from .ratelimit import KeyedLimiter
from .registry import Decision, MinerRegistry

__all__ = ["Admission"]

STRIKE_WINDOW_S = 10.0
"""Strikes refill so that ``rate_limit_strikes`` of them last this long."""

BACKPLANE_RETRY_AFTER_S = 2.0
"""``Retry-After`` of the 503 answered while the shared nonce store does not answer."""


class Admission:
    """The admission checks and rate limiters of one hub.

    ``sessions`` is the hub's live table of connected hotkeys: the connection limit
    counts it, and a hotkey already in it may always replace its own connection.
    ``nonce_guard``: the nonces of every hub of the validator (None: this hub's only).
    """

    def __init__(self, config: HubConfig, *, validator_hotkey: str, registry: MinerRegistry,
                 sessions: Mapping[str, object],
                 nonce_guard: SharedNonces | None = None) -> None:
        self.config = config
        self.nonce_guard = nonce_guard
        self.validator_hotkey = validator_hotkey
        self.registry = registry
        self._sessions = sessions
        self.closed = False
        self.nonces = BoundedNonceStore(
            retention=config.auth_max_age_s + config.auth_allowed_skew_s + 1.0,
            max_entries=config.nonce_store_size)
        # Only an admitted caller's nonce is remembered: a flood of valid signatures
        # from unknown hotkeys cannot fill the store.
        self._miner_nonces = GatedNonceStore(
            self.nonces, lambda hotkey: registry.check(hotkey) is Decision.ALLOWED)
        self._admin_nonces = GatedNonceStore(self.nonces, self.is_admin)
        per_minute = config.connects_per_minute / 60.0
        self.connect_limit_by_hotkey = KeyedLimiter(per_minute, config.connect_burst)
        self.connect_limit_by_address = KeyedLimiter(
            config.upgrades_per_second or per_minute * 10,
            config.upgrade_burst or config.connect_burst * 10)
        self.message_limit = KeyedLimiter(config.messages_per_second, config.message_burst)
        self.strikes = KeyedLimiter(config.rate_limit_strikes / STRIKE_WINDOW_S,
                                    config.rate_limit_strikes)

    def close(self) -> None:
        """Refuse everyone from now on (503 ``shutting_down``): the hub is stopping."""
        self.closed = True

    def is_admin(self, hotkey: str) -> bool:
        """May post games: the validator's own hotkey or a configured admin hotkey."""
        return hotkey == self.validator_hotkey or hotkey in self.config.admin_hotkeys

    async def admit_miner(self, request: web.Request, body: bytes = b"", *,
                          limit_address: bool = False) -> str:
        """Every check before an HTTP API call of a miner; returns its hotkey.

        ``limit_address`` applies the per-address connect limit before the signature
        is even checked (upgrades only: the HTTP fallback of many miners behind one
        address is limited per hotkey instead)."""
        hotkey, nonce = self._authenticate(request, body, self._miner_nonces,
                                           limit_address=limit_address)
        decision = self.registry.check(hotkey)
        if decision is Decision.BLACKLISTED:
            raise HubHTTPError(403, ErrorCode.BLACKLISTED, "this hotkey is blacklisted")
        if decision is Decision.NOT_REGISTERED:
            raise HubHTTPError(403, ErrorCode.NOT_REGISTERED,
                               "this hotkey is not registered with this validator")
        if decision is Decision.UNAVAILABLE:
            raise HubHTTPError(503, ErrorCode.SHUTTING_DOWN,
                               "miner registry not loaded yet", retry_after=10.0)
        await self._claim_shared(hotkey, nonce, fail_open=False)
        return hotkey

    async def admit_admin(self, request: web.Request, body: bytes) -> str:
        """The checks of ``POST /admin/games``: a valid signature of the validator or an
        admin hotkey (the miner registry plays no part); returns the hotkey."""
        hotkey, nonce = self._authenticate(request, body, self._admin_nonces,
                                           limit_address=False)
        if not self.is_admin(hotkey):
            raise HubHTTPError(403, ErrorCode.FORBIDDEN,
                               "only the validator's own hotkey or an admin hotkey may post games")
        # Fail open for the validator's own posts: an upsert of games replayed within
        # seconds changes little, and refusing would keep the games out of the store
        # too, which a Redis restarted empty seeds the new epoch from.
        await self._claim_shared(hotkey, nonce, fail_open=True)
        return hotkey

    async def admit_connection(self, request: web.Request) -> str:
        """Every check before a WebSocket upgrade; returns the miner's hotkey."""
        hotkey = await self.admit_miner(request, limit_address=True)
        now = time.monotonic()
        if not self.connect_limit_by_hotkey.allow(hotkey, now):
            raise HubHTTPError(429, ErrorCode.RATE_LIMITED, "too many connects for this hotkey",
                               retry_after=retry_after_seconds(
                                   self.connect_limit_by_hotkey.retry_after(hotkey)))
        if len(self._sessions) >= self.config.max_connections and hotkey not in self._sessions:
            raise HubHTTPError(429, ErrorCode.TOO_MANY_CONNECTIONS,
                               "the hub is at its connection limit", retry_after=5.0)
        return hotkey

    def client_address(self, request: web.Request) -> str:
        """The address a request counts against: the TCP peer, or the client a trusted
        reverse proxy names in ``Forwarded`` / ``X-Forwarded-For``."""
        return client_address(request.remote, forwarded=request.headers.getall("Forwarded", []),
                              x_forwarded_for=request.headers.getall("X-Forwarded-For", []),
                              trusted=self.config.trusted_proxies)

    def within_message_rate(self, hotkey: str) -> bool:
        """Take one token of the hotkey's message rate (shared by the WebSocket and
        ``POST /predictions``); False when there was none."""
        return self.message_limit.allow(hotkey, time.monotonic())

    def strike(self, hotkey: str) -> bool:
        """Count one rate-limited WebSocket frame; False once the strikes are used up."""
        return self.strikes.allow(hotkey, time.monotonic())

    async def _claim_shared(self, hotkey: str, nonce: int, *, fail_open: bool) -> None:
        """Claim the nonce at every hub: a replay of headers another hub admitted is a
        401. When Redis does not answer: 503 (fail closed: admitting would let the same
        headers in at every hub, e.g. to displace a miner's connection), or, with
        ``fail_open``, this hub's own nonce check only."""
        if self.nonce_guard is None:
            return
        try:
            first = await self.nonce_guard.claim(hotkey, nonce)
        except BackplaneUnavailable:
            if fail_open:
                return
            raise HubHTTPError(503, ErrorCode.SHUTTING_DOWN,
                               "replay protection unavailable: the backplane does not answer",
                               retry_after=BACKPLANE_RETRY_AFTER_S) from None
        if not first:
            raise HubHTTPError(401, ErrorCode.REPLAYED_REQUEST,
                               "this nonce was already accepted from this hotkey")

    def _authenticate(self, request: web.Request, body: bytes, nonces: GatedNonceStore, *,
                      limit_address: bool) -> tuple[str, int]:
        if self.closed:
            raise HubHTTPError(503, ErrorCode.SHUTTING_DOWN, "hub is shutting down",
                               retry_after=self.config.shutdown_retry_after_s)
        if limit_address:
            address = self.client_address(request)
            if not self.connect_limit_by_address.allow(address, time.monotonic()):
                raise HubHTTPError(429, ErrorCode.RATE_LIMITED,
                                   "too many requests from this address",
                                   retry_after=retry_after_seconds(
                                       self.connect_limit_by_address.retry_after(address)))
        caller = authenticate_caller(
            request.headers, body, method=request.method, path=request.raw_path,
            validator_hotkey=self.validator_hotkey, nonce_store=nonces,
            max_age=self.config.auth_max_age_s, allowed_skew=self.config.auth_allowed_skew_s)
        return caller.hotkey_ss58, caller.nonce_ns
