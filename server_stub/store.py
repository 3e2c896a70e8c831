"""Durable prediction store: SQLite in WAL mode with group commits.

All database work runs on one dedicated thread, fed by one writer task. The
writer takes every operation queued since its last commit and runs them, in
order, inside one transaction, so under load many predictions share one fsync
while each caller still learns its own result only after the commit. A
prediction is keyed by (miner_hotkey, prediction_id): inserting it twice keeps
the first row and hands back its receipt, which makes resends idempotent.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdk.models import Game

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    miner_hotkey   TEXT NOT NULL,
    prediction_id  TEXT NOT NULL,
    game_id        TEXT NOT NULL,
    wager          REAL NOT NULL,
    wager_day      TEXT NOT NULL,
    received_at_ns INTEGER NOT NULL,
    prediction     TEXT NOT NULL,
    signature      TEXT,
    receipt        TEXT NOT NULL,
    PRIMARY KEY (miner_hotkey, prediction_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS predictions_by_day ON predictions (miner_hotkey, wager_day);
CREATE TABLE IF NOT EXISTS games (
    game_id TEXT PRIMARY KEY,
    game    TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""


class StoreClosed(RuntimeError):
    """The store is closed; nothing more can be written."""


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """An accepted prediction with the receipt that will be sent once it is durable."""

    miner_hotkey: str
    prediction_id: str
    game_id: str
    wager: float
    wager_day: str
    received_at_ns: int
    prediction: dict[str, Any]
    signature: str | None
    receipt: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoreResult:
    """``stored`` is False when the prediction already existed; ``receipt`` is then
    the original one."""

    stored: bool
    receipt: dict[str, Any]


_Op = Callable[[sqlite3.Connection], Any]


class PredictionStore:
    """SQLite-backed store with one writer thread and group commits."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL",
                 max_batch: int = 1024) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.max_batch = max_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._db: sqlite3.Connection | None = None
        self._queue: asyncio.Queue[tuple[_Op, asyncio.Future[Any]] | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self.commits = 0
        self.committed_ops = 0
        self._thread_ident: int | None = None

    async def open(self) -> PredictionStore:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._connect)
        self._queue = asyncio.Queue()
        self._writer = asyncio.create_task(self._write_loop(), name="store-writer")
        return self

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(_SCHEMA)
        self._db = db
        self._thread_ident = threading.get_ident()

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

    # -- the writer -------------------------------------------------------------

    def _submit(self, op: _Op) -> asyncio.Future[Any]:
        if self._closed or self._queue is None:
            raise StoreClosed("the prediction store is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        return future

    async def _write_loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            item = await self._queue.get()
            batch: list[tuple[_Op, asyncio.Future[Any]]] = []
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
            except Exception as exc:  # the whole transaction rolled back
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

    def _run_batch(self, ops: list[_Op]) -> list[tuple[bool, Any]]:
        db = self._db
        assert db is not None
        results: list[tuple[bool, Any]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                db.execute("SAVEPOINT op")
                try:
                    results.append((True, op(db)))
                    db.execute("RELEASE op")
                except sqlite3.Error as exc:
                    db.execute("ROLLBACK TO op")
                    db.execute("RELEASE op")
                    results.append((False, exc))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.commits += 1
        self.committed_ops += len(ops)
        return results

    # -- predictions ------------------------------------------------------------

    def record(self, record: PredictionRecord) -> asyncio.Future[StoreResult]:
        """Insert a prediction unless (hotkey, id) exists; resolves after the commit."""

        def op(db: sqlite3.Connection) -> StoreResult:
            cursor = db.execute(
                "INSERT OR IGNORE INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.miner_hotkey, record.prediction_id, record.game_id, record.wager,
                 record.wager_day, record.received_at_ns, json.dumps(record.prediction),
                 record.signature, json.dumps(record.receipt)),
            )
            if cursor.rowcount == 1:
                return StoreResult(True, record.receipt)
            return StoreResult(False, _receipt(db, record.miner_hotkey, record.prediction_id))

        return self._submit(op)

    def receipt(self, miner_hotkey: str, prediction_id: str) -> asyncio.Future[dict | None]:
        """The stored receipt of a prediction, or None (ordered after queued writes)."""
        return self._submit(lambda db: _receipt(db, miner_hotkey, prediction_id))

    def wagered(self, miner_hotkey: str, day: str) -> asyncio.Future[float]:
        """Total wager stored for a miner on a UTC day (``YYYY-MM-DD``)."""

        def op(db: sqlite3.Connection) -> float:
            row = db.execute(
                "SELECT COALESCE(SUM(wager), 0) FROM predictions"
                " WHERE miner_hotkey = ? AND wager_day = ?", (miner_hotkey, day)).fetchone()
            return float(row[0])

        return self._submit(op)

    def count(self, miner_hotkey: str | None = None) -> asyncio.Future[int]:
        def op(db: sqlite3.Connection) -> int:
            if miner_hotkey is None:
                return int(db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])
            return int(db.execute("SELECT COUNT(*) FROM predictions WHERE miner_hotkey = ?",
                                  (miner_hotkey,)).fetchone()[0])

        return self._submit(op)

    # -- games and meta -----------------------------------------------------------

    def save_games(self, games: Iterable[Game]) -> asyncio.Future[None]:
        rows = [(game.game_id, game.model_dump_json()) for game in games]

        def op(db: sqlite3.Connection) -> None:
            db.executemany("INSERT OR REPLACE INTO games VALUES (?, ?)", rows)

        return self._submit(op)

    def load_games(self) -> asyncio.Future[list[Game]]:
        def op(db: sqlite3.Connection) -> list[Game]:
            rows = db.execute("SELECT game FROM games").fetchall()
            return [Game.model_validate_json(row[0]) for row in rows]

        return self._submit(op)

    def get_meta(self, key: str) -> asyncio.Future[str | None]:
        def op(db: sqlite3.Connection) -> str | None:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return self._submit(op)

    def set_meta(self, key: str, value: str) -> asyncio.Future[None]:
        def op(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

        return self._submit(op)


def _receipt(db: sqlite3.Connection, miner_hotkey: str, prediction_id: str) -> dict | None:
    row = db.execute(
        "SELECT receipt FROM predictions WHERE miner_hotkey = ? AND prediction_id = ?",
        (miner_hotkey, prediction_id)).fetchone()
    return None if row is None else json.loads(row[0])
