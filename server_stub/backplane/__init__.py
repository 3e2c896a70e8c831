"""How one validator's hubs share state: the game stream (:mod:`.base` protocol,
:class:`LocalBackplane` in one process, :class:`~.redis_stream.RedisBackplane` across
processes) and its feed lease (:mod:`.lease`); who is connected: replay protection
(:mod:`.nonces`) and one connection per hotkey (:mod:`.presence`) across hubs."""

from __future__ import annotations

from .base import Backplane, LocalBackplane, StreamSink

__all__ = ["Backplane", "LocalBackplane", "StreamSink"]
