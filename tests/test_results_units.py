"""Results on the miner side, without a hub: Bettensor's payout rule, settlement in a
real outbox file (and the migration of a file made before results existed), and the
per-day figures ``bt-miner status`` shows."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest

from sdk.outbox import Outbox, OutboxEntry
from sdk.results import results_by_day
from sdk.settlement import payout

VALIDATOR = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
OTHER_VALIDATOR = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"
MINER = "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y"

# -- the payout rule ---------------------------------------------------------------------


@pytest.mark.parametrize(("predicted", "game", "expected"), [
    (0, 0, 25.0),    # team_a predicted, team_a won: wager x odds
    (1, 1, 25.0),
    (2, 2, 25.0),    # a tie predicted and the game tied
    (0, 1, 0.0),     # lost
    (0, 2, 0.0),     # a tie is a loss for a bet on a team: no push
    (2, 0, 0.0),
])
def test_payout_is_wager_times_odds_on_a_win_else_zero(predicted: int, game: int,
                                                       expected: float) -> None:
    assert payout(10.0, predicted, 2.5, game) == expected


@pytest.mark.parametrize("game", [3, -1, 4])
def test_an_unfinished_game_settles_nothing(game: int) -> None:
    assert payout(10.0, 0, 2.5, game) is None


# -- settlement in the outbox ------------------------------------------------------------


def wire(game_id: str, outcome: int, odds: float, wager: float) -> dict[str, object]:
    return {"prediction_id": str(uuid.uuid4()), "game_id": game_id,
            "predicted_outcome": outcome, "predicted_odds": odds, "team_a": "A",
            "team_b": "B", "wager": wager, "team_a_odds": 2.0, "team_b_odds": 3.0,
            "tie_odds": 3.2}


async def put(outbox: Outbox, game_id: str, outcome: int, odds: float, wager: float, *,
              status: str | None, day: str = "2026-11-02",
              validator: str = VALIDATOR) -> str:
    """A prediction as the connection leaves it: stored, then answered ``status``
    (None: still pending)."""
    prediction = wire(game_id, outcome, odds, wager)
    pid = str(prediction["prediction_id"])
    await outbox.add(validator_hotkey=validator, miner_hotkey=MINER, prediction=prediction,
                     signature=None, wager_day=day)
    if status is not None:
        code = "ok" if status != "rejected" else "odds_mismatch"
        await outbox.settle(pid, status, code=code, message=status)
    return pid


async def test_only_confirmed_predictions_settle_and_settling_again_changes_nothing(
        tmp_path: Path) -> None:
    outbox = await Outbox(tmp_path / "outbox.sqlite3").open()
    try:
        won = await put(outbox, "g1", 0, 2.0, 10.0, status="accepted")
        lost = await put(outbox, "g1", 1, 3.0, 4.0, status="accepted")
        dup = await put(outbox, "g1", 0, 2.2, 5.0, status="duplicate")
        pending = await put(outbox, "g1", 0, 2.0, 6.0, status=None)
        rejected = await put(outbox, "g1", 0, 2.0, 7.0, status="rejected")
        elsewhere = await put(outbox, "g1", 0, 2.0, 8.0, status="accepted",
                              validator=OTHER_VALIDATOR)
        open_game = await put(outbox, "g2", 0, 2.0, 9.0, status="accepted")

        assert await outbox.record_outcomes(VALIDATOR, {"g1": 0, "g2": 3}) == 3
        got = {pid: await outbox.get(pid) for pid in (won, lost, dup, pending, rejected,
                                                      elsewhere, open_game)}
        settled = {pid: (e.outcome, e.payout) for pid, e in got.items()
                   if e is not None and e.settled}
        assert settled == {won: (0, 20.0), lost: (0, 0.0), dup: (0, 5.0 * 2.2)}
        first_settled_ns = got[won].settled_ns  # type: ignore[union-attr]
        assert isinstance(first_settled_ns, int)

        # the same settled game again (a snapshot after a reconnect): nothing changes
        assert await outbox.record_outcomes(VALIDATOR, {"g1": 0}) == 0
        again = await outbox.get(won)
        assert again is not None
        assert again.settled_ns == first_settled_ns
        assert again.payout == 20.0

        # a pending prediction confirmed after its game ended settles on its own
        assert await outbox.record_outcomes(VALIDATOR, {"g1": 0}, prediction_id=pending) == 0
        await outbox.settle(pending, "duplicate", code="ok", message="duplicate")
        assert await outbox.record_outcomes(VALIDATOR, {"g1": 0},
                                            prediction_id=rejected) == 0
        assert await outbox.record_outcomes(VALIDATOR, {"g2": 0}, prediction_id=pending) == 0
        assert await outbox.record_outcomes(VALIDATOR, {"g1": 0}, prediction_id=pending) == 1
        late = await outbox.get(pending)
        assert late is not None
        assert (late.outcome, late.payout) == (0, 12.0)
    finally:
        await outbox.close()

    # durable: a new process reads the same results from the file
    reopened = await Outbox(tmp_path / "outbox.sqlite3").open()
    try:
        entry = await reopened.get(dup)
        assert entry is not None
        assert (entry.outcome, entry.payout) == (0, pytest.approx(11.0))
    finally:
        await reopened.close()


OLD_SCHEMA = """
CREATE TABLE outbox (
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
    updated_ns       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX outbox_by_status ON outbox (validator_hotkey, status, created_ns);
"""


def columns(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [row[1] for row in db.execute("PRAGMA table_info(outbox)")]
    finally:
        db.close()


async def test_an_outbox_file_made_before_results_gains_the_columns_and_settles(
        tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    prediction = wire("g1", 2, 3.5, 10.0)
    pid = str(prediction["prediction_id"])
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO outbox (prediction_id, validator_hotkey, miner_hotkey, game_id,"
               " wager, wager_day, prediction, status, code, message, created_ns, updated_ns)"
               " VALUES (?, ?, ?, 'g1', 10.0, '2026-11-01', ?, 'accepted', 'ok', 'accepted',"
               " 1, 1)", (pid, VALIDATOR, MINER, json.dumps(prediction)))
    db.commit()
    db.close()
    assert "outcome" not in columns(path)

    outbox = await Outbox(path).open()
    try:
        entry = await outbox.get(pid)
        assert entry is not None
        assert entry.status == "accepted"
        assert entry.outcome is None
        assert not entry.settled
        assert await outbox.record_outcomes(VALIDATOR, {"g1": 2}) == 1
    finally:
        await outbox.close()
    assert columns(path)[-3:] == ["outcome", "payout", "settled_ns"]

    # opening it again (the columns exist now) migrates nothing and keeps the result
    outbox = await Outbox(path).open()
    try:
        entry = await outbox.get(pid)
        assert entry is not None
        assert (entry.outcome, entry.payout) == (2, 35.0)
    finally:
        await outbox.close()
    assert columns(path).count("outcome") == 1


# -- figures per day ---------------------------------------------------------------------


def entry(day: str, status: str, wager: float, predicted: int, odds: float,
          outcome: int | None) -> OutboxEntry:
    returned = None if outcome is None else payout(wager, predicted, odds, outcome)
    return OutboxEntry(str(uuid.uuid4()), VALIDATOR, MINER, "g", wager, day,
                       {"predicted_outcome": predicted, "predicted_odds": odds}, None,
                       status, "ok", status, None, 0, outcome, returned,
                       None if outcome is None else 1)


def test_results_by_day_count_confirmed_predictions_only() -> None:
    entries = [
        entry("2026-11-02", "accepted", 10.0, 0, 2.0, 0),    # won 20
        entry("2026-11-01", "accepted", 20.0, 1, 3.0, 0),    # lost
        entry("2026-11-01", "duplicate", 5.0, 2, 4.0, 2),    # won 20
        entry("2026-11-01", "accepted", 30.0, 1, 2.0, None),  # open
        entry("2026-11-01", "pending", 40.0, 0, 2.0, None),   # not counted
        entry("2026-11-01", "rejected", 50.0, 0, 2.0, None),  # not counted
        entry("2026-11-03", "accepted", 7.0, 0, 2.0, None),   # only open
    ]
    days = {d.day: d for d in results_by_day(entries)}
    assert list(days) == ["2026-11-01", "2026-11-02", "2026-11-03"]
    first = days["2026-11-01"]
    assert (first.settled, first.wins, first.wagered, first.payout) == (2, 1, 25.0, 20.0)
    assert first.profit == -5.0
    assert first.roi == pytest.approx(-0.2)
    assert first.hit_rate == 0.5
    assert (first.open, first.open_exposure) == (1, 30.0)
    second = days["2026-11-02"]
    assert (second.profit, second.roi, second.hit_rate) == (10.0, 1.0, 1.0)
    third = days["2026-11-03"]
    assert (third.settled, third.roi, third.hit_rate, third.open_exposure) == (
        0, None, None, 7.0)
    assert third.to_dict() == {"day": "2026-11-03", "settled": 0, "wins": 0, "wagered": 0.0,
                               "payout": 0.0, "profit": 0.0, "roi": None, "hit_rate": None,
                               "open": 1, "open_exposure": 7.0}
