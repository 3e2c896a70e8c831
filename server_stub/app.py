"""The aiohttp application factory for the validator hub."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from sdk.signing import Signer

from .backplane import Backplane
from .backplane.shared_auth import SharedAuth
from .bettensor import BettensorBook, BettensorGameFeed, ValidatorDatabase
from .clock import HubClock
from .config import HubConfig
from .dashboard import dashboard_routes
from .feed import GameFeed
from .http_api import HUB_KEY, METRICS_KEY, routes
from .hub import Hub
from .registry import MinerRegistry, OpenRegistry, RequireUid
from .stats import StatsCollector
from .store import HubStore, PredictionStore

_MIN_BODY_BYTES = 1024 * 1024

BETTENSOR_DB_KEY: web.AppKey[ValidatorDatabase] = web.AppKey("bettensor_db", ValidatorDatabase)
log = logging.getLogger("server_stub.hub")

REDIS_KEY: web.AppKey[Any] = web.AppKey("redis", object)
"""The app's ``redis.asyncio.Redis`` client when ``config.backplane_url`` is set (shared
by the stream, nonces and presence; closed after the hub stops)."""


def create_app(config: HubConfig, *, signer: Signer, store_path: str | Path | None = None,
               registry: MinerRegistry | None = None, feed: GameFeed | None = None,
               clock: HubClock | None = None) -> web.Application:
    """Build the hub application.

    ``signer`` is the validator identity (a bittensor Keypair, Wallet signer, or
    anything with ``ss58_address`` and ``sign``). The store opens, the registry
    and feed start when the app starts; on shutdown every miner gets 1001 and the
    store is flushed. ``request.app[HUB_KEY]`` is the :class:`Hub`. The store is
    PostgreSQL when ``config.store_url`` is set (``store_path`` is then unused), else
    the SQLite file at ``store_path`` or ``config.store_path``.
    """
    store = build_store(config, store_path)
    registry = registry or OpenRegistry()
    clock = clock or HubClock()
    validator_db: ValidatorDatabase | None = None
    book: BettensorBook | None = None
    if config.bettensor_db is not None:
        if not isinstance(store, PredictionStore):
            raise ValueError("with bettensor_db the predictions go into the validator's "
                             "SQLite database, beside one hub: give no store_url")
        if feed is not None:
            raise ValueError("with bettensor_db the games come from its game_data: "
                             "give no other feed")
        registry = RequireUid(registry)
        validator_db = ValidatorDatabase(config.bettensor_db,
                                         synchronous=config.store_synchronous,
                                         indexes=config.bettensor_indexes)
        book = BettensorBook(validator_db, store, uid_of=registry.uid,
                             daily_limit=config.daily_wager_limit)
        feed = BettensorGameFeed(validator_db, clock_now=clock.now)
        config = config.model_copy(update={"tick_interval_s": config.bettensor_poll_s})
    redis: Any = None
    backplane: Backplane | None = None
    shared: SharedAuth | None = None
    if config.backplane_url is not None:
        from .backplane.codec import default_prefix
        from .backplane.connect import redis_client
        from .backplane.redis_stream import RedisBackplane

        redis = redis_client(config.backplane_url)
        prefix = config.redis_prefix or default_prefix(signer.ss58_address)
        backplane = RedisBackplane(redis, prefix, history_size=config.history_size,
                                   feed_lease_s=config.feed_lease_s)
        shared = SharedAuth.build(redis, prefix, config, hub_id=backplane.hub_id)
    hub = Hub(config, signer=signer, registry=registry, store=store, feed=feed, clock=clock,
              book=book, uid_of=None if book is None else registry.uid, backplane=backplane,
              nonce_guard=shared.nonces if shared is not None else None,
              presence=shared.presence if shared is not None else None)
    app = web.Application(client_max_size=max(_MIN_BODY_BYTES, config.max_frame_bytes))
    app[HUB_KEY] = hub
    hub.health_sections["store"] = store.health
    if redis is not None:
        app[REDIS_KEY] = redis
        hub.health_sections["backplane"] = hub.backplane.health
    if shared is not None:
        hub.health_sections["shared_auth"] = shared.health
    if validator_db is not None:
        app[BETTENSOR_DB_KEY] = validator_db
        hub.health_sections["bettensor_db"] = functools.partial(_bettensor_health,
                                                                validator_db)
    metrics = CollectorRegistry(auto_describe=True)
    metrics.register(StatsCollector(hub.stats, lambda: _gauges(hub, validator_db)))
    app[METRICS_KEY] = metrics
    app.add_routes(routes(hub))
    app.add_routes(dashboard_routes(config.dashboard))
    app.cleanup_ctx.append(_hub_lifecycle)
    app.on_shutdown.append(_stop_hub)
    return app


def build_store(config: HubConfig, store_path: str | Path | None = None) -> HubStore:
    """The store the config names: PostgreSQL at ``config.store_url``, else the SQLite
    file at ``store_path`` (or ``config.store_path``). Not opened yet."""
    if config.store_url is not None:
        from .pgstore import PostgresStore

        return PostgresStore(config.store_url, daily_limit=config.daily_wager_limit,
                             pool_size=config.store_pool_size)
    path = Path(store_path) if store_path is not None else config.store_path
    if path is None:
        raise ValueError("the hub needs a store: config.store_url, config.store_path or "
                         "store_path=")
    return PredictionStore(path, synchronous=config.store_synchronous)


async def _hub_lifecycle(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB_KEY]
    await hub.store.open()
    validator_db = app.get(BETTENSOR_DB_KEY)
    if validator_db is not None:
        try:
            await validator_db.open()
        except BaseException:
            await hub.store.close()
            raise
    try:
        await hub.start()
    except BaseException:
        await hub.stop()
        await _close_redis(app)
        raise
    if hub.config.freeze_gc:
        # Everything alive now (imported modules, bittensor, pydantic schemas) lives as
        # long as the hub: exempt it from garbage collection so a full collection scans
        # only what serving created. It cut the hub's longest GC pause from ~50 ms
        # (every few seconds under prediction load) to a few ms.
        gc.freeze()
    yield
    await hub.stop()
    await _close_redis(app)


async def _close_redis(app: web.Application) -> None:
    redis = app.get(REDIS_KEY)
    if redis is not None:
        try:
            await asyncio.wait_for(redis.aclose(), 10.0)
        except TimeoutError:
            log.warning("the Redis client did not close within 10 s")


async def _stop_hub(app: web.Application) -> None:
    await app[HUB_KEY].stop()


def _gauges(hub: Hub, validator_db: ValidatorDatabase | None) -> dict[str, float]:
    gauges: dict[str, float] = {
        "games": len(hub.stream.games),
        "seq": hub.stream.seq,
        "nonce_store_entries": len(hub.admission.nonces),
        "queued_frames": sum(session.queued for session in hub.sessions.values()),
        "store_commits": hub.store.commits,
    }
    if validator_db is not None:
        gauges["bettensor_db_commits"] = validator_db.commits
        gauges["bettensor_db_lock_hold_max_seconds"] = validator_db.lock_hold.longest_s
        gauges["bettensor_db_busy_retries"] = validator_db.lock_hold.busy_retries
    return gauges


def _bettensor_health(db: ValidatorDatabase) -> dict[str, Any]:
    hold = db.lock_hold
    return {
        "path": str(db.path),
        "replaced": db.replaced,
        "commits": db.commits,
        "lock_hold_max_ms": round(hold.longest_s * 1000, 3),
        "lock_hold_mean_ms": round(hold.mean_s * 1000, 3),
        "busy_retries": hold.busy_retries,
        "skipped_game_rows": db.skipped_rows,
        "indexes": db.indexes,
    }
