"""The miner's durable outbox: every prediction is written here before it is sent,
and stays ``pending`` until the hub's signed confirmation arrives.

It is what makes submission at-least-once (pending rows are resent after every
reconnect) and what lets an operator prove later what a validator accepted: the
verified receipts are kept next to the predictions.

One file and one writer thread serve every connection of a process: a miner talks to
every validator of its subnet (up to 64), and a SQLite connection plus a thread per
validator cost more than the link itself. Rows are keyed per validator (and miner),
so connections that name the same path share one :class:`Outbox`
(:meth:`Outbox.shared`, reference-counted: the last connection to let go closes the
file). The default file is one per miner hotkey
(:func:`sdk.outbox_files.default_outbox_path`); files of older versions (one per
miner and validator) still open, and a connection adopts the pending rows of the one
next to its miner file (:meth:`Outbox.import_legacy`).
``":memory:"`` is private to whoever opens it (pass one :class:`Outbox` to several
connections to share an in-memory one).

Confirmed predictions are settled here too when their game's outcome arrives
(:meth:`Outbox.record_outcomes`, Bettensor's rule in :mod:`sdk.settlement`), so the
file also says what each prediction returned.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .codes import ConfirmationStatus
from .outbox_files import (
    outbox_file_name,
)
from .settlement import FINAL_OUTCOMES, payout
from .sqlite import MEMORY, DatabaseClosed, GroupCommitDB

log = logging.getLogger("sdk.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    prediction_id    TEXT NOT NULL,
    validator_hotkey TEXT NOT NULL,
    miner_hotkey     TEXT NOT NULL,
    game_id          TEXT NOT NULL,
    wager            REAL NOT NULL,
    wager_day        TEXT NOT NULL,
    prediction       TEXT NOT NULL,
    signature        TEXT,
    status           TEXT NOT NULL DEFAULT 'pending',
    code             TEXT,
    message          TEXT,
    receipt          TEXT,
    created_ns       INTEGER NOT NULL,
    updated_ns       INTEGER NOT NULL,
    outcome          INTEGER,
    payout           REAL,
    settled_ns       INTEGER,
    PRIMARY KEY (validator_hotkey, miner_hotkey, prediction_id)
) WITHOUT ROWID;
"""

_INDEXES = """
CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (validator_hotkey, status, created_ns);
CREATE INDEX IF NOT EXISTS outbox_by_game ON outbox (validator_hotkey, game_id);
CREATE INDEX IF NOT EXISTS outbox_by_id ON outbox (prediction_id);
"""

_KEY = ("validator_hotkey", "miner_hotkey", "prediction_id")
"""The primary key: prediction ids are unique per hub and miner (as the hub keys its
store), so one file can hold every validator's rows. Files made before the shared
outbox are keyed by ``prediction_id`` alone and are rebuilt at open."""

_COLUMNS = ("prediction_id, validator_hotkey, miner_hotkey, game_id, wager, wager_day,"
            " prediction, signature, status, code, message, receipt, created_ns, updated_ns,"
            " outcome, payout, settled_ns")

_RESULT_COLUMNS = (("outcome", "INTEGER"), ("payout", "REAL"), ("settled_ns", "INTEGER"))
"""Columns added after the first release: an older file gets them at open."""

PENDING = "pending"

COUNTED_STATUSES = frozenset({PENDING, ConfirmationStatus.ACCEPTED.value,
                              ConfirmationStatus.DUPLICATE.value})
"""Statuses whose wager counts against the daily limit: pending (it may still be
accepted) and accepted or duplicate (the hub counted it). What the hub counts too."""

_COUNTED_SQL = ", ".join(f"'{status}'" for status in sorted(COUNTED_STATUSES))

CONFIRMED_STATUSES = frozenset({ConfirmationStatus.ACCEPTED.value,
                                ConfirmationStatus.DUPLICATE.value})
"""Statuses of predictions the hub holds (``duplicate``: it already had it): only these
settle when their game ends."""

_CONFIRMED_SQL = ", ".join(f"'{status}'" for status in sorted(CONFIRMED_STATUSES))

