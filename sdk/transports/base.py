"""What the two transports share: the interface the connection drives, the context it
hands them, and the small helpers both need.

A transport is one way of talking to the hub (a WebSocket session, or the HTTP
fallback) while it is up. It sends outbox entries, asks for snapshots, delivers what
the hub sends to the connection through :class:`Inbound`, owns the tasks it starts
and stops them in :meth:`Transport.close`. Everything that must outlive one
transport (the game table, the clock, the pacing budget, the waiters of ``submit``)
stays with the connection and reaches the transport through :class:`LinkContext`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from bittensor import http_auth
from yarl import URL

from ..clocksync import ClockEstimator
from ..frames import ErrorFrame, GameUpdate, Subscribe
from ..options import ConnectionOptions
from ..outbox import OutboxEntry
from ..pacing import TokenBucket
from ..signing import Signer


class Transport(Protocol):
    """The interface the connection drives, whichever way the hub is reached."""

    def dispatch(self, entry: OutboxEntry) -> None:
        """Send one outbox entry in the background (it stays in the outbox until a
        confirmation settles it, so a failed send is only a delay)."""

    async def request_snapshot(self) -> None:
        """Ask the hub for a fresh snapshot of the current filter."""

    async def close(self) -> None:
        """Stop every task this transport started and release its socket."""


@dataclass(frozen=True, slots=True)
class HubAddress:
    """Where the hub is: WebSocket base, HTTP base, and the WebSocket path."""

    ws_url: str
    http_url: str
    ws_path: str

    @classmethod
    def parse(cls, url: str) -> HubAddress:
        """From whatever address form the user gave (``ws://host:port``,
        ``http://host:port`` or the full ``.../ws`` URL)."""
        parsed = URL(url)
        if parsed.scheme not in ("ws", "wss", "http", "https"):
            raise ValueError(f"validator URL must be ws://, wss://, http:// or https://, "
                             f"not {url!r}")
        secure = parsed.scheme in ("wss", "https")
        host = parsed.host or "127.0.0.1"
        authority = f"{host}:{parsed.port}" if parsed.port else host
        path = parsed.path.rstrip("/") or "/ws"
        return cls(f"{'wss' if secure else 'ws'}://{authority}",
                   f"{'https' if secure else 'http'}://{authority}", path)

    @classmethod
    def parse_all(cls, urls: str | Sequence[str]) -> tuple[HubAddress, ...]:
        """The hubs of one validator, in order of preference: one URL, several in one
        string separated by commas (as ``bt-miner --validator HOTKEY@ws://a,ws://b``
        writes them), or a sequence of URLs. The same hub twice is an error (it would
        only be retried twice in a row)."""
        given = urls.split(",") if isinstance(urls, str) else list(urls)
        addresses = tuple(cls.parse(url.strip()) for url in given if url.strip())
        if not addresses:
            raise ValueError(f"no validator URL given in {urls!r}")
        seen: set[tuple[str, str]] = set()
        for address in addresses:
            key = (address.ws_url, address.ws_path)
            if key in seen:
                raise ValueError(f"validator URL {address.url!r} is given twice")
            seen.add(key)
        return addresses

    @property
    def url(self) -> str:
        """The full WebSocket URL (base and path)."""
        return self.ws_url + self.ws_path


@dataclass(frozen=True, slots=True)
class Inbound:
    """Where a transport delivers what the hub sent (the connection's handlers)."""

    update: Callable[[GameUpdate], bool]
    """A game update; returns True when the stream has a gap and a snapshot must be
    requested."""
    confirmation: Callable[[dict[str, Any]], None]
    """A confirmation's ``data`` exactly as received (its signature covers it)."""
    error: Callable[[ErrorFrame], None]
    clock: ClockEstimator
    """Fed with heartbeat echoes (and, over HTTP, the hub's time in each answer)."""
    heartbeat_sent: Callable[[], None]


@dataclass(frozen=True, slots=True)
class LinkContext:
    """What a transport needs from the connection it serves."""

    session: aiohttp.ClientSession
    address: HubAddress
    options: ConnectionOptions
    validator_hotkey: str
    signer: Signer
    """The miner's hotkey signer (``bittensor.resolve_signer``)."""
    stream_query: Callable[[Mapping[str, Any]], str]
    """The query string that resumes the game stream (``?epoch=..&since=..``), plus
    the given extra parameters."""
    subscription: Callable[[], Subscribe]
    """The subscribe frame for the current filter."""
    pending: Callable[[], Awaitable[list[OutboxEntry]]]
    """The outbox entries still waiting for a confirmation, oldest first."""
    retry: Callable[[str, float], None]
    """Send this prediction again after this many seconds."""
    pacer: Pacer
    inbound: Inbound

    @property
    def miner_hotkey(self) -> str:
        return self.signer.ss58_address

    def sign(self, method: str, path: str, body: bytes = b"") -> dict[str, str]:
        """``btauth/1`` headers for one request, bound to this validator's hotkey."""
        return http_auth.sign(self.signer, method=method, path=path, body=body,
                              receiver_ss58=self.validator_hotkey)


class Pacer:
    """Keeps sends under the hub's announced message rate; shared by every transport of
    a connection, so a reconnect does not start with a fresh burst."""

    def __init__(self, rate: float = 40.0) -> None:
        self.bucket = TokenBucket(rate=rate, capacity=rate)

    def adopt(self, messages_per_second: float) -> None:
        """Pace at 80% of the rate the hub announced in its welcome."""
        rate = max(1.0, messages_per_second * 0.8)
        if self.bucket.rate != rate:
            # keep the bucket (and any debt) across reconnects to the same limits: a fresh
            # burst after every reconnect would overrun the hub's per-hotkey limit
            self.bucket = TokenBucket(rate=rate, capacity=rate, updated=time.monotonic())

    async def wait(self) -> None:
        """Wait for this send's slot (a resend of a big outbox would otherwise trip the
        hub's rate limit)."""
        bucket = self.bucket
        delay = bucket.reserve(time.monotonic())
        if delay > 0:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                # never sent (the session ended): give the slot back, or every
                # reconnect would leave debt that delays the resend of the outbox
                bucket.tokens = min(bucket.capacity, bucket.tokens + 1)
                raise


async def close_quietly(ws: aiohttp.ClientWebSocketResponse, timeout: float = 1.0) -> None:
    """Close a WebSocket we are done with, whatever state it is in, within ``timeout``
    seconds: the peer may be gone, and nothing it could say matters any more."""
    with contextlib.suppress(Exception):  # a link being dropped may fail in any way
        await asyncio.wait_for(ws.close(), timeout)


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """A ``Retry-After`` header in seconds (None when absent or not a number)."""
    if not headers:
        return None
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def tls_connector(ca_file: str | None) -> aiohttp.TCPConnector | None:
    """The connector of the session a connection makes: aiohttp's default, or one that
    verifies hub certificates against ``ca_file`` (a private CA) instead of the system's
    CAs. A missing or unreadable file fails here, at start, not in the reconnect loop."""
    if ca_file is None:
        return None
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"ca_file {ca_file}: {exc}") from None
    return aiohttp.TCPConnector(ssl=context)
