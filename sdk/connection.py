"""``ValidatorConnection``: the miner's reconnecting, authenticated link to one validator.

It owns one supervisor task that loops forever: connect (``btauth/1``-signed
upgrade, fresh nonce each time), run the session (heartbeats, stream tracking,
confirmations, resending the outbox), and on any retryable failure back off with
full jitter and try again, resuming the game stream where it stopped. Permanent
failures (403, 4001, 4003, a key that cannot sign) stop it with a clear exception.
When the WebSocket cannot be established but plain HTTP works, it switches to the
HTTP fallback (long-poll + POST) and keeps probing the WebSocket; readers of
:meth:`game_updates` and callers of :meth:`submit` notice nothing. A validator served
by several hubs is given as several URLs: the policy fails over between them (sticky
to the one that works), and the next hub gets the same resume point and the same
outbox, so nothing the dead hub did not confirm is lost.

The connection only coordinates; each job lives in its own module:
:mod:`sdk.reconnect` decides what to do after each attempt (pure, replaceable),
:mod:`sdk.transports` talks to the hub (a WebSocket session or the HTTP fallback),
:mod:`sdk.submissions` follows each prediction to its receipt, :mod:`sdk.gametable`
keeps the games across reconnects, and :mod:`sdk.options` holds the tuning knobs.
Confirmed predictions settle in the outbox when their game's outcome arrives (in an
update, or in the snapshot or replay after a reconnect: :mod:`sdk.settlement`).
What stays here: the lifecycle, the public state and iterators, and the supervisor
loop that does what the policy decides.

Works in scripts and notebooks alike: nothing blocks the event loop and nothing
assumes a global loop (it binds to the running one in :meth:`start`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from .channels import Channel, Fanout, UpdateChannel
from .clocksync import ClockEstimator
from .codes import ConfirmationStatus
from .errors import BettensorWSError, ConnectionClosedError, LinkError
from .frames import Confirmation, GameUpdate, Limits, Subscribe, Welcome
from .gametable import GameTable
from .models import Game, Prediction
from .options import ConnectionOptions
from .outbox import Outbox, OutboxEntry
from .outbox_files import default_outbox_path
from .reconnect import Decision, Fail, Fallback, ReconnectPolicy
from .signing import Signer, WalletLike, hotkey_signer
from .submissions import Submissions
from .transports import (
    HttpFallbackTransport,
    HubAddress,
    Inbound,
    LinkContext,
    Pacer,
    Transport,
    WebSocketTransport,
    tls_connector,
)

log = logging.getLogger("sdk.connection")

ChannelT = TypeVar("ChannelT", bound=Channel[Any])

PolicyFactory = Callable[[ConnectionOptions], ReconnectPolicy]
"""Makes the reconnect policy of one connection from its options."""


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    OPEN = "open"
    BACKOFF = "backoff"
    FALLBACK_HTTP = "fallback_http"
    CLOSED = "closed"


class ValidatorConnection:
    """A miner's connection to one validator, through one of its hubs.

    ``url`` is the hub's address (``ws://host:port``, ``http://host:port`` or the full
    ``.../ws`` URL), or the addresses of several hubs of the same validator (a sequence,
    or one string with commas: ``"ws://a:8091,ws://b:8091"``), in order of preference:
    the connection uses the first that works and stays on it, and moves on to the next
    when its hub goes away or cannot be reached (:class:`ReconnectPolicy`);
    ``wallet`` anything bittensor can sign with (a ``Wallet``, a ``Keypair``, a
    ``Signer``); ``validator_hotkey`` the ss58 address the upgrade is signed for and
    the receipts must be signed by (every hub of the validator signs with its key).

    ``outbox``: a path (connections naming the same path share one file and one writer
    thread: :meth:`Outbox.shared`), ``":memory:"`` (private to this connection), an
    open :class:`Outbox` (yours to close; several connections may use it), or None
    for the miner's default file under the user data dir (shared by all its
    connections in this process).
    ``options``: the tuning knobs (:class:`ConnectionOptions`; None for the defaults).
    ``policy``: makes the reconnect policy from the options (default
    :meth:`ReconnectPolicy.from_options`); pass your own to change when to retry,
    fall back or give up.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        wallet: WalletLike,
        validator_hotkey: str,
        *,
        sports: Iterable[str] = (),
        leagues: Iterable[str] = (),
        outbox: str | Path | Outbox | None = None,
        options: ConnectionOptions | None = None,
        policy: PolicyFactory | None = None,
        on_state_change: Callable[[ConnectionState], None] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.validator_hotkey = validator_hotkey
        self._wallet = wallet
        self._addresses = HubAddress.parse_all(url)
        self._endpoint = 0  # index in _addresses of the hub in use (or tried next)
        self.sports = sorted({s for s in sports if s})
        self.leagues = sorted({s for s in leagues if s})
        self._outbox_spec = outbox
        self.options = options or ConnectionOptions()
        self._policy_factory = policy or ReconnectPolicy.from_options
        self._on_state_change = on_state_change
        if session is not None and self.options.ca_file is not None:
            raise ValueError("ca_file applies to the session the connection makes: "
                             "configure the ssl context of your own session instead")
        self._session = session
        self._owns_session = session is None

        self.state = ConnectionState.CLOSED
        self.welcome: Welcome | None = None
        self.limits: Limits | None = None
        self.miner_hotkey: str | None = None
        self.reconnects = 0
        self._signer: Signer | None = None
        self.outbox: Outbox | None = None
        self._submissions = Submissions(validator_hotkey, dispatch=self._dispatch,
                                        publish=self._confirmed)
        self._table = GameTable(on_settled=self._submissions.record_outcomes)
        self._confirmations: Fanout[Confirmation] = Fanout()
        self._states: Fanout[ConnectionState] = Fanout()
        self._clock = ClockEstimator()
        self._pacer = Pacer()
        self._links: tuple[LinkContext, ...] = ()  # one per hub address
        self._transport: Transport | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._fatal: BaseException | None = None
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> ValidatorConnection:
        await self.start()
        try:
            await self.wait_ready(self.options.ready_timeout)
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
            path = self._outbox_spec or default_outbox_path(self.miner_hotkey)
            self.outbox = await Outbox.shared(path)
            await self.outbox.import_legacy(self.miner_hotkey, self.validator_hotkey)
        self._submissions.outbox = self.outbox
        self._submissions.miner_hotkey = self.miner_hotkey
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=tls_connector(self.options.ca_file))
        link = self._link_context(self._session, self.outbox)
        self._links = tuple(dataclasses.replace(link, address=address)
                            for address in self._addresses)
        self._closing = False
        self._supervisor = asyncio.create_task(self._supervise(), name="validator-connection")

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until open (WebSocket or HTTP fallback) with the game table loaded, so
        :attr:`games` and the :meth:`submit` pre-check see the hub's games; raise the
        permanent error if the connection gave up, or TimeoutError after ``timeout``
        seconds."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()
            await self._table.synced.wait()
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
        await self._submissions.cancel_resends()
        self._set_state(ConnectionState.CLOSED)
        self._submissions.fail_all(LinkError(
            "connection closed; unconfirmed predictions stay in the outbox and are resent "
            "by the next connection"))
        self._close_channels(self._fatal)
        if self.outbox is not None and not isinstance(self._outbox_spec, Outbox):
            await self.outbox.release()
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None
        self._ready.set()
        self._table.synced.set()

    # -- public state ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The WebSocket URL of the hub in use (or the one tried next)."""
        return self._addresses[self._endpoint].url

    @property
    def urls(self) -> tuple[str, ...]:
        """The WebSocket URLs of every hub of this validator, in order of preference."""
        return tuple(address.url for address in self._addresses)

    @property
    def games(self) -> dict[str, Game]:
        """The current game table (game_id -> Game) as the hub last described it."""
        return self._table.games

    @property
    def epoch(self) -> str | None:
        return self._table.tracker.epoch

    @property
    def seq(self) -> int | None:
        return self._table.tracker.seq

    @property
    def rtt(self) -> float | None:
        """Last heartbeat round-trip time in seconds (None before the first echo)."""
        rtt = self._clock.rtt_ns
        return None if rtt is None else rtt / 1e9

    @property
    def clock_offset(self) -> float:
        """Hub clock minus local clock, in seconds (best of recent heartbeat echoes)."""
        return self._clock.offset_ns / 1e9

    @property
    def cutoff_margin(self) -> timedelta:
        """How long before kick-off (hub clock) :meth:`submit` stops accepting."""
        return self.options.cutoff_margin

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
        channel = UpdateChannel(buffer or self.options.update_buffer)
        return self._table.readers.subscribe(self._unless_closed(channel))

    def confirmations(self) -> AsyncIterator[Confirmation]:
        """Every verified confirmation from now on (accepted, duplicate, rejected);
        never dropped."""
        channel: Channel[Confirmation] = Channel()
        return self._confirmations.subscribe(self._unless_closed(channel))

    def state_changes(self) -> AsyncIterator[ConnectionState]:
        """Each state change from now on."""
        return self._states.subscribe(Channel())

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
        if self.outbox is None or self._signer is None or self._closing:
            raise LinkError("the connection is not started (use 'async with' or "
                            "'await conn.start()')")
        return await self._submissions.submit(
            prediction, find_game=self.games.get, now=self.server_now(), limits=self.limits,
            cutoff_margin=self.cutoff_margin, signer=self._signer,
            miner_hotkey=self.miner_hotkey or "", timeout=timeout)

    async def subscribe(self, sports: Iterable[str] = (), leagues: Iterable[str] = ()) -> None:
        """Change the filter; the hub answers with a snapshot for it."""
        self.sports = sorted({s for s in sports if s})
        self.leagues = sorted({s for s in leagues if s})
        self._table.resyncing = True
        if self._transport is not None:
            await self._transport.request_snapshot()

    # -- supervisor -----------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Connect, serve, and do what the policy decides after each attempt (which
        includes the hub the next attempt goes to: :attr:`ReconnectPolicy.endpoint`)."""
        assert self._links, "start() makes the links"
        policy = self._policy_factory(self.options)
        policy.use_endpoints(len(self._links))
        decision: Decision | None = None  # None: connect now
        try:
            while not self._closing:
                link = self._use_endpoint(policy.endpoint)
                if decision is None:
                    self._set_state(ConnectionState.CONNECTING)
                    try:
                        session = await WebSocketTransport.connect(link)
                    except BettensorWSError as exc:
                        decision = policy.connect_failed(exc)
                        if exc.retryable:
                            log.info("connect to %s failed (%d in a row): %s",
                                     link.address.url, policy.failures, exc)
                        continue
                elif isinstance(decision, Fallback):
                    served = await self._serve_fallback(link, policy,
                                                        decision.retry_websocket)
                    if not isinstance(served, WebSocketTransport):
                        decision = served
                        continue
                    session = served
                elif isinstance(decision, Fail):
                    self._fail(decision.error)
                    return
                else:
                    self._set_state(ConnectionState.BACKOFF)
                    await asyncio.sleep(decision.delay)
                    decision = None
                    continue
                policy.session_opened()
                opened_at = time.monotonic()
                ended = await self._run_session(session)
                decision = policy.session_ended(time.monotonic() - opened_at, ended)
                if not isinstance(decision, Fail):
                    self.reconnects += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: surface it instead of dying silently
            log.exception("validator connection supervisor crashed")
            self._fail(LinkError(f"internal error: {exc!r}"))

    async def _run_session(self, session: WebSocketTransport) -> ConnectionClosedError | None:
        """Serve one open WebSocket until it ends; return why it ended."""
        self.welcome = welcome = session.welcome
        self.limits = welcome.limits
        self._pacer.adopt(welcome.limits.messages_per_second)
        self._clock.add_rough(welcome.server_time_ns, time.time_ns())
        self._table.on_welcome(welcome)
        self._transport = session
        self._set_state(ConnectionState.OPEN)
        try:
            return await session.run()
        finally:
            self._transport = None
            await session.close()
            await self._submissions.cancel_resends()

    def _use_endpoint(self, endpoint: int) -> LinkContext:
        """The link to the hub the policy chose; a change of hub is logged."""
        if endpoint != self._endpoint:
            log.warning("validator %s: failing over from %s to %s", self.validator_hotkey,
                        self.url, self._addresses[endpoint].url)
            self._endpoint = endpoint
        return self._links[endpoint]

    async def _serve_fallback(self, link: LinkContext, policy: ReconnectPolicy,
                              retry_websocket: bool) -> WebSocketTransport | Decision:
        """Serve over HTTP until the WebSocket works again (returned) or the policy
        decides otherwise (a probe failed for good, or HTTP fails too)."""

        async def probe() -> WebSocketTransport | Decision | None:
            try:
                return await WebSocketTransport.connect(link)
            except BettensorWSError as exc:
                log.debug("WebSocket probe failed: %s", exc)
                decision = policy.probe_failed(exc)
                return None if isinstance(decision, Fallback) else decision

        if not await HttpFallbackTransport.hub_answers(link):
            return policy.fallback_unavailable()
        # the hub may just have come back: one more try first
        if retry_websocket and (outcome := await probe()) is not None:
            return outcome
        log.warning("WebSocket unavailable; using the HTTP fallback for %s",
                    link.address.http_url)
        fallback = HttpFallbackTransport(link)
        self._transport = fallback
        self._set_state(ConnectionState.FALLBACK_HTTP)
        try:
            outcome = await fallback.serve(probe)
        finally:
            self._transport = None
            await self._submissions.cancel_resends()
        return outcome or policy.fallback_unavailable()

    def _fail(self, error: BaseException) -> None:
        log.error("validator connection stopped: %s", error)
        self._fatal = error
        self._set_state(ConnectionState.CLOSED)
        self._submissions.fail_all(error)
        self._close_channels(error)
        self._ready.set()
        self._table.synced.set()

    def _set_state(self, state: ConnectionState) -> None:
        if state == self.state:
            return
        self.state = state
        if state in (ConnectionState.OPEN, ConnectionState.FALLBACK_HTTP):
            self._ready.set()
        self._states.push(state)
        if self._on_state_change is not None:
            try:
                self._on_state_change(state)
            except Exception:  # a user's callback must never stop the connection
                log.exception("on_state_change callback failed")

    def _close_channels(self, error: BaseException | None) -> None:
        for readers in (self._table.readers, self._confirmations, self._states):
            readers.close(error)

    def _unless_closed(self, channel: ChannelT) -> ChannelT:
        """A new reader of a connection that has stopped ends at once."""
        if self._closing or self._fatal is not None:
            channel.close(self._fatal)
        return channel

    # -- what the transports need and deliver ----------------------------------------------

    def _link_context(self, session: aiohttp.ClientSession, outbox: Outbox) -> LinkContext:
        """The link to the first hub (the others differ only in their address)."""
        assert self._signer is not None, "start() resolves the signer before any link"
        return LinkContext(
            session=session, address=self._addresses[0], options=self.options,
            validator_hotkey=self.validator_hotkey, signer=self._signer,
            stream_query=lambda extra: self._table.stream_query(self.sports, self.leagues,
                                                                extra),
            subscription=lambda: Subscribe(sports=self.sports, leagues=self.leagues),
            pending=functools.partial(outbox.pending, self.validator_hotkey,
                                      self.miner_hotkey),
            retry=self._submissions.resend_later, pacer=self._pacer,
            inbound=Inbound(update=self._table.apply,
                            confirmation=self._submissions.on_confirmation,
                            error=self._submissions.on_error_frame, clock=self._clock,
                            heartbeat_sent=lambda: self._table.prune(self.server_now())))

    def _confirmed(self, confirmation: Confirmation) -> None:
        """A verified confirmation, now in the outbox: publish it, and settle it at once
        if its game has already ended (it was confirmed after the outcome arrived, e.g.
        resent after a reconnect and answered ``duplicate``)."""
        if confirmation.status is not ConfirmationStatus.REJECTED:
            outcomes = self._table.settled_outcomes()
            if outcomes:
                self._submissions.record_outcomes(outcomes, confirmation.prediction_id)
        self._confirmations.push(confirmation)

    def _dispatch(self, entry: OutboxEntry) -> None:
        """Send one outbox entry on whatever transport is up (none: it waits for one)."""
        if self._transport is not None:
            self._transport.dispatch(entry)

