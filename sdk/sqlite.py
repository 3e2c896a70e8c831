"""A SQLite database driven from asyncio with group commits.

One dedicated thread owns the connection; one writer task takes every operation
queued since the last commit and runs them in order inside one transaction (replayed
with a savepoint per operation only if one of them fails, so the others still
commit). Callers get a future that resolves only after the commit, so durability is
per operation while the fsync is shared. Used by the hub's prediction store, the
miner's outbox and the hub's writer into a Bettensor validator's database.

The write lock is taken (``BEGIN IMMEDIATE``) and released (``COMMIT``) inside one
call on the database thread, never across an ``await``; how long each batch held it
is measured (:attr:`GroupCommitDB.lock_hold`), because a database shared with another
process must not be blocked for long. A lock that stays busy past ``busy_timeout_ms``
is retried (``busy_retries`` times, with a growing pause) before the batch fails.

An operation that is a :class:`BatchOperation` runs together with the operations of
its class queued right after it (:meth:`BatchOperation.run_many`: e.g. one statement
for a group commit of inserts instead of one Python call and one ``execute`` each, all
of which need the GIL the event loop wants too).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

R = TypeVar("R")
Operation = Callable[[sqlite3.Connection], R]

MEMORY = ":memory:"


class BatchOperation(Generic[R]):
    """An operation run with its neighbours of the same class in one call.

    Subclasses implement :meth:`run_many`: the results of ``ops`` in order, on the
    database thread, inside the batch's transaction. Called alone (the savepoint replay
    of a failed batch) it runs as a batch of one, so a failing one fails alone."""

    __slots__ = ()

    def __call__(self, db: sqlite3.Connection) -> R:
        return type(self).run_many(db, [self])[0]

    @classmethod
    def run_many(cls, db: sqlite3.Connection, ops: Sequence[Any]) -> list[R]:
        raise NotImplementedError


class DatabaseClosed(RuntimeError):
    """The database is closed; nothing more can be written."""


@dataclass
class LockHold:
    """How long the write lock was held, per committed batch (seconds)."""

    batches: int = 0
    total_s: float = 0.0
    longest_s: float = 0.0
    busy_retries: int = 0

    last_s: float = 0.0

    def add(self, held_s: float) -> None:
        self.last_s = held_s
        self.batches += 1
        self.total_s += held_s
        self.longest_s = max(self.longest_s, held_s)

    @property
    def mean_s(self) -> float:
        return self.total_s / self.batches if self.batches else 0.0


def is_busy(exc: sqlite3.Error) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock."""
    return isinstance(exc, sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc))


