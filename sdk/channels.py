"""Per-reader buffers behind the SDK's async iterators.

The socket reader pushes into every open channel and never waits: a slow reader
only grows (or coalesces) its own buffer. Game updates coalesce to the latest
state per game once a channel is full; confirmations are never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

from .frames import GameUpdate
from .models import Game

T = TypeVar("T")


class Channel(Generic[T]):
    """An unbounded FIFO with one async reader; ``close`` ends (or fails) iteration."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None  # the reader's, while it waits
        self._closed = False
        self._error: BaseException | None = None

    def push(self, item: T) -> None:
        if self._closed:
            return
        self._items.append(item)
        self._wake()

    def close(self, error: BaseException | None = None) -> None:
        self._closed = True
        self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __len__(self) -> int:
        return len(self._items)

    async def get(self) -> T:
        """Next item; raises StopAsyncIteration when closed (or the close error)."""
        while not self._items:
            if self._closed:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self.get()


class Fanout(Generic[T]):
    """Hands every item to each subscribed channel; a reader that stops iterating is
    unsubscribed."""

    def __init__(self) -> None:
        self.channels: list[Channel[T]] = []

    def subscribe(self, channel: Channel[T]) -> AsyncIterator[T]:
        """Iterate ``channel``, fed from now on (not from the first ``__anext__``:
        nothing pushed after this call is missed)."""
        self.channels.append(channel)
        return Subscription(self, channel)

    def push(self, item: T) -> None:
        for channel in self.channels:
            channel.push(item)

    def close(self, error: BaseException | None = None) -> None:
        for channel in self.channels:
            channel.close(error)

    def unsubscribe(self, channel: Channel[T]) -> None:
        with contextlib.suppress(ValueError):
            self.channels.remove(channel)


class Subscription(AsyncIterator[T]):
    """One reader's iterator over its channel. It leaves the fanout when the channel
    ends, when :meth:`aclose` is called, or when the reader drops it (``break`` out of
    ``async for``, then garbage collection), as an async generator would; a plain
    iterator because it costs one coroutine per item where a generator wrapping the
    channel cost three (a miner reads every update of every validator through one)."""

    __slots__ = ("_channel", "_fanout")

    def __init__(self, fanout: Fanout[T], channel: Channel[T]) -> None:
        self._fanout: Fanout[T] | None = fanout
        self._channel = channel

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self._channel.get()
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self._leave()
            raise

    async def aclose(self) -> None:
        """Stop reading: the channel is fed no more."""
        self._leave()

    def _leave(self) -> None:
        fanout, self._fanout = self._fanout, None
        if fanout is not None:
            fanout.unsubscribe(self._channel)

    def __del__(self) -> None:
        self._leave()


class UpdateChannel(Channel[GameUpdate]):
    """Bounded to ``capacity`` pending updates; beyond that, pending updates merge into
    one that carries the latest state of every game they touched."""

    def __init__(self, capacity: int = 256) -> None:
        super().__init__()
        self.capacity = max(1, capacity)
        self.coalesced = 0

    def push(self, item: GameUpdate) -> None:
        if self._closed:
            return
        items = self._items
        if len(items) >= self.capacity:
            pending = [*items, item]
            items.clear()
            self.coalesced += len(pending) - 1
            item = merge_updates(pending)
        items.append(item)
        self._wake()


def merge_updates(updates: list[GameUpdate]) -> GameUpdate:
    """One update equivalent to applying ``updates`` in order."""
    start = 0
    for index, update in enumerate(updates):
        if update.snapshot:
            start = index
    snapshot = updates[start].snapshot
    games: dict[str, Game] = {}
    for update in updates[start:]:
        for game in update.games:
            games[game.game_id] = game
    last = updates[-1]
    return GameUpdate(epoch=last.epoch, seq=last.seq, prev_seq=updates[start].prev_seq,
                      games=list(games.values()), snapshot=snapshot)
