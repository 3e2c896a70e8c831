"""A small fault-injecting TCP proxy for client tests (asyncio streams, loopback only).

``FaultProxy(target_port)`` listens on its own port of 127.0.0.1 and forwards every
accepted connection ("link") to ``127.0.0.1:target_port``. Controls:

- :meth:`cut`: abort every current link at once (both sockets, no close handshake).
- :meth:`stall` / :meth:`resume`: stop forwarding bytes both ways without closing
  anything (a half-open link: the peers see silence, not an error). New links made
  while stalled are accepted but stall too.
- :meth:`delay`: hold every forwarded chunk this many seconds.
- :meth:`refuse_upgrades`: answer any HTTP request whose head carries
  ``Upgrade: websocket`` with ``426 Upgrade Required`` and close the link, while
  plain HTTP requests (keep-alive included) are forwarded. Request heads are parsed
  on the client-to-server side (``Content-Length`` bodies are skipped); once the
  server answers an upgrade with ``101`` the link becomes opaque (WebSocket frames),
  while a refused upgrade (e.g. 429) leaves it an HTTP link that may be reused.
- :meth:`retarget`: send new links to another port (a restarted hub).

Counters: ``accepted`` links, ``cuts`` (links aborted by :meth:`cut`),
``upgrade_requests`` (monotonic times of every upgrade request head seen),
``refused`` (upgrades answered with 426), ``upstream_failures``.

The proxy owns every task it runs (one per link direction plus the accept handlers)
and cancels them in :meth:`close`. Links are bounded by ``max_links``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

_HEAD_END = b"\r\n\r\n"
_MAX_HEAD = 64 * 1024
_CHUNK = 64 * 1024
_REFUSAL_BODY = b'{"error":"upgrade_required","detail":"the proxy does not allow WebSockets"}'
_REFUSAL = (b"HTTP/1.1 426 Upgrade Required\r\n"
            b"Content-Type: application/json\r\n"
            b"Connection: close\r\n"
            b"Content-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n"
            + _REFUSAL_BODY)


@dataclass(eq=False)
class _Link:
    client_reader: asyncio.StreamReader
    client_writer: asyncio.StreamWriter
    upstream_reader: asyncio.StreamReader
    upstream_writer: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed: bool = False
    heads: _RequestHeads = field(default_factory=lambda: _RequestHeads())

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in (self.client_writer, self.upstream_writer):
            transport = writer.transport
            if not transport.is_closing():
                transport.abort()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()


class _RequestHeads:
    """Tracks HTTP/1.1 request framing on the client-to-server byte stream."""

    def __init__(self) -> None:
        self.buffer = b""
        self.body_left = 0
        self.opaque = False  # after an upgrade (or anything we cannot frame)
        self.awaiting_upgrade = False  # an upgrade was forwarded; its answer is not in

    def upgrade_answered(self, switched: bool) -> None:
        self.awaiting_upgrade = False
        self.opaque = self.opaque or switched

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        """Split ``data`` into ("head", bytes) / ("data", bytes) pieces in order."""
        if self.opaque and not self.buffer:
            return [("data", data)] if data else []
        pieces: list[tuple[str, bytes]] = []
        self.buffer += data
        while self.buffer and not self.awaiting_upgrade:
            if self.opaque:
                pieces.append(("data", self.buffer))
                self.buffer = b""
                break
            if self.body_left:
                take = self.buffer[:self.body_left]
                self.buffer = self.buffer[len(take):]
                self.body_left -= len(take)
                pieces.append(("data", take))
                continue
            end = self.buffer.find(_HEAD_END)
            if end < 0:
                if len(self.buffer) > _MAX_HEAD:  # not HTTP we can follow: pass it on
                    self.opaque = True
                    continue
                break
            head = self.buffer[:end + len(_HEAD_END)]
            self.buffer = self.buffer[len(head):]
            headers = _headers(head)
            if "websocket" in headers.get("upgrade", "").lower():
                self.awaiting_upgrade = True  # 101 or an HTTP answer decides what follows
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                self.opaque = True  # not needed by these tests; stop inspecting
            else:
                try:
                    self.body_left = int(headers.get("content-length", "0") or 0)
                except ValueError:
                    self.opaque = True
            pieces.append(("head", head))
        return pieces


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def is_upgrade(head: bytes) -> bool:
    return "websocket" in _headers(head).get("upgrade", "").lower()


class FaultProxy:
    def __init__(self, target_port: int, *, host: str = "127.0.0.1",
                 max_links: int = 256) -> None:
        self.host = host
        self.target_port = target_port
        self.max_links = max_links
        self.accepted = 0
        self.cuts = 0
        self.refused = 0
        self.upstream_failures = 0
        self.upgrade_requests: list[float] = []
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._delay = 0.0
        self._refuse_upgrades = False
        self._server: asyncio.Server | None = None
        self._upgrade_seen = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the proxy first"
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        self._links.clear()
        self._flowing.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- controls ---------------------------------------------------------------------

    def cut(self) -> int:
        """Abort every current link; returns how many were cut."""
        links = list(self._links)
        for link in links:
            link.abort()
        self._links.difference_update(links)
        self.cuts += len(links)
        return len(links)

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    @property
    def stalled(self) -> bool:
        return not self._flowing.is_set()

    def delay(self, seconds: float) -> None:
        self._delay = max(0.0, seconds)

    def refuse_upgrades(self, refuse: bool = True) -> None:
        self._refuse_upgrades = refuse

    def retarget(self, port: int) -> None:
        self.target_port = port

    @property
    def links(self) -> int:
        return len(self._links)

    async def wait_upgrade_request(self, after: int, timeout: float) -> None:
        """Wait (bounded) until more than ``after`` upgrade requests were seen."""
        async with asyncio.timeout(timeout):
            while len(self.upgrade_requests) <= after:
                self._upgrade_seen.clear()
                await self._upgrade_seen.wait()

    # -- plumbing ---------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            # close() cancels handlers; asyncio's accept callback would log a cancelled
            # handler as an error, so end it normally (the link is aborted either way)
            writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if len(self._links) >= self.max_links:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.target_port), 5.0)
        except (OSError, TimeoutError):
            self.upstream_failures += 1
            writer.transport.abort()
            return
        link = _Link(reader, writer, up_reader, up_writer)
        self._links.add(link)
        link.tasks = [
            self._spawn(self._pump_requests(link), "proxy-c2s"),
            self._spawn(self._pump_responses(link), "proxy-s2c"),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        link.abort()
        self._links.discard(link)

    def _spawn(self, coro: object, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _read(self, reader: asyncio.StreamReader) -> bytes:
        await self._flowing.wait()
        data = await reader.read(_CHUNK)
        if data and self._delay:
            await asyncio.sleep(self._delay)
        await self._flowing.wait()  # bytes read before a stall are held, not sent
        return data

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    async def _refuse(self, link: _Link) -> None:
        """Answer 426 and close the client side gracefully (the answer must arrive)."""
        self.refused += 1
        link.closed = True
        link.upstream_writer.transport.abort()
        link.client_writer.write(_REFUSAL)
        with contextlib.suppress(ConnectionError, OSError):
            await link.client_writer.drain()
        link.client_writer.close()
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    async def _pump_responses(self, link: _Link) -> None:
        """Server to client; notes whether an upgrade was answered with 101."""
        status = b""
        try:
            while True:
                data = await self._read(link.upstream_reader)
                if not data:
                    if link.client_writer.can_write_eof():
                        link.client_writer.write_eof()
                    return
                if link.heads.awaiting_upgrade:
                    status += data[:16]
                    if len(status) >= 12:  # "HTTP/1.1 101"
                        link.heads.upgrade_answered(status[9:12] == b"101")
                        status = b""
                await self._write(link.client_writer, data)
        except (ConnectionError, OSError):
            link.abort()

    async def _pump_requests(self, link: _Link) -> None:
        heads = link.heads
        try:
            while True:
                data = await self._read(link.client_reader)
                if not data:
                    if link.upstream_writer.can_write_eof():
                        link.upstream_writer.write_eof()
                    return
                for kind, piece in heads.feed(data):
                    if kind == "head" and is_upgrade(piece):
                        self.upgrade_requests.append(time.monotonic())
                        self._upgrade_seen.set()
                        if self._refuse_upgrades:
                            await self._refuse(link)
                            return
                    await self._write(link.upstream_writer, piece)
        except (ConnectionError, OSError):
            link.abort()
