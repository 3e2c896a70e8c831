"""The validator operator's live dashboard: ``GET /`` and ``GET /dashboard/state``.

The page (``server_stub/dashboard_page/index.html``, ``.js``, ``.css``, package
data: no build step, nothing fetched from elsewhere) polls ``GET /dashboard/state``
about once a second and redraws from it. Polling a small JSON document owns no
long-lived task on the hub (a server-sent-events stream would hold one per open page)
and a stalled tab costs nothing.

:func:`dashboard_state` builds that document from the hub's counters (pure: it only
reads them). Everything per prediction is counted elsewhere, O(1) on the hot path
(:class:`~server_stub.activity.PredictionActivity`); sorting and shaping happen here,
once per poll.

Who may see it (:class:`~server_stub.config.DashboardAccess`, ``--dashboard``): ``off``
serves none of these routes (404); ``local`` serves a loopback TCP peer or a
``trusted_proxies`` one and answers anyone else 403 ``forbidden``
(:func:`access_allowed`); ``public`` serves everyone. Behind a trusted proxy every
request arrives from the proxy, so the proxy itself must guard ``/``.
"""

from __future__ import annotations

import functools
import heapq
import html
import ipaddress
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from sdk.codes import ErrorCode
from sdk.models import Game

from .auth import HubHTTPError
from .config import DashboardAccess
from .forwarded import IPNetwork, parse_node
from .http_api import HUB_KEY
from .http_errors import error_response
from .hub import Hub
from .session import MinerSession

__all__ = ["GAMES_SHOWN", "MINERS_SHOWN", "STATE_PATH", "access_allowed", "dashboard_routes",
           "dashboard_state"]

STATE_PATH = "/dashboard/state"
MINERS_SHOWN = 200
"""Connected miners listed in the state (by UID, then hotkey); the count covers all."""
GAMES_SHOWN = 100
"""Games listed (unsettled first, by kick-off); the count covers all."""

_ASSETS = {
    "/dashboard/dashboard.js": ("dashboard.js", "text/javascript"),
    "/dashboard/dashboard.css": ("dashboard.css", "text/css"),
}
# The page loads only its own script and style, and is never framed: a page that
# shows hotkeys and error counts needs no third party.
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def access_allowed(access: DashboardAccess, peer: str | None,
                   trusted: Sequence[IPNetwork]) -> bool:
    """May a request whose direct TCP peer is ``peer`` see the dashboard?

    Only the TCP peer counts, never a ``Forwarded`` header: with ``local``, a request
    relayed by a trusted proxy is allowed because the proxy vouches for it (and must
    guard ``/`` itself), not because of whom the header names."""
    if access is DashboardAccess.PUBLIC:
        return True
    if access is DashboardAccess.OFF:
        return False
    address = parse_node(peer or "")
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return True
    return any(address.version == net.version and address in net for net in trusted)


def dashboard_routes(access: DashboardAccess) -> list[web.RouteDef]:
    """The dashboard's routes for ``access`` (none when it is off)."""
    if access is DashboardAccess.OFF:
        return []
    routes = [web.get("/", _guarded(_handle_page)),
              web.get(STATE_PATH, _guarded(_handle_state))]
    routes += [web.get(path, _guarded(functools.partial(_handle_asset, name, content_type)))
               for path, (name, content_type) in _ASSETS.items()]
    return routes


