"""Tools for the hostile-client tests: a hand-rolled WebSocket client on a raw TCP
socket, raw HTTP requests, a well-behaved bystander miner, and log checks.

aiohttp's client cannot fragment a message, send an unmasked or reserved-bit frame,
or write a request head one byte at a time, so :class:`RawWS` and :func:`raw_http`
speak the wire formats (RFC 6455 frames, HTTP/1.1 heads) directly on an asyncio
stream. Every read is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import sqlite3
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from bittensor import http_auth
from bittensor.keyfiles import Keypair

from sdk.models import Game, Prediction
from sdk.signing import verify_receipt

from .games import future_game
from .hubkit import RunningHub
from .keys import VALIDATOR
from .wire import receive_json, send_prediction

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- raw HTTP -------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; last value wins
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def open_tcp(port: int, *, local_host: str | None = None, rcvbuf: int | None = None,
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to the hub on 127.0.0.1, optionally from another loopback
    address (all of 127.0.0.0/8 is local on Linux) and with a small receive buffer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if local_host is not None:
            sock.bind((local_host, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock, limit=2**22)


async def read_response(reader: asyncio.StreamReader, timeout: float = 5.0, *,
                        head_only: bool = False) -> RawResponse:
    """One HTTP/1.1 response (head plus a Content-Length body, or up to EOF; only the
    head for a HEAD request)."""
    async with asyncio.timeout(timeout):
        head = await reader.readuntil(b"\r\n\r\n")
        while head.startswith(b"HTTP/1.1 1") and not head.startswith(b"HTTP/1.1 101"):
            head = await reader.readuntil(b"\r\n\r\n")  # an interim 100 Continue
        lines = head.decode("latin-1").split("\r\n")
        _version, status, *reason = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if head_only:
            body = b""
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif int(status) in (101, 204, 304):
            body = b""
        else:
            body = await reader.read()
    return RawResponse(int(status), reason[0] if reason else "", headers, body)


async def raw_http(port: int, request: bytes, *, timeout: float = 5.0,
                   local_host: str | None = None) -> RawResponse:
    """Send raw request bytes on a fresh connection and read one response."""
    reader, writer = await open_tcp(port, local_host=local_host)
    try:
        writer.write(request)
        await writer.drain()
        return await read_response(reader, timeout, head_only=request.startswith(b"HEAD "))
    finally:
        writer.transport.abort()


def http_head(method: str, target: str, headers: Iterable[tuple[str, str]] = (), *,
              version: str = "HTTP/1.1", host: str = "127.0.0.1") -> bytes:
    lines = [f"{method} {target} {version}", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def upgrade_headers(key: bytes | None = None) -> list[tuple[str, str]]:
    ws_key = base64.b64encode(key or os.urandom(16)).decode()
    return [("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", ws_key), ("Sec-WebSocket-Version", "13")]


def signed_upgrade(signer: Keypair, path: str = "/ws", *,
                   extra: Iterable[tuple[str, str]] = (), nonce_ns: int | None = None,
                   receiver: str | None = None) -> bytes:
    """A complete, correctly signed upgrade request head (no deflate offered)."""
    auth = http_auth.sign(signer, method="GET", path=path, body=b"",
                          receiver_ss58=receiver or VALIDATOR.ss58_address, nonce_ns=nonce_ns)
    return http_head("GET", path, [*upgrade_headers(), *auth.items(), *extra])


# -- a hand-made WebSocket client ----------------------------------------------------------


class HandshakeRefused(Exception):
    def __init__(self, response: RawResponse) -> None:
        super().__init__(f"upgrade refused: {response.status} {response.body[:200]!r}")
        self.response = response


def build_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
                mask: bool = True) -> bytes:
    """One RFC 6455 frame; client frames are masked with a random key."""
    head = bytearray([(0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)])
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head.append(mask_bit | length)
    elif length < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack("!H", length)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", length)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    repeated = (key * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        length, "big") if length else b""
    return bytes(head) + key + masked


def split(payload: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``payload`` cut at the given offsets (clamped, sorted; empty pieces kept)."""
    points = sorted(min(max(c, 0), len(payload)) for c in cuts)
    pieces, last = [], 0
    for point in points:
        pieces.append(payload[last:point])
        last = point
    pieces.append(payload[last:])
    return pieces


