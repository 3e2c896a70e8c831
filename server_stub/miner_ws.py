"""``GET /ws``: a miner's WebSocket, from admission to the last frame.

Admission runs *before* the upgrade, so a refused miner gets an HTTP status, never a
socket. After the upgrade, no frame can crash the hub: each bad frame is answered
with an error frame (or a rejected confirmation) and the connection carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from sdk.codes import CloseCode, ErrorCode
from sdk.errors import ProtocolError
from sdk.frames import (
    TO_HUB_TYPES,
    ErrorFrame,
    Frame,
    Heartbeat,
    Limits,
    PredictionFrame,
    Subscribe,
    Welcome,
    parse_frame,
)

from .admission import Admission
from .auth import HubHTTPError
from .backplane.presence import Presence
from .clock import HubClock
from .config import HubConfig
from .http_errors import error_response, parse_stream_query
from .intake import (
    Confirmed,
    Pending,
    PredictionIntake,
    RateLimited,
    ShuttingDown,
    Unidentified,
)
from .predictions import confirmation_frame
from .session import HubWebSocket, MinerSession
from .session_table import SessionTable
from .stats import HubStats
from .stream import GameFilter, GameStream

__all__ = ["MinerWSHandler"]

log = logging.getLogger("server_stub.hub")  # one logger for every part of the hub

_END_TYPES = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})


class MinerWSHandler:
    """Serves every miner WebSocket of one hub (:meth:`handle` is the route handler)."""

    def __init__(self, config: HubConfig, *, validator_hotkey: str, admission: Admission,
                 sessions: SessionTable, stream: GameStream, intake: PredictionIntake,
                 clock: HubClock, stats: HubStats, presence: Presence | None = None) -> None:
        """``presence``: one connection per hotkey across hubs (None: on this hub)."""
        self.config = config
        self.validator_hotkey = validator_hotkey
        self.admission = admission
        self.sessions = sessions
        self.stream = stream
        self.intake = intake
        self.clock = clock
        self.stats = stats
        self.presence = presence

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            hotkey = await self.admission.admit_connection(request)
            epoch, since, flt = parse_stream_query(request)
        except HubHTTPError as refusal:
            self.stats.handshake_refusals[refusal.status] += 1
            return error_response(refusal)
        # aiohttp refuses a frame whose size *reaches* max_msg_size; the announced
        # limit is the largest frame allowed, so allow exactly max_frame_bytes.
        ws = HubWebSocket(max_msg_size=self.config.max_frame_bytes + 1,
                          compress=self.config.compress, autoping=False,
                          timeout=self.config.close_timeout_s)
        if not ws.can_prepare(request).ok:
            self.stats.handshake_refusals[426] += 1
            return error_response(HubHTTPError(426, ErrorCode.UPGRADE_REQUIRED,
                                               "GET /ws needs a WebSocket upgrade"))
        try:
            writer = await ws.prepare(request)
            session = MinerSession(ws=ws, request=request, writer=writer, hotkey=hotkey,
                                   session_id=uuid.uuid4().hex, game_filter=flt,
                                   queue_size=self.config.send_queue_size, owner=self.sessions)
        except ConnectionResetError:
            # The link died between admission and the 101 (the miner gave up, a proxy
            # cut it): no one to serve. Raised on, aiohttp would log it as an unhandled
            # error with a traceback; the response returned here is never delivered.
            self.stats.errors["upgrade_aborted"] += 1
            log.info("connection of %s lost during the WebSocket upgrade", hotkey)
            return web.Response(status=499, reason="Client Closed Request")
        generation = await self.presence.claim(hotkey) if self.presence is not None else None
        if self.admission.closed:  # stop() began while the claim was in flight
            self.sessions.close(session, CloseCode.GOING_AWAY, "hub shutting down")
        elif self._superseded(hotkey, generation):
            self.sessions.close(session, CloseCode.REPLACED,
                                "replaced by a newer connection of this hotkey")
        else:
            previous = self.sessions.get(hotkey)
            if previous is not None:
                self.sessions.close(previous, CloseCode.REPLACED,
                                    "replaced by a newer connection of this hotkey")
            self.sessions.add(session, generation)
            self._greet(session, epoch, since)
        # The read loop runs in this task (not one of its own: a task per connection
        # costs memory); a close stops it first and then runs the full close handshake
        # (see MinerSession.stop_reading).
        session.reading_started()
        try:
            try:
                await self._read_loop(session)
            except asyncio.CancelledError:
                if not session.read_cancel_taken():  # only stop_reading's is expected
                    raise
            finally:
                session.reading_ended()
            if session.close_task is not None:
                # Returning before the close code is sent would let aiohttp close
                # with 1000 instead.
                await asyncio.wait({session.close_task})
        finally:
            self.sessions.remove(session)
            await session.stop_sender()
        return ws

    def _superseded(self, hotkey: str, generation: int | None) -> bool:
        """A newer connection of ``hotkey`` claimed presence (at any hub) while this
        one's claim was in flight: this one is closed at once with 4001."""
        if self.presence is None or generation is None:
            return False
        newest = self.presence.newest(hotkey)
        return newest is not None and newest > generation

    def _greet(self, session: MinerSession, epoch: str | None, since: int | None) -> None:
        missed = self.stream.missed_updates(epoch, since, session.game_filter)
        welcome = Welcome(
            session_id=session.session_id, validator_hotkey=self.validator_hotkey,
            server_time_ns=self.clock.now_ns(),
            heartbeat_interval_s=self.config.heartbeat_interval_s, epoch=self.stream.epoch,
            seq=self.stream.seq, resumed=missed is not None,
            replayed=len(missed) if missed is not None else 0,
            limits=Limits(max_frame_bytes=self.config.max_frame_bytes,
                          messages_per_second=self.config.messages_per_second,
                          daily_wager_limit=self.config.daily_wager_limit,
                          odds_tolerance=self.config.odds_tolerance))
        session.send(welcome.encode())
        if missed is None:
            session.send_frame(self.sessions.snapshot_frame(session.game_filter)
                               .for_window(session.deflate))
            return
        for update in missed:
            session.send(update.encode())

    async def _read_loop(self, session: MinerSession) -> None:
        ws = session.ws
        while not session.closing:  # once closing, the close task owns the socket
            session.reading = True
            try:
                message = await ws.receive()
            finally:
                session.reading = False
            if message.type in _END_TYPES:
                break
            # Control frames are handled here (autoping off: it would swallow the pong
            # that times the round trip) and are no sign of life: a client that only
            # pings is still dropped by the heartbeat timeout.
            if message.type is WSMsgType.PING:
                await ws.pong(message.data)  # what autoping does
                continue
            if message.type is WSMsgType.PONG:
                session.pong(message.data, time.monotonic_ns())
                continue
            session.last_received = time.monotonic()
            if session.closing:
                break
            if message.type is WSMsgType.TEXT:
                try:
                    await self._on_text(session, message.data)
                except Exception:  # a bug must cost one frame, never the hub
                    log.exception("error handling a frame from %s", session.hotkey)
                    self._send_error(session, ErrorCode.INTERNAL_ERROR,
                                     "the hub failed to handle this frame", None)
            elif message.type is WSMsgType.BINARY:
                self._send_error(session, ErrorCode.MALFORMED_FRAME,
                                 "binary frames are not part of bt-ws/1; send JSON text", None)
            elif message.type is WSMsgType.ERROR:
                code = ws.close_code or CloseCode.INTERNAL_ERROR
                self.stats.closes[int(code)] += 1
                self.stats.errors[f"close_{int(code)}"] += 1
                break

    async def _on_text(self, session: MinerSession, text: str) -> None:
        # counted before parsing, so a flood of garbage is limited like any other flood
        allowed = self.admission.within_message_rate(session.hotkey)
        parsed: Frame | ProtocolError
        try:
            parsed = parse_frame(text, allowed=TO_HUB_TYPES)
        except ProtocolError as exc:
            self.stats.messages_in["invalid"] += 1
            parsed = exc
        else:
            self.stats.messages_in[parsed.TYPE] += 1
        if not allowed:
            self._rate_limited(session, None if isinstance(parsed, ProtocolError) else parsed)
        elif isinstance(parsed, ProtocolError | PredictionFrame):
            await self._on_prediction(session, parsed)
        elif isinstance(parsed, Heartbeat):
            session.send(Heartbeat(time_ns=self.clock.now_ns(), echo_ns=parsed.time_ns).encode())
        elif isinstance(parsed, Subscribe):
            self._resubscribe(session, GameFilter.of(parsed.sports, parsed.leagues))

    async def _on_prediction(self, session: MinerSession,
                             parsed: PredictionFrame | ProtocolError) -> None:
        """A prediction frame, or a frame that failed to parse (which may name a
        prediction id to reject)."""
        hotkey = session.hotkey
        outcome = await self.intake.accept_prediction(hotkey, parsed, rate_checked=True)
        if isinstance(outcome, Pending):
            pid = outcome.prediction_id
            outcome.confirmation.add_done_callback(lambda done: self._deliver(hotkey, pid, done))
        elif isinstance(outcome, Confirmed):
            session.send(confirmation_frame(outcome.data))
        elif isinstance(outcome, Unidentified):
            self._send_error_frame(session, outcome.code, outcome.message, outcome.ref)
        elif isinstance(outcome, ShuttingDown):
            self._send_error_frame(session, ErrorCode.SHUTTING_DOWN,
                                   "hub shutting down; resend after reconnecting",
                                   outcome.prediction_id)
        elif isinstance(outcome, RateLimited):  # the token was taken before parsing
            raise AssertionError("accept_prediction took a rate token twice")

    def _deliver(self, hotkey: str, prediction_id: str,
                 done: asyncio.Future[dict[str, Any]]) -> None:
        """Send a settled confirmation to the miner's *current* connection (the intake
        has counted and logged it already)."""
        session = self.sessions.get(hotkey)
        if session is None:
            return
        if done.cancelled() or done.exception() is not None:
            self._send_error_frame(session, ErrorCode.INTERNAL_ERROR,
                                   "could not store the prediction; resend it", prediction_id)
            return
        session.send(confirmation_frame(done.result()))

    def _rate_limited(self, session: MinerSession, frame: Frame | None) -> None:
        """Over the message rate: a strike, then a rejection (prediction) or an error
        frame (any other frame, ``ref`` null when it could not be parsed)."""
        self.stats.errors[ErrorCode.RATE_LIMITED] += 1
        if not self.admission.strike(session.hotkey):
            self.sessions.close(session, CloseCode.RATE_LIMITED, "sustained rate-limit abuse")
            return
        rate = self.config.messages_per_second
        if isinstance(frame, PredictionFrame):
            session.send(confirmation_frame(self.intake.reject_over_rate(
                session.hotkey, frame.prediction.prediction_id, rate)))
        else:
            self._send_error(session, ErrorCode.RATE_LIMITED, f"more than {rate:g} messages/s",
                             None if frame is None else frame.TYPE)

    def _send_error(self, session: MinerSession, code: str, message: str,
                    ref: str | None) -> None:
        """An error frame, counted in ``errors``."""
        self.stats.errors[code] += 1
        self._send_error_frame(session, code, message, ref)

    @staticmethod
    def _send_error_frame(session: MinerSession, code: str, message: str,
                          ref: str | None) -> None:
        """An error frame already counted (by the intake)."""
        session.send(ErrorFrame(code=code, message=message, ref=ref).encode())

    def _resubscribe(self, session: MinerSession, flt: GameFilter) -> None:
        self.sessions.regroup(session, flt)
        session.send_frame(self.sessions.snapshot_frame(flt).for_window(session.deflate))
