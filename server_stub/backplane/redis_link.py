"""The Redis client the backplane parts are built from, imported only when asked for.

The default install has no ``redis`` package (it is in the ``ha`` extra): importing it
lazily keeps ``bt-validator-stub serve`` without ``--backplane`` free of it, and a hub
asked for a backplane without it fails with a message that says what to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "HA_INSTALL_HINT", "BackplaneUnavailable", "default_prefix", "open_redis", "redis_errors",
]

HA_INSTALL_HINT = "pip install 'bettensor-ws[ha]'"

SOCKET_TIMEOUT_S = 2.0
"""A Redis command that has not answered by then counts as Redis unreachable: the hub
answers its caller (503, or goes on without presence) instead of hanging."""


MAX_CONNECTIONS = 32
"""Connections one hub opens to Redis at most. A thousand miners reconnecting at once
after a restart queue for these (each command takes well under a millisecond) instead
of opening a thousand connections; waiting longer than ``SOCKET_TIMEOUT_S`` for one
counts as Redis unreachable."""


class BackplaneUnavailable(Exception):
    """Redis did not answer (down, unreachable, timed out): what needed it cannot be
    decided across hubs right now."""


def default_prefix(validator_hotkey: str) -> str:
    """The key prefix of one validator's hubs when ``--redis-prefix`` is not given:
    every hub signing as the same validator shares it."""
    return f"bt-ws:{validator_hotkey}"


def open_redis(url: str) -> Redis:
    """A ``redis.asyncio`` client for ``url`` with at most :data:`MAX_CONNECTIONS`
    connections (made on first use).

    Raises RuntimeError naming the extra to install when ``redis`` is missing."""
    try:
        module = importlib.import_module("redis.asyncio")
    except ImportError as exc:
        raise RuntimeError(
            f"--backplane needs the redis package: {HA_INSTALL_HINT}") from exc
    pool = module.BlockingConnectionPool.from_url(
        url, max_connections=MAX_CONNECTIONS, timeout=SOCKET_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S)
    client: Redis = module.Redis.from_pool(pool)  # closing the client closes the pool
    return client


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a Redis call raises when Redis is down, unreachable or slow."""
    exceptions = importlib.import_module("redis.exceptions")
    return (exceptions.RedisError, OSError, TimeoutError)
