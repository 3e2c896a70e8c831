"""``ValidatorConnection``: the miner's reconnecting, authenticated link to one validator.

It owns one supervisor task that loops forever: connect (``btauth/1``-signed
upgrade, fresh nonce each time), run the session (heartbeats, stream tracking,
confirmations, resending the outbox), and on any retryable failure back off with
full jitter and try again, resuming the game stream where it stopped. Permanent
failures (403, 4001, 4003, a key that cannot sign) stop it with a clear exception.
When the WebSocket cannot be established but plain HTTP works, it switches to the
HTTP fallback (long-poll + POST) and keeps probing the WebSocket; readers of
:meth:`game_updates` and callers of :meth:`submit` notice nothing.

Works in scripts and notebooks alike: nothing blocks the event loop and nothing
assumes a global loop (it binds to the running one in :meth:`start`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from bittensor import http_auth
from yarl import URL

from .backoff import Backoff
from .channels import Channel, UpdateChannel
from .clocksync import ClockEstimator
from .codes import ERROR_HEADER, ConfirmationStatus, ErrorCode
from .errors import (
    BettensorWSError,
    ConnectionClosedError,
    HandshakeError,
    HubUnreachableError,
    LinkError,
    PredictionRejected,
    ProtocolError,
    ReceiptError,
    close_error,
    handshake_error,
)
from .frames import (
    Confirmation,
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
from .models import Game, Prediction
from .outbox import Outbox, OutboxEntry, default_outbox_path
from .pacing import TokenBucket
from .signing import hotkey_signer, sign_prediction, verify_receipt
from .tracker import ApplyResult, StreamTracker
from .validation import Rules, check_prediction, wager_day

log = logging.getLogger("sdk.connection")

_FALLBACK_STATUSES = frozenset({404, 405, 426})
_NO_FALLBACK_STATUSES = frozenset({401, 403, 429, 503})
_RETRYABLE_REJECTIONS = frozenset({ErrorCode.RATE_LIMITED})
_STABLE_SESSION_S = 10.0
_REFUSAL_REASONS = {
    400: "malformed upgrade request",
    401: "authentication failed (bad signature, stale or replayed nonce - check the "
         "local clock - or signed for another validator hotkey)",
    403: "this hotkey is not registered with (or is blacklisted by) this validator; "
         "not retrying",
    404: "no WebSocket endpoint at this address",
    405: "the WebSocket upgrade is not allowed here",
    426: "a proxy or server on the way does not allow WebSocket upgrades",
    429: "too many connections or connects; retrying after Retry-After",
    503: "the hub is shutting down or not ready; retrying after Retry-After",
}


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    OPEN = "open"
    BACKOFF = "backoff"
    FALLBACK_HTTP = "fallback_http"
    CLOSED = "closed"


class ValidatorConnection:
    """A miner's connection to one validator hub.

    ``url`` is the hub's address (``ws://host:port``, ``http://host:port`` or the full
    ``.../ws`` URL); ``wallet`` anything bittensor can sign with (a ``Wallet``, a
    ``Keypair``, a ``Signer``); ``validator_hotkey`` the ss58 address the upgrade is
    signed for and the receipts must be signed by.

    ``outbox``: a path, ``":memory:"``, an :class:`Outbox`, or None for the default
    file under the user data dir (one per miner and validator hotkey).
    """

    def __init__(
        self,
        url: str,
        wallet: Any,
        validator_hotkey: str,
        *,
        sports: Iterable[str] = (),
        leagues: Iterable[str] = (),
        outbox: str | Path | Outbox | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        handshake_timeout: float = 10.0,
        cutoff_margin_s: float = 2.0,
        http_fallback: bool = True,
        fallback_after: int = 3,
        ws_probe_interval: float = 15.0,
        long_poll_timeout: float = 20.0,
        update_buffer: int = 256,
        ready_timeout: float | None = None,
        heartbeat_interval_s: float | None = None,
        compress: bool = False,
        on_state_change: Callable[[ConnectionState], None] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.validator_hotkey = validator_hotkey
        self._wallet = wallet
        self._ws_url, self._http_url, self._ws_path = _endpoints(url)
        self.sports = sorted({s for s in sports if s})
        self.leagues = sorted({s for s in leagues if s})
        self._outbox_spec = outbox
        self._backoff = Backoff(backoff_base, backoff_cap)
        self.handshake_timeout = handshake_timeout
        self.cutoff_margin = timedelta(seconds=cutoff_margin_s)
        self.http_fallback = http_fallback
        self.fallback_after = max(1, fallback_after)
        self.ws_probe_interval = ws_probe_interval
        self.long_poll_timeout = long_poll_timeout
        self._update_buffer = update_buffer
        self.ready_timeout = ready_timeout
        self._heartbeat_override = heartbeat_interval_s
        self._compress = compress
        self._on_state_change = on_state_change
        self._session = session
        self._owns_session = session is None

        self.state = ConnectionState.CLOSED
        self.welcome: Welcome | None = None
        self.limits: Limits | None = None
        self.miner_hotkey: str | None = None
        self.reconnects = 0
        self._signer: Any = None
        self.outbox: Outbox | None = None
        self._tracker = StreamTracker()
        self._clock = ClockEstimator()
        self._pacer = TokenBucket(rate=40.0, capacity=40.0)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._send_lock = asyncio.Lock()
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiters: dict[str, asyncio.Future[Confirmation]] = {}
        self._update_channels: list[UpdateChannel] = []
        self._confirmation_channels: list[Channel[Confirmation]] = []
        self._state_channels: list[Channel[ConnectionState]] = []
        self._ready = asyncio.Event()
        self._synced = asyncio.Event()  # the game table matches the hub's (set once)
        self._fatal: BaseException | None = None
        self._closing = False
        self._resyncing = False

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> ValidatorConnection:
        await self.start()
        try:
            await self.wait_ready(self.ready_timeout)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the outbox and start connecting in the background."""
        if self._supervisor is not None:
            return
        self._signer = hotkey_signer(self._wallet)  # SigningError now, not in a loop
        self.miner_hotkey = self._signer.ss58_address
        if isinstance(self._outbox_spec, Outbox):
            self.outbox = self._outbox_spec
        else:
            path = self._outbox_spec or default_outbox_path(self.miner_hotkey,
                                                             self.validator_hotkey)
            self.outbox = await Outbox(path).open()
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._closing = False
        self._supervisor = asyncio.create_task(self._supervise(), name="validator-connection")

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until open (WebSocket or HTTP fallback) with the game table loaded, so
        :attr:`games` and the :meth:`submit` pre-check see the hub's games; raise the
        permanent error if the connection gave up, or TimeoutError after ``timeout``
        seconds."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()
            await self._synced.wait()
        if self._fatal is not None:
            raise self._fatal

    async def close(self) -> None:
        """Stop reconnecting, close the socket and the outbox. Unconfirmed predictions
        stay in the outbox and are resent by the next connection."""
        if self._closing and self._supervisor is None:
            return
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        await self._cancel_tasks()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 1.0)
        self._set_state(ConnectionState.CLOSED)
        closed = LinkError("connection closed; unconfirmed predictions stay in the "
                                  "outbox and are resent by the next connection")
        for future in self._waiters.values():
            if not future.done():
                _fail_future(future, closed)
        self._waiters.clear()
        for channel in (*self._update_channels, *self._confirmation_channels,
                        *self._state_channels):
            channel.close(self._fatal)
        if self.outbox is not None and not isinstance(self._outbox_spec, Outbox):
            await self.outbox.close()
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None
        self._ready.set()
        self._synced.set()

    # -- public state ---------------------------------------------------------------------

    @property
    def games(self) -> dict[str, Game]:
        """The current game table (game_id -> Game) as the hub last described it."""
        return self._tracker.games

    @property
    def epoch(self) -> str | None:
        return self._tracker.epoch

    @property
    def seq(self) -> int | None:
        return self._tracker.seq

    @property
    def rtt(self) -> float | None:
        """Last heartbeat round-trip time in seconds (None before the first echo)."""
        rtt = self._clock.rtt_ns
        return None if rtt is None else rtt / 1e9

    @property
    def clock_offset(self) -> float:
        """Hub clock minus local clock, in seconds (best of recent heartbeat echoes)."""
        return self._clock.offset_ns / 1e9

    def server_now(self) -> datetime:
        """The hub's current time as estimated locally: cutoffs are judged on it."""
        return datetime.fromtimestamp((time.time_ns() + self._clock.offset_ns) / 1e9, UTC)

    @property
    def error(self) -> BaseException | None:
        """The permanent error that stopped the connection, if any."""
        return self._fatal

    def game_updates(self, buffer: int | None = None) -> AsyncIterator[GameUpdate]:
        """Game updates from now on (snapshots included). Each iterator has its own
        buffer of ``buffer`` updates; a slow reader gets coalesced updates (latest
        state per game), never a stalled socket."""
        channel = UpdateChannel(buffer or self._update_buffer)
        if self._closing or self._fatal is not None:
            channel.close(self._fatal)
        self._update_channels.append(channel)
        return _detaching(channel, self._update_channels)

    def confirmations(self) -> AsyncIterator[Confirmation]:
        """Every verified confirmation from now on (accepted, duplicate, rejected);
        never dropped."""
        channel: Channel[Confirmation] = Channel()
        if self._closing or self._fatal is not None:
            channel.close(self._fatal)
        self._confirmation_channels.append(channel)
        return _detaching(channel, self._confirmation_channels)

    def state_changes(self) -> AsyncIterator[ConnectionState]:
        """Each state change from now on."""
        channel: Channel[ConnectionState] = Channel()
        self._state_channels.append(channel)
        return _detaching(channel, self._state_channels)

    # -- actions --------------------------------------------------------------------------

    async def submit(self, prediction: Prediction, *, timeout: float | None = None
                     ) -> Confirmation:
        """Pre-check, sign, store durably, send; return the verified receipt.

        Raises :class:`PredictionRejected` (locally, or with the hub's signed
        confirmation) and :class:`ReceiptError` for a receipt that does not verify.
        The prediction survives disconnects: it is resent until confirmed, and a
        ``duplicate`` answer resolves with the original receipt.
        """
        if self._fatal is not None:
            raise self._fatal
        if self.outbox is None or self._closing:
            raise LinkError("the connection is not started (use 'async with' or "
                                   "'await conn.start()')")
        now = self.server_now()
        day = wager_day(now).isoformat()
        rules = Rules(
            odds_tolerance=self.limits.odds_tolerance if self.limits else 0.01,
            daily_wager_limit=self.limits.daily_wager_limit if self.limits else 1000.0,
            cutoff_margin=self.cutoff_margin)
        pid = prediction.prediction_id
        existing = await self.outbox.get(pid)
        if existing is None:
            wagered = await self.outbox.wagered(self.validator_hotkey, day)
            rejection = check_prediction(prediction, self.games.get(prediction.game_id),
                                         now=now, wagered_today=wagered, rules=rules)
            if rejection is not None:
                raise PredictionRejected(f"{rejection.message} (local pre-check)",
                                         code=rejection.code, prediction_id=pid)
        future = self._waiter(pid)
        if existing is None:
            wire = prediction.wire()
            signature = sign_prediction(self._signer, wire)
            await self.outbox.add(validator_hotkey=self.validator_hotkey,
                                  miner_hotkey=self.miner_hotkey or "", prediction=wire,
                                  signature=signature, wager_day=day)
            entry = await self.outbox.get(pid)
        else:
            entry = existing
        assert entry is not None
        if entry.status != "pending":
            self._waiters.pop(pid, None)
            return self._settled_result(entry)
        self._dispatch(entry)
        if timeout is None:
            return await future
        return await asyncio.wait_for(asyncio.shield(future), timeout)

    async def subscribe(self, sports: Iterable[str] = (), leagues: Iterable[str] = ()) -> None:
        """Change the filter; the hub answers with a snapshot for it."""
        self.sports = sorted({s for s in sports if s})
        self.leagues = sorted({s for s in leagues if s})
        await self._request_snapshot()

    # -- supervisor -----------------------------------------------------------------------

    async def _supervise(self) -> None:
        failures = 0  # connect attempts that failed in a row
        upgrade_failures = 0  # of those, the ones where the hub answered but no WebSocket
        flaps = 0     # sessions in a row that ended soon after opening
        try:
            while not self._closing:
                self._set_state(ConnectionState.CONNECTING)
                try:
                    ws, welcome = await self._open_websocket()
                except BettensorWSError as exc:
                    if not exc.retryable:
                        self._fail(exc)
                        return
                    failures += 1
                    if not isinstance(exc, HubUnreachableError):
                        upgrade_failures += 1
                    log.info("connect to %s failed (%d in a row): %s", self._ws_url,
                             failures, exc)
                    opened = None
                    if self._fallback_candidate(exc, upgrade_failures):
                        refused = (isinstance(exc, HandshakeError)
                                   and exc.status in _FALLBACK_STATUSES)
                        opened = await self._run_fallback(retry_websocket=not refused)
                    if opened is None:
                        if self._fatal is not None:
                            return
                        self._set_state(ConnectionState.BACKOFF)
                        await asyncio.sleep(self._backoff.delay(
                            failures, getattr(exc, "retry_after", None)))
                        continue
                    ws, welcome = opened
                failures = upgrade_failures = 0
                opened_at = time.monotonic()
                ended = await self._run_session(ws, welcome)
                if ended is not None and not ended.retryable:
                    self._fail(ended)
                    return
                self.reconnects += 1
                # a hub that accepts and drops at once must not be hammered at the base
                # delay forever: short sessions in a row grow the backoff too
                stable = time.monotonic() - opened_at >= _STABLE_SESSION_S
                flaps = 1 if stable else flaps + 1
                self._set_state(ConnectionState.BACKOFF)
                await asyncio.sleep(self._backoff.delay(flaps))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: surface it instead of dying silently
            log.exception("validator connection supervisor crashed")
            self._fail(LinkError(f"internal error: {exc!r}"))

    def _fallback_candidate(self, exc: BaseException, upgrade_failures: int) -> bool:
        """HTTP fallback is for a hub that answers but cannot upgrade (a proxy in the
        way), never for a hub that is simply down or restarting."""
        if not self.http_fallback or isinstance(exc, HubUnreachableError):
            return False
        if isinstance(exc, HandshakeError):
            if exc.status in _FALLBACK_STATUSES:
                return True
            if exc.status in _NO_FALLBACK_STATUSES:
                return False
        return upgrade_failures >= self.fallback_after

    def _fail(self, error: BaseException) -> None:
        log.error("validator connection stopped: %s", error)
        self._fatal = error
        self._set_state(ConnectionState.CLOSED)
        for future in self._waiters.values():
            if not future.done():
                _fail_future(future, error)
        self._waiters.clear()
        for channel in (*self._update_channels, *self._confirmation_channels,
                        *self._state_channels):
            channel.close(error)
        self._ready.set()
        self._synced.set()

    def _set_state(self, state: ConnectionState) -> None:
        if state == self.state:
            return
        self.state = state
        if state in (ConnectionState.OPEN, ConnectionState.FALLBACK_HTTP):
            self._ready.set()
        for channel in self._state_channels:
            channel.push(state)
        if self._on_state_change is not None:
            try:
                self._on_state_change(state)
            except Exception:
                log.exception("on_state_change callback failed")

    # -- WebSocket ------------------------------------------------------------------------

    def _signed_headers(self, method: str, path: str, body: bytes = b"") -> dict[str, str]:
        return http_auth.sign(self._signer, method=method, path=path, body=body,
                              receiver_ss58=self.validator_hotkey)

    def _stream_query(self, extra: dict[str, Any] | None = None) -> str:
        epoch, since = self._tracker.resume_point()
        params: dict[str, Any] = {}
        if epoch is not None and since is not None and not self._resyncing:
            params["epoch"] = epoch
            params["since"] = since
        if self.sports:
            params["sports"] = ",".join(self.sports)
        if self.leagues:
            params["leagues"] = ",".join(self.leagues)
        params.update(extra or {})
        return f"?{urlencode(params)}" if params else ""

    async def _open_websocket(self) -> tuple[aiohttp.ClientWebSocketResponse, Welcome]:
        assert self._session is not None
        path = self._ws_path + self._stream_query()
        headers = self._signed_headers("GET", path)
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            async with asyncio.timeout(self.handshake_timeout):
                ws = await self._session.ws_connect(
                    URL(self._ws_url + path, encoded=True), headers=headers, autoping=True,
                    heartbeat=None, compress=15 if self._compress else 0,
                    max_msg_size=16 * 1024 * 1024)
                message = await ws.receive()
            if message.type is not aiohttp.WSMsgType.TEXT:
                raise close_error(ws.close_code, "closed before the welcome")
            welcome = parse_frame(message.data)
            if not isinstance(welcome, Welcome):
                raise LinkError(f"expected a welcome frame, got {welcome.TYPE}")
            return ws, welcome
        except aiohttp.WSServerHandshakeError as exc:
            code = exc.headers.get(ERROR_HEADER) if exc.headers else None
            raise handshake_error(exc.status, {"error": code,
                                               "detail": self._refusal_detail(exc.status, code)},
                                  _retry_after(exc.headers)) from None
        except (TimeoutError, aiohttp.ClientError, OSError, ProtocolError) as exc:
            if ws is not None:
                ws_to_close = ws
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws_to_close.close(), 1.0)
            kind = (HubUnreachableError
                    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError)
                    else LinkError)
            raise kind(f"cannot connect to {self._ws_url}: {exc!r}") from None
        except BaseException:
            if ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 1.0)
            raise

    def _refusal_detail(self, status: int, code: str | None = None) -> str:
        reason = _REFUSAL_REASONS.get(status, "unexpected answer to the upgrade request")
        if code == ErrorCode.WRONG_RECEIVER:
            reason = ("the upgrade was signed for another validator: check validator_hotkey "
                      "(it must be this hub's hotkey)")
        return (f"validator {self.validator_hotkey} at {self._ws_url}{self._ws_path} refused "
                f"the WebSocket upgrade of hotkey {self.miner_hotkey} with HTTP {status}"
                f"{f' ({code})' if code else ''}: {reason}")

    async def _run_session(self, ws: aiohttp.ClientWebSocketResponse,
                           welcome: Welcome) -> ConnectionClosedError | None:
        """Serve one open WebSocket until it ends; return why it ended."""
        self._ws = ws
        self._on_welcome(welcome)
        if welcome.resumed and welcome.epoch == self._tracker.epoch:
            self._synced.set()  # the table we hold continues into this session
        # never slower than the hub's interval, or the hub drops us as silent
        interval = min(self._heartbeat_override or welcome.heartbeat_interval_s,
                       welcome.heartbeat_interval_s)
        self._set_state(ConnectionState.OPEN)
        self._spawn(self._heartbeat_loop(ws, interval), "heartbeats")
        self._spawn(self._resend_pending(), "resend")
        try:
            while True:
                try:
                    message = await ws.receive(timeout=3 * interval)
                except TimeoutError:
                    log.warning("no frame from the hub for %.1fs: dropping the link",
                                3 * interval)
                    return None
                if message.type is aiohttp.WSMsgType.TEXT:
                    await self._on_text(message.data)
                elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                      aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
            reason = ws.close_code
            error = close_error(reason, _close_reason(message))
            log.info("connection to the hub ended: %s", error)
            return error
        finally:
            self._ws = None
            await self._cancel_tasks()
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 1.0)

    def _on_welcome(self, welcome: Welcome) -> None:
        self.welcome = welcome
        self.limits = welcome.limits
        rate = max(1.0, welcome.limits.messages_per_second * 0.8)
        if self._pacer.rate != rate:
            # keep the bucket (and any debt) across reconnects to the same limits: a fresh
            # burst after every reconnect would overrun the hub's per-hotkey limit
            self._pacer = TokenBucket(rate=rate, capacity=rate, updated=time.monotonic())
        self._clock.add_rough(welcome.server_time_ns, time.time_ns())
        if welcome.epoch != self._tracker.epoch:
            self._resyncing = False

    async def _heartbeat_loop(self, ws: aiohttp.ClientWebSocketResponse, interval: float) -> None:
        while not ws.closed:
            await self._send_ws(Heartbeat(time_ns=time.time_ns()).encode(), paced=False)
            self._tracker.prune(self.server_now())  # the hub drops the same games
            await asyncio.sleep(interval)

    async def _send_ws(self, text: str, *, paced: bool = True) -> bool:
        ws = self._ws
        if ws is None or ws.closed:
            return False
        if paced:
            await self._pace()
        try:
            async with self._send_lock:
                await ws.send_str(text)
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            log.debug("send failed (the outbox keeps the prediction): %s", exc)
            return False
        return True

    async def _pace(self) -> None:
        """Stay under the hub's announced message rate (a resend of a big outbox
        would otherwise trip its rate limit)."""
        delay = self._pacer.reserve(time.monotonic())
        if delay > 0:
            try:
                await asyncio.sleep(delay)
            except asyncio.CancelledError:
                # never sent (the session ended): give the slot back, or every
                # reconnect would leave debt that delays the resend of the outbox
                self._pacer.tokens = min(self._pacer.capacity, self._pacer.tokens + 1)
                raise

    async def _on_text(self, text: str) -> None:
        try:
            frame = parse_frame(text)
        except ProtocolError as exc:
            log.warning("ignoring a frame the hub should not have sent: %s", exc)
            return
        if isinstance(frame, GameUpdate):
            await self._on_update(frame)
        elif isinstance(frame, Confirmation):
            data = json.loads(text)["data"]
            self._on_confirmation(data)
        elif isinstance(frame, Heartbeat):
            if frame.echo_ns is not None:
                self._clock.add_echo(frame.echo_ns, frame.time_ns, time.time_ns())
        elif isinstance(frame, ErrorFrame):
            self._on_error_frame(frame)

    # -- game stream ----------------------------------------------------------------------

    async def _on_update(self, update: GameUpdate) -> None:
        result = self._tracker.apply(update)
        if result is ApplyResult.GAP:
            if not self._resyncing:
                log.info("game stream gap before seq %d: resyncing", update.seq)
                # never await a send here: the reader must keep reading (a send can
                # block on a congested link and would hide a dead one)
                self._resyncing = True
                self._spawn(self._request_snapshot(), "resync")
            return
        if result is ApplyResult.STALE:
            return
        if update.snapshot:
            self._resyncing = False
        self._synced.set()
        for channel in self._update_channels:
            channel.push(update)

    async def _request_snapshot(self) -> None:
        self._resyncing = True
        if self._ws is not None:
            await self._send_ws(encode_frame(Subscribe(sports=self.sports,
                                                       leagues=self.leagues)), paced=False)
        # in HTTP fallback the next poll carries no resume point and gets a snapshot

    # -- predictions ----------------------------------------------------------------------

    def _waiter(self, prediction_id: str) -> asyncio.Future[Confirmation]:
        future = self._waiters.get(prediction_id)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._waiters[prediction_id] = future
        return future

    def _settled_result(self, entry: OutboxEntry) -> Confirmation:
        if entry.status in (ConfirmationStatus.ACCEPTED, ConfirmationStatus.DUPLICATE):
            assert entry.receipt is not None
            return Confirmation.model_validate(entry.receipt)
        confirmation = Confirmation.model_validate(entry.receipt) if entry.receipt else None
        raise PredictionRejected(entry.message or "rejected", code=entry.code or "rejected",
                                 prediction_id=entry.prediction_id, confirmation=confirmation)

    def _dispatch(self, entry: OutboxEntry) -> None:
        """Send one outbox entry on whatever transport is up (none: it waits for one)."""
        if self.state is ConnectionState.OPEN:
            self._spawn(self._send_ws(_prediction_text(entry)), f"send-{entry.prediction_id}")
        elif self.state is ConnectionState.FALLBACK_HTTP:
            self._spawn(self._post_prediction(entry), f"post-{entry.prediction_id}")

    async def _resend_pending(self) -> None:
        assert self.outbox is not None
        for entry in await self.outbox.pending(self.validator_hotkey):
            if not await self._send_ws(_prediction_text(entry)):
                return

    def _on_confirmation(self, data: dict[str, Any]) -> None:
        pid = str(data.get("prediction_id"))
        if not verify_receipt(data, self.validator_hotkey):
            error = ReceiptError(f"confirmation for {pid} is not signed by the validator "
                                 f"{self.validator_hotkey}; ignored")
            log.error("%s", error)
            future = self._waiters.pop(pid, None)
            if future is not None and not future.done():
                _fail_future(future, error)
            return
        confirmation = Confirmation.model_validate(data)
        if (confirmation.status is ConfirmationStatus.REJECTED
                and confirmation.code in _RETRYABLE_REJECTIONS):
            self._spawn(self._resend_later(pid, 1.0), f"resend-{pid}")
            return
        assert self.outbox is not None
        stored = self.outbox.settle(pid, confirmation.status, code=confirmation.code,
                                    message=confirmation.message, receipt=data)
        stored.add_done_callback(lambda done: self._confirmed(confirmation, done))

    def _confirmed(self, confirmation: Confirmation, stored: asyncio.Future[None]) -> None:
        if not stored.cancelled() and stored.exception() is not None:
            log.error("could not record confirmation %s in the outbox: %r",
                      confirmation.prediction_id, stored.exception())
        for channel in self._confirmation_channels:
            channel.push(confirmation)
        future = self._waiters.pop(confirmation.prediction_id, None)
        if future is None or future.done():
            return
        if confirmation.status is ConfirmationStatus.REJECTED:
            _fail_future(future, PredictionRejected(
                confirmation.message, code=confirmation.code,
                prediction_id=confirmation.prediction_id, confirmation=confirmation))
        else:
            future.set_result(confirmation)

    def _on_error_frame(self, frame: ErrorFrame) -> None:
        log.warning("hub error %s: %s (ref %s)", frame.code, frame.message, frame.ref)
        if frame.ref and frame.ref in self._waiters:
            # the hub could not take it now (shutting down, store failure): try again
            self._spawn(self._resend_later(frame.ref, 1.0), f"resend-{frame.ref}")

    async def _resend_later(self, prediction_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        assert self.outbox is not None
        entry = await self.outbox.get(prediction_id)
        if entry is not None and entry.status == "pending":
            self._dispatch(entry)

    # -- HTTP fallback --------------------------------------------------------------------

    async def _http_alive(self) -> bool:
        assert self._session is not None
        try:
            async with asyncio.timeout(self.handshake_timeout):
                async with self._session.get(self._http_url + "/ws/health") as response:
                    return response.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    async def _run_fallback(self, *, retry_websocket: bool = True
                            ) -> tuple[aiohttp.ClientWebSocketResponse, Welcome] | None:
        """Serve over HTTP until the WebSocket works again (returned) or HTTP fails (None)."""
        if not await self._http_alive():
            return None
        if retry_websocket:  # the hub may just have come back: one more try first
            try:
                return await self._open_websocket()
            except BettensorWSError as exc:
                if not exc.retryable:
                    self._fail(exc)
                    return None
        log.warning("WebSocket unavailable; using the HTTP fallback for %s", self._http_url)
        self._set_state(ConnectionState.FALLBACK_HTTP)
        poller = self._spawn(self._poll_loop(), "long-poll")
        self._spawn(self._post_pending(), "post-pending")
        try:
            while True:
                await asyncio.sleep(self.ws_probe_interval)
                if poller.done():
                    return None  # HTTP stopped working too: back to the reconnect loop
                try:
                    return await self._open_websocket()
                except BettensorWSError as exc:
                    if not exc.retryable:
                        self._fail(exc)
                        return None
                    log.debug("WebSocket probe failed: %s", exc)
        finally:
            await self._cancel_tasks()

    async def _poll_loop(self) -> None:
        assert self._session is not None
        failures = 0
        while True:
            path = "/games" + self._stream_query({"timeout": self.long_poll_timeout})
            try:
                async with asyncio.timeout(self.long_poll_timeout + self.handshake_timeout):
                    async with self._session.get(
                            URL(self._http_url + path, encoded=True),
                            headers=self._signed_headers("GET", path)) as response:
                        if response.status != 200:
                            raise HandshakeError(f"GET /games answered {response.status}",
                                                 status=response.status,
                                                 retry_after=_retry_after(response.headers))
                        body = await response.json()
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError,
                    HandshakeError) as exc:
                failures += 1
                if failures >= self.fallback_after:
                    log.warning("HTTP fallback failing: %s", exc)
                    return
                await asyncio.sleep(self._backoff.delay(failures,
                                                        getattr(exc, "retry_after", None)))
                continue
            failures = 0
            if self.limits is None and isinstance(body.get("server_time_ns"), int):
                self._clock.add_rough(body["server_time_ns"], time.time_ns())
            for raw in body.get("updates", []):
                try:
                    update = GameUpdate.model_validate(raw)
                except ValueError as exc:
                    log.warning("ignoring a malformed update from GET /games: %s", exc)
                    continue
                await self._on_update(update)

    async def _post_pending(self) -> None:
        assert self.outbox is not None
        for entry in await self.outbox.pending(self.validator_hotkey):
            await self._post_prediction(entry)

    async def _post_prediction(self, entry: OutboxEntry) -> None:
        assert self._session is not None
        body = json.dumps({"prediction": entry.prediction,
                           "signature": entry.signature}).encode()
        await self._pace()
        try:
            async with asyncio.timeout(self.handshake_timeout):
                async with self._session.post(
                        self._http_url + "/predictions", data=body,
                        headers={**self._signed_headers("POST", "/predictions", body),
                                 "Content-Type": "application/json"}) as response:
                    if response.status == 200:
                        self._on_confirmation(await response.json())
                        return
                    retry_after = _retry_after(response.headers)
                    log.info("POST /predictions answered %d", response.status)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            log.info("POST /predictions failed (kept in the outbox): %s", exc)
            retry_after = None
        self._spawn(self._resend_later(entry.prediction_id, retry_after or 2.0),
                    f"resend-{entry.prediction_id}")

    # -- tasks ----------------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def _detaching(channel: Channel[Any], owners: list[Any]) -> AsyncIterator[Any]:
    try:
        async for item in channel:
            yield item
    finally:
        with contextlib.suppress(ValueError):
            owners.remove(channel)


