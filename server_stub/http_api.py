"""HTTP routes of the hub besides the WebSocket: the admin feed, the HTTP fallback
(``POST /predictions``, ``GET /games`` long-poll), health and metrics."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError

from sdk.codes import ErrorCode
from sdk.errors import ProtocolError
from sdk.frames import GameUpdate, PredictionFrame, load_json, parse_prediction_data
from sdk.models import Game

from .auth import HubHTTPError
from .backplane.base import BackplaneUnavailable
from .http_errors import error_response, json_response, parse_stream_query
from .hub import Hub
from .intake import Confirmed, Pending, RateLimited, ShuttingDown, Unidentified
from .store import StoreClosed

HUB_KEY: web.AppKey[Hub] = web.AppKey("hub", Hub)
METRICS_KEY: web.AppKey[CollectorRegistry] = web.AppKey("metrics", CollectorRegistry)

MAX_LONG_POLL_S = 60.0


def routes(hub: Hub) -> list[web.RouteDef]:
    return [
        # RFC 6455 upgrades GET only; aiohttp would route HEAD here too (and upgrade it).
        # The handler itself, not a wrapper: a wrapper's frame would live as long as
        # each WebSocket (bench/memory.py).
        web.get("/ws", hub.miner_ws.handle, allow_head=False),
        web.get("/ws/health", handle_health),
        web.get("/metrics", handle_metrics),
        web.post("/admin/games", handle_admin_games),
        web.post("/predictions", handle_predictions),
        web.get("/games", handle_games),
    ]


async def handle_health(request: web.Request) -> web.Response:
    return json_response(request.app[HUB_KEY].health())


async def handle_metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _read_body(request: web.Request) -> bytes:
    hub = request.app[HUB_KEY]
    try:
        # aiohttp has no body-read timeout: a client that announces a body and sends
        # it slowly (or never) would hold this handler and its connection forever.
        async with asyncio.timeout(hub.config.body_timeout_s):
            body = await request.read()
    except TimeoutError:
        raise HubHTTPError(408, ErrorCode.MALFORMED_REQUEST,
                           f"request body not received within {hub.config.body_timeout_s:g}s"
                           ) from None
    return body


def _refusal(hub: Hub, error: HubHTTPError) -> web.Response:
    hub.stats.handshake_refusals[error.status] += 1
    return error_response(error)


async def handle_admin_games(request: web.Request) -> web.Response:
    """Upsert games and broadcast one game_update; signed by the validator or an admin."""
    hub = request.app[HUB_KEY]
    try:
        body = await _read_body(request)
        await hub.admission.admit_admin(request, body)
        if hub.config.bettensor_db is not None:
            raise HubHTTPError(403, ErrorCode.FORBIDDEN,
                               "this hub serves the games of its Bettensor validator's "
                               "database (game_data): write them there")
        games = _games_from_body(body)
    except HubHTTPError as error:
        return _refusal(hub, error)
    # Acknowledged means durable: the answer waits for the store's commit and the
    # stream's append (a hub killed right after the 200 still has the games).
    try:
        record = await hub.publish(games)
    except StoreClosed:
        return error_response(HubHTTPError(503, ErrorCode.SHUTTING_DOWN, "hub shutting down",
                                           retry_after=hub.config.shutdown_retry_after_s))
    except BackplaneUnavailable as exc:
        return error_response(HubHTTPError(
            503, ErrorCode.INTERNAL_ERROR, f"{exc}; the games are stored: post them again",
            retry_after=1.0))
    return json_response({"epoch": hub.stream.epoch,
                          "seq": hub.stream.seq if record is None else record.seq,
                          "changed": 0 if record is None else len(record.games)})


def _games_from_body(body: bytes) -> list[Game]:
    try:
        payload = load_json(body)
    except ProtocolError as exc:
        raise HubHTTPError(400, ErrorCode.MALFORMED_REQUEST, exc.message) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("games"), list):
        raise HubHTTPError(400, ErrorCode.MALFORMED_REQUEST, 'body must be {"games": [Game, ...]}')
    games = []
    for index, raw in enumerate(payload["games"]):
        try:
            games.append(Game.model_validate(raw))
        except (ValidationError, ValueError, TypeError) as exc:
            first = exc.errors()[0] if isinstance(exc, ValidationError) else {"msg": str(exc)}
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise HubHTTPError(400, ErrorCode.MALFORMED_REQUEST,
                               f"games[{index}].{where}: {first.get('msg')}") from None
    return games


async def handle_predictions(request: web.Request) -> web.Response:
    """HTTP fallback for one prediction: body is the ``data`` of a prediction frame;
    the answer is the ``data`` of its confirmation, after the commit."""
    hub = request.app[HUB_KEY]
    try:
        body = await _read_body(request)
        hotkey = await hub.admission.admit_miner(request, body)
    except HubHTTPError as error:
        return _refusal(hub, error)
    hub.stats.messages_in["http_prediction"] += 1
    parsed: PredictionFrame | ProtocolError
    try:
        parsed = parse_prediction_data(load_json(body))
    except ProtocolError as exc:
        parsed = exc
    outcome = await hub.intake.accept_prediction(hotkey, parsed, rate_checked=False)
    if isinstance(outcome, Pending):
        return json_response(await outcome.confirmation)  # a failed write: 500
    if isinstance(outcome, Confirmed):
        return json_response(outcome.data)
    if isinstance(outcome, Unidentified):
        return json_response({"error": outcome.code, "detail": outcome.message},
                                 status=400)
    if isinstance(outcome, RateLimited):
        return error_response(HubHTTPError(429, ErrorCode.RATE_LIMITED,
                                           "too many messages; slow down", retry_after=1.0))
    assert isinstance(outcome, ShuttingDown)
    return error_response(HubHTTPError(503, ErrorCode.SHUTTING_DOWN, "hub shutting down",
                                       retry_after=hub.config.shutdown_retry_after_s))


async def handle_games(request: web.Request) -> web.Response:
    """Long-poll of the game stream: the updates after ``since`` (waiting up to
    ``timeout`` seconds for one), or a snapshot when the gap cannot be replayed."""
    hub = request.app[HUB_KEY]
    try:
        await hub.admission.admit_miner(request, await _read_body(request))
        epoch, since, flt = parse_stream_query(request)
        timeout = _timeout(request, hub.config.long_poll_timeout_s)
    except HubHTTPError as error:
        return _refusal(hub, error)
    missed = hub.stream.missed_updates(epoch, since, flt)
    deadline = time.monotonic() + timeout
    while missed == [] and not hub.shutting_down:
        # wait for news for *this* filter: an update to other games is not news
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await hub.wait_for_update(hub.stream.seq, remaining)
        missed = hub.stream.missed_updates(epoch, since, flt)
    updates: list[GameUpdate] = [hub.stream.snapshot_update(flt)] if missed is None else missed
    return json_response({"epoch": hub.stream.epoch, "seq": hub.stream.seq,
                              "server_time_ns": str(hub.clock.now_ns()),
                              "updates": [update.model_dump(mode="json") for update in updates]})


def _timeout(request: web.Request, default: float) -> float:
    raw = request.query.get("timeout")
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise HubHTTPError(400, ErrorCode.MALFORMED_REQUEST, "timeout must be seconds") from None
    if not 0 <= value <= MAX_LONG_POLL_S:
        raise HubHTTPError(400, ErrorCode.MALFORMED_REQUEST,
                           f"timeout must be within [0, {MAX_LONG_POLL_S:g}]")
    return value
