"""HTTP helpers shared by the WebSocket upgrade and the HTTP API: compact JSON bodies,
the error body every refusal uses and the stream query (``epoch``, ``since``,
``sports``, ``leagues``) of ``GET /ws`` and ``GET /games``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from aiohttp import web

from sdk.codes import ERROR_HEADER, ErrorCode
from sdk.jsontext import compact_json

from .auth import HubHTTPError
from .stream import GameFilter

__all__ = [
    "StreamQuery", "error_response", "json_response", "parse_stream_query",
    "retry_after_seconds",
]


class StreamQuery(NamedTuple):
    """Where a miner resumes the game stream and which games it wants."""

    epoch: str | None
    since: int | None
    game_filter: GameFilter


def parse_stream_query(request: web.Request) -> StreamQuery:
    """The stream query of ``request``; a ``since`` that is not an integer is a 400."""
    query = request.query
    since: int | None = None
    if query.get("since"):
        try:
            since = int(query["since"])
        except ValueError:
            raise HubHTTPError(400, ErrorCode.MALFORMED_REQUEST,
                               "since must be an integer seq") from None
    return StreamQuery(query.get("epoch") or None, since,
                       GameFilter.from_query(query.get("sports"), query.get("leagues")))


def json_response(body: Any, *, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON body written as frames are: compact, non-ASCII escaped (PROTOCOL.md §12)."""
    return web.json_response(body, status=status, headers=headers, dumps=compact_json)


def error_response(error: HubHTTPError) -> web.Response:
    """``{"error": code, "detail": ...}`` with the error's status (and ``Retry-After``)."""
    # The code also travels in a header: WebSocket clients (aiohttp's among them) see
    # a refused upgrade's status and headers but not its body.
    headers = {ERROR_HEADER: str(error.code)}
    if error.retry_after is not None:
        headers["Retry-After"] = str(retry_after_seconds(error.retry_after))
    return json_response({"error": str(error.code), "detail": error.detail},
                         status=error.status, headers=headers)


def retry_after_seconds(value: float) -> int:
    """``Retry-After`` takes whole seconds: round up, and never say 0."""
    return max(1, int(-(-value // 1)))