def _guarded(handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        hub = request.app[HUB_KEY]
        if not access_allowed(hub.config.dashboard, request.remote, hub.config.trusted_proxies):
            hub.stats.handshake_refusals[403] += 1
            return error_response(HubHTTPError(
                403, ErrorCode.FORBIDDEN,
                "the dashboard is served to loopback and trusted proxies only "
                "(bt-validator-stub serve --dashboard public opens it to anyone)"))
        return await handler(request)

    return guarded


@functools.cache
def _asset(name: str) -> str:
    return (resources.files(__package__ or "server_stub") / "dashboard_page" / name).read_text(
        encoding="utf-8")


async def _handle_page(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    page = _asset("index.html").replace("{{validator_hotkey}}",
                                        html.escape(hub.validator_hotkey))
    return web.Response(text=page, content_type="text/html", charset="utf-8",
                        headers=_HEADERS)


async def _handle_asset(name: str, content_type: str, request: web.Request) -> web.Response:
    return web.Response(text=_asset(name), content_type=content_type, charset="utf-8",
                        headers=_HEADERS)


async def _handle_state(request: web.Request) -> web.Response:
    body = orjson.dumps(dashboard_state(request.app[HUB_KEY]))
    return web.Response(body=body, content_type="application/json", headers=_HEADERS)


# -- the state document ----------------------------------------------------------------


def dashboard_state(hub: Hub) -> dict[str, Any]:
    """Everything the page shows, as one JSON-ready dict (times in epoch milliseconds,
    the hub's clock: the page shows ages against ``now_ms``, not the browser's clock)."""
    now_ms = hub.clock.now_ns() // 1_000_000
    stats = hub.stats
    activity = stats.activity
    sessions = hub.sessions
    shown = heapq.nsmallest(MINERS_SHOWN, sessions.values(), key=_miner_order(hub))
    mono_now = time.monotonic()
    games = hub.stream.games
    listed = heapq.nsmallest(GAMES_SHOWN, games.values(),
                             key=lambda g: (g.settled, g.event_start_date, g.game_id))
    return {
        "now_ms": now_ms,
        "hub": {
            "validator_hotkey": hub.validator_hotkey,
            "status": "shutting_down" if hub.shutting_down else "ok",
            "uptime_s": round(stats.uptime_s, 1),
        },
        "connections": {
            "active": len(sessions),
            "total": stats.connections_total,
            "closing": sessions.closing,
            "registered": hub.registry.registered_count(),
        },
        "stream": {"epoch": hub.stream.epoch, "seq": hub.stream.seq, "games": len(games),
                   "broadcasts": stats.broadcasts},
        "store": {"commits": hub.store.commits, "committed_ops": hub.store.committed_ops,
                  "queued": hub.store.queued},
        "messages": {"in": dict(stats.messages_in), "out": stats.messages_out},
        "predictions": {
            "by_status": dict(stats.predictions),
            "miners_today": activity.miners_today,
            "per_minute": [list(row) for row in activity.per_minute()],
        },
        "errors": dict(stats.errors),
        "rejections": dict(activity.rejections),
        "refusals": {str(status): n for status, n in stats.handshake_refusals.items()},
        "closes": {str(code): n for code, n in stats.closes.items()},
        "miners": {"total": len(sessions),
                   "shown": [_miner_row(hub, s, now_ms, mono_now) for s in shown]},
        "games": {"total": len(games), "shown": [_game_row(g) for g in listed]},
    }


def _miner_order(hub: Hub) -> Callable[[MinerSession], tuple[bool, int, str]]:
    uid_of = hub.registry.uid

    def key(session: MinerSession) -> tuple[bool, int, str]:
        uid = uid_of(session.hotkey)
        return (uid is None, uid if uid is not None else 0, session.hotkey)

    return key


def _miner_row(hub: Hub, session: MinerSession, now_ms: int, mono_now: float) -> dict[str, Any]:
    today = hub.stats.activity.today(session.hotkey)
    rtt = session.rtt_s
    return {
        "hotkey": session.hotkey,
        "uid": hub.registry.uid(session.hotkey),
        "address": hub.admission.client_address(session.request),
        # both monotonic: placed on the hub clock through their age
        "since_ms": now_ms - int((mono_now - session.connected_at) * 1000),
        "last_seen_ms": now_ms - int((mono_now - session.last_received) * 1000),
        "rtt_ms": None if rtt is None else round(rtt * 1000, 2),
        "accepted": today.accepted if today else 0,
        "rejected": today.rejected if today else 0,
        "duplicate": today.duplicate if today else 0,
        "queued": session.queued,
    }


def _game_row(game: Game) -> dict[str, Any]:
    return {
        "id": game.game_id,
        "sport": game.sport,
        "league": game.league,
        "a": game.team_a,
        "b": game.team_b,
        "kickoff_ms": int(game.event_start_date.timestamp() * 1000),
        "odds": [game.team_a_odds, game.team_b_odds, game.tie_odds],
        "active": game.active,
        "outcome": int(game.outcome),
    }