class GroupCommitDB:
    """``await db.open()``, then ``db.submit(op)`` futures, then ``await db.close()``."""

    def __init__(self, path: str | Path, *, schema: str, synchronous: str = "FULL",
                 max_batch: int = 1024, thread_name: str = "sqlite",
                 busy_timeout_ms: int = 5000, busy_retries: int = 0,
                 set_wal: bool = True, create: bool = True, yield_ratio: float = 0.0,
                 setup: str = "",
                 migrate: Callable[[sqlite3.Connection], None] | None = None,
                 lock_hold: LockHold | None = None) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        self.path = path if str(path) == MEMORY else Path(path).expanduser()
        self.schema = schema
        self.synchronous = synchronous.upper()
        self.max_batch = max_batch
        self.busy_timeout_ms = busy_timeout_ms
        self.busy_retries = busy_retries
        self.set_wal = set_wal
        self.create = create
        self.yield_ratio = yield_ratio
        """After each batch, leave the lock free for this multiple of the time it was
        held (at most 0.25 s), so another process's writers get their turn."""
        self.setup = setup
        """SQL run once at open, after the schema (e.g. indexes on a shared file)."""
        self.migrate = migrate
        """Run once at open, after the schema and before ``setup``: brings a file made
        by an older version up to the current schema (e.g. adds missing columns)."""
        self.lock_hold = lock_hold if lock_hold is not None else LockHold()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._db: sqlite3.Connection | None = None
        self._queue: asyncio.Queue[tuple[Operation[Any], asyncio.Future[Any]] | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.commits = 0
        self.committed_ops = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queued(self) -> int:
        """Operations waiting for the writer (not yet in a batch)."""
        return self._queue.qsize() if self._queue is not None else 0

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._connect)
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name=f"{self.path}-writer")

    def _connect(self) -> None:
        if isinstance(self.path, Path):
            if not self.create and not self.path.is_file():
                raise FileNotFoundError(f"no SQLite database at {self.path}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(self.path), isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            if isinstance(self.path, Path) and self.set_wal:
                db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            if self.schema:
                db.executescript(self.schema)
            if self.migrate is not None:
                self.migrate(db)
            if self.setup:
                db.executescript(self.setup)
        except BaseException:
            db.close()
            raise
        self._db = db

    async def close(self) -> None:
        """Commit everything queued, then close the database."""
        if self._closed:
            return
        self._closed = True
        if self._queue is not None and self._writer is not None:
            self._queue.put_nowait(None)
            await asyncio.shield(self._writer)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def submit(self, op: Operation[R]) -> asyncio.Future[R]:
        """Queue ``op(connection)``; the future resolves after its transaction commits."""
        if self._closed or self._queue is None:
            raise DatabaseClosed(f"database {self.path} is closed")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        return future

    async def _write_loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            item = await self._queue.get()
            batch: list[tuple[Operation[Any], asyncio.Future[Any]]] = []
            if item is None:
                stop = True
            else:
                batch.append(item)
            while len(batch) < self.max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    continue
                batch.append(item)
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch,
                                                     [op for op, _ in batch])
            except Exception as exc:  # noqa: BLE001 - rolled back; each caller gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), (ok, value) in zip(batch, results, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            if self.yield_ratio > 0 and not stop:
                await asyncio.sleep(min(self.lock_hold.last_s * self.yield_ratio, 0.25))

    def _run_batch(self, ops: list[Operation[Any]]) -> list[tuple[bool, Any]]:
        """All ops in one transaction. The common case (no op fails) costs one
        statement per op; if one fails, the batch is rolled back and replayed with a
        savepoint per op, so only the failing op reports an error."""
        db = self._db
        assert db is not None
        locked_at = self._begin(db)
        try:
            results = _run_grouped(db, ops)
        except (sqlite3.Error, ValueError, TypeError):
            db.execute("ROLLBACK")
            self.lock_hold.add(time.perf_counter() - locked_at)
            results = self._run_isolated(db, ops)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        else:
            self._commit(db, locked_at)
        self.commits += 1
        self.committed_ops += len(ops)
        return results

    def _run_isolated(self, db: sqlite3.Connection, ops: list[Operation[Any]]
                      ) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        locked_at = self._begin(db)
        try:
            for op in ops:
                db.execute("SAVEPOINT op")
                try:
                    results.append((True, op(db)))
                    db.execute("RELEASE op")
                except (sqlite3.Error, ValueError, TypeError) as exc:
                    db.execute("ROLLBACK TO op")
                    db.execute("RELEASE op")
                    results.append((False, exc))
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._commit(db, locked_at)
        return results

    def _begin(self, db: sqlite3.Connection) -> float:
        """Take the write lock (waiting up to busy_timeout, then retrying); returns
        when it was taken."""
        for attempt in range(self.busy_retries + 1):
            try:
                db.execute("BEGIN IMMEDIATE")
                return time.perf_counter()
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or attempt == self.busy_retries:
                    raise
                self.lock_hold.busy_retries += 1
                time.sleep(min(0.05 * 2 ** attempt, 1.0))  # on the database thread
        raise AssertionError("unreachable")  # pragma: no cover

    def _commit(self, db: sqlite3.Connection, locked_at: float) -> None:
        """Commit (retrying a busy COMMIT: the transaction stays open), then record
        how long the lock was held; on failure roll back and raise."""
        try:
            for attempt in range(self.busy_retries + 1):
                try:
                    db.execute("COMMIT")
                    break
                except sqlite3.OperationalError as exc:
                    if not is_busy(exc) or attempt == self.busy_retries:
                        raise
                    self.lock_hold.busy_retries += 1
                    time.sleep(min(0.05 * 2 ** attempt, 1.0))
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            self.lock_hold.add(time.perf_counter() - locked_at)


def _run_grouped(db: sqlite3.Connection, ops: list[Operation[Any]]) -> list[tuple[bool, Any]]:
    """Every op's result in order; consecutive :class:`BatchOperation` s of one class
    run in one :meth:`~BatchOperation.run_many`."""
    results: list[tuple[bool, Any]] = []
    start, count = 0, len(ops)
    while start < count:
        kind = type(ops[start])
        if not issubclass(kind, BatchOperation):
            results.append((True, ops[start](db)))
            start += 1
            continue
        end = start + 1
        while end < count and type(ops[end]) is kind:
            end += 1
        group = ops[start:end]
        values = kind.run_many(db, group)
        if len(values) != len(group):
            raise RuntimeError(f"{kind.__name__}.run_many returned {len(values)} results "
                               f"for {len(group)} operations")
        results.extend((True, value) for value in values)
        start = end
    return results
