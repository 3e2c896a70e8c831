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
