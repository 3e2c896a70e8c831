"""Durable prediction store: SQLite in WAL mode with group commits
(:class:`sdk.sqlite.GroupCommitDB`): under load many predictions share one fsync
while each caller still learns its own result only after the commit. A
prediction is keyed by (miner_hotkey, prediction_id): inserting it twice keeps
the first row and hands back its receipt, which makes resends idempotent.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sdk.jsontext import compact_json, storage_json
from sdk.models import Game, Prediction
from sdk.sqlite import BatchOperation, DatabaseClosed, GroupCommitDB, Operation
from sdk.validation import Rejection

R = TypeVar("R")

# A rowid table: rows (~1 KiB: prediction and receipt JSON) are appended in order and
# only the small unique index takes random inserts. As a WITHOUT ROWID table keyed by
# (hotkey, id) every insert split wide B-tree pages at random places: twice the CPU per
# group-committed row (bench/README.md). A file made with that layout keeps it and works.
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
    UNIQUE (miner_hotkey, prediction_id)
);
CREATE TABLE IF NOT EXISTS games (
    game_id TEXT PRIMARY KEY,
    game    TEXT NOT NULL
) WITHOUT ROWID;
"""


# What each miner wagered per UTC day, kept by a trigger as rows are inserted, for the
# daily limit. It replaces an index on predictions(miner_hotkey, wager_day): each group
# commit's rows landed on one leaf page of that index per miner, ~40 % of the bytes
# every commit wrote to the WAL (and ~7 us of CPU per prediction). Keyed by day first,
# so a day's totals for every miner sit on a few pages, the same ones all day.
_WAGER_TOTALS = """
CREATE TABLE wager_totals (
    wager_day    TEXT NOT NULL,
    miner_hotkey TEXT NOT NULL,
    total        REAL NOT NULL,
    PRIMARY KEY (wager_day, miner_hotkey)
) WITHOUT ROWID;
INSERT INTO wager_totals
    SELECT wager_day, miner_hotkey, SUM(wager) FROM predictions
    GROUP BY wager_day, miner_hotkey;
CREATE TRIGGER predictions_wager_total AFTER INSERT ON predictions BEGIN
    INSERT OR IGNORE INTO wager_totals VALUES (NEW.wager_day, NEW.miner_hotkey, 0.0);
    UPDATE wager_totals SET total = total + NEW.wager
        WHERE wager_day = NEW.wager_day AND miner_hotkey = NEW.miner_hotkey;
END;
DROP INDEX IF EXISTS predictions_by_day;
"""


def _add_wager_totals(db: sqlite3.Connection) -> None:
    """Give a file without ``wager_totals`` (new, or made by an older version) the table,
    filled from its predictions, and the trigger that keeps it, in one transaction."""
    exists = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                        " AND name = 'wager_totals'").fetchone()
    if exists is not None:
        return
    try:
        db.executescript(f"BEGIN IMMEDIATE;{_WAGER_TOTALS}COMMIT;")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


StoreClosed = DatabaseClosed
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
    parsed: Prediction | None = None
    """The prediction as validated (outcome as 0/1/2), for books that store its fields."""
    miner_uid: int | None = None
    """The miner's UID on the subnet, where the hub knows it."""


@dataclass(frozen=True, slots=True)
class StoreResult:
    """``stored`` is False when the prediction already existed; ``receipt`` is then
    the original one. A book that checks rules of its own at commit time (the
    Bettensor database's daily limit) answers with ``rejection`` instead."""

    stored: bool
    receipt: dict[str, Any] | None
    rejection: Rejection | None = None