@dataclass(frozen=True, slots=True)
class OutboxEntry:
    prediction_id: str
    validator_hotkey: str
    miner_hotkey: str
    game_id: str
    wager: float
    wager_day: str
    prediction: dict[str, Any]
    signature: str | None
    status: str
    code: str | None
    message: str | None
    receipt: dict[str, Any] | None
    created_ns: int
    outcome: int | None = None
    """The game's outcome once settled (0 team_a, 1 team_b, 2 tie); None before."""
    payout: float | None = None
    """What the prediction returned (wager x odds when it won, else 0); None before."""
    settled_ns: int | None = None

    @property
    def settled(self) -> bool:
        return self.outcome is not None


def migrate_outbox(db: sqlite3.Connection) -> None:
    """Bring a file made by an older version up to date: add the result columns, and
    rebuild a table keyed by ``prediction_id`` alone with the per-validator key
    (another process may be doing the same: the check and the change share one
    transaction). A current file costs two reads, no write lock."""
    if not _missing_result_columns(db) and _primary_key(db) == _KEY:
        db.executescript(_INDEXES)
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for name, kind in _missing_result_columns(db):
            db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {kind}")
        if _primary_key(db) != _KEY:
            db.execute("ALTER TABLE outbox RENAME TO outbox_unkeyed")
            db.execute(_SCHEMA.replace("IF NOT EXISTS ", ""))
            db.execute(f"INSERT INTO outbox ({_COLUMNS}) SELECT {_COLUMNS} FROM outbox_unkeyed")
            db.execute("DROP TABLE outbox_unkeyed")
        for statement in _INDEXES.strip().splitlines():
            db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _primary_key(db: sqlite3.Connection) -> tuple[str, ...]:
    keyed = sorted((row[5], row[1]) for row in db.execute("PRAGMA table_info(outbox)")
                   if row[5])
    return tuple(name for _, name in keyed)


def _missing_result_columns(db: sqlite3.Connection) -> list[tuple[str, str]]:
    present = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    return [(name, kind) for name, kind in _RESULT_COLUMNS if name not in present]


_SHARED: dict[tuple[asyncio.AbstractEventLoop, str], Outbox] = {}
"""The open shared outboxes, per event loop and resolved path (see :meth:`Outbox.shared`)."""


