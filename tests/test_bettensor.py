"""The hub beside a Bettensor validator: games from, and accepted predictions into, the
validator's own SQLite file, shared with other processes writing to it as the live
validator does (real files, real processes, real sockets)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sdk.models import Prediction
from sdk.signing import verify_receipt
from server_stub import AllowListRegistry
from server_stub.bettensor import prediction_date

from .kit.hubkit import RunningHub
from .kit.keys import VALIDATOR, miner_key
from .kit.validatordb import (
    create_validator_db,
    db_time,
    insert_prediction,
    prediction_rows,
    score_as_the_validator,
    upsert_game,
    validator_connection,
)
from .kit.wire import receive_type, send_prediction, welcome_and_snapshot

BOB, CHARLIE, DAVE = miner_key("Bob"), miner_key("Charlie"), miner_key("Dave")
UIDS = {BOB.ss58_address: 7, CHARLIE.ss58_address: 8, DAVE.ss58_address: None}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def validator_db(tmp_path: Path) -> Path:
    """A validator database with games in both date forms, inside and outside the
    offered window [now - 4 days, now + 8 days]."""
    path = create_validator_db(tmp_path / "validator.db")
    now = datetime.now(UTC)
    with validator_connection(path) as db:
        upsert_game(db, 101, start=now + timedelta(days=1, microseconds=123456), form="space")
        upsert_game(db, 102, start=now + timedelta(days=2), form="T", tie_odds=None,
                    sport="baseball", league="MLB")
        upsert_game(db, 103, start=now - timedelta(days=3, hours=23), form="space")
        upsert_game(db, 104, start=now - timedelta(days=4, hours=1), form="T")
        upsert_game(db, 105, start=now + timedelta(days=7, hours=23), form="T")
        upsert_game(db, 106, start=now + timedelta(days=8, hours=1), form="space")
    return path


async def bettensor_hub(start_hub: Any, path: Path, *, uids: dict[str, int | None] = UIDS,
                        store_path: Path | None = None, **config: Any) -> RunningHub:
    return await start_hub(bettensor_db=path, bettensor_poll_s=config.pop("poll", 0.2),
                           registry=AllowListRegistry(uids), store_path=store_path, **config)


def game_prediction(game: dict[str, Any], *, wager: float = 5.0, outcome: int = 0,
                    **fields: Any) -> Prediction:
    odds = [game["team_a_odds"], game["team_b_odds"], game["tie_odds"]][outcome]
    return Prediction(game_id=game["game_id"], predicted_outcome=outcome, predicted_odds=odds,
                      team_a=game["team_a"], team_b=game["team_b"], wager=wager,
                      team_a_odds=game["team_a_odds"], team_b_odds=game["team_b_odds"],
                      tie_odds=game["tie_odds"], **fields)


async def submit(ws: Any, key: Any, prediction: Prediction) -> dict[str, Any]:
    await send_prediction(ws, key, prediction)
    frame = await receive_type(ws, "confirmation")
    assert frame["data"]["prediction_id"] == prediction.prediction_id
    assert verify_receipt(frame["data"], VALIDATOR.ss58_address)
    return frame["data"]


async def connected(running: RunningHub, key: Any = BOB) -> tuple[Any, dict[str, dict]]:
    ws = await running.connect(key)
    _, snapshot = await welcome_and_snapshot(ws)
    return ws, {game["game_id"]: game for game in snapshot["games"]}


def run_writer(code: str, path: Path) -> None:
    """Run ``code`` in another Python process against the validator's file, as the
    validator process would (``db`` is a connection set up as the validator's)."""
    script = ("import sys\nfrom datetime import UTC, datetime, timedelta\n"
              "from tests.kit.validatordb import *\n"
              f"db = validator_connection(sys.argv[1])\n{code}\ndb.close()\n")
    subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, check=True,
                   timeout=30)


# -- games ------------------------------------------------------------------------------


async def test_the_offered_games_are_the_stream(start_hub, validator_db):
    running = await bettensor_hub(start_hub, validator_db)
    _, games = await connected(running)
    assert sorted(games) == ["101", "102", "103", "105"]  # 104 and 106 outside the window
    with sqlite3.connect(validator_db) as db:
        stored = dict(db.execute("SELECT external_id, event_start_date FROM game_data"))
    for game_id, game in games.items():
        start = datetime.fromisoformat(stored[int(game_id)].replace(" ", "T"))
        assert datetime.fromisoformat(game["event_start_date"]) == start
    assert games["101"]["tie_odds"] == 3.3
    assert games["101"]["can_tie"] is True
    assert games["102"]["tie_odds"] is None  # NULL tie odds: no tie market
    assert games["102"]["can_tie"] is False
    assert games["102"]["sport"] == "baseball"
    assert games["101"]["team_a"] == "Home 101"


