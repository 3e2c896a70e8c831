"""The Bettensor validator's SQLite file, shared with the live validator process.

Two connections, each on its own thread so the event loop never waits on a lock:
a read-only one for ``game_data`` (the hub never writes it) and a writer for
``predictions`` (:class:`~sdk.sqlite.GroupCommitDB`: short batches, each check and
insert under one ``BEGIN IMMEDIATE`` taken and released on the database thread,
never across an ``await``; a busy lock is waited for and retried, and how long the
hub held it is measured). A prediction is confirmed only after its commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sdk.models import Game, Prediction
from sdk.sqlite import GroupCommitDB, LockHold

from .schema import (
    DAILY_TOTAL_SQL,
    HUB_INDEXES,
    INSERT_PREDICTION_SQL,
    OFFERED_GAMES_SQL,
    game_from_row,
    offered_window,
    prediction_date,
    prediction_row,
)

__all__ = ["DatabaseReplaced", "Existing", "Inserted", "OverLimit", "UnknownGame",
           "ValidatorDatabase"]

log = logging.getLogger("server_stub.bettensor")

_EPSILON = 1e-9


class DatabaseReplaced(sqlite3.OperationalError):
    """The file at the path is no longer the one this connection writes to (the
    validator's state pull replaced it): nothing is written to the orphaned file, and
    no receipt is given for a row the validator would never see; the prediction gets
    an error and is resent by the miner, and lands once the hub is restarted."""


@dataclass(frozen=True, slots=True)
class Inserted:
    """The prediction is now a row of the validator's ``predictions``."""


@dataclass(frozen=True, slots=True)
class Existing:
    """A row with this ``prediction_id`` was there already (from the hub or from the
    validator's own intake): nothing written."""

    miner_uid: int | None
    prediction_date: str | None


@dataclass(frozen=True, slots=True)
class UnknownGame:
    """No ``game_data`` row has this external id (any more)."""


@dataclass(frozen=True, slots=True)
class OverLimit:
    """The UID's rows of that UTC day plus this wager would pass the daily limit."""

    wagered: float


InsertOutcome = Inserted | Existing | UnknownGame | OverLimit


class ValidatorDatabase:
    """``await db.open()``; :meth:`offered_games`, :meth:`insert`, :meth:`find`,
    :meth:`wagered`; ``await db.close()`` (commits what is queued)."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL",
                 busy_timeout_ms: int = 2000, busy_retries: int = 10,
                 max_batch: int = 16, yield_ratio: float = 1.0,
                 indexes: bool = False) -> None:
        """``yield_ratio``: after each batch the hub leaves the write lock free at least
        that multiple of the time it held it (the validator's writers wait in SQLite's
        busy handler, which polls; back-to-back batches would starve them).
        ``indexes``: create :data:`~.schema.HUB_INDEXES` (off by default: the file is
        the validator's)."""
        self.path = Path(path).expanduser()
        self.indexes = indexes
        self._lock_hold = LockHold()
        self._writer_options: dict[str, Any] = dict(
            schema="", synchronous=synchronous, max_batch=max_batch,
            thread_name="bettensor-db", busy_timeout_ms=busy_timeout_ms,
            busy_retries=busy_retries, create=False, yield_ratio=yield_ratio,
            setup=HUB_INDEXES if indexes else "", lock_hold=self._lock_hold)
        self._writer = GroupCommitDB(self.path, **self._writer_options)
        self._writer_identity: tuple[int, int] | None = None
        self._busy_timeout_ms = busy_timeout_ms
        self._reader_thread = ThreadPoolExecutor(max_workers=1,
                                                 thread_name_prefix="bettensor-read")
        self._reader: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self.replaced = False
        """Set when the file at ``path`` is no longer the one opened (the validator's
        state pull replaces it): from then on inserts fail with
        :class:`DatabaseReplaced` instead of writing to the orphaned file, until the hub
        is restarted on the new file."""
        self.skipped_rows = 0

    @property
    def lock_hold(self) -> LockHold:
        """How long the hub held the database's write lock, per batch."""
        return self._lock_hold

    @property
    def commits(self) -> int:
        return self._writer.commits

    async def open(self) -> ValidatorDatabase:
        if not self.path.is_file():
            raise FileNotFoundError(f"no Bettensor validator database at {self.path}")
        # the writer first: a read-only connection cannot create the -shm file a WAL
        # database needs (it is missing after the validator's state pull, for one)
        await self._writer.open()
        self._writer_identity = _identity(self.path)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._reader_thread, self._connect_reader)
        except BaseException:
            await self._writer.close()
            raise
        return self

    def _connect_reader(self) -> None:
        db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                             isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        db.row_factory = sqlite3.Row
        missing = {"game_data", "predictions"} - {
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if missing:
            db.close()
            raise ValueError(f"{self.path} is not a Bettensor validator database: no "
                             f"{' or '.join(sorted(missing))} table")
        self._reader = db
        self._identity = _identity(self.path)

    async def close(self) -> None:
        await self._writer.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._reader_thread, self._disconnect_reader)
        self._reader_thread.shutdown(wait=True)

    def _disconnect_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- games --------------------------------------------------------------------

    async def offered_games(self, now: datetime) -> list[Game]:
        """The games the validator offers miners at ``now`` (start within
        [now - 4 days, now + 8 days]); rows that are not usable games are skipped."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader_thread, self._read_games, now)

    def _read_games(self, now: datetime) -> list[Game]:
        db = self._reader
        if db is None:
            raise sqlite3.ProgrammingError("the validator database is closed")
        self._check_identity()
        games: list[Game] = []
        for row in db.execute(OFFERED_GAMES_SQL, offered_window(now)).fetchall():
            try:
                games.append(game_from_row(row))
            except (ValueError, TypeError, KeyError) as exc:
                self.skipped_rows += 1
                log.warning("game_data row external_id=%r skipped: %s",
                            row["external_id"], str(exc).splitlines()[0])
        return games

    def _check_identity(self) -> None:
        if _identity(self.path) != self._identity:
            self._mark_replaced()

    def _mark_replaced(self) -> None:
        if not self.replaced:
            self.replaced = True
            log.error("the validator database %s was replaced or removed since the hub "
                      "opened it (the validator's state pull does this; run the validator "
                      "with VALIDATOR_PULL_STATE=False): predictions are refused until "
                      "the hub is restarted", self.path)

    # -- predictions --------------------------------------------------------------

    def insert(self, prediction: Prediction, *, miner_uid: int, received_at_ns: int,
               daily_limit: float) -> asyncio.Future[InsertOutcome]:
        """Check and insert in one transaction: an existing ``prediction_id`` is
        :class:`Existing`, a game that is not in ``game_data`` :class:`UnknownGame`, a
        wager past the UID's daily limit (every row of that UTC day, whichever process
        wrote it) :class:`OverLimit`; else the row the validator's own intake would
        write. Resolves after the commit."""
        params = prediction_row(prediction, miner_uid=miner_uid,
                                received_at_ns=received_at_ns)
        day = prediction_date(received_at_ns)[:10]
        pid = prediction.prediction_id
        wager = prediction.wager
        expected = self._writer_identity

        def op(db: sqlite3.Connection) -> InsertOutcome:
            if _identity(self.path) != expected:  # never write to an orphaned file
                self._mark_replaced()
                raise DatabaseReplaced(f"{self.path} was replaced; resend")
            row = db.execute("SELECT miner_uid, prediction_date FROM predictions "
                             "WHERE prediction_id = ?", (pid,)).fetchone()
            if row is not None:
                return Existing(_int_or_none(row[0]), row[1])
            if db.execute("SELECT 1 FROM game_data WHERE external_id = ?",
                          (params[1],)).fetchone() is None:
                return UnknownGame()
            wagered = float(db.execute(DAILY_TOTAL_SQL, (miner_uid, day)).fetchone()[0])
            if wagered + wager > daily_limit + _EPSILON:
                return OverLimit(wagered)
            db.execute(INSERT_PREDICTION_SQL, params)
            return Inserted()

        return self._writer.submit(op)

    def find(self, prediction_id: str) -> asyncio.Future[Existing | None]:
        """The row with this ``prediction_id``, if any (ordered after queued writes)."""

        def op(db: sqlite3.Connection) -> Existing | None:
            row = db.execute("SELECT miner_uid, prediction_date FROM predictions "
                             "WHERE prediction_id = ?", (prediction_id,)).fetchone()
            return None if row is None else Existing(_int_or_none(row[0]), row[1])

        return self._writer.submit(op)

    async def wagered(self, miner_uid: int, day: str) -> float:
        """What the UID has wagered on a UTC day, every path counted (a read: the
        limit itself is enforced by :meth:`insert`, in the writing transaction)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader_thread, self._read_wagered,
                                          miner_uid, day)

    def _read_wagered(self, miner_uid: int, day: str) -> float:
        if self._reader is None:
            raise sqlite3.ProgrammingError("the validator database is closed")
        return float(self._reader.execute(DAILY_TOTAL_SQL, (miner_uid, day)).fetchone()[0])


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file is at ``path`` (device, inode); None when there is none."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
