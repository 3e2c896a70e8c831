"""The seam between a hub and the stream its games travel on.

:meth:`Hub.publish <server_stub.hub.Hub.publish>` commits the changed games to its store
and then appends them to its :class:`Backplane`; the backplane numbers the update
(``seq``), applies it to the hub's :class:`~server_stub.stream.GameStream` and hands it
to :meth:`StreamSink.deliver` (the broadcast to the hub's own miners). One hub uses
:class:`LocalBackplane`: all of that synchronously in the caller, as the hub always
did. Several hubs of one validator use :class:`~.redis_stream.RedisBackplane`: one
shared stream, epoch and seq in Redis, read back in order by every hub.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from sdk.models import Game

from ..stream import GameStream, UpdateRecord

__all__ = ["Backplane", "BackplaneUnavailable", "LocalBackplane", "StreamSink"]


class BackplaneUnavailable(RuntimeError):
    """The shared stream could not take an update (Redis unreachable): the games are
    committed to the store, but not published; the caller may post them again. Also
    raised when a nonce cannot be claimed across hubs (:mod:`.nonces`), or presence
    cannot subscribe at start (:mod:`.presence`)."""


class StreamSink(Protocol):
    """What a backplane needs of its hub."""

    stream: GameStream

    def deliver(self, record: UpdateRecord) -> None:
        """An update was applied to :attr:`stream`: send it to the hub's miners."""
        ...

    def resynced(self) -> None:
        """:attr:`stream` was reset (a new epoch, or the hub caught up from scratch):
        every connected miner needs a snapshot."""
        ...

    def stored_games(self) -> Awaitable[list[Game]]:
        """The games in the hub's store (the table to start from)."""
        ...

    def mirror(self, games: Sequence[Game]) -> None:
        """Games another hub published: keep them in this hub's store too, so a new
        epoch can start from any hub's store (fire and forget)."""
        ...


class Backplane(Protocol):
    """Where a hub's game updates are numbered and from where they reach its miners."""

    kind: str
    """``local`` or ``redis`` (health, logs)."""

    async def start(self, sink: StreamSink) -> None:
        """Load the table (and history) into ``sink.stream``, start any reader."""
        ...

    async def append(self, games: Sequence[Game]) -> UpdateRecord | None:
        """Publish changed games (already committed to the store) as one update and
        return it once it is appended (None: nothing changed after all). Raises
        :class:`BackplaneUnavailable` when the stream cannot take it."""
        ...

    def holds_feed(self) -> bool:
        """Whether this hub should run the game feed now (one hub at a time)."""
        ...

    def forget(self, game_ids: Sequence[str]) -> None:
        """Games pruned from the table (settled long ago): drop them where shared."""
        ...

    async def stop(self) -> None:
        """Stop reading, give up the feed, cancel every task started."""
        ...

    def health(self) -> dict[str, Any]:
        ...


class LocalBackplane:
    """One hub, one process: the update is applied and broadcast in the caller, with
    no extra hop, and the hub always runs its feed."""

    kind = "local"

    def __init__(self) -> None:
        self._sink: StreamSink | None = None

    async def start(self, sink: StreamSink) -> None:
        self._sink = sink
        stored = await sink.stored_games()
        if stored:
            sink.stream.apply(stored)

    async def append(self, games: Sequence[Game]) -> UpdateRecord | None:
        sink = self._sink
        assert sink is not None, "LocalBackplane.append before start"
        # applied again: a concurrent publish may have applied some of them meanwhile
        record = sink.stream.apply(games)
        if record is not None:
            sink.deliver(record)
        return record

    def holds_feed(self) -> bool:
        return True

    def forget(self, game_ids: Sequence[str]) -> None:
        return None

    async def stop(self) -> None:
        return None

    def health(self) -> dict[str, Any]:
        return {"kind": self.kind}
