"""The miner's durable outbox: every prediction is written here before it is sent,
and stays ``pending`` until the hub's signed confirmation arrives.

It is what makes submission at-least-once (pending rows are resent after every
reconnect) and what lets an operator prove later what a validator accepted: the
verified receipts are kept next to the predictions. One SQLite file per miner
hotkey and validator hotkey (``":memory:"`` for notebooks and tests).

Confirmed predictions are settled here too when their game's outcome arrives
(:meth:`Outbox.record_outcomes`, Bettensor's rule in :mod:`sdk.settlement`), so the
file also says what each prediction returned.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .codes import ConfirmationStatus
from .settlement import FINAL_OUTCOMES, payout
from .sqlite import MEMORY, GroupCommitDB

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    prediction_id    TEXT PRIMARY KEY,
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
    settled_ns       INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_by_status ON outbox (validator_hotkey, status, created_ns);
CREATE INDEX IF NOT EXISTS outbox_by_game ON outbox (validator_hotkey, game_id);
"""

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

_SS58 = r"[1-9A-HJ-NP-Za-km-z]{40,60}"
_FILE_NAME = re.compile(rf"^(?P<miner>{_SS58})-(?P<validator>{_SS58})\.sqlite3$")


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


def outbox_file_name(miner_hotkey: str, validator_hotkey: str) -> str:
    """The outbox file of one miner and one validator (see :func:`parse_outbox_file_name`)."""
    return f"{miner_hotkey}-{validator_hotkey}.sqlite3"


def parse_outbox_file_name(name: str) -> tuple[str, str] | None:
    """``(miner_hotkey, validator_hotkey)`` of a name made by :func:`outbox_file_name`;
    None for any other file."""
    match = _FILE_NAME.match(name)
    return None if match is None else (match["miner"], match["validator"])


def migrate_outbox(db: sqlite3.Connection) -> None:
    """Add the result columns to an outbox file made before they existed (another
    process may be doing the same: the check and the change share one transaction).
    A current file costs one read, no write lock."""
    if _missing_result_columns(db) == []:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for name, kind in _missing_result_columns(db):
            db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {kind}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _missing_result_columns(db: sqlite3.Connection) -> list[tuple[str, str]]:
    present = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    return [(name, kind) for name, kind in _RESULT_COLUMNS if name not in present]


def default_outbox_path(miner_hotkey: str, validator_hotkey: str) -> Path:
    import platformdirs

    root = Path(platformdirs.user_data_dir("bettensor-ws"))
    return root / "outbox" / outbox_file_name(miner_hotkey, validator_hotkey)


class Outbox:
    """Predictions awaiting (or holding) their validator receipt."""

    def __init__(self, path: str | Path = MEMORY, *, synchronous: str = "FULL") -> None:
        self._db = GroupCommitDB(path, schema=_SCHEMA, synchronous=synchronous,
                                 thread_name="outbox", migrate=migrate_outbox)
        self.path = self._db.path

    async def open(self) -> Outbox:
        await self._db.open()
        return self

    async def close(self) -> None:
        await self._db.close()

    @property
    def closed(self) -> bool:
        return self._db.closed

    async def add(self, *, validator_hotkey: str, miner_hotkey: str, prediction: dict[str, Any],
                  signature: str | None, wager_day: str) -> bool:
        """Store a new pending prediction; False if this prediction_id is already here."""
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
               message: str | None = None,
               receipt: dict[str, Any] | None = None) -> asyncio.Future[None]:
        """Record the hub's answer (a confirmed receipt is never overwritten); the
        future resolves once it is durable."""
        now = time.time_ns()
        receipt_json = json.dumps(receipt) if receipt is not None else None

        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE outbox SET status = ?, code = ?, message = ?,"
                " receipt = COALESCE(?, receipt), updated_ns = ?"
                " WHERE prediction_id = ? AND status NOT IN ('accepted', 'duplicate')",
                (status, code, message, receipt_json, now, prediction_id))

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
        confirmed = ("SELECT prediction_id, game_id, wager, prediction, outcome FROM outbox"
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
            for pid, game_id, wager, prediction_json, known in candidates(db):
                outcome = final.get(game_id)
                if outcome is None or outcome == known:
                    continue
                prediction = json.loads(prediction_json)
                returned = payout(wager, int(prediction["predicted_outcome"]),
                                  float(prediction["predicted_odds"]), outcome)
                db.execute("UPDATE outbox SET outcome = ?, payout = ?, settled_ns = ?"
                           " WHERE prediction_id = ?", (outcome, returned, now, pid))
                settled += 1
            return settled

        return self._db.submit(op)

    async def pending(self, validator_hotkey: str) -> list[OutboxEntry]:
        """Unconfirmed predictions for a validator, oldest first."""
        return await self._select("WHERE validator_hotkey = ? AND status = ?"
                                  " ORDER BY created_ns", (validator_hotkey, PENDING))

    async def get(self, prediction_id: str) -> OutboxEntry | None:
        rows = await self._select("WHERE prediction_id = ?", (prediction_id,))
        return rows[0] if rows else None

    async def entries(self, validator_hotkey: str | None = None) -> list[OutboxEntry]:
        if validator_hotkey is None:
            return await self._select("ORDER BY created_ns", ())
        return await self._select("WHERE validator_hotkey = ? ORDER BY created_ns",
                                  (validator_hotkey,))

    async def wagered(self, validator_hotkey: str, wager_day: str) -> float:
        """Wagers counted (:data:`COUNTED_STATUSES`) with this validator on a hub UTC day."""

        def op(db: sqlite3.Connection) -> float:
            row = db.execute(
                "SELECT COALESCE(SUM(wager), 0) FROM outbox WHERE validator_hotkey = ?"
                f" AND wager_day = ? AND status IN ({_COUNTED_SQL})",
                (validator_hotkey, wager_day)).fetchone()
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