async def test_odds_and_settlements_written_by_the_validator_reach_miners(start_hub,
                                                                           validator_db):
    running = await bettensor_hub(start_hub, validator_db)
    ws, games = await connected(running)
    start = datetime.fromisoformat(games["101"]["event_start_date"])
    run_writer(f"upsert_game(db, 101, start=datetime.fromisoformat({start.isoformat()!r}), "
               "team_a_odds=1.87)", validator_db)
    update = await receive_type(ws, "game_update", timeout=10)
    assert [(g["game_id"], g["team_a_odds"]) for g in update["data"]["games"]] == [
        ("101", 1.87)]
    run_writer(f"upsert_game(db, 101, start=datetime.fromisoformat({start.isoformat()!r}), "
               "team_a_odds=1.87, outcome=0)", validator_db)
    update = await receive_type(ws, "game_update", timeout=10)
    assert [(g["game_id"], g["outcome"]) for g in update["data"]["games"]] == [("101", 0)]
    health = await running.health()
    assert health["bettensor_db"]["replaced"] is False


# -- predictions --------------------------------------------------------------------------


async def test_an_accepted_prediction_is_the_row_the_validators_intake_writes(start_hub,
                                                                              validator_db):
    running = await bettensor_hub(start_hub, validator_db)
    ws, games = await connected(running)
    prediction = game_prediction(games["101"], wager=12.5, outcome=2, model_name="m1",
                                 confidence_score=0.6)
    receipt = await submit(ws, BOB, prediction)
    assert receipt["status"] == "accepted"
    with validator_connection(validator_db) as db:
        own = insert_prediction(db, external_id=101, miner_uid=7, wager=12.5,
                                predicted_outcome=2, predicted_odds=3.3)
        columns = ("game_id", "miner_uid", "prediction_date", "predicted_outcome", "wager",
                   "outcome", "payout", "sent_to_site")
        types = {row[0]: dict(zip(columns, row[1:], strict=True)) for row in db.execute(
            "SELECT prediction_id, " + ", ".join(f"typeof({c})" for c in columns)
            + " FROM predictions")}
    row = prediction_rows(validator_db)[prediction.prediction_id]
    assert row == {
        "prediction_id": prediction.prediction_id, "game_id": 101, "miner_uid": 7,
        "prediction_date": prediction_date(int(receipt["received_at_ns"])),
        "predicted_outcome": 2, "predicted_odds": 3.3, "team_a": "Home 101",
        "team_b": "Away 101", "wager": 12.5, "team_a_odds": 2.1, "team_b_odds": 3.4,
        "tie_odds": 3.3, "model_name": "m1", "confidence_score": 0.6, "outcome": 3,
        "payout": None, "sent_to_site": 0, "validators_sent_to": 0,
        "validators_confirmed": 0}
    assert datetime.fromisoformat(row["prediction_date"]).tzinfo == UTC
    assert types[prediction.prediction_id] == types[own]  # the same SQLite types
    # the game ends in a tie: the validator's scoring settles both rows alike
    with validator_connection(validator_db) as db:
        db.execute("UPDATE game_data SET outcome = 2 WHERE external_id = 101")
    scored = score_as_the_validator(validator_db, 101)
    assert scored[prediction.prediction_id] == [7, 101, 2, 3.3, 12.5 * 3.3, 12.5]
    assert scored[own] == scored[prediction.prediction_id]


async def test_the_daily_limit_counts_rows_written_by_the_validator(start_hub, validator_db):
    with validator_connection(validator_db) as db:
        insert_prediction(db, external_id=101, miner_uid=7, wager=990.0)
        insert_prediction(db, external_id=101, miner_uid=8, wager=500.0)  # not Bob's UID
        insert_prediction(db, external_id=101, miner_uid=7, wager=500.0,
                          received=datetime.now(UTC) - timedelta(days=1))  # yesterday
    running = await bettensor_hub(start_hub, validator_db)
    ws, games = await connected(running)
    over = await submit(ws, BOB, game_prediction(games["101"], wager=10.5))
    assert over["status"] == "rejected"
    assert over["code"] == "wager_limit"
    assert (await submit(ws, BOB, game_prediction(games["101"], wager=6.0)))["status"] == \
        "accepted"
    # the validator's intake takes the last 4 while the hub holds Bob's total in memory:
    # the check in the writing transaction still sees it
    with validator_connection(validator_db) as db:
        insert_prediction(db, external_id=101, miner_uid=7, wager=4.0)
    late = await submit(ws, BOB, game_prediction(games["101"], wager=0.5))
    assert late["status"] == "rejected"
    assert late["code"] == "wager_limit"
    assert "990" not in late["message"]
    assert "1000" in late["message"]
    bob_today = [r for r in prediction_rows(validator_db).values()
                 if r["miner_uid"] == 7 and r["prediction_date"][:10] == db_time(
                     datetime.now(UTC))[:10]]
    assert sum(r["wager"] for r in bob_today) == 1000.0


