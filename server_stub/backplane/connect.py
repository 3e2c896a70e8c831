"""The Redis client of a hub, from ``--backplane redis://...``; redis-py is imported
only here, and only when a backplane URL is given, so the default install never
needs it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..extras import import_extra

if TYPE_CHECKING:
    import redis.asyncio as aioredis

_SCHEMES = ("redis://", "rediss://", "unix://")

MAX_CONNECTIONS = 64
"""Connections one hub opens to Redis at most (the stream reader and the presence
subscription hold one each; commands take well under a millisecond)."""
POOL_WAIT_S = 5.0
"""How long a command waits for a free connection before it fails (then: Redis counts
as unreachable for that request)."""


def check_backplane_url(url: str) -> str:
    """``url`` if it names a Redis server; ValueError naming the accepted forms."""
    if not url.startswith(_SCHEMES):
        raise ValueError(f"backplane {url!r}: expected redis://HOST:PORT[/DB], "
                         "rediss://... or unix:///path")
    return url


def require_redis() -> None:
    """Raise :class:`~sdk.errors.MissingExtraError` naming the extra when redis-py is
    missing."""
    import_extra("redis.asyncio", "--backplane")


def redis_client(url: str) -> aioredis.Redis:
    """A client for the hub's shared state (pooled: the stream reader holds one
    connection in XREAD BLOCK, everything else shares the others)."""
    check_backplane_url(url)
    require_redis()
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError, TimeoutError

    # A restarted Redis leaves every pooled connection dead: a command that meets one
    # is retried on a fresh connection rather than failing (a retried append whose
    # first attempt did land publishes the same games twice, which changes nothing).
    # A blocking pool: a thousand miners reconnecting at once (each upgrade claims a
    # nonce and its presence) queue for a connection instead of failing with
    # MaxConnectionsError when the default pool's 100 are busy.
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=POOL_WAIT_S,
        socket_timeout=10, socket_connect_timeout=3, health_check_interval=15,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        retry_on_error=[ConnectionError, TimeoutError])
    client: aioredis.Redis = aioredis.Redis.from_pool(pool)  # closes the pool with it
    return client
