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
from collections.abc import Callable

from aiohttp import web

from .stream import GameFilter

log = logging.getLogger("server_stub.session")


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
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self._on_overflow = on_overflow
        self._on_sent = on_sent
        self._sender: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sender = asyncio.create_task(self._send_loop(), name=f"send-{self.session_id}")

    def send(self, text: str) -> bool:
        """Queue a frame; False (and the overflow callback) when the queue is full."""
        if self.closing:
            return False
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            self._on_overflow(self)
            return False
        return True

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def _send_loop(self) -> None:
        sent = 0
        try:
            while True:
                text = await self._queue.get()
                try:
                    await self.ws.send_str(text)
                finally:
                    self._queue.task_done()
                sent += 1
                self._on_sent(1)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-send; the reader notices too
            log.debug("send to %s stopped: %s", self.hotkey, exc)

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) until every queued frame has been written."""
        if self._sender is None or self._sender.done():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)

    async def stop_sender(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)

    async def close(self, code: int, reason: str, timeout: float) -> None:
        """Close handshake bounded by ``timeout``; then the transport is aborted."""
        await self.stop_sender()
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:120]),
                                   timeout)
        except Exception as exc:
            log.debug("close of %s did not complete: %r", self.hotkey, exc)
        finally:
            # A peer that never reads keeps unsent bytes (and the socket) alive
            # forever after a graceful close: drop them.
            transport = self.request.transport
            if transport is not None and transport.get_write_buffer_size() > 0:
                transport.abort()
