"""One miner's open WebSocket: its bounded send queue and the task that drains it.

Everything sent to a miner goes through :meth:`MinerSession.send`, which never
blocks: a frame that does not fit in the queue marks the miner as a slow consumer
and the hub closes it (4008). So one stalled miner can never stall a broadcast.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from aiohttp import web

from .stream import GameFilter

log = logging.getLogger("server_stub.session")

_FLUSH_POLL_S = 0.02


class MinerSession:
    """An authenticated miner connection."""

    def __init__(self, *, ws: web.WebSocketResponse, request: web.Request, hotkey: str,
                 session_id: str, game_filter: GameFilter, queue_size: int,
                 on_overflow: Callable[[MinerSession], None],
                 on_sent: Callable[[int], None]) -> None:
        self.ws = ws
        self.request = request
        self.hotkey = hotkey
        self.session_id = session_id
        self.game_filter = game_filter
        self.remote = request.remote or "?"
        self.closing = False
        self.last_received = time.monotonic()
        # A deque plus one wake-up future, not an asyncio.Queue: a broadcast calls send()
        # once per miner, and Queue's put/get/task_done bookkeeping doubled the hub's
        # CPU per delivered frame (bench/fanout.py, paced updates).
        self._queue: deque[str] = deque()
        self._queue_size = queue_size
        self._wakeup: asyncio.Future[None] | None = None  # the idle sender waits on it
        self._idle = asyncio.Event()  # nothing queued and nothing being sent
        self._idle.set()
        self._on_overflow = on_overflow
        self._on_sent = on_sent
        self._sender: asyncio.Task[None] | None = None
        self._sending = False  # the sender is inside send_str (waiting for the socket)
        self._stopping = False  # the close handshake has begun: send nothing more
        self.reader: asyncio.Task[None] | None = None  # the hub's read loop
        self.reading = False  # the read loop is idle in receive()
        self.close_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sender = asyncio.create_task(self._send_loop(), name=f"send-{self.session_id}")

    def send(self, text: str) -> bool:
        """Queue a frame; False (and the overflow callback) when the queue is full."""
        if self.closing:
            return False
        if len(self._queue) >= self._queue_size:
            self._on_overflow(self)
            return False
        self._queue.append(text)
        self._idle.clear()
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        return True

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        try:
            while not self._stopping:
                if not queue:
                    self._idle.set()
                    self._wakeup = loop.create_future()
                    try:
                        await self._wakeup
                    finally:
                        self._wakeup = None
                    continue
                text = queue.popleft()
                self._sending = True
                try:
                    await self.ws.send_str(text)
                finally:
                    self._sending = False
                self._on_sent(1)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a dying link fails in many ways; the reader
            # notices too, and this must only ever end this miner's sender
            log.debug("send to %s stopped: %s", self.hotkey, exc)

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) until every queued frame has been written."""
        if self._sender is None or self._sender.done():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

    async def stop_sender(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)

    async def stop_reading(self, timeout: float) -> None:
        """End the read loop before the close handshake.

        When close() interrupts a pending receive(), aiohttp drops the TCP connection
        right after sending the close frame instead of waiting for the peer's; a peer
        that reads the close frame after the FIN then reports 1006, losing the code.
        With no receive() pending, close() waits for the peer's close frame.
        """
        reader = self.reader
        if reader is None or reader.done() or reader is asyncio.current_task():
            return
        if self.reading:
            reader.cancel()  # idle in receive(): an unread frame stays unread
        # else it finishes the frame in hand and stops (closing is set)
        await asyncio.wait({reader}, timeout=timeout)

    async def close(self, code: int, reason: str, timeout: float) -> None:
        """Close handshake bounded by ``timeout``; then unsent bytes are dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._stopping = True
        if not self._sending:
            await self.stop_sender()
        # else: the sender waits for the socket to drain; cancelling it would cancel
        # the protocol's drain future that ws.close() is about to wait on too (aiohttp
        # shares one), killing the close before the code is sent. It stops by itself
        # after its current frame.
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
        transport = self.request.transport
        while transport is not None and loop.time() < deadline:
            if transport.get_write_buffer_size() == 0:
                return
            await asyncio.sleep(_FLUSH_POLL_S)  # asyncio has no "buffer empty" event
        self._abort_if_unsent()

    def _abort_if_unsent(self) -> None:
        transport = self.request.transport
        if transport is not None and transport.get_write_buffer_size() > 0:
            transport.abort()
