"""A Bettensor validator's database for tests: the file as its validator creates it,
rows written the way its code writes them, and ``python -m tests.kit.validatordb``:
a separate process that writes to the file as the live validator does (its game
upserts, its own prediction intake), to share the file with a hub under test.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from server_stub.bettensor.schema import VALIDATOR_SCHEMA


def create_validator_db(path: Path) -> Path:
    """An empty validator database, in WAL mode as the running validator keeps it."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(VALIDATOR_SCHEMA)
    finally:
        db.close()
    return path


def pull_state(path: Path, downloaded: Path) -> None:
    """What the validator's state pull does to its file (``state_sync.pull_state``):
    delete the ``-wal`` and ``-shm`` files, then move the downloaded database over."""
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.replace(downloaded, path)


def db_time(moment: datetime, form: str = "space") -> str:
    """A date as the validator stores it: ``space`` (its sqlite adapter, current main)
    or ``T`` (``isoformat()``, older rows)."""
    moment = moment.astimezone(UTC)
    return moment.isoformat(sep=" " if form == "space" else "T")


def upsert_game(db: sqlite3.Connection, external_id: int, *, start: datetime,
                form: str = "space", team_a: str | None = None, team_b: str | None = None,
                team_a_odds: float = 2.1, team_b_odds: float = 3.4,
                tie_odds: float | None = 3.3, sport: str = "soccer", league: str = "EPL",
                outcome: int = 3, active: int = 1, updated: datetime | None = None) -> None:
    """The validator's upsert of one game (``sports_data.insert_or_update_games``)."""
    now = updated or datetime.now(UTC)
    db.execute(
        "INSERT INTO game_data (game_id, external_id, team_a, team_b, team_a_odds, "
        "team_b_odds, tie_odds, can_tie, event_start_date, create_date, last_update_date, "
        "sport, league, outcome, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(external_id) DO UPDATE SET team_a_odds=excluded.team_a_odds, "
        "team_b_odds=excluded.team_b_odds, tie_odds=excluded.tie_odds, "
        "event_start_date=excluded.event_start_date, active=excluded.active, "
        "outcome=excluded.outcome, last_update_date=excluded.last_update_date, "
        "can_tie=excluded.can_tie",
        (str(uuid.uuid4()), external_id, team_a or f"Home {external_id}",
         team_b or f"Away {external_id}", team_a_odds, team_b_odds, tie_odds,
         tie_odds is not None, db_time(start, form), db_time(start - timedelta(days=7), form),
         db_time(now, form), sport, league, outcome, active))


def insert_prediction(db: sqlite3.Connection, *, external_id: int, miner_uid: int,
                      wager: float, prediction_id: str | None = None,
                      received: datetime | None = None, predicted_outcome: int = 0,
                      predicted_odds: float = 2.1) -> str:
    """A prediction as the validator's own intake inserts it (``insert_predictions``)."""
    pid = prediction_id or str(uuid.uuid4())
    db.execute(
        "INSERT INTO predictions (prediction_id, game_id, miner_uid, prediction_date, "
        "predicted_outcome, predicted_odds, team_a, team_b, wager, team_a_odds, team_b_odds, "
        "tie_odds, outcome, model_name, confidence_score) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (pid, external_id, miner_uid, (received or datetime.now(UTC)).isoformat(),
         predicted_outcome, predicted_odds, f"Home {external_id}", f"Away {external_id}",
         wager, 2.1, 3.4, 3.3, 3, None, None))
    return pid


def prediction_rows(path: Path) -> dict[str, dict[str, Any]]:
    """Every row of ``predictions`` by id, as another process reads them."""
    db = sqlite3.connect(path)
    try:
        db.row_factory = sqlite3.Row
        return {row["prediction_id"]: dict(row)
                for row in db.execute("SELECT * FROM predictions")}
    finally:
        db.close()


def score_as_the_validator(path: Path, external_id: int) -> dict[str, list[Any]]:
    """The validator's scoring of one closed game, as its code does it
    (``scoring_data.py``): the game's predictions selected by ``game_id``, each made
    into ``[uid, game, outcome, odds, payout or 0.0, wager]`` with ``int()``/``float()``
    (a row it cannot convert aborts its run), then the unsettled ones (payout NULL)
    settled: ``wager * predicted_odds`` when right, else 0. Returns the converted rows
    after settlement, by ``prediction_id``."""
    db = validator_connection(path)
    db.row_factory = sqlite3.Row
    try:
        outcome = db.execute("SELECT outcome FROM game_data WHERE external_id = ? AND "
                             "outcome IS NOT NULL AND outcome != 'Unfinished' AND "
                             "outcome != 3", (external_id,)).fetchone()
        if outcome is None:
            raise AssertionError(f"game {external_id} is not closed")
        rows = db.execute("SELECT * FROM predictions WHERE game_id IN (?)",
                          (external_id,)).fetchall()
        for pred in rows:
            if pred["payout"] is None:
                won = int(pred["predicted_outcome"]) == int(outcome["outcome"])
                payout = pred["wager"] * float(pred["predicted_odds"]) if won else 0.0
                db.execute("UPDATE predictions SET payout = ?, outcome = ? "
                           "WHERE prediction_id = ?",
                           (payout, outcome["outcome"], pred["prediction_id"]))
        return {pred["prediction_id"]: [
                    int(pred["miner_uid"]), int(pred["game_id"]),
                    int(pred["predicted_outcome"]), float(pred["predicted_odds"]),
                    float(pred["payout"] or 0.0), float(pred["wager"])]
                for pred in db.execute("SELECT * FROM predictions WHERE game_id IN (?)",
                                       (external_id,))}
    finally:
        db.close()


def validator_connection(path: Path) -> sqlite3.Connection:
    """A connection set up as the validator's ``DatabaseManager`` sets up its own:
    autocommit, WAL, synchronous NORMAL, a 30 s busy timeout."""
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA busy_timeout=30000")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def hammer(path: Path, *, seconds: float, games: list[int], miner_uid: int,
           seed: int = 1) -> dict[str, int]:
    """Write to the file as the validator does, one short transaction after another
    (2 ms apart) for ``seconds``:
    odds upserts of ``games`` (batches in one transaction, as its API sync) and
    predictions of ``miner_uid`` through its own intake. Returns what it wrote."""
    rng = random.Random(seed)
    db = validator_connection(path)
    written = {"game_updates": 0, "predictions": 0, "transactions": 0}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        db.execute("BEGIN IMMEDIATE")
        for external_id in rng.sample(games, k=min(len(games), 5)):
            # what its upsert changes when the API moves the odds
            db.execute("UPDATE game_data SET team_a_odds = ?, last_update_date = ? "
                       "WHERE external_id = ?", (round(rng.uniform(1.5, 3.0), 2),
                                                 db_time(datetime.now(UTC)), external_id))
            written["game_updates"] += 1
        insert_prediction(db, external_id=games[0], miner_uid=miner_uid, wager=0.01)
        written["predictions"] += 1
        db.execute("COMMIT")
        written["transactions"] += 1
        time.sleep(0.002)  # the validator does other work between its writes
    db.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kit.validatordb")
    parser.add_argument("path", type=Path)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--games", default="9001")
    parser.add_argument("--miner-uid", type=int, default=999)
    args = parser.parse_args(argv)
    print("READY", flush=True)
    written = hammer(args.path, seconds=args.seconds,
                     games=[int(g) for g in args.games.split(",")], miner_uid=args.miner_uid)
    print(" ".join(f"{k}={v}" for k, v in written.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
