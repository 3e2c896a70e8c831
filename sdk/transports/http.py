"""The HTTP fallback transport: long-poll ``GET /games`` and ``POST /predictions``.

For a miner behind something that will not pass a WebSocket upgrade (a proxy that
answers 426, a path that is not routed) while plain HTTP reaches the hub. It gives
the same guarantees as the WebSocket: every request is ``btauth/1``-signed, the poll
resumes the stream with ``epoch``/``since`` (a gap gets a snapshot: while the
connection resyncs it sends no resume point), confirmations are verified the same
way, and unconfirmed predictions are posted again until settled. The connection
keeps probing the WebSocket meanwhile and switches back when it works.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
from yarl import URL

from ..backoff import Backoff
from ..errors import HandshakeError
from ..frames import GameUpdate
from ..models import ns_value
from ..outbox import OutboxEntry
from ..tasks import TaskSet
from .base import LinkContext, retry_after

log = logging.getLogger("sdk.connection.http")

_RESEND_DELAY_S = 2.0

T = TypeVar("T")


class HttpFallbackTransport:
    """Serves the connection over plain HTTP until closed or until HTTP fails too."""

    def __init__(self, ctx: LinkContext) -> None:
        self._ctx = ctx
        self._tasks = TaskSet()
        self._closed = False
        self._backoff = Backoff(ctx.options.backoff_base, ctx.options.backoff_cap)

    @staticmethod
    async def hub_answers(ctx: LinkContext) -> bool:
        """Whether the hub answers plain HTTP (``GET /ws/health``) at all."""
        try:
            async with asyncio.timeout(ctx.options.handshake_timeout):
                async with ctx.session.get(ctx.address.http_url + "/ws/health") as response:
                    return response.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    async def serve(self, probe: Callable[[], Awaitable[T | None]]) -> T | None:
        """Long-poll and post every pending prediction; every ``ws_probe_interval``
        call ``probe`` (the way back to the WebSocket) and stop with the first thing it
        returns, or with None once polling gave up (``fallback_after`` failures in a
        row). The transport is closed when this returns."""
        poller = self._tasks.spawn(self._poll_loop(), "long-poll")
        self._tasks.spawn(self._post_pending(), "post-pending")
        try:
            while True:
                await asyncio.sleep(self._ctx.options.ws_probe_interval)
                if poller.done():
                    return None
                outcome = await probe()
                if outcome is not None:
                    return outcome
        finally:
            await self.close()

    def dispatch(self, entry: OutboxEntry) -> None:
        if self._closed:
            return  # the next transport resends the outbox
        self._tasks.spawn(self._post(entry), f"post-{entry.prediction_id}")

    async def request_snapshot(self) -> None:
        """Nothing to send: the next poll carries no resume point and gets a snapshot."""

    async def close(self) -> None:
        self._closed = True
        await self._tasks.cancel()

    async def _poll_loop(self) -> None:
        ctx, options = self._ctx, self._ctx.options
        failures = 0
        while True:
            path = "/games" + ctx.stream_query({"timeout": options.long_poll_timeout})
            try:
                async with asyncio.timeout(options.long_poll_timeout
                                           + options.handshake_timeout):
                    async with ctx.session.get(
                            URL(ctx.address.http_url + path, encoded=True),
                            headers=ctx.sign("GET", path, b"")) as response:
                        if response.status != 200:
                            raise HandshakeError(f"GET /games answered {response.status}",
                                                 status=response.status,
                                                 retry_after=retry_after(response.headers))
                        body = await response.json()
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError,
                    HandshakeError) as exc:
                failures += 1
                if failures >= options.fallback_after:
                    log.warning("HTTP fallback failing: %s", exc)
                    return
                wait = getattr(exc, "retry_after", None)
                await asyncio.sleep(self._backoff.delay(failures, wait))
                continue
            failures = 0
            server_time_ns = ns_value(body.get("server_time_ns"))
            if server_time_ns is not None:
                # a rough sample, used only until a welcome or an echo gives a better one
                ctx.inbound.clock.add_rough(server_time_ns, time.time_ns())
            for raw in body.get("updates", []):
                try:
                    update = GameUpdate.model_validate(raw)
                except ValueError as exc:
                    log.warning("ignoring a malformed update from GET /games: %s", exc)
                    continue
                ctx.inbound.update(update)  # on a gap the next poll resyncs

    async def _post_pending(self) -> None:
        for entry in await self._ctx.pending():
            await self._post(entry)

    async def _post(self, entry: OutboxEntry) -> None:
        ctx = self._ctx
        body = json.dumps({"prediction": entry.prediction,
                           "signature": entry.signature}).encode()
        await ctx.pacer.wait()
        try:
            async with asyncio.timeout(ctx.options.handshake_timeout):
                async with ctx.session.post(
                        ctx.address.http_url + "/predictions", data=body,
                        headers={**ctx.sign("POST", "/predictions", body),
                                 "Content-Type": "application/json"}) as response:
                    if response.status == 200:
                        ctx.inbound.confirmation(await response.json())
                        return
                    wait = retry_after(response.headers)
                    log.info("POST /predictions answered %d", response.status)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            log.info("POST /predictions failed (kept in the outbox): %s", exc)
            wait = None
        ctx.retry(entry.prediction_id, wait or _RESEND_DELAY_S)