class Outbox:
    """Predictions awaiting (or holding) their validator receipt.

    ``Outbox(path)`` then :meth:`open` gives a private one (closed with :meth:`close`);
    :meth:`shared` gives the one every caller naming the same path shares (let go
    with :meth:`release`).
    """

    def __init__(self, path: str | Path = MEMORY, *, synchronous: str = "FULL") -> None:
        self._db = GroupCommitDB(path, schema=_SCHEMA, synchronous=synchronous,
                                 thread_name="outbox", migrate=migrate_outbox)
        self.path = self._db.path
        self._key: tuple[asyncio.AbstractEventLoop, str] | None = None
        self._ready: asyncio.Future[None] | None = None
        self.users = 0
        """How many holders of :meth:`shared` have not released it yet."""

    @classmethod
    async def shared(cls, path: str | Path, *, synchronous: str = "FULL") -> Outbox:
        """The open outbox of ``path`` shared by everyone in this process (and event
        loop) who names it: one file, one SQLite connection, one writer thread, however
        many connections use it. Each call must be paired with :meth:`release`.
        ``":memory:"`` gives a private outbox (an in-memory database has no name to
        share by)."""
        if str(path) == MEMORY:
            private = cls(path, synchronous=synchronous)
            private.users = 1
            return await private.open()
        loop = asyncio.get_running_loop()
        key = (loop, _share_name(path))
        outbox = _SHARED.get(key)
        if outbox is not None and outbox._ready is not None and not outbox.closed:
            outbox.users += 1
            try:
                await asyncio.shield(outbox._ready)  # another caller is opening it
            except BaseException:
                outbox.users -= 1
                raise
            return outbox
        outbox = cls(key[1], synchronous=synchronous)
        outbox._key = key
        outbox._ready = loop.create_future()
        outbox.users = 1
        _SHARED[key] = outbox
        try:
            await outbox.open()
        except BaseException as exc:
            outbox._forget()
            outbox._ready.set_exception(exc if isinstance(exc, Exception)
                                        else DatabaseClosed(f"opening {path} was cancelled"))
            outbox._ready.exception()  # the waiters (if any) get it; never "unretrieved"
            raise
        outbox._ready.set_result(None)
        return outbox

    async def release(self) -> None:
        """Let go of an outbox from :meth:`shared`; the last holder closes it (what is
        queued is committed first)."""
        self.users = max(0, self.users - 1)
        if self.users == 0:
            await self.close()

    async def open(self) -> Outbox:
        await self._db.open()
        return self

    async def close(self) -> None:
        """Commit what is queued and close the file, whoever still holds it."""
        self._forget()
        await self._db.close()

    def _forget(self) -> None:
        if self._key is not None and _SHARED.get(self._key) is self:
            del _SHARED[self._key]

    @property
    def closed(self) -> bool:
        return self._db.closed

    async def import_legacy(self, miner_hotkey: str, validator_hotkey: str) -> int:
        """Adopt the rows of the file an older version kept for this miner and validator
        next to this one (``<miner>-<validator>.sqlite3``), so its pending predictions
        are resent and its receipts stay readable here; the old file is then renamed
        ``*.imported``. Only a miner's own file (:func:`outbox_file_name`) adopts. Returns
        the number of rows copied (0 when there is no such file, or it cannot be read:
        logged, since a connection must start all the same). Rows already here are kept
        as they are."""
        if not isinstance(self.path, Path) or self.path.name != outbox_file_name(miner_hotkey):
            return 0
        legacy = self.path.parent / outbox_file_name(miner_hotkey, validator_hotkey)
        try:
            rows = await asyncio.to_thread(_read_rows, legacy)
            if rows is None:
                return 0

            def op(db: sqlite3.Connection) -> int:
                placeholders = ", ".join("?" * len(_COLUMNS.split(",")))
                before = db.total_changes
                db.executemany(f"INSERT OR IGNORE INTO outbox ({_COLUMNS})"
                               f" VALUES ({placeholders})", rows)
                return db.total_changes - before

            copied = await self._db.submit(op)
            await asyncio.to_thread(_retire, legacy)
        except (sqlite3.Error, OSError) as exc:
            log.warning("could not adopt the older outbox file %s: %s", legacy.name, exc)
            return 0
        if copied:
            log.info("adopted %d predictions from the older outbox file %s", copied,
                     legacy.name)
        return copied

    async def add(self, *, validator_hotkey: str, miner_hotkey: str, prediction: dict[str, Any],
                  signature: str | None, wager_day: str) -> bool:
        """Store a new pending prediction; False if this prediction_id is already here
        for this validator and miner."""
        now = time.time_ns()
        row = (prediction["prediction_id"], validator_hotkey, miner_hotkey,
               prediction["game_id"], float(prediction["wager"]), wager_day,
               json.dumps(prediction), signature, now, now)

        def op(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "INSERT OR IGNORE INTO outbox (prediction_id, validator_hotkey, miner_hotkey,"
                " game_id, wager, wager_day, prediction, signature, created_ns, updated_ns)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            return cursor.rowcount == 1

        return await self._db.submit(op)

    def settle(self, prediction_id: str, status: str, *, code: str | None = None,
               message: str | None = None, receipt: dict[str, Any] | None = None,
               validator_hotkey: str | None = None,
               miner_hotkey: str | None = None) -> asyncio.Future[None]:
        """Record the hub's answer (a confirmed receipt is never overwritten); the
        future resolves once it is durable. ``validator_hotkey`` / ``miner_hotkey``:
        only that validator's (miner's) row of this id (a shared file may hold the
        same id for several)."""
        now = time.time_ns()
        receipt_json = json.dumps(receipt) if receipt is not None else None
        scope, scope_args = _scope(validator_hotkey, miner_hotkey)

        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE outbox SET status = ?, code = ?, message = ?,"
                " receipt = COALESCE(?, receipt), updated_ns = ?"
                " WHERE prediction_id = ? AND status NOT IN ('accepted', 'duplicate')"
                + scope, (status, code, message, receipt_json, now, prediction_id, *scope_args))

        return self._db.submit(op)

    def record_outcomes(self, validator_hotkey: str, outcomes: Mapping[str, int], *,
                        prediction_id: str | None = None) -> asyncio.Future[int]:
        """Settle the confirmed predictions (:data:`CONFIRMED_STATUSES`) made with this
        validator on the games in ``outcomes`` (game_id -> outcome; an unfinished game
        is skipped), or only ``prediction_id`` when given (just confirmed, its game may
        have ended already). Idempotent: a prediction already settled with the same
        outcome is left alone, so the same settled game may arrive any number of times.
        Returns at once; the future resolves, once durable, with the number of
        predictions settled.
        """
        final = {game_id: int(outcome) for game_id, outcome in outcomes.items()
                 if outcome in FINAL_OUTCOMES}
        confirmed = ("SELECT prediction_id, miner_hotkey, game_id, wager, prediction, outcome"
                     " FROM outbox"
                     f" WHERE validator_hotkey = ? AND status IN ({_CONFIRMED_SQL})")

        def candidates(db: sqlite3.Connection) -> list[Any]:
            if prediction_id is not None:
                return db.execute(confirmed + " AND prediction_id = ?",
                                  (validator_hotkey, prediction_id)).fetchall()
            rows: list[Any] = []
            for game_id in final:
                rows += db.execute(confirmed + " AND game_id = ?",
                                   (validator_hotkey, game_id)).fetchall()
            return rows

        def op(db: sqlite3.Connection) -> int:
            now = time.time_ns()
            settled = 0
            for pid, miner, game_id, wager, prediction_json, known in candidates(db):
                outcome = final.get(game_id)
                if outcome is None or outcome == known:
                    continue
                prediction = json.loads(prediction_json)
                returned = payout(wager, int(prediction["predicted_outcome"]),
                                  float(prediction["predicted_odds"]), outcome)
                db.execute("UPDATE outbox SET outcome = ?, payout = ?, settled_ns = ?"
                           " WHERE validator_hotkey = ? AND miner_hotkey = ?"
                           " AND prediction_id = ?",
                           (outcome, returned, now, validator_hotkey, miner, pid))
                settled += 1
            return settled

        return self._db.submit(op)

    async def pending(self, validator_hotkey: str, miner_hotkey: str | None = None
                      ) -> list[OutboxEntry]:
        """Unconfirmed predictions for a validator (made by ``miner_hotkey``, when
        given), oldest first."""
        scope, args = _scope(None, miner_hotkey)
        return await self._select(f"WHERE validator_hotkey = ? AND status = ?{scope}"
                                  " ORDER BY created_ns", (validator_hotkey, PENDING, *args))

    async def get(self, prediction_id: str, validator_hotkey: str | None = None,
                  miner_hotkey: str | None = None) -> OutboxEntry | None:
        """The entry of this id (sent to ``validator_hotkey`` by ``miner_hotkey``, when
        given; otherwise the oldest of that id)."""
        scope, args = _scope(validator_hotkey, miner_hotkey)
        rows = await self._select(f"WHERE prediction_id = ?{scope} ORDER BY created_ns",
                                  (prediction_id, *args))
        return rows[0] if rows else None

    async def entries(self, validator_hotkey: str | None = None,
                      miner_hotkey: str | None = None) -> list[OutboxEntry]:
        """Every entry (of a validator, of a miner, when given), oldest first."""
        scope, args = _scope(validator_hotkey, miner_hotkey)
        return await self._select(f"WHERE 1{scope} ORDER BY created_ns", args)

    async def wagered(self, validator_hotkey: str, wager_day: str,
                      miner_hotkey: str | None = None) -> float:
        """Wagers counted (:data:`COUNTED_STATUSES`) with this validator on a hub UTC day
        (by ``miner_hotkey`` when given: the hub's limit is per miner)."""
        scope, args = _scope(None, miner_hotkey)

        def op(db: sqlite3.Connection) -> float:
            row = db.execute(
                "SELECT COALESCE(SUM(wager), 0) FROM outbox WHERE validator_hotkey = ?"
                f" AND wager_day = ? AND status IN ({_COUNTED_SQL}){scope}",
                (validator_hotkey, wager_day, *args)).fetchone()
            return float(row[0])

        return await self._db.submit(op)

    async def counts(self, validator_hotkey: str | None = None) -> dict[str, int]:
        """Number of predictions by status (rejections by ``rejected:<code>``)."""

        def op(db: sqlite3.Connection) -> dict[str, int]:
            query = ("SELECT status, code, COUNT(*) FROM outbox"
                     + (" WHERE validator_hotkey = ?" if validator_hotkey else "")
                     + " GROUP BY status, code")
            args = (validator_hotkey,) if validator_hotkey else ()
            counts: dict[str, int] = {}
            for status, code, count in db.execute(query, args):
                key = f"rejected:{code}" if status == ConfirmationStatus.REJECTED else status
                counts[key] = counts.get(key, 0) + count
            return counts

        return await self._db.submit(op)

    async def settled_totals(self, validator_hotkey: str, miner_hotkey: str | None = None
                             ) -> tuple[int, float, float]:
        """``(count, stakes, payout)`` of the settled predictions with this validator (by
        ``miner_hotkey`` when given): one SUM in SQLite, so a metrics scrape does not
        read every row of a long-lived outbox."""
        scope, args = _scope(None, miner_hotkey)

        def op(db: sqlite3.Connection) -> tuple[int, float, float]:
            row = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(wager), 0), COALESCE(SUM(payout), 0)"
                " FROM outbox WHERE validator_hotkey = ? AND outcome IS NOT NULL"
                f" AND payout IS NOT NULL{scope}", (validator_hotkey, *args)).fetchone()
            return int(row[0]), float(row[1]), float(row[2])

        return await self._db.submit(op)

    async def _select(self, where: str, args: tuple[Any, ...]) -> list[OutboxEntry]:
        def op(db: sqlite3.Connection) -> list[OutboxEntry]:
            rows = db.execute(
                "SELECT prediction_id, validator_hotkey, miner_hotkey, game_id, wager,"
                " wager_day, prediction, signature, status, code, message, receipt, created_ns,"
                f" outcome, payout, settled_ns FROM outbox {where}", args).fetchall()
            return [OutboxEntry(row[0], row[1], row[2], row[3], row[4], row[5],
                                json.loads(row[6]), row[7], row[8], row[9], row[10],
                                json.loads(row[11]) if row[11] else None, row[12],
                                row[13], row[14], row[15])
                    for row in rows]

        return await self._db.submit(op)