async def test_duplicates_across_both_paths(start_hub, validator_db):
    received = datetime.now(UTC) - timedelta(minutes=3)
    with validator_connection(validator_db) as db:
        synapse_id = insert_prediction(db, external_id=101, miner_uid=7, wager=5.0,
                                       received=received)
    running = await bettensor_hub(start_hub, validator_db)
    ws, games = await connected(running)
    # Bob's prediction that reached the validator by its own synapse path
    again = game_prediction(games["101"]).model_copy(update={"prediction_id": synapse_id})
    duplicate = await submit(ws, BOB, again)
    assert duplicate["status"] == "duplicate"
    since_epoch = received - datetime(1970, 1, 1, tzinfo=UTC)
    assert duplicate["received_at_ns"] == str(since_epoch // timedelta(microseconds=1) * 1000)
    # a prediction that came through the hub: the resend gets the original receipt
    prediction = game_prediction(games["101"])
    first = await submit(ws, BOB, prediction)
    resent = await submit(ws, BOB, prediction)
    assert resent["status"] == "duplicate"
    assert resent["received_at_ns"] == first["received_at_ns"]
    # another miner presenting an id that is Bob's row
    charlie, _ = await connected(running, CHARLIE)
    taken = await submit(charlie, CHARLIE, again)
    assert taken["status"] == "rejected"
    assert taken["code"] == "invalid_prediction"
    assert "another miner" in taken["message"]
    rows = prediction_rows(validator_db)
    assert rows[synapse_id]["miner_uid"] == 7
    assert [r["miner_uid"] for r in rows.values()].count(8) == 0


async def test_the_games_are_the_validators_only(start_hub, validator_db):
    running = await bettensor_hub(start_hub, validator_db, poll=60.0)
    ws, games = await connected(running)
    status, body, _ = await running.request(
        "POST", "/admin/games", key=VALIDATOR,
        body=b'{"games": []}')
    assert status == 403
    assert body["error"] == "forbidden"
    assert "game_data" in body["detail"]
    # the validator drops a game the hub still offers (its next read is a minute away)
    run_writer("db.execute('DELETE FROM game_data WHERE external_id = 101')", validator_db)
    gone = await submit(ws, BOB, game_prediction(games["101"]))
    assert gone["status"] == "rejected"
    assert gone["code"] == "unknown_game"
    assert "not in the validator's game_data" in gone["message"]
    assert prediction_rows(validator_db) == {}


async def test_miners_without_a_uid_are_refused(start_hub, validator_db):
    running = await bettensor_hub(start_hub, validator_db)
    for key in (DAVE, miner_key("Eve")):  # listed without a UID; not listed
        status, body, _ = await running.handshake_status(key)
        assert status == 403
        assert body["error"] == "not_registered"
    ws, games = await connected(running)
    wrong = await submit(ws, BOB, game_prediction(games["101"], miner_uid=8))
    assert wrong["status"] == "rejected"
    assert wrong["code"] == "invalid_prediction"
    assert "not this hotkey's UID (7)" in wrong["message"]
    assert prediction_rows(validator_db) == {}


async def test_a_restarted_hub_keeps_the_games_and_the_receipts(start_hub, validator_db,
                                                                tmp_path):
    store = tmp_path / "hub.sqlite3"
    running = await bettensor_hub(start_hub, validator_db, store_path=store)
    ws, games = await connected(running)
    prediction = game_prediction(games["102"], outcome=1)
    first = await submit(ws, BOB, prediction)
    await running.server.stop()
    again = await bettensor_hub(start_hub, validator_db, store_path=store)
    ws, games_after = await connected(again)
    assert sorted(games_after) == sorted(games)
    resent = await submit(ws, BOB, prediction)
    assert resent["status"] == "duplicate"
    assert resent["received_at_ns"] == first["received_at_ns"]
    assert list(prediction_rows(validator_db)) == [prediction.prediction_id]


async def test_fifty_miners_beside_a_validator_writing_the_same_file(start_hub, tmp_path):
    """A second process writes to the file as the validator does, in a tight loop,
    while 50 miners submit: every confirmed prediction is one row, none is lost, no
    miner sees an error."""
    path = create_validator_db(tmp_path / "validator.db")
    now = datetime.now(UTC)
    with validator_connection(path) as db:
        for external_id in range(9001, 9011):
            upsert_game(db, external_id, start=now + timedelta(days=2, hours=external_id - 9000))
    keys = [miner_key(f"Miner{i}") for i in range(50)]
    running = await bettensor_hub(start_hub, path, poll=0.5,
                                  uids={key.ss58_address: i for i, key in enumerate(keys)},
                                  messages_per_second=1000.0, message_burst=1000.0,
                                  connects_per_minute=6000.0, connect_burst=100.0)
    hammer = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.kit.validatordb", str(path), "--seconds", "6",
        "--games", ",".join(str(g) for g in range(9001, 9011)), "--miner-uid", "999",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    assert hammer.stdout is not None
    assert (await asyncio.wait_for(hammer.stdout.readline(), 30)).strip() == b"READY"

    async def miner(key: Any) -> list[tuple[str, dict[str, Any]]]:
        ws = await running.connect(key)
        await welcome_and_snapshot(ws)
        answers = []
        for round_ in range(8):
            # the other process moves team_a odds: predict what the hub offers now
            game = running.hub.stream.games[str(9001 + round_)]
            prediction = game_prediction(game.model_dump(mode="json"), wager=1.0, outcome=1)
            await send_prediction(ws, key, prediction)
            frame = await receive_type(ws, "confirmation", timeout=30)
            answers.append((prediction.prediction_id, frame["data"]))
        return answers

    try:
        results = await asyncio.wait_for(asyncio.gather(*(miner(key) for key in keys)), 120)
        written = (await asyncio.wait_for(hammer.communicate(), 60))[0].decode()
    finally:
        if hammer.returncode is None:
            hammer.kill()
            await hammer.wait()
    assert hammer.returncode == 0, written
    answers = [answer for per_miner in results for answer in per_miner]
    statuses = {data["status"] for _, data in answers}
    unexplained = [data for _, data in answers if data["status"] != "accepted"
                   and data["code"] != "odds_mismatch"]  # odds moved under the miner
    assert unexplained == []
    rows = prediction_rows(path)
    accepted = {pid: data for pid, data in answers if data["status"] == "accepted"}
    assert len(accepted) > 200, statuses
    for pid, data in accepted.items():
        assert rows[pid]["prediction_date"] == prediction_date(int(data["received_at_ns"]))
    hub_rows = {pid for pid, row in rows.items() if row["miner_uid"] != 999}
    assert hub_rows == set(accepted)  # none lost, none extra (ids are the primary key)
    assert int(written.split("transactions=")[1].split()[0]) > 50
    health = await running.health()
    print(f"\nbettensor db under a writing validator: {len(accepted)} accepted, "
          f"validator wrote {written.strip()}; hub lock hold max "
          f"{health['bettensor_db']['lock_hold_max_ms']} ms, mean "
          f"{health['bettensor_db']['lock_hold_mean_ms']} ms, busy retries "
          f"{health['bettensor_db']['busy_retries']}")


def test_cli_refuses_what_cannot_work_beside_a_validator(tmp_path, validator_db):
    from typer.testing import CliRunner

    from server_stub.cli import app

    runner = CliRunner()
    allow = tmp_path / "allow.txt"
    allow.write_text(f"{BOB.ss58_address}\n")
    cases = [
        (["--bettensor-db", str(tmp_path / "missing.db"), "--allowlist", str(allow)],
         "give the allowlist lines as 'HOTKEY UID'"),
        (["--bettensor-db", str(validator_db), "--open"], "not --open"),
        (["--bettensor-db", str(validator_db), "--allowlist", str(allow), "--feed",
          "simulate"], "drop --feed"),
    ]
    allow_uids = tmp_path / "uids.txt"
    allow_uids.write_text(f"{BOB.ss58_address} 7\n")
    not_a_db = tmp_path / "other.db"
    with sqlite3.connect(not_a_db) as db:
        db.execute("CREATE TABLE t (x)")
    cases += [
        (["--bettensor-db", str(tmp_path / "missing.db"), "--allowlist", str(allow_uids)],
         "no such file"),
        (["--bettensor-db", str(not_a_db), "--allowlist", str(allow_uids)],
         "not a Bettensor validator database: no game_data or predictions table"),
    ]
    for args, reason in cases:
        result = runner.invoke(app, ["serve", "--validator-uri", "//Alice", *args])
        assert result.exit_code == 2, result.output
        assert reason in result.output, result.output

