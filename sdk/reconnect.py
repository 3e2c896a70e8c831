"""The reconnect policy: what to do after each connect attempt and each session.

Pure (no sockets, no asyncio, no clock): the connection tells the policy what
happened (a connect failed with this error, a session opened, a session ended after
so many seconds with this error) and gets back a :data:`Decision`: wait this long
and try again, switch to the HTTP fallback, or give up with this error. Like
websockets' ``process_exception`` and reconnect delays, it is a value you can swap:
pass your own (a subclass) as ``ValidatorConnection(..., policy=...)``.

The rules it holds, and why:

- an error whose ``retryable`` is False (403, 4001, 4003, ``wrong_receiver``) is
  permanent: retrying only hammers the hub;
- the HTTP fallback is for a hub that answers but cannot upgrade (a proxy in the
  way: 404/405/426 at once, other failed upgrades after ``fallback_after`` in a
  row), never for a hub that is down or restarting (refused TCP), asking us to wait
  (429, 503) or refusing our credentials (401, 403);
- a session that ends soon after opening counts as a flap: flaps in a row grow the
  delay like failures do, so a hub that accepts and drops at once is not hammered at
  the base delay forever; a session that lasted resets that count;
- a ``Retry-After`` from the hub is a floor for the next delay.

A validator may serve miners from several hubs (several URLs, one hotkey). The
policy then also says which URL the next attempt goes to (:attr:`ReconnectPolicy.endpoint`):

- sticky: it starts with the first URL and stays on the one that works; it never
  moves back to an earlier URL just because that one is up again;
- a failed connect moves on to the next URL (round robin), after a jittered delay
  that grows per *round* (every URL failed once), not per attempt, so the other hubs
  are tried within ``backoff_base`` seconds each; a ``Retry-After`` binds only the
  hub that sent it, so it floors the delay only when a round is complete;
- a session that ended because of this client (closes 1008, 1009, 4008, 4029)
  reconnects to the same hub: another hub would see the same client, and per-hub
  limits are not there to be dodged; any other end (the hub going away, an abrupt
  drop, a silent link) moves on at once: it cannot be told apart from the hub's
  death, and retrying a blackholed hub would cost a whole handshake timeout;
- the HTTP fallback is chosen only after every URL's WebSocket failed in the round.
"""

from __future__ import annotations

from dataclasses import dataclass

from .backoff import Backoff
from .codes import CloseCode, ErrorCode
from .errors import BettensorWSError, HandshakeError, HubUnreachableError
from .options import ConnectionOptions

FALLBACK_STATUSES = frozenset({404, 405, 426})
"""Upgrade refusals that mean "no WebSocket here" at once: straight to the fallback."""

NO_FALLBACK_STATUSES = frozenset({401, 403, 429, 503})
"""Upgrade refusals about us or the hub's load, which plain HTTP would get too."""

CLOSES_ABOUT_US = frozenset({CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG,
                             CloseCode.SLOW_CONSUMER, CloseCode.RATE_LIMITED})
"""Closes a hub sends because of what this client did: reconnect to the same hub
(with several URLs; any other end of a session moves on to the next one)."""

STABLE_SESSION_S = 10.0
"""A session this long (seconds) was not a flap."""

_REFUSAL_REASONS = {
    400: "malformed upgrade request",
    401: "authentication failed (bad signature, stale or replayed nonce - check the "
         "local clock - or signed for another validator hotkey)",
    403: "this hotkey is not registered with (or is blacklisted by) this validator; "
         "not retrying",
    404: "no WebSocket endpoint at this address",
    405: "the WebSocket upgrade is not allowed here",
    426: "a proxy or server on the way does not allow WebSocket upgrades",
    429: "too many connections or connects; retrying after Retry-After",
    503: "the hub is shutting down or not ready; retrying after Retry-After",
}


@dataclass(frozen=True, slots=True)
class Wait:
    """Back off ``delay`` seconds, then connect again."""

    delay: float


@dataclass(frozen=True, slots=True)
class Fallback:
    """Serve over the HTTP fallback; first try the WebSocket once more if
    ``retry_websocket`` (the hub may just have come back)."""

    retry_websocket: bool


@dataclass(frozen=True, slots=True)
class Fail:
    """Stop for good with ``error``."""

    error: BaseException


Decision = Wait | Fallback | Fail


