"""A SQLite database driven from asyncio with group commits.

One dedicated thread owns the connection; one writer task takes every operation
queued since the last commit and runs them in order inside one transaction (replayed
with a savepoint per operation only if one of them fails, so the others still
commit). Callers get a future that resolves only after the commit, so durability is
per operation while the fsync is shared. Used by the hub's
prediction store and the miner's outbox.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

R = TypeVar("R")
Operation = Callable[[sqlite3.Connection], R]

MEMORY = ":memory:"


class DatabaseClosed(RuntimeError):
    """The database is closed; nothing more can be written."""


class GroupCommitDB:
    """``await db.open()``, then ``db.submit(op)`` futures, then ``await db.close()``."""

    def __init__(self, path: str | Path, *, schema: str, synchronous: str = "FULL",
                 max_batch: int = 1024, thread_name: str = "sqlite") -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        self.path = path if str(path) == MEMORY else Path(path).expanduser()
        self.schema = schema
        self.synchronous = synchronous.upper()
        self.max_batch = max_batch
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

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._connect)
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name=f"{self.path}-writer")

    def _connect(self) -> None:
        if isinstance(self.path, Path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(self.path), isolation_level=None)
        if isinstance(self.path, Path):
            db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(self.schema)
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

    def _run_batch(self, ops: list[Operation[Any]]) -> list[tuple[bool, Any]]:
        """All ops in one transaction. The common case (no op fails) costs one
        statement per op; if one fails, the batch is rolled back and replayed with a
        savepoint per op, so only the failing op reports an error."""
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            results: list[tuple[bool, Any]] = [(True, op(db)) for op in ops]
        except (sqlite3.Error, ValueError, TypeError):
            db.execute("ROLLBACK")
            results = self._run_isolated(db, ops)
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        else:
            try:
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        self.commits += 1
        self.committed_ops += len(ops)
        return results

    @staticmethod
    def _run_isolated(db: sqlite3.Connection, ops: list[Operation[Any]]
                      ) -> list[tuple[bool, Any]]:
        results: list[tuple[bool, Any]] = []
        db.execute("BEGIN IMMEDIATE")
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
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return results
