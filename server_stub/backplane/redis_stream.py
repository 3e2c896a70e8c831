"""The game stream shared by a validator's hubs, in Redis (keys: :mod:`.codec`).

Appending is one Lua script (:data:`~.codec.APPEND_SCRIPT`): check the epoch, INCR
the seq, XADD the entry with the id ``<seq>-0``, HSET the table, atomically, so the
stream's order is the seq's. Every hub, the appending one included, applies entries
only from its reader (XREAD BLOCK), in stream order, with the entry's seq: every hub's
:class:`~server_stub.stream.GameStream` is the same history, and a miner resumes with
``epoch``/``since`` on any of them.

On start, and whenever the reader finds its history broken (an entry of another
epoch, a gap, Redis restarted or unreachable, a quiet poll showing another epoch), the
hub resyncs: when Redis has no epoch it starts one (SET NX semantics in
:data:`~.codec.NEW_EPOCH_SCRIPT`, the table seeded from this hub's store), then loads
epoch, seq, table and the newest ``history_size`` entries in one transaction, resets
its stream to them and sends its miners a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError

from sdk.models import Game
from sdk.tasks import TaskSet

from ..stream import UpdateRecord
from .base import BackplaneUnavailable, StreamSink
from .codec import (
    APPEND_SCRIPT,
    NEW_EPOCH_SCRIPT,
    StreamKeys,
    decode_entry,
    decode_table,
    game_fields,
    games_payload,
    new_epoch,
)
from .lease import FeedLease

__all__ = ["RedisBackplane", "hub_id"]

log = logging.getLogger("server_stub.backplane.redis")

_APPLY_WAIT_S = 5.0  # how long an append waits for this hub's reader to apply it
_RETRY_S = (0.1, 0.25, 0.5, 1.0, 2.0)  # reader's waits between failed attempts
_READ_COUNT = 512


def hub_id() -> str:
    """A name for this hub process, unique among a validator's hubs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RedisBackplane:
    """One hub's side of the shared stream (``client``: a ``redis.asyncio.Redis``, whose
    owner closes it after :meth:`stop`)."""

    kind = "redis"

    def __init__(self, client: Any, prefix: str, *, history_size: int,
                 feed_lease_s: float = 5.0, poll_s: float = 1.0,
                 hub: str | None = None) -> None:
        self._redis = client
        self.keys = StreamKeys(prefix)
        self.history_size = history_size
        self.poll_s = poll_s
        self.hub_id = hub or hub_id()
        self.lease = FeedLease(client, self.keys.feed_lease, self.hub_id, feed_lease_s)
        self._sink: StreamSink | None = None
        self._tasks = TaskSet(log, "backplane")
        self._applied = asyncio.Event()  # replaced after each batch the reader applies
        self.resyncs = 0
        """Times this hub reset its stream from Redis after its start."""
        self.connected = False
        self._stopping = False

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, sink: StreamSink) -> None:
        """Load the shared stream (starting an epoch if Redis has none), try for the
        feed lease once, then read. Raises when Redis is unreachable: a hub told to
        share its stream does not run alone."""
        self._sink = sink
        await self._resync(notify=False)
        await self.lease.refresh()
        self._tasks.spawn(self._read_loop(), "backplane-reader")
        self._tasks.spawn(self._lease_loop(), "backplane-lease")

    async def stop(self) -> None:
        self._stopping = True
        self._applied.set()  # appends waiting for the reader stop waiting
        await self._tasks.cancel()
        if self.lease.held:
            await self.lease.release()

    def holds_feed(self) -> bool:
        return self.lease.held

    async def _lease_loop(self) -> None:
        await asyncio.sleep(self.lease.ttl_s / 3)
        await self.lease.run()

    # -- appending ----------------------------------------------------------------------

    async def append(self, games: Sequence[Game]) -> UpdateRecord | None:
        sink = self._require_sink()
        if not games:
            return None
        fields = game_fields(games)
        payload = games_payload(fields)
        for attempt in (1, 2):
            epoch = sink.stream.epoch
            try:
                seq = int(await self._redis.eval(
                    APPEND_SCRIPT, 4, *self.keys.all(), epoch, self.history_size,
                    self.hub_id, payload, *fields))
            except (RedisError, OSError) as exc:
                raise BackplaneUnavailable(f"the game stream (Redis) is unreachable: {exc}"
                                           ) from exc
            if seq > 0:
                await self._wait_applied(epoch, seq)
                return UpdateRecord(seq, tuple(games))
            if attempt == 1:  # another epoch in force: catch up, then append to it
                try:
                    await self._resync(notify=True)
                except (RedisError, OSError) as exc:
                    raise BackplaneUnavailable(f"the game stream (Redis) is unreachable: "
                                               f"{exc}") from exc
        raise BackplaneUnavailable("the game stream's epoch keeps changing; post again")

    async def _wait_applied(self, epoch: str, seq: int) -> None:
        """Until this hub's reader has applied ``seq`` (so its own answer, health and
        snapshots include it), bounded: the update is in the shared stream already."""
        stream = self._require_sink().stream
        deadline = time.monotonic() + _APPLY_WAIT_S
        while stream.epoch == epoch and stream.seq < seq and not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("update %d appended but not read back within %.0fs", seq,
                            _APPLY_WAIT_S)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._applied.wait(), remaining)

    def forget(self, game_ids: Sequence[str]) -> None:
        if game_ids:
            self._tasks.spawn(self._forget(list(game_ids)), "backplane-forget")

    async def _forget(self, game_ids: list[str]) -> None:
        try:
            await self._redis.hdel(self.keys.games, *game_ids)
        except (RedisError, OSError) as exc:  # pruned again at the next heartbeat
            log.warning("pruned games not removed from Redis: %r", exc)

    # -- reading ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        failures = 0
        while True:
            try:
                if failures:
                    await self._resync(notify=True)
                await self._read_once()
                failures = 0
            except (RedisError, OSError) as exc:
                self.connected = False
                wait = _RETRY_S[min(failures, len(_RETRY_S) - 1)]
                failures += 1
                log.warning("game stream (Redis) unreachable (%r); retrying in %.2fs",
                            exc, wait)
                await asyncio.sleep(wait)  # back off before reconnecting

    async def _read_once(self) -> None:
        sink = self._require_sink()
        stream = sink.stream
        reply = await self._redis.xread({self.keys.stream: f"{stream.seq}-0"},
                                        count=_READ_COUNT, block=int(self.poll_s * 1000))
        self.connected = True
        if not reply:
            # quiet: is the history still ours? (Redis restarted or was flushed while
            # the connection survived, and new entries sort below our position)
            current = await self._redis.get(self.keys.epoch)
            if current is None or current.decode() != stream.epoch:
                await self._resync(notify=True)
            return
        applied = False
        for entry_id, fields in reply[0][1]:
            entry = decode_entry(entry_id, fields)
            if entry.epoch == stream.epoch and entry.seq <= stream.seq:
                continue  # applied already (a resync loaded it while this read waited)
            if entry.epoch != stream.epoch or entry.seq != stream.seq + 1:
                await self._resync(notify=True)
                break
            record = stream.apply_record(entry.seq, entry.games)
            applied = True
            if entry.hub != self.hub_id:
                sink.mirror(entry.games)
            sink.deliver(record)
        if applied:
            event, self._applied = self._applied, asyncio.Event()
            event.set()

    async def _resync(self, *, notify: bool) -> None:
        """Reset the hub's stream to Redis's, starting a new epoch when there is none."""
        sink = self._require_sink()
        state = await self._load()
        if state[0] is None:
            seeds = game_fields(await sink.stored_games())
            started = await self._redis.eval(NEW_EPOCH_SCRIPT, 4, *self.keys.all(),
                                             new_epoch(), *seeds)
            log.info("game stream %s: epoch %s in force (%d games from this hub's "
                     "store offered)", self.keys.prefix, started.decode(), len(seeds) // 2)
            state = await self._load()
        epoch, seq, games, history = state
        if epoch is None:
            raise RedisError("the epoch vanished while it was being loaded")
        stream = sink.stream
        if notify and epoch == stream.epoch and seq == stream.seq:
            return  # nothing was missed after all
        stream.reset(epoch, seq, games, history)
        self.connected = True
        if notify:
            self.resyncs += 1
            log.info("game stream %s: reset to epoch %s seq %d (%d games)",
                     self.keys.prefix, epoch, seq, len(games))
            sink.resynced()
        event, self._applied = self._applied, asyncio.Event()
        event.set()

    async def _load(self) -> tuple[str | None, int, list[Game], list[UpdateRecord]]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self.keys.epoch)
            pipe.get(self.keys.seq)
            pipe.hgetall(self.keys.games)
            pipe.xrevrange(self.keys.stream, "+", "-", count=self.history_size)
            epoch, seq, table, entries = await pipe.execute()
        if epoch is None:
            return None, 0, [], []
        epoch_text = epoch.decode()
        history = [entry.record() for entry in
                   (decode_entry(entry_id, fields) for entry_id, fields in reversed(entries))
                   if entry.epoch == epoch_text]
        return epoch_text, int(seq or 0), decode_table(table), history

    def _require_sink(self) -> StreamSink:
        if self._sink is None:
            raise RuntimeError("the backplane is not started")
        return self._sink

    def health(self) -> dict[str, Any]:
        return {"kind": self.kind, "hub_id": self.hub_id, "prefix": self.keys.prefix,
                "connected": self.connected, "feed_lease": self.lease.held,
                "resyncs": self.resyncs}
