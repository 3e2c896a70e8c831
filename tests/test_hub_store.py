"""server_stub.store: the predictions of one group commit go in by one executemany, and
each still learns whether it was stored or which receipt was there first."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from server_stub import store as store_module
from server_stub.store import PredictionRecord, PredictionStore


def record(pid: str, received_at_ns: int, hotkey: str = "miner") -> PredictionRecord:
    receipt = {"prediction_id": pid, "status": "accepted", "code": "ok",
               "message": "accepted", "received_at_ns": received_at_ns,
               "miner_hotkey": hotkey, "validator_hotkey": "v", "signature": "0x01"}
    return PredictionRecord(miner_hotkey=hotkey, prediction_id=pid, game_id="g", wager=1.0,
                            wager_day="2026-11-29", received_at_ns=received_at_ns,
                            prediction={"prediction_id": pid, "wager": 1e-07},
                            signature=None, receipt=receipt)


@pytest.fixture(params=[True, False], ids=["returning", "sqlite-before-3.35"])
def returning(request, monkeypatch):
    """Both ways the store learns which rows it inserted: INSERT ... RETURNING, or one
    statement per row (SQLite before 3.35)."""
    monkeypatch.setattr(store_module, "_RETURNING", request.param)
    return request.param


async def test_one_batch_with_new_resent_and_stored_predictions(tmp_path, returning):
    store = await PredictionStore(tmp_path / "hub.sqlite3").open()
    first = await store.record(record("p-old", 1))
    assert first.stored
    outcomes = await asyncio.gather(
        store.record(record("p-1", 2)), store.record(record("p-old", 3)),
        store.record(record("p-1", 4)), store.record(record("p-1", 5, hotkey="other")))
    assert [(o.stored, o.receipt["received_at_ns"] if o.receipt else None)
            for o in outcomes] == [(True, 2), (False, 1), (False, 2), (True, 5)]
    assert await store.count() == 3
    await store.close()
    with sqlite3.connect(tmp_path / "hub.sqlite3") as check:
        prediction, receipt = check.execute(
            "SELECT prediction, receipt FROM predictions WHERE prediction_id = 'p-1'"
            " AND miner_hotkey = 'miner'").fetchone()
    assert json.loads(prediction) == {"prediction_id": "p-1", "wager": 1e-07}
    assert json.loads(receipt)["received_at_ns"] == 2


async def test_a_byte_identical_resend_is_a_duplicate_in_one_batch_and_after(tmp_path,
                                                                            returning):
    store = await PredictionStore(tmp_path / "hub.sqlite3").open()
    same = record("p-same", 7)
    first, second = await asyncio.gather(store.record(same), store.record(same))
    third = await store.record(same)
    assert (first.stored, second.stored, third.stored) == (True, False, False)
    assert second.receipt == third.receipt == same.receipt
    await store.close()


def wagered_record(pid: str, hotkey: str, wager: float, day: str = "2026-11-29"
                   ) -> PredictionRecord:
    base = record(pid, 1, hotkey=hotkey)
    return PredictionRecord(miner_hotkey=hotkey, prediction_id=pid, game_id="g", wager=wager,
                            wager_day=day, received_at_ns=1, prediction=base.prediction,
                            signature=None, receipt=base.receipt)


async def test_daily_wager_totals_count_inserted_rows_once(tmp_path, returning):
    store = await PredictionStore(tmp_path / "hub.sqlite3").open()
    await asyncio.gather(
        store.record(wagered_record("a", "m1", 2.5)), store.record(wagered_record("b", "m1", 1.0)),
        store.record(wagered_record("a", "m1", 2.5)),  # resend: ignored, not counted
        store.record(wagered_record("c", "m2", 4.0)),
        store.record(wagered_record("d", "m1", 8.0, day="2026-11-30")))
    assert await store.wagered("m1", "2026-11-29") == 3.5
    assert await store.wagered("m2", "2026-11-29") == 4.0
    assert await store.wagered("m1", "2026-11-30") == 8.0
    assert await store.wagered("m3", "2026-11-29") == 0.0
    await store.close()
    reopened = await PredictionStore(tmp_path / "hub.sqlite3").open()
    assert await reopened.wagered("m1", "2026-11-29") == 3.5
    await reopened.close()


async def test_a_file_of_an_older_version_gets_its_totals_from_its_rows(tmp_path):
    """A store made before the wager_totals table (with its index on
    (miner_hotkey, wager_day)): totals are computed from the rows at open, the old
    index goes, and new rows add to them."""
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript("""
            CREATE TABLE predictions (
                miner_hotkey TEXT NOT NULL, prediction_id TEXT NOT NULL,
                game_id TEXT NOT NULL, wager REAL NOT NULL, wager_day TEXT NOT NULL,
                received_at_ns INTEGER NOT NULL, prediction TEXT NOT NULL, signature TEXT,
                receipt TEXT NOT NULL, PRIMARY KEY (miner_hotkey, prediction_id)
            ) WITHOUT ROWID;
            CREATE INDEX predictions_by_day ON predictions (miner_hotkey, wager_day);
            CREATE TABLE games (game_id TEXT PRIMARY KEY, game TEXT NOT NULL) WITHOUT ROWID;
        """)
        old.executemany(
            "INSERT INTO predictions VALUES (?, ?, 'g', ?, ?, 1, '{}', NULL, '{}')",
            [("m1", "x", 10.0, "2026-11-29"), ("m1", "y", 5.5, "2026-11-29"),
             ("m1", "z", 7.0, "2026-11-28"), ("m2", "x", 1.0, "2026-11-29")])
    store = await PredictionStore(path).open()
    assert await store.wagered("m1", "2026-11-29") == 15.5
    assert await store.wagered("m1", "2026-11-28") == 7.0
    assert await store.wagered("m2", "2026-11-29") == 1.0
    assert (await store.record(wagered_record("w", "m1", 0.5))).stored
    assert await store.wagered("m1", "2026-11-29") == 16.0
    await store.close()
    with sqlite3.connect(path) as check:
        indexes = {row[0] for row in check.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "predictions_by_day" not in indexes
