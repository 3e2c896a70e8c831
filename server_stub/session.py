"""One miner's open WebSocket: how frames reach its socket, and its close.

The hub writes complete frames (:mod:`.wsframes`) straight to the miner's
transport: a broadcast builds each frame once and hands the same bytes to every
miner. A frame waits in the session's bounded queue only while the transport's
write buffer is above its high-water mark (or while earlier frames wait, so order
is kept); a frame that does not fit in the queue marks the miner as a slow
consumer and the hub closes it (4008). So :meth:`MinerSession.send` never blocks
and one stalled miner can never stall a broadcast.

The hub's pings (:meth:`MinerSession.ping`, timing the round trip) are complete
frames written the same way. aiohttp's own writer then only ever sends control frames
(pong, close), each in one synchronous ``transport.write``: it can never interleave
with a frame written here, and nothing is written here once its close frame has been
sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections import deque
from typing import Any, Protocol

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter

from . import wsframes
from .stats import HubStats
from .stream import GameFilter

log = logging.getLogger("server_stub.session")

_FLUSH_POLL_S = 0.02
_PING = struct.Struct("!Q")
_PING_PAYLOAD = _PING.pack
_PING_UNPACK = _PING.unpack
_PING_BYTES = _PING.size


class SessionOwner(Protocol):
    """What a session reports to (the :class:`~server_stub.session_table.SessionTable`)."""

    @property
    def stats(self) -> HubStats: ...

    def on_overflow(self, session: MinerSession) -> None: ...


class HubWebSocket(web.WebSocketResponse):
    """aiohttp's WebSocket response, answering a permessage-deflate offer with
    ``server_no_context_takeover`` (see :mod:`.wsframes`). aiohttp negotiates the
    rest (the window, and decompressing what the miner sends). It overrides aiohttp's
    ``_handshake`` (3.x); tests/test_hub_fanout.py checks the answer to each offer."""

    def _handshake(self, request: Any) -> Any:
        headers, protocol, compress, notakeover = super()._handshake(request)
        if compress:
            headers[hdrs.SEC_WEBSOCKET_EXTENSIONS] = wsframes.deflate_response(compress)
            notakeover = True  # aiohttp's own compressed sends (none expected) agree
        return headers, protocol, compress, notakeover


class MinerSession:
    """An authenticated miner connection."""

    # Slots: the hub holds one per connection, and idle connections should cost
    # little more than aiohttp's own (bench/memory.py).
    __slots__ = ("_cancel_read", "_drainer", "_high_water", "_owner", "_ping_ns", "_queue",
                 "_queue_size", "_read_ended", "_reader", "_stopping", "_transport", "_waiting",
                 "_writer", "close_task", "closing", "connected_at", "deflate", "game_filter",
                 "hotkey", "last_received", "reading", "request", "rtt_s", "session_id", "ws")

    def __init__(self, *, ws: web.WebSocketResponse, request: web.Request,
                 writer: AbstractStreamWriter, hotkey: str, session_id: str,
                 game_filter: GameFilter, queue_size: int, owner: SessionOwner) -> None:
        """``writer``: what ``ws.prepare`` returned (its ``drain`` waits for the socket)."""
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the connection closed during the upgrade")
        self.ws = ws
        self.request = request
        self.hotkey = hotkey
        self.session_id = session_id
        self.game_filter = game_filter
        self.deflate: int = int(ws.compress)
        """The negotiated deflate window bits (0: no compression)."""
        self.closing = False
        self.last_received = time.monotonic()
        self.connected_at = self.last_received
        """``time.monotonic()`` of the upgrade (the dashboard's "connected since")."""
        self.rtt_s: float | None = None
        """Round trip of the last answered ping (None: none answered yet)."""
        self._ping_ns = 0  # monotonic_ns carried by the ping awaiting its pong (0: none)
        self.reading = False  # the read loop is idle in receive()
        self._reader: asyncio.Task[Any] | None = None  # the task of the read loop, while it runs
        self._cancel_read = False  # stop_reading cancelled that task
        self._read_ended: asyncio.Future[None] | None = None  # stop_reading waits on it
        self.close_task: asyncio.Task[None] | None = None
        self._transport: asyncio.Transport = transport
        self._writer = writer
        self._high_water = transport.get_write_buffer_limits()[1]
        self._owner = owner
        self._queue_size = queue_size
        # Frames waiting for the socket, and the task writing them: both exist only
        # while something waits (an idle connection keeps neither).
        self._queue: deque[bytes] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._waiting = False  # the drainer waits for the socket to drain
        self._stopping = False  # the close handshake has begun: send nothing more

    @property
    def remote(self) -> str:
        return self.request.remote or "?"

    @property
    def queued(self) -> int:
        """Frames waiting for the socket."""
        return len(self._queue) if self._queue is not None else 0

    def send(self, text: str) -> bool:
        """Send one text message to this miner alone (see :meth:`send_frame`)."""
        if self.deflate:
            data = wsframes.frame(wsframes.deflate(text.encode(), self.deflate), compressed=True)
        else:
            data = wsframes.frame(text.encode())
        return self.send_frame(data)

    def send_frame(self, data: bytes) -> bool:
        """Write a complete frame now, or queue it behind a full socket; False (and the
        overflow callback) when the queue is full, False too once closing."""
        if self.closing:
            return False
        queue = self._queue
        if queue is None:
            transport = self._transport
            if transport.get_write_buffer_size() <= self._high_water:
                if not (self.ws.closed or transport.is_closing()):
                    transport.write(data)
                    self._owner.stats.messages_out += 1
                return True  # a dead link is noticed and closed by the read loop
            queue = self._queue = deque()
            self._drainer = asyncio.create_task(self._drain_queue(queue),
                                                name=f"send-{self.session_id}")
        elif len(queue) >= self._queue_size:
            self._owner.on_overflow(self)
            return False
        queue.append(data)
        return True

    def ping(self, now_ns: int) -> bool:
        """Send an RFC 6455 ping carrying ``now_ns`` (monotonic) to time its pong; every
        WebSocket client answers one by itself. Only onto an idle socket: behind queued
        frames it would time the queue (and a congested miner is not pinged at all)."""
        if self.closing or self._stopping or self._queue is not None:
            return False
        transport = self._transport
        if (transport.get_write_buffer_size() > self._high_water or self.ws.closed
                or transport.is_closing()):
            return False
        transport.write(wsframes.frame(_PING_PAYLOAD(now_ns), opcode=wsframes.OP_PING))
        self._ping_ns = now_ns
        return True

    def pong(self, payload: bytes, now_ns: int) -> None:
        """A pong arrived: when it answers the last ping, its round trip is ``rtt_s``.
        An unsolicited pong (RFC 6455 allows one as a heartbeat) or an older ping's is
        ignored, so a miner cannot report a round trip it did not make."""
        if self._ping_ns and len(payload) == _PING_BYTES \
                and _PING_UNPACK(payload)[0] == self._ping_ns:
            self.rtt_s = (now_ns - self._ping_ns) / 1e9
            self._ping_ns = 0

    async def _drain_queue(self, queue: deque[bytes]) -> None:
        """Write the queued frames as the socket drains; end when none is left."""
        transport = self._transport
        stats = self._owner.stats
        try:
            while queue and not self._stopping:
                if transport.get_write_buffer_size() > self._high_water:
                    self._waiting = True
                    try:
                        await self._writer.drain()
                    finally:
                        self._waiting = False
                    if self._stopping:
                        break
                if self.ws.closed or transport.is_closing():
                    break
                transport.write(queue.popleft())  # at least one per wait: always progress
                stats.messages_out += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a dying link fails in many ways; the reader
            # notices too, and this must only ever end this miner's sending
            log.debug("send to %s stopped: %s", self.hotkey, exc)
        finally:
            self._queue = None
            self._drainer = None

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) until every queued frame has been written."""
        drainer = self._drainer
        if drainer is not None:
            await asyncio.wait({drainer}, timeout=timeout)

    async def stop_sender(self) -> None:
        """End the drainer (queued frames are dropped)."""
        drainer = self._drainer
        if drainer is not None:
            drainer.cancel()
            await asyncio.gather(drainer, return_exceptions=True)

    def reading_started(self) -> None:
        """The read loop begins, in the current task."""
        self._reader = asyncio.current_task()

    def reading_ended(self) -> None:
        """The read loop has ended (its task goes on, e.g. to wait for the close)."""
        self._reader = None
        ended = self._read_ended
        if ended is not None and not ended.done():
            ended.set_result(None)

    def read_cancel_taken(self) -> bool:
        """In the read loop's task, after a CancelledError: True when it was
        :meth:`stop_reading`'s alone (then it is taken back and the task goes on)."""
        if not self._cancel_read:
            return False
        self._cancel_read = False
        task = asyncio.current_task()
        return task is not None and task.uncancel() == 0

    async def stop_reading(self, timeout: float) -> None:
        """End the read loop before the close handshake.

        When close() interrupts a pending receive(), aiohttp drops the TCP connection
        right after sending the close frame instead of waiting for the peer's; a peer
        that reads the close frame after the FIN then reports 1006, losing the code.
        With no receive() pending, close() waits for the peer's close frame.
        """
        reader = self._reader
        if reader is None or reader is asyncio.current_task():
            return
        ended = self._read_ended = asyncio.get_running_loop().create_future()
        if self.reading:
            # Idle in receive(): the CancelledError comes out of that await (an unread
            # frame stays unread) and the loop's task takes it back (read_cancel_taken).
            self._cancel_read = True
            reader.cancel()
        # else it finishes the frame in hand and stops (closing is set)
        await asyncio.wait({ended}, timeout=timeout)

    async def close(self, code: int, reason: str, timeout: float) -> None:
        """Close handshake bounded by ``timeout``; then unsent bytes are dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._stopping = True
        if not self._waiting:
            await self.stop_sender()
        # else: the drainer waits for the socket to drain; cancelling it would cancel
        # the protocol's drain future that ws.close() is about to wait on too (aiohttp
        # shares one), killing the close before the code is sent. It stops by itself
        # when the socket drains, writing nothing more.
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:120]),
                                   timeout)
        except asyncio.CancelledError:
            self._abort_if_unsent()
            await self.stop_sender()
            raise
        except Exception as exc:  # noqa: BLE001 - a dying link fails in many ways; the
            # transport is dropped below whatever happened
            log.debug("close of %s did not complete: %r", self.hotkey, exc)
        await self.stop_sender()
        # The close frame can still sit in the transport buffer behind frames the
        # peer has not read yet (a slow consumer): give the peer the rest of the
        # timeout to take them, so it learns the close code. A peer that never
        # reads would keep those bytes (and the socket) alive forever: drop them.
        transport = self._transport
        while loop.time() < deadline:
            if transport.get_write_buffer_size() == 0:
                return
            await asyncio.sleep(_FLUSH_POLL_S)  # asyncio has no "buffer empty" event
        self._abort_if_unsent()

    def _abort_if_unsent(self) -> None:
        with contextlib.suppress(Exception):
            if self._transport.get_write_buffer_size() > 0:
                self._transport.abort()
