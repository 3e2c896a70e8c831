"""Predictions over real WebSockets: acceptance, idempotence, every rejection code,
validator-signed receipts, and durability in the real SQLite file across restarts."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sdk.models import Prediction
from sdk.signing import sign_prediction, verify_receipt
from server_stub import HubClock

from .kit.games import future_game
from .kit.hubkit import stop_hub
from .kit.keys import VALIDATOR, miner_key
from .kit.wire import receive_type, send_frame, send_prediction, welcome_and_snapshot

BOB = miner_key("Bob")
CHARLIE = miner_key("Charlie")


def rows(store_path: Path, prediction_id: str | None = None) -> list[tuple]:
    """Prediction rows as another process would read them from the SQLite file."""
    db = sqlite3.connect(store_path)
    try:
        if prediction_id is None:
            return db.execute("SELECT miner_hotkey, prediction_id, receipt FROM predictions"
                              ).fetchall()
        return db.execute("SELECT miner_hotkey, prediction_id, receipt FROM predictions"
                          " WHERE prediction_id = ?", (prediction_id,)).fetchall()
    finally:
        db.close()


async def confirmation_for(ws, prediction_id: str, timeout: float = 5.0) -> dict[str, Any]:
    frame = await receive_type(ws, "confirmation", timeout=timeout)
    assert frame["data"]["prediction_id"] == prediction_id, frame
    return frame["data"]


async def submit(ws, key, prediction: Prediction | dict[str, Any]) -> dict[str, Any]:
    pid = prediction.prediction_id if isinstance(prediction, Prediction) else \
        prediction["prediction_id"]
    await send_prediction(ws, key, prediction)
    return await confirmation_for(ws, pid)


def assert_receipt(data: dict[str, Any], miner: str = BOB.ss58_address) -> None:
    assert set(data) == {"prediction_id", "status", "code", "message", "received_at_ns",
                         "miner_hotkey", "validator_hotkey", "signature"}
    assert data["miner_hotkey"] == miner
    assert data["validator_hotkey"] == VALIDATOR.ss58_address
    assert data["signature"].startswith("0x")
    assert data["received_at_ns"].isdigit()  # a string: PROTOCOL.md §3.5
    assert verify_receipt(data, VALIDATOR.ss58_address)
    assert not verify_receipt(data, miner)  # pinned to the validator, not just any key
    assert not verify_receipt({**data, "received_at_ns": str(int(data["received_at_ns"]) + 1)},
                              VALIDATOR.ss58_address)


async def miner_with_games(start_hub, *games, **config):
    running = await start_hub(**config)
    if games:
        await running.post_games(list(games))
    ws = await running.connect(BOB)
    await welcome_and_snapshot(ws)
    return running, ws


# -- acceptance and idempotence -------------------------------------------------------


async def test_accepted_prediction_is_stored_once_with_a_verifiable_receipt(start_hub):
    game = future_game("g1")
    running, ws = await miner_with_games(start_hub, game)
    prediction = Prediction.for_game(game, 0, 25.0, confidence_score=0.7, model_name="t")
    data = await submit(ws, BOB, prediction)
    assert data["status"] == "accepted"
    assert data["code"] == "ok"
    assert_receipt(data)
    stored = rows(running.store_path, prediction.prediction_id)
    assert len(stored) == 1
    assert stored[0][0] == BOB.ss58_address
    assert json.loads(stored[0][2]) == data  # the durable receipt is the one sent


async def test_duplicate_carries_the_original_receipt_time(start_hub):
    game = future_game("g1")
    running, ws = await miner_with_games(start_hub, game)
    prediction = Prediction.for_game(game, "g1-away", 10.0)
    first = await submit(ws, BOB, prediction)
    assert first["status"] == "accepted"
    second = await submit(ws, BOB, prediction)
    assert second["status"] == "duplicate"
    assert second["code"] == "ok"
    assert second["received_at_ns"] == first["received_at_ns"]
    assert_receipt(second)
    assert len(rows(running.store_path, prediction.prediction_id)) == 1
    # The duplicate did not count twice against the daily budget.
    third = await submit(ws, BOB, Prediction.for_game(game, 0, 990.0))
    assert third["status"] == "accepted"


async def test_concurrent_resends_store_one_row(start_hub):
    game = future_game("g1")
    running, ws = await miner_with_games(start_hub, game)
    prediction = Prediction.for_game(game, 1, 5.0)
    for _ in range(4):  # all in flight before the first commit can finish
        await send_prediction(ws, BOB, prediction)
    answers = [await confirmation_for(ws, prediction.prediction_id) for _ in range(4)]
    statuses = sorted(a["status"] for a in answers)
    assert statuses == ["accepted", "duplicate", "duplicate", "duplicate"]
    assert len({a["received_at_ns"] for a in answers}) == 1
    for answer in answers:
        assert_receipt(answer)
    assert len(rows(running.store_path, prediction.prediction_id)) == 1


async def test_same_prediction_id_from_two_miners_is_two_predictions(start_hub):
    game = future_game("g1")
    running, bob = await miner_with_games(start_hub, game)
    charlie = await running.connect(CHARLIE)
    await welcome_and_snapshot(charlie)
    prediction = Prediction.for_game(game, 0, 5.0)
    assert (await submit(bob, BOB, prediction))["status"] == "accepted"
    data = await submit(charlie, CHARLIE, prediction)
    assert data["status"] == "accepted"
    assert_receipt(data, CHARLIE.ss58_address)
    assert len(rows(running.store_path, prediction.prediction_id)) == 2


async def test_unsigned_prediction_and_outcome_names_are_accepted(start_hub):
    game = future_game("g1")
    running, ws = await miner_with_games(start_hub, game)
    wire = Prediction.for_game(game, 2, 5.0).wire()
    wire["predicted_outcome"] = "Tie"
    await send_frame(ws, "prediction", {"prediction": wire})  # no signature: optional
    data = await confirmation_for(ws, wire["prediction_id"])
    assert data["status"] == "accepted", data
    stored = json.loads(sqlite3.connect(running.store_path).execute(
        "SELECT prediction FROM predictions").fetchone()[0])
    assert stored["predicted_outcome"] == "Tie"  # stored exactly as received


# -- rejections ---------------------------------------------------------------------------


def _wire(prediction: Prediction, **changes: Any) -> dict[str, Any]:
    wire = prediction.wire()
    for key, value in changes.items():
        if value is _DROP:
            wire.pop(key)
        else:
            wire[key] = value
    return wire


_DROP = object()
GAME = future_game("g1")
NBA = future_game("n1", sport="basketball", league="NBA")
STARTED = future_game("s1", start_in=timedelta(minutes=-5))
CLOSED = future_game("c1", active=False)


def _base(game=GAME, outcome=0, wager=10.0, **fields) -> Prediction:
    return Prediction.for_game(game, outcome, wager, **fields)


REJECTIONS = [
    pytest.param(_wire(_base(), game_id="nope"), "unknown_game", id="unknown_game"),
    pytest.param(_base(STARTED).wire(), "game_started", id="game_started"),
    pytest.param(_base(CLOSED).wire(), "game_started", id="game_inactive"),
    pytest.param(_wire(_base(), team_a_odds=2.5), "odds_mismatch", id="odds_mismatch"),
    pytest.param(_wire(_base(), predicted_odds=2.2), "odds_mismatch", id="predicted_odds"),
    pytest.param(_wire(_base(NBA), predicted_outcome=2, predicted_odds=3.0),
                 "invalid_outcome", id="tie_without_market"),
    pytest.param(_wire(_base(), predicted_outcome=7), "invalid_outcome", id="outcome_7"),
    pytest.param(_wire(_base(), predicted_outcome="banana"), "invalid_outcome",
                 id="outcome_type"),
    pytest.param(_wire(_base(), wager=0), "invalid_wager", id="wager_zero"),
    pytest.param(_wire(_base(), wager=-5), "invalid_wager", id="wager_negative"),
    pytest.param(_wire(_base(), wager="lots"), "invalid_wager", id="wager_type"),
    pytest.param(_base(wager=1000.5).wire(), "wager_limit", id="wager_limit"),
    pytest.param(_wire(_base(), confidence_score=1.5), "invalid_confidence",
                 id="confidence_high"),
    pytest.param(_wire(_base(), confidence_score=-0.1), "invalid_confidence",
                 id="confidence_low"),
    pytest.param(_wire(_base(), team_a="Somebody"), "invalid_prediction", id="teams"),
    pytest.param(_wire(_base(), game_id=_DROP), "invalid_prediction", id="missing_field"),
    pytest.param(_wire(_base(), prediction_date="yesterday"), "invalid_prediction",
                 id="bad_date"),
    pytest.param(_wire(_base(), prediction_id="not-a-uuid"), "invalid_prediction",
                 id="bad_prediction_id"),
]


@pytest.mark.parametrize(("wire", "code"), REJECTIONS)
async def test_each_rejection_code(start_hub, wire, code):
    running, ws = await miner_with_games(start_hub, GAME, NBA, STARTED, CLOSED)
    await send_frame(ws, "prediction", {"prediction": wire})
    data = await confirmation_for(ws, wire["prediction_id"])
    assert data["status"] == "rejected", data
    assert data["code"] == code, data
    assert data["message"]
    assert_receipt(data)
    assert rows(running.store_path) == []
    # The connection carries on: a good prediction right after is accepted.
    good = _base()
    assert (await submit(ws, BOB, good))["status"] == "accepted"


async def test_prediction_signed_by_another_hotkey_is_bad_signature(start_hub):
    running, ws = await miner_with_games(start_hub, GAME)
    prediction = _base()
    wire = prediction.wire()
    await send_frame(ws, "prediction", {"prediction": wire,
                                        "signature": sign_prediction(CHARLIE, wire)})
    data = await confirmation_for(ws, prediction.prediction_id)
    assert (data["status"], data["code"]) == ("rejected", "bad_signature")
    assert_receipt(data)
    # A signature over other values (tampered after signing) fails the same way.
    tampered = {**wire, "wager": 11.0}
    await send_frame(ws, "prediction", {"prediction": tampered,
                                        "signature": sign_prediction(BOB, wire)})
    data = await confirmation_for(ws, prediction.prediction_id)
    assert (data["status"], data["code"]) == ("rejected", "bad_signature")
    await send_frame(ws, "prediction", {"prediction": wire, "signature": "0xnothex"})
    data = await confirmation_for(ws, prediction.prediction_id)
    assert (data["status"], data["code"]) == ("rejected", "bad_signature")
    assert rows(running.store_path) == []
    # Properly signed, the same prediction goes through.
    assert (await submit(ws, BOB, prediction))["status"] == "accepted"


async def test_a_signature_covers_values_however_the_numbers_are_spelled(start_hub):
    """RFC 8785 (PROTOCOL.md §5.1): a client that signs ``"wager":25`` and sends
    ``25.0`` or ``2.5e1`` (or the reverse) is accepted, as a JavaScript client would be;
    a wrapped ``<Bytes>`` signature too (§5.2)."""
    from sdk.canonical import canonical_json

    running, ws = await miner_with_games(start_hub, GAME)
    for index, spelling in enumerate(("25", "25.0", "2.5e1")):
        wire = _base(wager=25.0).wire()
        signature = sign_prediction(BOB, {**wire, "wager": 25})
        text = json.dumps({"type": "prediction", "data": {"prediction": wire,
                                                          "signature": signature}})
        text = text.replace('"wager": 25.0', '"wager": ' + spelling)
        assert ('"wager": ' + spelling) in text
        await ws.send_str(text)
        data = await confirmation_for(ws, wire["prediction_id"])
        assert (index, data["status"]) == (index, "accepted"), data
    wire = _base(wager=1.0).wire()
    wrapped = "0x" + BOB.sign(b"<Bytes>" + canonical_json(wire) + b"</Bytes>").hex()
    await send_frame(ws, "prediction", {"prediction": wire, "signature": wrapped})
    assert (await confirmation_for(ws, wire["prediction_id"]))["status"] == "accepted"
    assert len(rows(running.store_path)) == 4


async def test_daily_wager_limit_accumulates_and_counts_only_accepted(start_hub):
    running, ws = await miner_with_games(start_hub, GAME, daily_wager_limit=100.0)
    assert (await submit(ws, BOB, _base(wager=60.0)))["status"] == "accepted"
    rejected = await submit(ws, BOB, _base(wager=50.0))
    assert (rejected["status"], rejected["code"]) == ("rejected", "wager_limit")
    assert "40" in rejected["message"]  # what is left today
    assert (await submit(ws, BOB, _base(wager=40.0)))["status"] == "accepted"
    # Another miner has its own budget.
    charlie = await running.connect(CHARLIE)
    await welcome_and_snapshot(charlie)
    assert (await submit(charlie, CHARLIE, _base(wager=100.0)))["status"] == "accepted"
    assert len(rows(running.store_path)) == 3


async def test_resend_after_kickoff_of_a_stored_prediction_is_duplicate(start_hub):
    game = future_game("g1")
    running, ws = await miner_with_games(start_hub, game)
    prediction = _base(game)
    original = await submit(ws, BOB, prediction)
    assert original["status"] == "accepted"
    # The validator moves kick-off into the past; a fresh prediction is now refused...
    await running.post_games([game.model_copy(
        update={"event_start_date": game.event_start_date - timedelta(hours=3)})])
    late = await submit(ws, BOB, _base(game))
    assert (late["status"], late["code"]) == ("rejected", "game_started")
    # ...but the resend of the stored one still gets its original receipt.
    again = await submit(ws, BOB, prediction)
    assert again["status"] == "duplicate"
    assert again["received_at_ns"] == original["received_at_ns"]
    assert_receipt(again)


async def test_restart_on_the_same_store_keeps_predictions_and_receipts(start_hub):
    game = future_game("g1")
    running, ws = await miner_with_games(start_hub, game, daily_wager_limit=100.0)
    prediction = _base(game, wager=70.0)
    original = await submit(ws, BOB, prediction)
    assert original["status"] == "accepted"
    assert await stop_hub(running) == [1001]
    assert len(rows(running.store_path, prediction.prediction_id)) == 1

    # Same store, new process state; the hub clock is now past kick-off.
    restarted = await start_hub(store_path=running.store_path, daily_wager_limit=100.0,
                                clock=HubClock(offset_ns=3 * 3600 * 10**9))
    ws = await restarted.connect(BOB)
    await welcome_and_snapshot(ws)
    again = await submit(ws, BOB, prediction)
    assert again["status"] == "duplicate", again
    assert again["received_at_ns"] == original["received_at_ns"]
    assert_receipt(again)
    assert len(rows(restarted.store_path, prediction.prediction_id)) == 1


async def test_daily_budget_survives_a_restart(start_hub):
    game = future_game("g1")
    running, ws = await miner_with_games(start_hub, game, daily_wager_limit=100.0)
    assert (await submit(ws, BOB, _base(game, wager=70.0)))["status"] == "accepted"
    assert await stop_hub(running) == [1001]
    restarted = await start_hub(store_path=running.store_path, daily_wager_limit=100.0)
    ws = await restarted.connect(BOB)
    await welcome_and_snapshot(ws)
    data = await submit(ws, BOB, _base(game, wager=40.0))
    assert (data["status"], data["code"]) == ("rejected", "wager_limit")
    assert (await submit(ws, BOB, _base(game, wager=30.0)))["status"] == "accepted"


async def test_many_predictions_in_flight_each_get_exactly_one_confirmation(start_hub):
    game = future_game("g1")
    running, ws = await miner_with_games(start_hub, game, messages_per_second=1000.0,
                                         message_burst=1000.0)
    predictions = [_base(game, wager=1.0) for _ in range(50)]
    await asyncio.gather(*(send_prediction(ws, BOB, p) for p in predictions))
    seen: dict[str, str] = {}
    for _ in predictions:
        data = (await receive_type(ws, "confirmation"))["data"]
        assert data["prediction_id"] not in seen
        seen[data["prediction_id"]] = data["status"]
    assert set(seen) == {p.prediction_id for p in predictions}
    assert set(seen.values()) == {"accepted"}
    assert len(rows(running.store_path)) == 50
