"""The validator hub: admits miners, streams games to them, takes their predictions.

The :class:`Hub` owns every long-lived task it starts (feed ticks, heartbeats,
close handshakes) and stops them in :meth:`Hub.stop`. Admission checks run
*before* the WebSocket upgrade, so a refused miner gets an HTTP status, never a
socket. After the upgrade, no frame can crash the hub: each bad frame is
answered with an error frame (or a rejected confirmation) and the connection
carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from sdk.codes import ERROR_HEADER, CloseCode, ConfirmationStatus, ErrorCode
from sdk.errors import ProtocolError
from sdk.frames import (
    TO_HUB_TYPES,
    ErrorFrame,
    GameUpdate,
    Heartbeat,
    Limits,
    PredictionFrame,
    Subscribe,
    Welcome,
    encode_frame,
    parse_frame,
)
from sdk.models import Game
from sdk.validation import Rules

from .auth import BoundedNonceStore, GatedNonceStore, HubHTTPError, authenticate
from .clock import HubClock
from .config import HubConfig
from .predictions import PredictionDesk, confirmation_frame
from .ratelimit import KeyedLimiter
from .registry import Decision, MinerRegistry
from .session import MinerSession
from .stats import HubStats
from .store import PredictionStore, StoreClosed
from .stream import GameFilter, GameStream, UpdateRecord

log = logging.getLogger("server_stub.hub")

_STRIKE_WINDOW_S = 10.0
_END_TYPES = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})


class GameFeed(Protocol):
    """Where games come from: the simulator, a file, or nothing (admin posts only)."""

    def initial_games(self) -> list[Game]: ...

    def step(self, now: Any) -> list[Game]: ...


class Hub:
    """All state of one validator hub."""

    def __init__(self, config: HubConfig, *, signer: Any, registry: MinerRegistry,
                 store: PredictionStore, feed: GameFeed | None = None,
                 clock: HubClock | None = None) -> None:
        self.config = config
        self.signer = signer
        self.validator_hotkey: str = signer.ss58_address
        self.registry = registry
        self.store = store
        self.feed = feed
        self.clock = clock or HubClock()
        self.stats = HubStats()
        self.stream = GameStream(config.history_size)
        self.rules = Rules(odds_tolerance=config.odds_tolerance,
                           daily_wager_limit=config.daily_wager_limit)
        self.desk = PredictionDesk(signer=signer, store=store, stream=self.stream,
                                   clock=self.clock, rules=self.rules)
        self.sessions: dict[str, MinerSession] = {}
        self._groups: dict[GameFilter, set[MinerSession]] = {}
        self.nonces = BoundedNonceStore(
            retention=config.auth_max_age_s + config.auth_allowed_skew_s + 1.0,
            max_entries=config.nonce_store_size)
        self._miner_nonces = GatedNonceStore(
            self.nonces, lambda hotkey: self.registry.check(hotkey) is Decision.ALLOWED)
        self._admin_nonces = GatedNonceStore(self.nonces, self.is_admin)
        per_minute = config.connects_per_minute / 60.0
        self.connect_limit_by_hotkey = KeyedLimiter(per_minute, config.connect_burst)
        self.connect_limit_by_address = KeyedLimiter(per_minute * 10, config.connect_burst * 10)
        self.message_limit = KeyedLimiter(config.messages_per_second, config.message_burst)
        self.strikes = KeyedLimiter(config.rate_limit_strikes / _STRIKE_WINDOW_S,
                                    config.rate_limit_strikes)
        self.shutting_down = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._update_event = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        stored = await self.store.load_games()
        if stored:
            self.stream.apply(stored)
        if self.feed is not None:
            self.publish(self.feed.initial_games())
        await self.registry.start(self.on_deregistered)
        self._spawn(self._heartbeat_loop(), "heartbeats")
        if self.feed is not None:
            self._spawn(self._feed_loop(), "feed")

    async def stop(self) -> None:
        """Graceful shutdown: refuse new miners (503), deliver what is committed,
        close everyone with 1001, flush the store."""
        if self.shutting_down:
            return
        self.shutting_down = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.registry.stop()
        await self.store.close()  # commits everything queued; confirmations get queued
        for session in list(self.sessions.values()):
            self.close_session(session, CloseCode.GOING_AWAY, "hub shutting down", drain=True)
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)
        self._update_event.set()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("hub task %s died", task.get_name(), exc_info=task.exception())

    async def _feed_loop(self) -> None:
        assert self.feed is not None
        while True:
            await asyncio.sleep(self.config.tick_interval_s)
            try:
                changes = self.feed.step(self.clock.now())
            except Exception:
                log.exception("game feed failed; skipping this tick")
                continue
            if changes:
                self.publish(changes)

    async def _heartbeat_loop(self) -> None:
        interval = self.config.heartbeat_interval_s
        while True:
            await asyncio.sleep(interval)
            deadline = time.monotonic() - 3 * interval
            self.stream.prune(self.clock.now())
            text = Heartbeat(time_ns=self.clock.now_ns()).encode()
            for session in list(self.sessions.values()):
                if session.last_received < deadline:
                    self.close_session(session, CloseCode.POLICY_VIOLATION,
                                       "heartbeat timeout")
                else:
                    session.send(text)

    # -- games ------------------------------------------------------------------------

    def publish(self, games: Iterable[Game]) -> UpdateRecord | None:
        """Upsert games; broadcast the changes as one game_update. None: nothing changed."""
        record = self.stream.apply(games)
        if record is None:
            return None
        self.store.save_games(record.games).add_done_callback(_log_failure)
        self._broadcast(record)
        event, self._update_event = self._update_event, asyncio.Event()
        event.set()
        return record

    def _broadcast(self, record: UpdateRecord) -> None:
        self.stats.broadcasts += 1
        for flt, members in list(self._groups.items()):
            games = flt.select(record.games)
            if not games or not members:
                continue
            update = GameUpdate(epoch=self.stream.epoch, seq=record.seq,
                                prev_seq=self.stream.prev_seq(flt, record), games=games)
            text = encode_frame(update)  # serialised once for every miner of this filter
            for session in list(members):
                session.send(text)

    async def wait_for_update(self, after_seq: int, timeout: float) -> None:
        """Return when ``seq`` passes ``after_seq`` or ``timeout`` elapses (long-poll)."""
        deadline = time.monotonic() + timeout
        while self.stream.seq <= after_seq and not self.shutting_down:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._update_event.wait(), remaining)
            except TimeoutError:
                return

    # -- admission ----------------------------------------------------------------------

    def admit(self, request: web.Request, body: bytes = b"", *, registered: bool = True,
              limit_address: bool = False) -> str:
        """Every check before the upgrade (or before an HTTP API call); returns the hotkey.

        ``registered=False`` skips the miner registry (the admin endpoint checks its
        own list of hotkeys instead). ``limit_address`` applies the per-address connect
        limit before the signature is even checked (upgrades only: the HTTP fallback of
        many miners behind one address is limited per hotkey instead)."""
        if self.shutting_down:
            raise HubHTTPError(503, ErrorCode.SHUTTING_DOWN, "hub is shutting down",
                               retry_after=self.config.shutdown_retry_after_s)
        now = time.monotonic()
        address = request.remote or "?"
        if limit_address and not self.connect_limit_by_address.allow(address, now):
            raise HubHTTPError(429, ErrorCode.RATE_LIMITED,
                               "too many requests from this address",
                               retry_after=_ceil(self.connect_limit_by_address.retry_after(address)))
        hotkey = authenticate(
            request.headers, body, method=request.method, path=request.raw_path,
            validator_hotkey=self.validator_hotkey,
            nonce_store=self._miner_nonces if registered else self._admin_nonces,
            max_age=self.config.auth_max_age_s, allowed_skew=self.config.auth_allowed_skew_s)
        if not registered:
            return hotkey
        decision = self.registry.check(hotkey)
        if decision is Decision.BLACKLISTED:
            raise HubHTTPError(403, ErrorCode.BLACKLISTED, "this hotkey is blacklisted")
        if decision is Decision.NOT_REGISTERED:
            raise HubHTTPError(403, ErrorCode.NOT_REGISTERED,
                               "this hotkey is not registered with this validator")
        if decision is Decision.UNAVAILABLE:
            raise HubHTTPError(503, ErrorCode.SHUTTING_DOWN,
                               "miner registry not loaded yet", retry_after=10.0)
        return hotkey

    def is_admin(self, hotkey: str) -> bool:
        """May post games: the validator's own hotkey or a configured admin hotkey."""
        return hotkey == self.validator_hotkey or hotkey in self.config.admin_hotkeys

    def admit_connection(self, request: web.Request) -> str:
        hotkey = self.admit(request, limit_address=True)
        now = time.monotonic()
        if not self.connect_limit_by_hotkey.allow(hotkey, now):
            raise HubHTTPError(429, ErrorCode.RATE_LIMITED, "too many connects for this hotkey",
                               retry_after=_ceil(self.connect_limit_by_hotkey.retry_after(hotkey)))
        if len(self.sessions) >= self.config.max_connections and hotkey not in self.sessions:
            raise HubHTTPError(429, ErrorCode.TOO_MANY_CONNECTIONS,
                               "the hub is at its connection limit", retry_after=5.0)
        return hotkey

    # -- the WebSocket ---------------------------------------------------------------

    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        try:
            hotkey = self.admit_connection(request)
            epoch, since, flt = _stream_query(request)
        except HubHTTPError as refusal:
            self.stats.handshake_refusals[refusal.status] += 1
            return error_response(refusal)
        # aiohttp refuses a frame whose size *reaches* max_msg_size; the announced
        # limit is the largest frame allowed, so allow exactly max_frame_bytes.
        ws = web.WebSocketResponse(max_msg_size=self.config.max_frame_bytes + 1,
                                   compress=self.config.compress, autoping=True,
                                   timeout=self.config.close_timeout_s)
        if not ws.can_prepare(request).ok:
            self.stats.handshake_refusals[426] += 1
            return error_response(HubHTTPError(426, ErrorCode.UPGRADE_REQUIRED,
                                               "GET /ws needs a WebSocket upgrade"))
        try:
            await ws.prepare(request)
        except ConnectionResetError:
            # The link died between admission and the 101 (the miner gave up, a proxy
            # cut it): no one to serve. Raised on, aiohttp would log it as an unhandled
            # error with a traceback; the response returned here is never delivered.
            self.stats.errors["upgrade_aborted"] += 1
            log.info("connection of %s lost during the WebSocket upgrade", hotkey)
            return web.Response(status=499, reason="Client Closed Request")
        session = MinerSession(ws=ws, request=request, hotkey=hotkey,
                               session_id=uuid.uuid4().hex, game_filter=flt,
                               queue_size=self.config.send_queue_size,
                               on_overflow=self._on_overflow, on_sent=self._count_sent)
        previous = self.sessions.get(hotkey)
        if previous is not None:
            self.close_session(previous, CloseCode.REPLACED,
                               "replaced by a newer connection of this hotkey")
        self._register(session)
        self._greet(session, epoch, since)
        session.start()
        # The read loop runs in its own task so a close can stop it first and then
        # run the full close handshake (see MinerSession.stop_reading).
        reader = asyncio.create_task(self._read_loop(session),
                                     name=f"read-{session.session_id}")
        session.reader = reader
        try:
            await asyncio.wait({reader})
            if not reader.cancelled():
                reader.result()  # a bug in the loop surfaces here, as before
            if session.close_task is not None:
                # Returning before the close code is sent would let aiohttp close
                # with 1000 instead.
                await asyncio.wait({session.close_task})
        finally:
            if not reader.done():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            self._unregister(session)
            await session.stop_sender()
        return ws

    def _greet(self, session: MinerSession, epoch: str | None, since: int | None) -> None:
        missed = self.stream.missed(epoch, since, session.game_filter)
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
            self._send_snapshot(session)
            return
        for seq, games, prev in missed:
            session.send(GameUpdate(epoch=self.stream.epoch, seq=seq, prev_seq=prev,
                                    games=games).encode())

    def _send_snapshot(self, session: MinerSession) -> None:
        session.send(GameUpdate(epoch=self.stream.epoch, seq=self.stream.seq,
                                games=self.stream.snapshot(session.game_filter),
                                snapshot=True).encode())

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
            session.last_received = time.monotonic()
            if session.closing:
                break
            if message.type is WSMsgType.TEXT:
                try:
                    await self._on_text(session, message.data)
                except Exception:  # a bug must cost one frame, never the hub
                    log.exception("error handling a frame from %s", session.hotkey)
                    self.stats.errors[ErrorCode.INTERNAL_ERROR] += 1
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
        allowed = self.message_limit.allow(session.hotkey, time.monotonic())
        try:
            frame = parse_frame(text, allowed=TO_HUB_TYPES)
        except ProtocolError as exc:
            self.stats.messages_in["invalid"] += 1
            if not allowed:
                self._rate_limited(session, None)
                return
            if (exc.code not in (ErrorCode.MALFORMED_FRAME, ErrorCode.UNKNOWN_TYPE)
                    and exc.ref and exc.ref != PredictionFrame.TYPE):
                # a prediction whose fields are wrong: answer it like a rule rejection
                # so the miner's pending submit resolves (only when its id could be
                # read: ref is the frame type otherwise, not a prediction id)
                self.stats.predictions[ConfirmationStatus.REJECTED] += 1
                session.send(confirmation_frame(await self.desk.reject(
                    session.hotkey, exc.ref, str(exc.code), exc.message)))
                return
            self._send_error(session, str(exc.code), exc.message, exc.ref)
            return
        self.stats.messages_in[frame.TYPE] += 1
        if not allowed:
            self._rate_limited(session, frame)
            return
        if isinstance(frame, PredictionFrame):
            try:
                future = await self.desk.submit(session.hotkey, frame)
            except StoreClosed:
                self._send_error(session, ErrorCode.SHUTTING_DOWN,
                                 "hub shutting down; resend after reconnecting",
                                 frame.prediction.prediction_id)
                return
            future.add_done_callback(lambda done: self._deliver(session.hotkey, frame, done))
        elif isinstance(frame, Heartbeat):
            session.send(Heartbeat(time_ns=self.clock.now_ns(), echo_ns=frame.time_ns).encode())
        elif isinstance(frame, Subscribe):
            self._resubscribe(session, GameFilter.of(frame.sports, frame.leagues))

    def _deliver(self, hotkey: str, frame: PredictionFrame,
                 done: asyncio.Future[dict[str, Any]]) -> None:
        """Send a settled confirmation to the miner's *current* connection."""
        session = self.sessions.get(hotkey)
        pid = frame.prediction.prediction_id
        if done.cancelled() or done.exception() is not None:
            self.stats.errors[ErrorCode.INTERNAL_ERROR] += 1
            log.error("storing prediction %s of %s failed: %r", pid, hotkey,
                      None if done.cancelled() else done.exception())
            if session is not None:
                self._send_error(session, ErrorCode.INTERNAL_ERROR,
                                 "could not store the prediction; resend it", pid)
            return
        data = done.result()
        self.stats.predictions[data["status"]] += 1
        if session is not None:
            session.send(confirmation_frame(data))

    def _rate_limited(self, session: MinerSession, frame: Any) -> None:
        now = time.monotonic()
        self.stats.errors[ErrorCode.RATE_LIMITED] += 1
        if not self.strikes.allow(session.hotkey, now):
            self.close_session(session, CloseCode.RATE_LIMITED, "sustained rate-limit abuse")
            return
        if isinstance(frame, PredictionFrame):
            pid = frame.prediction.prediction_id
            self.stats.predictions[ConfirmationStatus.REJECTED] += 1
            session.send(confirmation_frame(self.desk.rejection(
                session.hotkey, pid, ErrorCode.RATE_LIMITED,
                f"more than {self.config.messages_per_second:g} messages/s; resend later")))
        else:
            self._send_error(session, ErrorCode.RATE_LIMITED,
                             f"more than {self.config.messages_per_second:g} messages/s",
                             None if frame is None else frame.TYPE)

    def _send_error(self, session: MinerSession, code: str, message: str,
                    ref: str | None) -> None:
        self.stats.errors[code] += 1
        session.send(ErrorFrame(code=code, message=message, ref=ref).encode())

    def _resubscribe(self, session: MinerSession, flt: GameFilter) -> None:
        self._leave_group(session)
        session.game_filter = flt
        self._groups.setdefault(flt, set()).add(session)
        self._send_snapshot(session)

    # -- session registry ---------------------------------------------------------------

    def _register(self, session: MinerSession) -> None:
        self.sessions[session.hotkey] = session
        self._groups.setdefault(session.game_filter, set()).add(session)
        self.stats.connections_total += 1
        self.stats.active_connections = len(self.sessions)

    def _unregister(self, session: MinerSession) -> None:
        if self.sessions.get(session.hotkey) is session:
            del self.sessions[session.hotkey]
        self._leave_group(session)
        self.stats.active_connections = len(self.sessions)

    def _leave_group(self, session: MinerSession) -> None:
        members = self._groups.get(session.game_filter)
        if members is not None:
            members.discard(session)
            if not members:
                del self._groups[session.game_filter]

    def _count_sent(self, count: int) -> None:
        self.stats.messages_out += count

    def _on_overflow(self, session: MinerSession) -> None:
        self.close_session(session, CloseCode.SLOW_CONSUMER,
                           "send queue overflow: read faster, then resume")

    def close_session(self, session: MinerSession, code: CloseCode, reason: str,
                      *, drain: bool = False) -> None:
        """Take the session out of every broadcast now; finish the close handshake in
        a task the hub owns."""
        if session.closing:
            return
        session.closing = True
        self._unregister(session)
        self.stats.closes[int(code)] += 1
        task = asyncio.create_task(self._finish_close(session, code, reason, drain),
                                   name=f"close-{session.session_id}")
        session.close_task = task
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _finish_close(self, session: MinerSession, code: CloseCode, reason: str,
                            drain: bool) -> None:
        if drain:
            await session.drain(self.config.close_timeout_s)
        await session.stop_reading(self.config.close_timeout_s)
        await session.close(int(code), reason, self.config.close_timeout_s)

    async def on_deregistered(self, hotkeys: set[str]) -> None:
        for hotkey in hotkeys:
            session = self.sessions.get(hotkey)
            if session is not None:
                self.close_session(session, CloseCode.DEREGISTERED,
                                   "hotkey deregistered from the subnet")

    # -- health ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        registered = self.registry.registered_count()
        connected_registered = (
            sum(1 for hotkey in self.sessions if self.registry.is_registered(hotkey))
            if registered is not None else None)
        return {
            "status": "shutting_down" if self.shutting_down else "ok",
            "validator_hotkey": self.validator_hotkey,
            "connections": self.stats.connections_total,
            "active_connections": len(self.sessions),
            "registered_miners": registered,
            "connected_share": (round(connected_registered / registered, 4)
                                if registered and connected_registered is not None else None),
            "uptime_s": round(self.stats.uptime_s, 3),
            "epoch": self.stream.epoch,
            "seq": self.stream.seq,
            "games": len(self.stream.games),
            "messages_in": sum(self.stats.messages_in.values()),
            "messages_out": self.stats.messages_out,
            "errors": sum(self.stats.errors.values()),
            "errors_by_code": dict(self.stats.errors),
            "predictions": dict(self.stats.predictions),
            "store_commits": self.store.commits,
        }


def error_response(error: HubHTTPError) -> web.Response:
    # The code also travels in a header: WebSocket clients (aiohttp's among them) see
    # a refused upgrade's status and headers but not its body.
    headers = {ERROR_HEADER: str(error.code)}
    if error.retry_after is not None:
        headers["Retry-After"] = str(_ceil(error.retry_after))
    return web.json_response({"error": str(error.code), "detail": error.detail},
                             status=error.status, headers=headers)


def _stream_query(request: web.Request) -> tuple[str | None, int | None, GameFilter]:
    query = request.query
    since: int | None = None
    if query.get("since"):
        try:
            since = int(query["since"])
        except ValueError:
            raise HubHTTPError(400, ErrorCode.MALFORMED_REQUEST,
                               "since must be an integer seq") from None
    return query.get("epoch") or None, since, GameFilter.from_query(query.get("sports"),
                                                                     query.get("leagues"))


def _ceil(value: float) -> int:
    return max(1, int(-(-value // 1)))


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("store write failed: %r", future.exception())
