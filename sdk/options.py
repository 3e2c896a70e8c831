"""``ConnectionOptions``: the tuning knobs of a :class:`~sdk.ValidatorConnection`.

One frozen value instead of a dozen keyword arguments (as aiohttp's
``ClientWSTimeout`` or httpx's ``Timeout``): it can be built once, shared by many
connections, derived with :func:`dataclasses.replace`, and is checked when built,
so a bad value fails where it is written rather than deep inside a reconnect loop.
The defaults suit a miner on the open internet; tests and notebooks shorten them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionOptions:
    """How a connection retries, times out, falls back and buffers."""

    backoff_base: float = 0.5
    """Seconds: the first reconnect delay's upper bound; it doubles per failure in a row
    (full jitter: each delay is a uniform draw below the bound). With several hubs of one
    validator it doubles per round of failed hubs: each hub of a round is tried within it."""

    backoff_cap: float = 30.0
    """Seconds: the largest reconnect delay (before any ``Retry-After`` the hub sends)."""

    handshake_timeout: float = 10.0
    """Seconds allowed for a WebSocket upgrade and its welcome frame, and for one HTTP
    request of the fallback (beyond the long-poll wait itself)."""

    cutoff_margin_s: float = 2.0
    """Seconds before kick-off (hub clock) after which ``submit`` refuses a prediction
    locally, so a late one is not sent only to be rejected."""

    http_fallback: bool = True
    """Whether to serve over plain HTTP (long-poll and POST) when the WebSocket upgrade
    is refused or keeps failing while the hub answers HTTP."""

    fallback_after: int = 3
    """Failed upgrades in a row (the hub answered, no WebSocket) before switching to the
    HTTP fallback; also the failed polls in a row that end the fallback."""

    ws_probe_interval: float = 15.0
    """Seconds between attempts to get back onto the WebSocket while on the fallback."""

    long_poll_timeout: float = 20.0
    """Seconds the hub may hold one ``GET /games`` long-poll open."""

    update_buffer: int = 256
    """Updates each :meth:`~sdk.ValidatorConnection.game_updates` iterator buffers before
    it coalesces to the latest state per game (the default for ``buffer=None``)."""

    ready_timeout: float | None = None
    """Seconds ``async with`` waits for the connection to be ready (None: no limit)."""

    heartbeat_interval_s: float | None = None
    """Seconds between client heartbeats; never slower than the interval the hub
    announces (None: the hub's)."""

    compress: bool = False
    """Offer permessage-deflate on the WebSocket (less bandwidth, more CPU)."""

    ca_file: str | None = None
    """A PEM file of CA certificates that ``wss://`` / ``https://`` hub certificates are
    verified against instead of the system's (a validator with a private CA). Used when
    the connection makes its own aiohttp session; with ``session=`` configure that."""

    def __post_init__(self) -> None:
        for name in ("backoff_base", "backoff_cap", "handshake_timeout", "ws_probe_interval",
                     "long_poll_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)!r}")
        for name in ("ready_timeout", "heartbeat_interval_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, not {value!r}")
        if not self.cutoff_margin_s >= 0:
            raise ValueError(f"cutoff_margin_s must be >= 0, not {self.cutoff_margin_s!r}")
        if self.fallback_after < 1:
            raise ValueError(f"fallback_after must be >= 1, not {self.fallback_after!r}")
        if self.update_buffer < 1:
            raise ValueError(f"update_buffer must be >= 1, not {self.update_buffer!r}")

    @property
    def cutoff_margin(self) -> timedelta:
        """:attr:`cutoff_margin_s` as a timedelta."""
        return timedelta(seconds=self.cutoff_margin_s)
