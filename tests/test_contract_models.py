"""Unit tests for sdk.models: Game and Prediction (the data model of the wire contract)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from sdk.models import Game, Outcome, Prediction, parse_outcome

START = datetime(2025, 6, 1, 18, 0, tzinfo=UTC)
PID = "0b7c3f0e-4a44-4e0e-9d1c-2f8f8a3e9a11"


def make_game(**overrides) -> Game:
    fields = dict(
        game_id="g-1", team_a="Lakers", team_b="Celtics", sport="basketball", league="NBA",
        event_start_date=START, team_a_odds=1.8, team_b_odds=2.1, tie_odds=None,
        can_tie=False, last_update_date=START - timedelta(hours=2),
    )
    fields.update(overrides)
    return Game(**fields)


def soccer_game(**overrides) -> Game:
    fields = dict(game_id="g-2", team_a="Arsenal", team_b="Chelsea", sport="soccer",
                  league="EPL", team_a_odds=2.5, team_b_odds=2.9, tie_odds=3.3, can_tie=True)
    fields.update(overrides)
    return make_game(**fields)


def pred_fields(**overrides) -> dict:
    fields = dict(
        prediction_id=PID, game_id="g-1", miner_uid=7,
        prediction_date=START - timedelta(hours=1), predicted_outcome=0, predicted_odds=1.8,
        team_a="Lakers", team_b="Celtics", wager=25.0, team_a_odds=1.8, team_b_odds=2.1,
        tie_odds=None, model_name="fav", confidence_score=0.6,
    )
    fields.update(overrides)
    return fields


# --------------------------------------------------------------------------- Game


def test_game_json_round_trip():
    game = soccer_game()
    wire = game.model_dump(mode="json")
    assert wire["event_start_date"] == "2025-06-01T18:00:00Z"
    assert wire["outcome"] == 3
    assert wire["tie_odds"] == 3.3
    assert Game.model_validate(wire) == game
    assert Game.model_validate_json(game.model_dump_json()) == game


def test_game_wire_field_names_are_the_contract():
    assert set(make_game().model_dump(mode="json")) == {
        "game_id", "team_a", "team_b", "sport", "league", "event_start_date", "active",
        "outcome", "team_a_odds", "team_b_odds", "tie_odds", "can_tie", "last_update_date",
    }


def test_game_defaults():
    game = Game(game_id="g", team_a="a", team_b="b", sport="s", league="l",
                event_start_date=START, team_a_odds=1.5, team_b_odds=2.5)
    assert game.active is True
    assert game.outcome is Outcome.UNFINISHED
    assert game.tie_odds is None
    assert game.can_tie is False
    assert game.last_update_date.tzinfo is not None
    assert abs(game.last_update_date - datetime.now(UTC)) < timedelta(minutes=1)


def test_game_naive_datetime_becomes_utc_same_wall_time():
    naive = datetime(2025, 6, 1, 18, 0)
    game = make_game(event_start_date=naive, last_update_date=naive)
    assert game.event_start_date == START
    assert game.event_start_date.utcoffset() == timedelta(0)
    assert game.last_update_date.utcoffset() == timedelta(0)


def test_game_naive_iso_string_becomes_utc():
    game = make_game(event_start_date="2025-06-01T18:00:00")
    assert game.event_start_date == START
    assert game.event_start_date.utcoffset() == timedelta(0)


def test_game_aware_datetime_is_converted_to_utc():
    paris = timezone(timedelta(hours=2))
    game = make_game(event_start_date=datetime(2025, 6, 1, 20, 0, tzinfo=paris))
    assert game.event_start_date.hour == 18
    assert game.event_start_date.utcoffset() == timedelta(0)
    assert game.event_start_date == START
    game = make_game(event_start_date="2025-06-01T13:00:00-05:00")
    assert (game.event_start_date.hour, game.event_start_date.tzinfo) == (18, UTC)


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_datetime_out_of_range_in_utc_is_a_validation_error(text):
    # Regression: astimezone() overflowed with OverflowError, which escaped parse_frame.
    with pytest.raises(ValidationError, match="out of range"):
        make_game(event_start_date=text)
    with pytest.raises(ValidationError, match="out of range"):
        Prediction(**pred_fields(prediction_date=text))


@pytest.mark.parametrize("field", ["team_a_odds", "team_b_odds", "tie_odds"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "NaN", "inf"])
def test_game_non_finite_odds_rejected(field, bad):
    with pytest.raises(ValidationError, match="finite"):
        make_game(**{field: bad})


@pytest.mark.parametrize("field", ["game_id", "team_a", "team_b", "sport", "league"])
def test_game_short_text_bounds(field):
    with pytest.raises(ValidationError):
        make_game(**{field: ""})
    with pytest.raises(ValidationError):
        make_game(**{field: "x" * 201})
    assert getattr(make_game(**{field: "x" * 200}), field) == "x" * 200


def test_game_outcome_must_be_known():
    assert make_game(outcome=2).outcome is Outcome.TIE
    with pytest.raises(ValidationError):
        make_game(outcome=4)


def test_game_is_frozen_and_ignores_extra():
    game = make_game(unknown_field=1)
    assert not hasattr(game, "unknown_field")
    with pytest.raises(ValidationError):
        game.team_a_odds = 3.0  # type: ignore[misc]


def test_game_odds_for_and_settled():
    game = soccer_game()
    assert game.odds_for(0) == 2.5
    assert game.odds_for(1) == 2.9
    assert game.odds_for(2) == 3.3
    assert game.odds_for(3) is None
    assert make_game().odds_for(2) is None
    assert not game.settled
    for outcome in (0, 1, 2):
        assert make_game(outcome=outcome).settled


def test_game_same_state_ignores_only_last_update_date():
    game = make_game()
    later = make_game(last_update_date=START)
    assert later != game
    assert game.same_state(later)
    assert not game.same_state(make_game(team_a_odds=1.81))
    assert not game.same_state(make_game(active=False))


# --------------------------------------------------------------------------- Prediction


def test_prediction_json_round_trip():
    prediction = Prediction(**pred_fields())
    wire = prediction.model_dump(mode="json")
    assert wire == prediction.wire()
    assert wire["prediction_date"] == "2025-06-01T17:00:00Z"
    assert wire["predicted_outcome"] == 0
    assert Prediction.model_validate(wire) == prediction
    assert Prediction.model_validate_json(prediction.model_dump_json()) == prediction


def test_prediction_wire_field_names_are_the_contract():
    assert set(Prediction(**pred_fields()).wire()) == {
        "prediction_id", "game_id", "miner_uid", "prediction_date", "predicted_outcome",
        "predicted_odds", "team_a", "team_b", "wager", "team_a_odds", "team_b_odds",
        "tie_odds", "model_name", "confidence_score",
    }


def test_prediction_defaults_are_fresh():
    fields = pred_fields()
    for name in ("prediction_id", "prediction_date", "miner_uid", "model_name",
                 "confidence_score", "tie_odds"):
        del fields[name]
    first, second = Prediction(**fields), Prediction(**fields)
    assert uuid.UUID(first.prediction_id).version == 4
    assert first.prediction_id != second.prediction_id
    assert first.prediction_date.utcoffset() == timedelta(0)
    assert abs(first.prediction_date - datetime.now(UTC)) < timedelta(minutes=1)
    assert (first.miner_uid, first.model_name, first.confidence_score, first.tie_odds) == (
        None, None, None, None)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("tie", 2), ("TIE", 2), (" Tie ", 2), ("draw", 2), ("Draw", 2), ("DRAW", 2),
        ("Lakers", 0), ("lakers", 0), ("LAKERS", 0), ("  lakers ", 0),
        ("Celtics", 1), ("cElTiCs", 1),
        ("0", 0), ("1", 1), ("2", 2), (" 1 ", 1),
        (0, 0), (1, 1), (2, 2),
    ],
)
def test_prediction_outcome_names(given, expected):
    prediction = Prediction(**pred_fields(predicted_outcome=given))
    assert prediction.predicted_outcome == expected
    assert type(prediction.predicted_outcome) is int


def test_prediction_outcome_casefold_handles_unicode_team_names():
    prediction = Prediction(**pred_fields(team_a="Fußball Club", predicted_outcome="FUSSBALL CLUB"))
    assert prediction.predicted_outcome == 0


def test_team_name_wins_over_tie_word():
    # A team literally named "Draw" is that team, not the tie outcome.
    prediction = Prediction(**pred_fields(team_b="Draw", predicted_outcome="draw"))
    assert prediction.predicted_outcome == 1


@pytest.mark.parametrize("bad", [True, False, "nobody", "", "3x", 1.5, None, [0], {"a": 0}])
def test_prediction_bad_outcome_rejected(bad):
    with pytest.raises(ValidationError) as info:
        Prediction(**pred_fields(predicted_outcome=bad))
    assert info.value.errors()[0]["loc"] == ("predicted_outcome",)


def test_parse_outcome_direct():
    assert parse_outcome("Home", "home", "away") == 0
    assert parse_outcome("AWAY", "home", "away") == 1
    assert parse_outcome("draw", None, None) == 2
    assert parse_outcome("2", None, None) == 2
    assert parse_outcome("home", None, None) == "home"  # unknown: unchanged
    assert parse_outcome(5, "a", "b") == 5
    sentinel = object()
    assert parse_outcome(sentinel, "a", "b") is sentinel


@pytest.mark.parametrize("team", [5, 1.5, ["a"], {"a": 1}, True])
def test_parse_outcome_ignores_non_string_team_names(team):
    # Regression: team names come from untrusted JSON; .strip() on an int raised
    # AttributeError, which escaped parse_frame.
    assert parse_outcome("x", team, team) == "x"
    assert parse_outcome("tie", team, team) == 2
    with pytest.raises(ValidationError):
        Prediction(**pred_fields(predicted_outcome="x", team_a=team))


@pytest.mark.parametrize(
    "bad", ["not-a-uuid", "", "0b7c3f0e-4a44-4e0e-9d1c-2f8f8a3e9a1", "g" * 32, 123, None]
)
def test_prediction_non_uuid_id_rejected(bad):
    with pytest.raises(ValidationError) as info:
        Prediction(**pred_fields(prediction_id=bad))
    assert info.value.errors()[0]["loc"] == ("prediction_id",)


def test_prediction_id_is_normalised():
    assert Prediction(**pred_fields(prediction_id=PID.upper())).prediction_id == PID
    assert Prediction(**pred_fields(prediction_id=PID.replace("-", ""))).prediction_id == PID


@pytest.mark.parametrize(
    "field", ["predicted_odds", "wager", "team_a_odds", "team_b_odds", "tie_odds",
              "confidence_score"],
)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "nan", "-Infinity"])
def test_prediction_non_finite_numbers_rejected(field, bad):
    with pytest.raises(ValidationError) as info:
        Prediction(**pred_fields(**{field: bad}))
    assert info.value.errors()[0]["loc"] == (field,)


def test_prediction_types_only_rules_elsewhere():
    # Zero/negative wagers and out-of-range confidence are rule failures with their own
    # codes (sdk.validation), not type errors.
    prediction = Prediction(**pred_fields(wager=-5, confidence_score=1.5))
    assert prediction.wager == -5.0
    assert prediction.confidence_score == 1.5


def test_prediction_naive_datetime_becomes_utc():
    prediction = Prediction(**pred_fields(prediction_date=datetime(2025, 6, 1, 17, 0)))
    assert prediction.prediction_date == START - timedelta(hours=1)
    assert prediction.prediction_date.utcoffset() == timedelta(0)
    prediction = Prediction(**pred_fields(prediction_date="2025-06-01T19:00:00+02:00"))
    assert prediction.prediction_date == START - timedelta(hours=1)
    assert prediction.prediction_date.utcoffset() == timedelta(0)


def test_prediction_model_name_length():
    assert Prediction(**pred_fields(model_name="m" * 200)).model_name == "m" * 200
    with pytest.raises(ValidationError):
        Prediction(**pred_fields(model_name="m" * 201))


def test_prediction_frozen():
    prediction = Prediction(**pred_fields())
    with pytest.raises(ValidationError):
        prediction.wager = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------- for_game


@pytest.mark.parametrize(
    ("outcome", "code", "odds"),
    [(0, 0, 1.8), (1, 1, 2.1), ("lakers", 0, 1.8), ("CELTICS", 1, 2.1), ("1", 1, 2.1)],
)
def test_for_game_uses_the_games_odds(outcome, code, odds):
    game = make_game()
    prediction = Prediction.for_game(game, outcome, 10)
    assert prediction.predicted_outcome == code
    assert prediction.predicted_odds == odds
    assert (prediction.game_id, prediction.team_a, prediction.team_b) == (
        game.game_id, game.team_a, game.team_b)
    assert (prediction.team_a_odds, prediction.team_b_odds, prediction.tie_odds) == (
        1.8, 2.1, None)
    assert prediction.wager == 10.0
    uuid.UUID(prediction.prediction_id)


def test_for_game_tie_uses_tie_odds_and_passes_extra_fields():
    game = soccer_game()
    prediction = Prediction.for_game(game, "draw", 5.5, confidence_score=0.4,
                                     model_name="m", miner_uid=3)
    assert prediction.predicted_outcome == 2
    assert prediction.predicted_odds == 3.3
    assert prediction.tie_odds == 3.3
    assert (prediction.confidence_score, prediction.model_name, prediction.miner_uid) == (
        0.4, "m", 3)


def test_for_game_follows_odds_changes():
    game = make_game(team_a_odds=1.5)
    assert Prediction.for_game(game, 0, 1).predicted_odds == 1.5


def test_for_game_tie_without_market_has_zero_odds():
    prediction = Prediction.for_game(make_game(), "tie", 1)
    assert prediction.predicted_outcome == 2
    assert prediction.predicted_odds == 0.0


def test_for_game_unknown_outcome_rejected():
    with pytest.raises(ValidationError):
        Prediction.for_game(make_game(), "Warriors", 1)
