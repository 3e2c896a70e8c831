"""What the replay protection and presence expect of a Redis call: an answer within
:data:`SOCKET_TIMEOUT_S`, or one of :func:`redis_errors`.

``redis`` is imported here only when a backplane is built (it is in the ``ha`` extra).
"""

from __future__ import annotations

import importlib

__all__ = ["SOCKET_TIMEOUT_S", "redis_errors"]

SOCKET_TIMEOUT_S = 2.0
"""A Redis command that has not answered by then counts as Redis unreachable: the hub
answers its caller (503, or goes on without presence) instead of hanging."""


def redis_errors() -> tuple[type[BaseException], ...]:
    """What a Redis call raises when Redis is down, unreachable or slow."""
    exceptions = importlib.import_module("redis.exceptions")
    return (exceptions.RedisError, OSError, TimeoutError)