class PredictionBook(Protocol):
    """Where accepted predictions are recorded, as the prediction pipeline uses it:
    :class:`PredictionStore` itself, or a book that also writes elsewhere (the
    Bettensor validator's database)."""

    def record(self, record: PredictionRecord) -> asyncio.Future[StoreResult]:
        """Record durably; resolves after the commit. Raises :data:`StoreClosed`."""
        ...

    def receipt(self, miner_hotkey: str, prediction_id: str
                ) -> asyncio.Future[dict[str, Any] | None]:
        """The receipt of a prediction recorded before, or None."""
        ...

    def wagered(self, miner_hotkey: str, day: str) -> asyncio.Future[float]:
        """What counts against the miner's limit on a UTC day (``YYYY-MM-DD``)."""
        ...

    async def close(self) -> None:
        """Finish what is in flight, then stop recording."""
        ...


class HubStore(PredictionBook, Protocol):
    """Everything the hub keeps durably: its predictions (a :class:`PredictionBook`)
    and its game table. :class:`PredictionStore` (one SQLite file, the default) and
    :class:`server_stub.pgstore.PostgresStore` (PostgreSQL, shared by several hubs of
    one validator) are the two."""

    @property
    def commits(self) -> int:
        """Transactions committed so far (health and metrics)."""
        ...

    @property
    def committed_ops(self) -> int:
        """Operations in those transactions (more than ``commits`` when grouped)."""
        ...

    @property
    def queued(self) -> int:
        """Operations waiting to be run."""
        ...

    async def open(self) -> HubStore:
        """Connect and create what is missing of the schema; returns the store."""
        ...

    def save_games(self, games: Iterable[Game]) -> asyncio.Future[None]:
        """Upsert games by id; resolves after the COMMIT (acknowledged means durable)."""
        ...

    def load_games(self) -> asyncio.Future[list[Game]]:
        """Every game saved so far (a hub starting again serves them)."""
        ...

    def health(self) -> dict[str, Any]:
        """The ``store`` section of ``GET /ws/health``: ``engine``, ``commits``..."""
        ...