class ReconnectPolicy:
    """The default policy; one instance per connection (it counts that connection's
    failures). Override any method to change one rule.

    ``endpoints``: how many URLs the validator has (the connection sets it with
    :meth:`use_endpoints`); :attr:`endpoint` is the index of the one the next attempt
    goes to."""

    def __init__(self, backoff: Backoff | None = None, *, http_fallback: bool = True,
                 fallback_after: int = 3, stable_session_s: float = STABLE_SESSION_S,
                 endpoints: int = 1) -> None:
        if fallback_after < 1:
            raise ValueError(f"fallback_after must be >= 1, not {fallback_after!r}")
        self.endpoints = self.endpoint = 0  # set by use_endpoints
        self.use_endpoints(endpoints)
        self.backoff = backoff or Backoff()
        self.http_fallback = http_fallback
        self.fallback_after = fallback_after
        self.stable_session_s = stable_session_s
        self.failures = 0  # connect attempts that failed in a row
        self.upgrade_failures = 0  # of those, the ones where the hub answered, no WebSocket
        self.flaps = 0  # sessions in a row that ended soon after opening
        self._retry_after: float | None = None

    @classmethod
    def from_options(cls, options: ConnectionOptions) -> ReconnectPolicy:
        return cls(Backoff(options.backoff_base, options.backoff_cap),
                   http_fallback=options.http_fallback,
                   fallback_after=options.fallback_after)

    def use_endpoints(self, count: int) -> None:
        """The validator is reached at ``count`` URLs; the next attempt goes to the first."""
        if count < 1:
            raise ValueError(f"a validator needs at least one URL, not {count!r}")
        self.endpoints = count
        self.endpoint = 0

    def connect_failed(self, error: BettensorWSError) -> Decision:
        """A WebSocket connect attempt (to :attr:`endpoint`) failed with ``error``."""
        if not error.retryable:
            return Fail(error)
        self.failures += 1
        if not isinstance(error, HubUnreachableError):
            self.upgrade_failures += 1
        self._retry_after = getattr(error, "retry_after", None)
        if self.falls_back(error):
            refused = isinstance(error, HandshakeError) and error.status in FALLBACK_STATUSES
            return Fallback(retry_websocket=not refused)
        self._move_on()
        return self._wait_after_failure()

    def fallback_unavailable(self) -> Decision:
        """The HTTP fallback could not serve (plain HTTP fails too, or stopped working):
        back off as for the connect failure that led to it (towards the next URL)."""
        self._move_on()
        return self._wait_after_failure()

    def probe_failed(self, error: BettensorWSError) -> Decision:
        """Getting back onto the WebSocket from the fallback failed with ``error``."""
        if not error.retryable:
            return Fail(error)
        return Fallback(retry_websocket=False)  # stay on the fallback

    def session_opened(self) -> None:
        """A WebSocket (or a probe from the fallback) opened: connect failures reset."""
        self.failures = self.upgrade_failures = 0
        self._retry_after = None

    def session_ended(self, duration_s: float, error: BettensorWSError | None) -> Decision:
        """An open session ended after ``duration_s`` seconds, closed with ``error``
        (None: the link went silent or dropped without a close code)."""
        if error is not None and not error.retryable:
            return Fail(error)
        self.flaps = 1 if duration_s >= self.stable_session_s else self.flaps + 1
        if getattr(error, "close_code", None) not in CLOSES_ABOUT_US:
            self._move_on()
        return Wait(self.backoff.delay(self.flaps))

    def falls_back(self, error: BettensorWSError) -> bool:
        """Whether this failure (with the counts so far) sends us to the HTTP fallback:
        never before every URL had its WebSocket tried in this round."""
        if not self.http_fallback or isinstance(error, HubUnreachableError):
            return False
        if self.failures < self.endpoints:
            return False
        if isinstance(error, HandshakeError):
            if error.status in FALLBACK_STATUSES:
                return True
            if error.status in NO_FALLBACK_STATUSES:
                return False
        return self.upgrade_failures >= self.fallback_after

    def _move_on(self) -> None:
        """The next attempt goes to the next URL (a no-op with one)."""
        self.endpoint = (self.endpoint + 1) % self.endpoints

    def _wait_after_failure(self) -> Wait:
        """The delay grows per round of URLs; a hub's ``Retry-After`` binds that hub, so
        it counts only once the round is complete (with one URL: every failure)."""
        rounds, tried = divmod(self.failures, self.endpoints)
        if tried:
            return Wait(self.backoff.delay(rounds + 1))
        return Wait(self.backoff.delay(rounds, self._retry_after))


def refusal_detail(status: int, code: str | None, *, validator_hotkey: str, url: str,
                   miner_hotkey: str | None) -> str:
    """A refused upgrade explained for a human: who refused whom, and what to do."""
    reason = _REFUSAL_REASONS.get(status, "unexpected answer to the upgrade request")
    if code == ErrorCode.WRONG_RECEIVER:
        reason = ("the upgrade was signed for another validator: check validator_hotkey "
                  "(it must be this hub's hotkey)")
    return (f"validator {validator_hotkey} at {url} refused the WebSocket upgrade of hotkey "
            f"{miner_hotkey} with HTTP {status}{f' ({code})' if code else ''}: {reason}")
