"""The pieces of the Bettensor mode without a hub: date forms, row mapping, UIDs in
the registries, the validator database's reads, and the busy-lock retry of the
group-commit driver (real SQLite files)."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sdk.models import Outcome, Prediction
from sdk.sqlite import GroupCommitDB
from server_stub.bettensor import ValidatorDatabase, game_from_row, parse_db_time
from server_stub.bettensor.database import DatabaseReplaced, Inserted
from server_stub.bettensor.schema import DAILY_TOTAL_SQL, prediction_date, received_at_ns_of
from server_stub.registry import (
    AllowListRegistry,
    Decision,
    MetagraphRegistry,
    RequireUid,
    read_allowlist,
)

from .kit.keys import miner_key
from .kit.validatordb import (
    create_validator_db,
    prediction_rows,
    pull_state,
    upsert_game,
    validator_connection,
)

BOB, CHARLIE = miner_key("Bob").ss58_address, miner_key("Charlie").ss58_address
SIX_PM = datetime(2025, 1, 5, 18, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-01-05 18:00:00+00:00", SIX_PM),
    ("2025-01-05 18:00:00.123456+00:00", SIX_PM + timedelta(microseconds=123456)),
    ("2025-01-05T18:00:00+00:00", SIX_PM),
    ("2025-01-05T18:00:00Z", SIX_PM),
    ("2025-01-05 18:00:00", SIX_PM),  # no offset: UTC
    ("2025-01-05T20:00:00+02:00", SIX_PM),
    (None, None),
], ids=["space", "space-micro", "T", "Z", "naive", "offset", "null"])
def test_both_date_forms_parse(text: str | None, expected: datetime | None) -> None:
    assert parse_db_time(text) == expected


def test_a_date_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="Invalid isoformat string"):
        parse_db_time("next tuesday")


def row(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "external_id": 42, "team_a": "A", "team_b": "B", "team_a_odds": 2.0,
        "team_b_odds": 3.0, "tie_odds": None, "can_tie": None,
        "event_start_date": "2025-01-05 18:00:00+00:00", "create_date": None,
        "last_update_date": "2025-01-04T10:00:00+00:00", "sport": "soccer",
        "league": "EPL", "outcome": 3, "active": None}
    values.update(overrides)
    return values


def test_a_row_becomes_a_game() -> None:
    game = game_from_row(row())
    assert game.game_id == "42"
    assert game.event_start_date == SIX_PM
    assert game.tie_odds is None
    assert game.can_tie is False  # NULL can_tie follows the tie market
    assert game.active is True  # NULL active: the validator never reads it
    assert game.last_update_date == datetime(2025, 1, 4, 10, tzinfo=UTC)
    assert game_from_row(row(tie_odds=3.1, can_tie=1)).can_tie is True


@pytest.mark.parametrize(("stored", "outcome"), [
    (0, Outcome.TEAM_A), (1, Outcome.TEAM_B), (2, Outcome.TIE), (3, Outcome.UNFINISHED),
    (None, Outcome.UNFINISHED), ("2", Outcome.TIE), ("TeamAWin", Outcome.TEAM_A),
    ("Draw", Outcome.TIE), ("Unfinished", Outcome.UNFINISHED)])
def test_outcomes_as_stored(stored: object, outcome: Outcome) -> None:
    assert game_from_row(row(outcome=stored)).outcome is outcome


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"external_id": None}, "external_id is NULL"),
    ({"event_start_date": None}, "event_start_date is NULL"),
    ({"team_a": None}, "team_a"),
    ({"team_b_odds": None}, "team_b_odds"),
    ({"outcome": 7}, "outcome 7"),
])
def test_rows_that_are_not_games_are_refused(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        game_from_row(row(**overrides))


@pytest.mark.parametrize("ns", [1_736_100_000_000_000_000, 1_736_100_000_123_456_789])
def test_prediction_date_is_the_validators_form(ns: int) -> None:
    text = prediction_date(ns)
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
    assert text == moment.isoformat()  # datetime.now(timezone.utc).isoformat()
    assert received_at_ns_of(text) == ns // 1000 * 1000


# -- UIDs --------------------------------------------------------------------------------


def test_allowlist_lines_may_carry_uids(tmp_path: Path) -> None:
    path = tmp_path / "allow.txt"
    path.write_text(f"# miners\n{BOB} 7  # bob\n{CHARLIE}\n")
    assert read_allowlist(path) == {BOB: 7, CHARLIE: None}
    registry = RequireUid(AllowListRegistry(read_allowlist(path)))
    assert registry.check(BOB) is Decision.ALLOWED
    assert registry.uid(BOB) == 7
    assert registry.check(CHARLIE) is Decision.NOT_REGISTERED  # listed, but no UID
    assert registry.check("5Else") is Decision.NOT_REGISTERED


@pytest.mark.parametrize("line", ["HOTKEY seven", "HOTKEY 7 extra", "HOTKEY -1"])
def test_a_bad_allowlist_line_is_named(tmp_path: Path, line: str) -> None:
    path = tmp_path / "allow.txt"
    path.write_text(f"{BOB} 1\n{line}\n")
    with pytest.raises(ValueError, match=f"line 2: expected 'HOTKEY' or 'HOTKEY UID', "
                                         f"got '{line}'"):
        read_allowlist(path)


async def test_the_metagraph_registry_follows_uids_across_refreshes() -> None:
    chain = {BOB: 3, CHARLIE: 4}

    async def fetch() -> dict[str, int | None]:
        return dict(chain)

    registry = MetagraphRegistry(fetch)
    await registry.refresh()
    assert (registry.uid(BOB), registry.uid(CHARLIE)) == (3, 4)
    chain[BOB] = 9  # deregistered and registered again under another UID
    del chain[CHARLIE]
    assert await registry.refresh() == {CHARLIE}
    assert (registry.uid(BOB), registry.uid(CHARLIE)) == (9, None)


# -- the validator's file ---------------------------------------------------------------


async def test_unusable_game_rows_are_skipped_not_fatal(tmp_path: Path) -> None:
    path = create_validator_db(tmp_path / "validator.db")
    now = datetime.now(UTC)
    with validator_connection(path) as db:
        upsert_game(db, 1, start=now + timedelta(days=1))
        upsert_game(db, 2, start=now + timedelta(days=1))
        db.execute("UPDATE game_data SET team_a = NULL WHERE external_id = 2")
    db = await ValidatorDatabase(path).open()
    try:
        games = await db.offered_games(now)
        assert [game.game_id for game in games] == ["1"]
        assert db.skipped_rows == 1
    finally:
        await db.close()


async def test_a_replaced_file_is_noticed(tmp_path: Path) -> None:
    path = create_validator_db(tmp_path / "validator.db")
    db = await ValidatorDatabase(path).open()
    try:
        assert db.replaced is False
        pull_state(path, create_validator_db(tmp_path / "pulled.db"))
        await db.offered_games(datetime.now(UTC))
        assert db.replaced is True
    finally:
        await db.close()


async def test_nothing_is_written_to_a_replaced_file(tmp_path: Path) -> None:
    """The validator's state pull deletes the -wal/-shm files and moves a downloaded
    database over the file: the hub must not give a receipt for a row in the orphan."""
    path = create_validator_db(tmp_path / "validator.db")
    start = datetime.now(UTC) + timedelta(days=1)
    with validator_connection(path) as conn:
        upsert_game(conn, 5, start=start)
    db = await ValidatorDatabase(path).open()
    try:
        first = _prediction("5")
        assert isinstance(await db.insert(first, miner_uid=1, received_at_ns=1,
                                          daily_limit=1000), Inserted)
        pulled = create_validator_db(tmp_path / "pulled.db")
        conn = validator_connection(pulled)
        upsert_game(conn, 5, start=start)
        conn.close()  # the download is a finished file
        pull_state(path, pulled)
        second = _prediction("5")
        with pytest.raises(DatabaseReplaced, match="was replaced; resend"):
            await db.insert(second, miner_uid=1, received_at_ns=2, daily_limit=1000)
        assert db.replaced is True
    finally:
        await db.close()
    assert prediction_rows(path) == {}
    restarted = await ValidatorDatabase(path).open()  # the hub restarted on the new file
    try:
        assert isinstance(await restarted.insert(second, miner_uid=1, received_at_ns=3,
                                                 daily_limit=1000), Inserted)
        assert set(prediction_rows(path)) == {second.prediction_id}
    finally:
        await restarted.close()


def _prediction(game_id: str) -> Prediction:
    return Prediction(game_id=game_id, predicted_outcome=0, predicted_odds=2.1, team_a=
                      f"Home {game_id}", team_b=f"Away {game_id}", wager=1.0,
                      team_a_odds=2.1, team_b_odds=3.4, tie_odds=3.3)


@pytest.mark.parametrize("name", ["missing.db", "plain.db"])
async def test_only_a_validator_database_opens(tmp_path: Path, name: str) -> None:
    if name == "plain.db":
        with sqlite3.connect(tmp_path / name) as plain:
            plain.execute("CREATE TABLE other (x)")
    reason = "no Bettensor validator database" if name == "missing.db" else \
        "is not a Bettensor validator database: no game_data or predictions table"
    with pytest.raises((FileNotFoundError, ValueError), match=reason):
        await ValidatorDatabase(tmp_path / name).open()


# -- the write lock ------------------------------------------------------------------------


@pytest.mark.parametrize("retries", [0, 20])
async def test_a_busy_lock_is_retried_then_taken(tmp_path: Path, retries: int) -> None:
    """Another process holds the write lock longer than the busy timeout: without
    retries the batch fails with 'locked' (and the caller can resend); with them it
    commits once the lock is free, and the wait is not counted as holding it."""
    path = tmp_path / "shared.db"
    writer = GroupCommitDB(path, schema="CREATE TABLE IF NOT EXISTS t (x)",
                           busy_timeout_ms=20, busy_retries=retries)
    await writer.open()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        done = writer.submit(lambda db: db.execute("INSERT INTO t VALUES (1)").rowcount)
        await asyncio.sleep(0.3)  # the other process keeps the lock this long
        other.execute("COMMIT")
        if retries:
            assert await asyncio.wait_for(done, 10) == 1
            assert writer.lock_hold.busy_retries >= 2
            assert writer.lock_hold.longest_s < 0.25
        else:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                await asyncio.wait_for(done, 10)
    finally:
        other.close()
        await writer.close()


@pytest.mark.parametrize("indexes", [False, True])
async def test_the_hubs_indexes_are_opt_in_and_used(tmp_path: Path, indexes: bool) -> None:
    path = create_validator_db(tmp_path / "validator.db")
    db = await ValidatorDatabase(path, indexes=indexes).open()
    await db.close()
    with sqlite3.connect(path) as plain:
        names = {row[0] for row in plain.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'bt_ws_%'")}
        plan = " ".join(str(row[-1]) for row in plain.execute(
            "EXPLAIN QUERY PLAN " + DAILY_TOTAL_SQL, (7, "2025-01-05")))
    if indexes:
        assert names == {"bt_ws_predictions_by_uid", "bt_ws_predictions_by_date"}
        assert "bt_ws_predictions_by_uid" in plan
    else:
        assert names == set()  # the validator's file is left as it is
        assert "SCAN predictions" in plan