class PredictionStore:
    """The hub's predictions and games in one SQLite file."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL",
                 max_batch: int = 1024) -> None:
        self._db = GroupCommitDB(path, schema=_SCHEMA, synchronous=synchronous,
                                 max_batch=max_batch, thread_name="hub-store",
                                 migrate=_add_wager_totals)
        self.path = self._db.path

    @property
    def commits(self) -> int:
        return self._db.commits

    @property
    def committed_ops(self) -> int:
        return self._db.committed_ops

    @property
    def queued(self) -> int:
        """Writes and reads waiting for the writer thread."""
        return self._db.queued

    async def open(self) -> PredictionStore:
        await self._db.open()
        return self

    def health(self) -> dict[str, Any]:
        """The ``store`` section of ``GET /ws/health``."""
        return {"engine": "sqlite", "path": str(self.path), "commits": self.commits,
                "queued": self.queued}

    async def close(self) -> None:
        """Commit everything queued, then close the database."""
        await self._db.close()

    def _submit(self, op: Operation[R]) -> asyncio.Future[R]:
        return self._db.submit(op)

    # -- predictions ------------------------------------------------------------

    def record(self, record: PredictionRecord) -> asyncio.Future[StoreResult]:
        """Insert a prediction unless (hotkey, id) exists; resolves after the commit.
        The predictions of one group commit are inserted by one statement."""
        return self._submit(_InsertPrediction(record))

    def receipt(self, miner_hotkey: str, prediction_id: str
                ) -> asyncio.Future[dict[str, Any] | None]:
        """The stored receipt of a prediction, or None (ordered after queued writes)."""
        return self._submit(lambda db: _receipt(db, miner_hotkey, prediction_id))

    def wagered(self, miner_hotkey: str, day: str) -> asyncio.Future[float]:
        """Total wager stored for a miner on a UTC day (``YYYY-MM-DD``)."""

        def op(db: sqlite3.Connection) -> float:
            row = db.execute("SELECT total FROM wager_totals"
                             " WHERE wager_day = ? AND miner_hotkey = ?",
                             (day, miner_hotkey)).fetchone()
            return 0.0 if row is None else float(row[0])

        return self._submit(op)

    def count(self, miner_hotkey: str | None = None) -> asyncio.Future[int]:
        def op(db: sqlite3.Connection) -> int:
            if miner_hotkey is None:
                return int(db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])
            return int(db.execute("SELECT COUNT(*) FROM predictions WHERE miner_hotkey = ?",
                                  (miner_hotkey,)).fetchone()[0])

        return self._submit(op)

    # -- games -----------------------------------------------------------------

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


_ROWS_PER_STATEMENT = 256  # 9 parameters a row; SQLite allows 32766 in a statement
_RETURNING = sqlite3.sqlite_version_info >= (3, 35)  # INSERT ... RETURNING


@functools.lru_cache(maxsize=_ROWS_PER_STATEMENT)
def _insert_rows(count: int) -> str:
    """One ``INSERT OR IGNORE`` of ``count`` rows that returns the keys it inserted
    (an ignored row returns nothing), so each prediction of a group commit learns
    whether it was stored without a statement of its own."""
    rows = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * count)
    return (f"INSERT OR IGNORE INTO predictions VALUES {rows}"
            " RETURNING miner_hotkey, prediction_id")


class _InsertPrediction(BatchOperation[StoreResult]):
    """``INSERT OR IGNORE`` of one prediction, its row prepared on the event loop."""

    __slots__ = ("prediction", "receipt", "row")

    def __init__(self, record: PredictionRecord) -> None:
        self.receipt = record.receipt
        self.prediction = record.prediction
        try:
            prediction_json: str | None = storage_json(record.prediction)
        except RecursionError:
            # nested too deep to encode this far down the loop's stack: the database
            # thread encodes it (a fresh stack), as it encoded every row before
            prediction_json = None
        self.row = (record.miner_hotkey, record.prediction_id, record.game_id, record.wager,
                    record.wager_day, record.received_at_ns, prediction_json,
                    record.signature, compact_json(record.receipt))

    def _full_row(self) -> tuple[Any, ...]:
        if self.row[6] is not None:
            return self.row
        return (*self.row[:6], json.dumps(self.prediction), *self.row[7:])

    @classmethod
    def run_many(cls, db: sqlite3.Connection,
                 ops: Sequence[_InsertPrediction]) -> list[StoreResult]:
        if not _RETURNING:
            return [op._insert_one(db) for op in ops]
        inserted: set[tuple[str, str]] = set()
        for start in range(0, len(ops), _ROWS_PER_STATEMENT):
            chunk = ops[start:start + _ROWS_PER_STATEMENT]
            params = [value for op in chunk for value in op._full_row()]
            inserted.update(db.execute(_insert_rows(len(chunk)), params).fetchall())
        if len(inserted) == len(ops):
            return [StoreResult(True, op.receipt) for op in ops]
        results = []
        for op in ops:  # some existed already, or one key came twice in this batch
            key = (op.row[0], op.row[1])
            if key in inserted:
                inserted.discard(key)  # the first op of a key is the row VALUES inserted
                results.append(StoreResult(True, op.receipt))
            else:
                results.append(StoreResult(False, op._stored_receipt(db)))
        return results

    def _insert_one(self, db: sqlite3.Connection) -> StoreResult:
        """For SQLite before 3.35 (no RETURNING): one statement, its row count."""
        cursor = db.execute(
            "INSERT OR IGNORE INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self._full_row())
        if cursor.rowcount == 1:
            return StoreResult(True, self.receipt)
        return StoreResult(False, self._stored_receipt(db))

    def _stored_receipt(self, db: sqlite3.Connection) -> dict[str, Any]:
        original = _receipt(db, self.row[0], self.row[1])
        if original is None:  # the row that ignored the insert has no receipt
            raise sqlite3.IntegrityError(f"prediction {self.row[1]} exists without a receipt")
        return original


def _receipt(db: sqlite3.Connection, miner_hotkey: str, prediction_id: str
             ) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT receipt FROM predictions WHERE miner_hotkey = ? AND prediction_id = ?",
        (miner_hotkey, prediction_id)).fetchone()
    return None if row is None else json.loads(row[0])