def _share_name(path: str | Path) -> str:
    """The name a shared outbox is known by: its absolute path (no I/O)."""
    return os.path.abspath(os.path.expanduser(path))


def _scope(validator_hotkey: str | None, miner_hotkey: str | None
           ) -> tuple[str, tuple[str, ...]]:
    """The ``AND ...`` clause (and its arguments) that keeps a query to one validator's
    and one miner's rows, for whichever of the two is given."""
    clause, args = "", tuple[str, ...]()
    if validator_hotkey is not None:
        clause, args = " AND validator_hotkey = ?", (validator_hotkey,)
    if miner_hotkey is not None:
        clause, args = clause + " AND miner_hotkey = ?", (*args, miner_hotkey)
    return clause, args


def _read_rows(path: Path) -> list[tuple[Any, ...]] | None:
    """Every row of an outbox file (brought up to date first), read with a connection
    of its own; None when there is no such file."""
    if not path.is_file():
        return None
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=5000")
        migrate_outbox(db)
        return db.execute(f"SELECT {_COLUMNS} FROM outbox").fetchall()
    finally:
        db.close()


def _retire(legacy: Path) -> None:
    """Rename an imported file so it is not imported again, unless another process
    still has it open (its WAL is there): then the next start imports it again (rows
    already here are kept)."""
    if not Path(f"{legacy}-wal").exists():
        legacy.rename(legacy.with_name(legacy.name + ".imported"))