def _fail_future(future: asyncio.Future[Any], error: BaseException) -> None:
    """Fail a submit() waiter. A caller that gave up waiting (its timeout passed) leaves
    the future unobserved: mark the error retrieved so asyncio does not log it as lost
    (the outbox keeps the prediction; awaiting the future still raises)."""
    future.set_exception(error)
    future.exception()


def _prediction_text(entry: OutboxEntry) -> str:
    data = json.dumps({"prediction": entry.prediction, "signature": entry.signature},
                      separators=(",", ":"))
    return f'{{"type":"{PredictionFrame.TYPE}","data":{data}}}'


def _endpoints(url: str) -> tuple[str, str, str]:
    """(ws base, http base, ws path) from whatever address form the user gave."""
    parsed = URL(url)
    if parsed.scheme not in ("ws", "wss", "http", "https"):
        raise ValueError(f"validator URL must be ws://, wss://, http:// or https://, not {url!r}")
    secure = parsed.scheme in ("wss", "https")
    host = parsed.host or "127.0.0.1"
    authority = f"{host}:{parsed.port}" if parsed.port else host
    path = parsed.path.rstrip("/") or "/ws"
    return (f"{'wss' if secure else 'ws'}://{authority}",
            f"{'https' if secure else 'http'}://{authority}", path)


def _retry_after(headers: Any) -> float | None:
    if not headers:
        return None
    value = headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _close_reason(message: aiohttp.WSMessage) -> str:
    if message.type is aiohttp.WSMsgType.CLOSE and message.extra:
        return str(message.extra)
    return ""
