"""The Bettensor validator database a benchmark run shares with the hub.

A fresh file per hub run, made as the validator makes it: its two tables
(``server_stub.bettensor.VALIDATOR_SCHEMA``) plus the trigger its
``database_init.py`` puts on ``predictions``: after EVERY insert it deletes the rows
older than 50 days, a full scan of the table (``prediction_date`` has no index). The
games are the load generator's, as ``game_data`` rows; optional pre-filled rows stand
for the predictions a validator already holds (its 50-day history). Beside it: the
allowlist file mapping the bench miners' hotkeys to UIDs 0..N-1, and
:class:`ValidatorWriter`, the test kit's process that writes to the file as the live
validator does (``python -m tests.kit.validatordb``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from server_stub.bettensor.schema import INSERT_PREDICTION_SQL

_ROOT = str(Path(__file__).resolve().parent.parent)

DELETE_OLD_PREDICTIONS_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS delete_old_predictions
AFTER INSERT ON predictions
BEGIN
    DELETE FROM predictions WHERE prediction_date < date('now', '-50 days');
END
"""
"""The validator's own trigger (Nickel5-Inc/bettensor, ``database_init.py``)."""

WRITER_UID = 999
"""The miner UID of the predictions the validator-writer process inserts (no bench
miner has it, so they never count against a bench miner's daily limit)."""

WRITER_GAMES = range(9001, 9011)
"""``game_data`` rows only the validator-writer process changes (it moves their
``team_a_odds``): the load generator never predicts on them, so its predictions'
odds always match what the hub offers."""


def create(path: Path, games: Sequence[Any], *, trigger: bool = True,
           history_rows: int = 0, history_uids: int = 256) -> Path:
    """A validator database at ``path`` with ``games`` (``sdk.models.Game``, numeric
    ids) and the writer's games in ``game_data``, and ``history_rows`` predictions of
    ``history_uids`` other UIDs spread over the last 45 days (kept by the trigger)."""
    from tests.kit.validatordb import create_validator_db, upsert_game, validator_connection

    create_validator_db(path)
    with contextlib.closing(validator_connection(path)) as db:
        db.execute("BEGIN")
        for game in games:
            upsert_game(db, int(game.game_id), start=game.event_start_date, team_a=game.team_a,
                        team_b=game.team_b, team_a_odds=game.team_a_odds,
                        team_b_odds=game.team_b_odds, tie_odds=game.tie_odds,
                        sport=game.sport, league=game.league)
        start = datetime.now(UTC) + timedelta(days=1)
        for external_id in WRITER_GAMES:
            upsert_game(db, external_id, start=start + timedelta(hours=external_id - 9000))
        db.executemany(INSERT_PREDICTION_SQL, _history(history_rows, history_uids))
        if trigger:
            db.execute(DELETE_OLD_PREDICTIONS_TRIGGER)
        db.execute("COMMIT")
    return path


def _history(rows: int, uids: int) -> list[tuple[object, ...]]:
    rng = random.Random(0)
    now = datetime.now(UTC)
    return [(str(uuid.uuid4()), rng.choice(WRITER_GAMES), 1000 + rng.randrange(uids),
             (now - timedelta(days=rng.uniform(1, 45))).isoformat(), 1, 3.4, "Home", "Away",
             1.0, 2.1, 3.4, 3.3, 3, None, None) for _ in range(rows)]


def write_allowlist(path: Path, hotkeys: Sequence[str]) -> Path:
    """``HOTKEY UID`` lines: the bench miners as UIDs 0..N-1."""
    path.write_text("".join(f"{hotkey} {uid}\n" for uid, hotkey in enumerate(hotkeys)))
    return path


def count_rows(path: Path, *, miner_uid: int | None = None,
               below_uid: int | None = None) -> int:
    """Rows of ``predictions`` (of one UID, or of the UIDs below ``below_uid``)."""
    sql = "SELECT COUNT(*) FROM predictions"
    params: tuple[int, ...] = ()
    if miner_uid is not None:
        sql, params = sql + " WHERE miner_uid = ?", (miner_uid,)
    elif below_uid is not None:
        sql, params = sql + " WHERE miner_uid < ?", (below_uid,)
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro",
                                            uri=True)) as db:
        return int(db.execute(sql, params).fetchone()[0])


class ValidatorWriter:
    """``python -m tests.kit.validatordb PATH`` in its own process: back-to-back short
    transactions (each moves the odds of 5 of :data:`WRITER_GAMES` and inserts one
    prediction of :data:`WRITER_UID` through the validator's intake, 2 ms apart), as
    the live validator writes to the file the hub shares. Stopped with SIGTERM; what
    it wrote is counted from the file."""

    def __init__(self, path: Path, *, max_seconds: float) -> None:
        self.path = path
        self.max_seconds = max_seconds
        self.proc: asyncio.subprocess.Process | None = None
        self.transactions = 0

    async def start(self, timeout: float = 30.0) -> ValidatorWriter:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.kit.validatordb", str(self.path),
            "--seconds", str(self.max_seconds), "--miner-uid", str(WRITER_UID),
            "--games", ",".join(str(g) for g in WRITER_GAMES),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=_ROOT)
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            line = b""
        if line.strip() != b"READY":
            await self.stop()
            raise RuntimeError(f"the validator-writer process did not start: {line!r}")
        return self

    async def written(self) -> int:
        """Its transactions so far (each inserts one row of :data:`WRITER_UID`), read in
        a thread: without the hub's index on ``miner_uid`` the count scans the table."""
        return await asyncio.to_thread(count_rows, self.path, miner_uid=WRITER_UID)

    async def stop(self, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            for action in (proc.terminate, proc.kill):
                with contextlib.suppress(ProcessLookupError):
                    action()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), timeout / 2)
                    break
        self.transactions = count_rows(self.path, miner_uid=WRITER_UID)
