"""The WebSocket transport: one authenticated session with the hub, from the upgrade
to the close.

:meth:`WebSocketTransport.connect` makes a ``btauth/1``-signed upgrade (a fresh
nonce each time) that resumes the game stream where it stopped, and waits for the
welcome; refusals become the SDK's exceptions (:func:`~sdk.errors.handshake_error`),
a hub that refuses TCP becomes :class:`~sdk.errors.HubUnreachableError`.
:meth:`WebSocketTransport.run` then serves the session: heartbeats (a hub silent for
three intervals is dropped: a half-open link would otherwise look alive forever),
the resend of the outbox, and each received frame parsed once and handed to the
connection. It returns why the session ended; the connection decides what next.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Literal

import aiohttp
from pydantic import BaseModel, ConfigDict, ValidationError
from yarl import URL

from ..codes import ERROR_HEADER
from ..errors import (
    CertificateError,
    ConnectionClosedError,
    HubUnreachableError,
    LinkError,
    ProtocolError,
    close_error,
    handshake_error,
)
from ..frames import (
    Confirmation,
    ErrorFrame,
    GameUpdate,
    Heartbeat,
    PredictionFrame,
    Welcome,
    encode_frame,
    load_json,
    parse_envelope,
    parse_frame,
)
from ..outbox import OutboxEntry
from ..reconnect import refusal_detail
from ..tasks import TaskSet
from .base import LinkContext, close_quietly, retry_after

log = logging.getLogger("sdk.connection.websocket")

_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

_UPDATE_PREFIX = f'{{"type":"{GameUpdate.TYPE}",'
"""How the hub's game updates begin (``encode_frame_data``): those take the fast path."""