def fragmented(opcode: int, pieces: list[bytes], *, ping_between: bool = False) -> bytes:
    """A message sent as ``pieces``: first frame ``opcode`` FIN=0, then continuation
    frames, the last with FIN=1; optionally a ping (control frames may be interleaved
    in a fragmented message) after every fragment but the last."""
    out = bytearray()
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        out += build_frame(opcode if index == 0 else OP_CONT, piece, fin=last)
        if ping_between and not last:
            out += build_frame(OP_PING, b"p%d" % index)
    return bytes(out)


class ConnectionClosed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed with {code} {reason!r}")
        self.code = code
        self.reason = reason


class RawWS:
    """A WebSocket client written by hand on a raw TCP stream."""

    _open: ClassVar[list[RawWS]] = []

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 response: RawResponse) -> None:
        self.reader = reader
        self.writer = writer
        self.response = response
        self.pongs: list[bytes] = []
        self.pings: list[bytes] = []
        RawWS._open.append(self)

    @classmethod
    def abort_all(cls) -> None:
        """Drop every connection made so far (test teardown: a raw client never answers
        the hub's close frame, which would make the hub wait for close_timeout_s)."""
        for ws in cls._open:
            ws.abort()
        cls._open.clear()

    @classmethod
    async def connect(cls, port: int, signer: Keypair | None, path: str = "/ws", *,
                      local_host: str | None = None, rcvbuf: int | None = None,
                      timeout: float = 5.0, request: bytes | None = None) -> RawWS:
        """Upgrade with a fresh signature by ``signer``, or send ``request`` (a
        complete upgrade head, e.g. a replay) as it is."""
        reader, writer = await open_tcp(port, local_host=local_host, rcvbuf=rcvbuf)
        if request is None:
            assert signer is not None
            ws_key = os.urandom(16)
            auth = http_auth.sign(signer, method="GET", path=path, body=b"",
                                  receiver_ss58=VALIDATOR.ss58_address)
            request = http_head("GET", path, [*upgrade_headers(ws_key), *auth.items()])
        else:
            match = re.search(rb"Sec-WebSocket-Key: (\S+)\r\n", request)
            assert match is not None, "the request has no Sec-WebSocket-Key"
            ws_key = base64.b64decode(match.group(1))
        writer.write(request)
        await writer.drain()
        try:
            response = await read_response(reader, timeout)
        except BaseException:
            writer.transport.abort()
            raise
        if response.status != 101:
            writer.transport.abort()
            raise HandshakeRefused(response)
        accept = base64.b64encode(hashlib.sha1(base64.b64encode(ws_key) + _WS_GUID).digest())
        assert response.headers.get("sec-websocket-accept") == accept.decode(), response
        assert "sec-websocket-extensions" not in response.headers  # no deflate: raw frames
        return cls(reader, writer, response)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_text(self, text: str | bytes) -> None:
        data = text.encode("utf-8") if isinstance(text, str) else text
        await self.send_raw(build_frame(OP_TEXT, data))

    async def send_json(self, frame_type: str, data: dict[str, Any]) -> None:
        await self.send_text(json.dumps({"type": frame_type, "data": data}))

    async def recv_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """The next complete message from the hub as (opcode, payload)."""
        async with asyncio.timeout(timeout):
            opcode, parts = None, []
            while True:
                b0, b1 = await self.reader.readexactly(2)
                fin, op, length = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
                assert not b1 & 0x80, "the hub must not mask its frames"
                if length == 126:
                    (length,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif length == 127:
                    (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
                payload = await self.reader.readexactly(length)
                if op >= 0x8:  # control frames are never fragmented
                    return op, payload
                opcode = op if op != OP_CONT else opcode
                parts.append(payload)
                if fin:
                    assert opcode is not None
                    return opcode, b"".join(parts)

    async def recv_json(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next JSON text frame (pongs are collected, pings collected and answered,
        a close raises)."""
        deadline = time.monotonic() + timeout
        while True:
            opcode, payload = await self.recv_frame(max(0.0, deadline - time.monotonic()))
            if opcode == OP_TEXT:
                return json.loads(payload)
            if opcode == OP_PONG:
                self.pongs.append(payload)
            elif opcode == OP_PING:  # the hub times its round trip: answer like a client
                self.pings.append(payload)
                self.writer.write(build_frame(OP_PONG, payload))  # no drain: never block
            elif opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise ConnectionClosed(code, payload[2:].decode("utf-8", "replace"))
            else:
                raise AssertionError(f"unexpected opcode {opcode} from the hub")

    async def recv_close(self, timeout: float = 5.0,
                         ) -> tuple[int | None, list[dict[str, Any]]]:
        """Read until the hub's close frame (or EOF: code None); returns the code and
        the JSON frames read before it."""
        frames: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                frames.append(await self.recv_json(max(0.0, deadline - time.monotonic())))
        except ConnectionClosed as closed:
            return closed.code, frames
        except (asyncio.IncompleteReadError, ConnectionResetError):
            return None, frames

    async def wait_eof(self, timeout: float = 5.0) -> None:
        """Drain until the hub drops the TCP connection."""
        async with asyncio.timeout(timeout):
            with contextlib.suppress(ConnectionResetError):
                while await self.reader.read(65536):
                    pass

    def stall(self) -> None:
        """Stop reading from the socket (asyncio would otherwise keep filling the
        StreamReader's buffer in the background): a miner that never reads."""
        self.writer.transport.pause_reading()

    def unstall(self) -> None:
        self.writer.transport.resume_reading()

    def abort(self) -> None:
        self.writer.transport.abort()


# -- a well-behaved miner that keeps score while others misbehave ------------------------


def latency_figures(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return {"n": len(ordered), "p50_ms": pct(50) * 1e3, "p99_ms": pct(99) * 1e3,
            "max_ms": ordered[-1] * 1e3}


@dataclass
class Bystander:
    """A well-behaved miner plus a feed, running while hostile traffic hits the hub.

    Every ``period`` the feed posts one update (the ``live`` game's odds move) and the
    miner submits one prediction on the ``steady`` game. :meth:`stop` checks that the
    miner received exactly the updates that were posted, in order, and that every
    prediction was accepted with a receipt signed by the validator.
    """

    running: RunningHub
    key: Keypair
    period: float = 0.05
    steady: Game = field(default_factory=lambda: future_game(
        "steady", start_in=timedelta(days=2)))
    posted: list[tuple[int, float]] = field(default_factory=list)  # (seq, post start)
    received: list[tuple[int, float]] = field(default_factory=list)  # (seq, arrival)
    confirmations: list[dict[str, Any]] = field(default_factory=list)
    prediction_latency: list[float] = field(default_factory=list)
    _pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> Bystander:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        """Cancel whatever still runs (after a failure; :meth:`stop` checks results)."""
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def start(self) -> Bystander:
        await self.running.post_games([self.steady])
        self.ws = await self.running.connect(self.key)
        welcome = await receive_json(self.ws)
        assert welcome["type"] == "welcome", welcome
        snapshot = await receive_json(self.ws)
        assert snapshot["type"] == "game_update"
        assert snapshot["data"]["snapshot"]
        self.first_seq = snapshot["data"]["seq"]
        self._tasks = [asyncio.create_task(self._read(), name="bystander-read"),
                       asyncio.create_task(self._drive(), name="bystander-drive")]
        return self

    async def _read(self) -> None:
        while True:
            frame = await receive_json(self.ws, timeout=30.0)
            now = time.monotonic()
            if frame["type"] == "game_update":
                assert not frame["data"]["snapshot"], frame
                self.received.append((frame["data"]["seq"], now))
            elif frame["type"] == "confirmation":
                future = self._pending.pop(frame["data"]["prediction_id"], None)
                assert future is not None, f"unexpected confirmation {frame}"
                future.set_result(frame["data"])
            elif frame["type"] != "heartbeat":
                raise AssertionError(f"the bystander got {frame}")

    async def _drive(self) -> None:
        round_ = 0
        while not self._stop.is_set():
            round_ += 1
            started = time.monotonic()
            live = future_game("live", team_a_odds=2.0 + round_ / 1000)
            answer = await self.running.post_games([live])
            self.posted.append((answer["seq"], started))
            prediction = Prediction.for_game(self.steady, round_ % 2, 1.0)
            future = asyncio.get_running_loop().create_future()
            self._pending[prediction.prediction_id] = future
            sent = time.monotonic()
            await send_prediction(self.ws, self.key, prediction)
            data = await asyncio.wait_for(future, 10.0)
            self.prediction_latency.append(time.monotonic() - sent)
            self.confirmations.append(data)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.period)

    async def stop(self, timeout: float = 10.0) -> dict[str, Any]:
        """Stop, then assert that nothing was lost, skipped, reordered or refused."""
        self._stop.set()
        reader, driver = self._tasks
        await asyncio.wait_for(asyncio.shield(driver), timeout)  # re-raises its failure
        expected = sorted(seq for seq, _ in self.posted)  # others may append posts too
        deadline = time.monotonic() + timeout
        while len(self.received) < len(expected) and time.monotonic() < deadline:
            if reader.done():
                break
            await asyncio.sleep(0.01)
        if reader.done():
            reader.result()  # a failure in the reader surfaces here
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        assert expected, "the bystander never posted"
        got = [seq for seq, _ in self.received]
        assert got == expected, (
            "the bystander did not receive exactly the posted updates, in order: missing "
            f"{sorted(set(expected) - set(got))}, unexpected {sorted(set(got) - set(expected))}")
        for data in self.confirmations:
            assert data["status"] == "accepted", data
            assert verify_receipt(data, VALIDATOR.ss58_address), data
        arrival = dict(self.received)
        return {
            "rounds": len(self.posted),
            "update_latency": latency_figures([arrival[s] - t for s, t in self.posted]),
            "prediction_latency": latency_figures(self.prediction_latency),
        }


# -- logs, store ------------------------------------------------------------------------------


def assert_no_crash_logs(records: list[logging.LogRecord]) -> None:
    """No ERROR record and no traceback from the hub, aiohttp or asyncio."""
    bad = [r for r in records
           if r.levelno >= logging.ERROR or r.exc_info is not None
           or "Traceback" in r.getMessage()]
    assert not bad, "\n".join(f"{r.name} {r.levelname}: {r.getMessage()}" for r in bad[:10])


def stored_predictions(store_path: Path, hotkey: str | None = None,
                       ) -> dict[tuple[str, str], dict[str, Any]]:
    """(miner_hotkey, prediction_id) -> row, read straight from the hub's SQLite file."""
    with contextlib.closing(sqlite3.connect(str(store_path))) as db:
        rows = db.execute("SELECT miner_hotkey, prediction_id, wager, received_at_ns,"
                          " prediction, signature, receipt FROM predictions").fetchall()
    result = {}
    for miner, pid, wager, received, prediction, signature, receipt in rows:
        if hotkey is None or miner == hotkey:
            result[(miner, pid)] = {"wager": wager, "received_at_ns": received,
                                    "prediction": json.loads(prediction),
                                    "signature": signature, "receipt": json.loads(receipt)}
    return result


def throwaway_keys(count: int, *, seed: int = 0) -> list[Keypair]:
    """Distinct real sr25519 hotkeys, reproducible from ``seed``."""
    return [Keypair.create_from_seed(hashlib.sha256(b"spray-%d-%d" % (seed, i)).digest())
            for i in range(count)]
