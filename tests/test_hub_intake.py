"""``PredictionIntake.accept_prediction``: the one path of a prediction, whichever
transport carried it, on a real desk and a real SQLite store. Each outcome, and each
counted exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sdk.codes import ErrorCode
from sdk.errors import ProtocolError
from sdk.frames import PredictionFrame, parse_frame, parse_prediction_data
from sdk.models import Prediction
from sdk.signing import verify_receipt
from sdk.validation import Rules
from server_stub import Admission, HubConfig, OpenRegistry, PredictionIntake, PredictionStore
from server_stub.clock import HubClock
from server_stub.intake import Confirmed, Pending, RateLimited, ShuttingDown, Unidentified
from server_stub.predictions import PredictionDesk
from server_stub.stats import HubStats
from server_stub.stream import GameStream

from .kit.games import future_game
from .kit.keys import VALIDATOR, miner_key
from .kit.wire import prediction_data

BOB = miner_key("Bob")
GAME = future_game("g1")


@dataclass
class Parts:
    intake: PredictionIntake
    stats: HubStats
    store: PredictionStore


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    config = HubConfig(messages_per_second=0.001, message_burst=1)
    stats = HubStats()
    store = await PredictionStore(tmp_path / "intake.sqlite3", synchronous="NORMAL").open()
    stream = GameStream()
    stream.apply([GAME])
    desk = PredictionDesk(signer=VALIDATOR, store=store, stream=stream, clock=HubClock(),
                          rules=Rules())
    admission = Admission(config, validator_hotkey=VALIDATOR.ss58_address,
                          registry=OpenRegistry(), sessions={})
    yield Parts(PredictionIntake(desk=desk, admission=admission, stats=stats), stats, store)
    await store.close()


def _frame(prediction: Prediction) -> PredictionFrame:
    return parse_prediction_data(prediction_data(BOB, prediction))


def _parse_error(data: object) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        parse_prediction_data(data)
    return caught.value


async def test_a_valid_prediction_is_pending_until_committed_then_counted(parts: Parts):
    prediction = Prediction.for_game(GAME, 0, 10.0)
    outcome = await parts.intake.accept_prediction(BOB.ss58_address, _frame(prediction),
                                                   rate_checked=False)
    assert isinstance(outcome, Pending)
    assert outcome.prediction_id == prediction.prediction_id
    confirmation = await outcome.confirmation
    assert confirmation["status"] == "accepted"
    assert verify_receipt(confirmation, VALIDATOR.ss58_address)
    assert parts.stats.predictions == {"accepted": 1}
    assert await parts.store.count(BOB.ss58_address) == 1


async def test_a_parse_error_naming_an_id_is_a_signed_rejection(parts: Parts):
    wire = Prediction.for_game(GAME, 0, 10.0).wire()
    error = _parse_error({"prediction": {**wire, "wager": "lots"}})
    outcome = await parts.intake.accept_prediction(BOB.ss58_address, error, rate_checked=True)
    assert isinstance(outcome, Confirmed)
    assert (outcome.data["status"], outcome.data["code"]) == ("rejected", "invalid_wager")
    assert outcome.data["prediction_id"] == wire["prediction_id"]
    assert verify_receipt(outcome.data, VALIDATOR.ss58_address)
    assert parts.stats.predictions == {"rejected": 1}
    assert not parts.stats.errors


@pytest.mark.parametrize(("text", "code", "ref"), [
    ('{"type":"prediction","data":{"prediction":{"wager":1}}}', "invalid_prediction",
     "prediction"),
    ("not json", "malformed_frame", None),
    ('{"type":"subscribe","data":{"sports":5}}', "malformed_frame", "subscribe"),
])
async def test_a_parse_error_without_an_id_is_unidentified(parts: Parts, text: str, code: str,
                                                           ref: str | None):
    with pytest.raises(ProtocolError) as caught:
        parse_frame(text)
    outcome = await parts.intake.accept_prediction(BOB.ss58_address, caught.value,
                                                   rate_checked=True)
    assert outcome == Unidentified(code, caught.value.message, ref)
    assert parts.stats.errors == {code: 1}
    assert not parts.stats.predictions


async def test_the_rate_is_taken_only_when_the_transport_has_not(parts: Parts):
    first, second, third = (Prediction.for_game(GAME, 0, 1.0) for _ in range(3))
    hotkey = BOB.ss58_address
    assert isinstance(await parts.intake.accept_prediction(hotkey, _frame(first),
                                                           rate_checked=False), Pending)
    # the burst of one is spent: a transport that did not count it gets RateLimited
    assert await parts.intake.accept_prediction(hotkey, _frame(second),
                                                rate_checked=False) == RateLimited()
    assert parts.stats.errors == {ErrorCode.RATE_LIMITED: 1}
    # one that counted it already (the WebSocket, before parsing) is not counted twice
    assert isinstance(await parts.intake.accept_prediction(hotkey, _frame(third),
                                                           rate_checked=True), Pending)
    # a request refused at parsing needs no token (PROTOCOL.md §12.2): answered as
    # such even with the bucket empty
    error = _parse_error({"prediction": {"wager": 1}})
    assert isinstance(await parts.intake.accept_prediction(hotkey, error, rate_checked=False),
                      Unidentified)


async def test_a_closed_store_means_shutting_down(parts: Parts):
    await parts.store.close()
    prediction = Prediction.for_game(GAME, 0, 10.0)
    outcome = await parts.intake.accept_prediction(BOB.ss58_address, _frame(prediction),
                                                   rate_checked=True)
    assert outcome == ShuttingDown(prediction.prediction_id)
    assert parts.stats.errors == {ErrorCode.SHUTTING_DOWN: 1}
    assert not parts.stats.predictions


async def test_a_rejection_over_the_websocket_rate_is_counted_and_signed(parts: Parts):
    data = parts.intake.reject_over_rate(BOB.ss58_address, "p-1", 50.0)
    assert (data["status"], data["code"], data["message"]) == (
        "rejected", "rate_limited", "more than 50 messages/s; resend later")
    assert verify_receipt(data, VALIDATOR.ss58_address)
    assert parts.stats.predictions == {"rejected": 1}