class _UpdateEnvelope(BaseModel):
    """A whole game_update frame, validated straight from its JSON text by
    pydantic-core: no intermediate dicts, one pass (the hot path of a miner that
    follows many validators; every other frame goes through :func:`parse_envelope`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["game_update"]
    data: GameUpdate


class WebSocketTransport:
    """One open WebSocket session with the hub (see the module docstring)."""

    def __init__(self, ctx: LinkContext, ws: aiohttp.ClientWebSocketResponse,
                 welcome: Welcome) -> None:
        self.welcome = welcome
        self._ctx = ctx
        self._ws = ws
        self._send_lock = asyncio.Lock()
        self._tasks = TaskSet()
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._last_frame = self._loop.time()

    @classmethod
    async def connect(cls, ctx: LinkContext) -> WebSocketTransport:
        """Upgrade and read the welcome; raise a :class:`~sdk.errors.LinkError` (or a
        subclass saying why) when that fails."""
        address = ctx.address
        path = address.ws_path + ctx.stream_query({})
        headers = ctx.sign("GET", path, b"")
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            async with asyncio.timeout(ctx.options.handshake_timeout):
                ws = await ctx.session.ws_connect(
                    URL(address.ws_url + path, encoded=True), headers=headers,
                    autoping=True, heartbeat=None, compress=15 if ctx.options.compress else 0,
                    max_msg_size=_MAX_MESSAGE_BYTES)
                message = await ws.receive()
            if message.type is not aiohttp.WSMsgType.TEXT:
                raise close_error(ws.close_code, "closed before the welcome")
            welcome = parse_frame(message.data)
            if not isinstance(welcome, Welcome):
                raise LinkError(f"expected a welcome frame, got {welcome.TYPE}")
            return cls(ctx, ws, welcome)
        except aiohttp.WSServerHandshakeError as exc:
            code = exc.headers.get(ERROR_HEADER) if exc.headers else None
            detail = refusal_detail(exc.status, code, validator_hotkey=ctx.validator_hotkey,
                                    url=address.ws_url + address.ws_path,
                                    miner_hotkey=ctx.miner_hotkey)
            raise handshake_error(exc.status, {"error": code, "detail": detail},
                                  retry_after(exc.headers)) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise CertificateError(
                f"cannot verify the TLS certificate of {address.ws_url}: "
                f"{exc.certificate_error} (a hub with a private CA: give its CA certificate "
                "as ConnectionOptions(ca_file=...), bt-miner --ca-file)") from None
        except (TimeoutError, aiohttp.ClientError, OSError, ProtocolError) as exc:
            if ws is not None:
                await close_quietly(ws)
            kind = (HubUnreachableError
                    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError)
                    else LinkError)
            raise kind(f"cannot connect to {address.ws_url}: {exc!r}") from None
        except BaseException:
            if ws is not None:
                await close_quietly(ws)
            raise

    @property
    def heartbeat_interval(self) -> float:
        """Never slower than the hub's interval, or the hub drops us as silent."""
        hub = self.welcome.heartbeat_interval_s
        return min(self._ctx.options.heartbeat_interval_s or hub, hub)

    async def run(self) -> ConnectionClosedError | None:
        """Serve the session until it ends; return the close it ended with (None when
        the hub went silent). The transport is closed when this returns.

        Frames are read in a task of their own, watched by :meth:`_watch_silence`:
        a timer per received frame (``receive(timeout=...)``) would cost more than
        handling a small update does."""
        interval = self.heartbeat_interval
        self._tasks.spawn(self._heartbeat_loop(interval), "heartbeats")
        self._tasks.spawn(self._resend_pending(), "resend")
        reader = self._tasks.spawn(self._read_frames(), "reader")
        watchdog = self._tasks.spawn(self._watch_silence(reader, 3 * interval), "silence")
        try:
            await asyncio.wait([reader])
            if reader.cancelled():  # by the watchdog: the hub went silent
                return None
            return reader.result()
        finally:
            watchdog.cancel()
            await self.close()

    async def _read_frames(self) -> ConnectionClosedError:
        ws = self._ws
        loop = self._loop
        while True:
            message = await ws.receive()
            self._last_frame = loop.time()
            if message.type is aiohttp.WSMsgType.TEXT:
                self._on_text(message.data)
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                  aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
        error = close_error(ws.close_code, _close_reason(message))
        log.info("connection to the hub ended: %s", error)
        return error

    async def _watch_silence(self, reader: asyncio.Task[ConnectionClosedError],
                             limit: float) -> None:
        """Stop the reader once no frame has come for ``limit`` seconds: a half-open
        link would otherwise look alive forever."""
        while True:
            silent_for = self._loop.time() - self._last_frame
            if silent_for >= limit:
                log.warning("no frame from the hub for %.1fs: dropping the link", silent_for)
                reader.cancel()
                return
            await asyncio.sleep(limit - silent_for)

    def dispatch(self, entry: OutboxEntry) -> None:
        if self._closed:
            return  # the next transport resends the outbox
        self._tasks.spawn(self._send(prediction_text(entry)), f"send-{entry.prediction_id}")

    async def request_snapshot(self) -> None:
        await self._send(encode_frame(self._ctx.subscription()), paced=False)

    async def close(self) -> None:
        self._closed = True
        await self._tasks.cancel()
        if not self._ws.closed:
            await close_quietly(self._ws)

    async def _heartbeat_loop(self, interval: float) -> None:
        while not self._ws.closed:
            await self._send(Heartbeat(time_ns=time.time_ns()).encode(), paced=False)
            self._ctx.inbound.heartbeat_sent()
            await asyncio.sleep(interval)

    async def _resend_pending(self) -> None:
        for entry in await self._ctx.pending():
            if not await self._send(prediction_text(entry)):
                return

    async def _send(self, text: str, *, paced: bool = True) -> bool:
        if self._closed or self._ws.closed:
            return False
        if paced:
            await self._ctx.pacer.wait()
        try:
            async with self._send_lock:
                await self._ws.send_str(text)
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            log.debug("send failed (the outbox keeps the prediction): %s", exc)
            return False
        return True

    def _on_text(self, text: str) -> None:
        inbound = self._ctx.inbound
        if text.startswith(_UPDATE_PREFIX):
            try:
                update = _UpdateEnvelope.model_validate_json(text).data
            except (ValidationError, ValueError, RecursionError) as exc:
                log.warning("ignoring a frame the hub should not have sent: invalid "
                            "game_update frame: %s", str(exc).splitlines()[0][:200])
                return
            if inbound.update(update):
                self._tasks.spawn(self.request_snapshot(), "resync")
            return
        try:
            envelope = load_json(text)
            frame = parse_envelope(envelope)
        except ProtocolError as exc:
            log.warning("ignoring a frame the hub should not have sent: %s", exc)
            return
        if isinstance(frame, GameUpdate):
            if inbound.update(frame):
                # never await a send here: the reader must keep reading (a send can
                # block on a congested link and would hide a dead one)
                self._tasks.spawn(self.request_snapshot(), "resync")
        elif isinstance(frame, Confirmation):
            inbound.confirmation(envelope["data"])  # the receipt as signed, not re-dumped
        elif isinstance(frame, Heartbeat):
            if frame.echo_ns is not None:
                inbound.clock.add_echo(frame.echo_ns, frame.time_ns, time.time_ns())
        elif isinstance(frame, ErrorFrame):
            inbound.error(frame)


def prediction_text(entry: OutboxEntry) -> str:
    """The prediction frame for an outbox entry, its signed dict sent as stored."""
    data = json.dumps({"prediction": entry.prediction, "signature": entry.signature},
                      separators=(",", ":"))
    return f'{{"type":"{PredictionFrame.TYPE}","data":{data}}}'


def _close_reason(message: aiohttp.WSMessage) -> str:
    if message.type is aiohttp.WSMsgType.CLOSE and message.extra:
        return str(message.extra)
    return ""
