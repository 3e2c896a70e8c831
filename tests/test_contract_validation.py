"""Unit tests for sdk.validation: the prediction rules shared by the hub and the SDK."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from sdk.codes import ErrorCode
from sdk.models import Game, Prediction
from sdk.validation import (
    DEFAULT_DAILY_WAGER_LIMIT,
    DEFAULT_ODDS_TOLERANCE,
    Rejection,
    Rules,
    check_confidence,
    check_daily_limit,
    check_game_exists,
    check_not_started,
    check_odds,
    check_outcome,
    check_prediction,
    check_teams,
    check_wager,
    wager_day,
)

START = datetime(2025, 6, 1, 18, 0, tzinfo=UTC)
BEFORE = START - timedelta(hours=1)


def nba(**overrides) -> Game:
    fields = dict(game_id="nba-1", team_a="Lakers", team_b="Celtics", sport="basketball",
                  league="NBA", event_start_date=START, team_a_odds=2.0, team_b_odds=1.9,
                  tie_odds=None, can_tie=False)
    fields.update(overrides)
    return Game(**fields)


def epl(**overrides) -> Game:
    fields = dict(game_id="epl-1", team_a="Arsenal", team_b="Chelsea", sport="soccer",
                  league="EPL", tie_odds=3.4, can_tie=True, team_a_odds=2.5, team_b_odds=2.8)
    fields.update(overrides)
    return nba(**fields)


def on(game: Game, outcome=0, wager=10.0, **overrides) -> Prediction:
    """A prediction matching ``game``'s current state, then ``overrides``."""
    fields = dict(game_id=game.game_id, predicted_outcome=outcome,
                  predicted_odds=game.odds_for(outcome) or 0.0, team_a=game.team_a,
                  team_b=game.team_b, wager=wager, team_a_odds=game.team_a_odds,
                  team_b_odds=game.team_b_odds, tie_odds=game.tie_odds)
    fields.update(overrides)
    return Prediction(**fields)


def code_of(rejection: Rejection | None) -> ErrorCode | None:
    if rejection is None:
        return None
    assert isinstance(rejection, Rejection)
    assert isinstance(rejection.code, ErrorCode)
    assert rejection.message
    return rejection.code


DEFAULT_RULES = Rules()


def check(prediction, game, *, now=BEFORE, wagered_today=0.0, rules=DEFAULT_RULES):
    return code_of(check_prediction(prediction, game, now=now, wagered_today=wagered_today,
                                    rules=rules))


def test_defaults():
    assert DEFAULT_ODDS_TOLERANCE == 0.01
    assert DEFAULT_DAILY_WAGER_LIMIT == 1000.0
    rules = Rules()
    assert (rules.odds_tolerance, rules.daily_wager_limit, rules.cutoff_margin) == (
        0.01, 1000.0, timedelta(0))


@pytest.mark.parametrize("game", [nba(), epl()])
@pytest.mark.parametrize("outcome", [0, 1])
def test_valid_prediction_accepted(game, outcome):
    assert check(on(game, outcome), game) is None


def test_valid_tie_accepted():
    game = epl()
    assert check(on(game, 2), game) is None
    assert check(Prediction.for_game(game, "draw", 10.0), game) is None
    assert check(Prediction.for_game(game, "Chelsea", 10.0), game) is None


# --------------------------------------------------------------------------- game exists


def test_check_game_exists():
    game = nba()
    assert check_game_exists(on(game), game) is None
    assert code_of(check_game_exists(on(game), None)) == ErrorCode.UNKNOWN_GAME
    other = nba(game_id="nba-2")
    rejection = check_game_exists(on(game), other)
    assert code_of(rejection) == ErrorCode.UNKNOWN_GAME
    assert "nba-1" in rejection.message


# --------------------------------------------------------------------------- started


def test_check_not_started_before_start():
    game = nba()
    assert check_not_started(game, BEFORE) is None
    assert check_not_started(game, START - timedelta(microseconds=1)) is None


@pytest.mark.parametrize("delta", [timedelta(0), timedelta(microseconds=1), timedelta(hours=3)])
def test_check_not_started_at_or_past_start(delta):
    rejection = check_not_started(nba(), START + delta)
    assert code_of(rejection) == ErrorCode.GAME_STARTED
    assert START.isoformat() in rejection.message


def test_check_not_started_compares_instants_not_wall_clock():
    tokyo = timezone(timedelta(hours=9))
    assert check_not_started(nba(), datetime(2025, 6, 2, 2, 59, tzinfo=tokyo)) is None
    assert code_of(check_not_started(nba(), datetime(2025, 6, 2, 3, 0, tzinfo=tokyo))) == (
        ErrorCode.GAME_STARTED)


def test_check_not_started_margin():
    game = nba()
    now = START - timedelta(minutes=5)
    assert check_not_started(game, now) is None
    assert check_not_started(game, now, timedelta(minutes=4, seconds=59)) is None
    assert code_of(check_not_started(game, now, timedelta(minutes=5))) == ErrorCode.GAME_STARTED
    assert code_of(check_not_started(game, now, timedelta(minutes=6))) == ErrorCode.GAME_STARTED


@pytest.mark.parametrize("game", [nba(outcome=0), nba(outcome=1), epl(outcome=2),
                                  nba(active=False)])
def test_check_not_started_closed_games(game):
    rejection = check_not_started(game, START - timedelta(days=2))
    assert code_of(rejection) == ErrorCode.GAME_STARTED
    assert "closed" in rejection.message


# --------------------------------------------------------------------------- outcome


def test_check_outcome():
    assert check_outcome(on(nba(), 0), nba()) is None
    assert check_outcome(on(nba(), 1), nba()) is None
    assert check_outcome(on(epl(), 2), epl()) is None
    assert code_of(check_outcome(on(nba(), 2), nba())) == ErrorCode.INVALID_OUTCOME
    # can_tie without tie odds, or tie odds without can_tie: no tie market.
    no_odds = epl(tie_odds=None)
    assert code_of(check_outcome(on(no_odds, 2), no_odds)) == ErrorCode.INVALID_OUTCOME
    no_flag = epl(can_tie=False)
    assert code_of(check_outcome(on(no_flag, 2), no_flag)) == ErrorCode.INVALID_OUTCOME


@pytest.mark.parametrize("outcome", [3, -1, 4, 100])
def test_check_outcome_out_of_range(outcome):
    rejection = check_outcome(on(epl(), outcome), epl())
    assert code_of(rejection) == ErrorCode.INVALID_OUTCOME
    assert str(outcome) in rejection.message


# --------------------------------------------------------------------------- teams


def test_check_teams():
    game = nba()
    assert check_teams(on(game), game) is None
    swapped = on(game, team_a="Celtics", team_b="Lakers")
    assert code_of(check_teams(swapped, game)) == ErrorCode.INVALID_PREDICTION
    other = on(game, team_b="Warriors")
    assert code_of(check_teams(other, game)) == ErrorCode.INVALID_PREDICTION
    case = on(game, team_a="lakers")
    assert code_of(check_teams(case, game)) == ErrorCode.INVALID_PREDICTION


# --------------------------------------------------------------------------- odds


@pytest.mark.parametrize("field", ["team_a_odds", "team_b_odds", "predicted_odds"])
@pytest.mark.parametrize(
    ("delta", "ok"),
    [(0.0, True), (0.005, True), (0.01, True), (-0.01, True), (0.0101, False),
     (-0.0101, False), (0.02, False), (1.0, False)],
)
def test_check_odds_tolerance_boundary(field, delta, ok):
    game = nba(team_a_odds=2.0, team_b_odds=1.9)
    base = on(game, 0)
    prediction = on(game, 0, **{field: getattr(base, field) + delta})
    expected = None if ok else ErrorCode.ODDS_MISMATCH
    assert code_of(check_odds(prediction, game)) == expected
    assert check(prediction, game) == expected
    if not ok:
        assert field in check_odds(prediction, game).message


def test_check_odds_float_rounding_at_the_boundary():
    # 1.99 v 2.0 differ by 0.010000000000000009 in binary floating point: still in.
    game = nba(team_a_odds=2.0)
    assert abs(1.99 - 2.0) > 0.01
    assert check_odds(on(game, 0, team_a_odds=1.99, predicted_odds=1.99), game) is None


@pytest.mark.parametrize(("delta", "ok"), [(0.01, True), (-0.01, True), (0.0101, False)])
def test_check_odds_tie_odds_when_game_can_tie(delta, ok):
    game = epl(tie_odds=3.4)
    prediction = on(game, 0, tie_odds=3.4 + delta)
    assert code_of(check_odds(prediction, game)) == (None if ok else ErrorCode.ODDS_MISMATCH)
    tie = on(game, 2, predicted_odds=3.4 + delta, tie_odds=3.4 + delta)
    assert code_of(check_odds(tie, game)) == (None if ok else ErrorCode.ODDS_MISMATCH)


def test_check_odds_missing_tie_odds_on_tie_game():
    game = epl()
    rejection = check_odds(on(game, 0, tie_odds=None), game)
    assert code_of(rejection) == ErrorCode.ODDS_MISMATCH
    assert "tie_odds" in rejection.message


def test_check_odds_tie_odds_ignored_without_tie_market():
    game = nba()
    assert check_odds(on(game, 0, tie_odds=9.9), game) is None
    assert check_odds(on(game, 0, tie_odds=None), game) is None


def test_check_odds_predicted_odds_follow_the_outcome():
    game = nba(team_a_odds=2.0, team_b_odds=1.9)
    assert check_odds(on(game, 1, predicted_odds=1.9), game) is None
    # Odds of the other team are not the odds of this outcome.
    assert code_of(check_odds(on(game, 1, predicted_odds=2.0), game)) == (
        ErrorCode.ODDS_MISMATCH)
    # No market for the outcome: any claimed odds mismatch.
    assert code_of(check_odds(on(game, 3, predicted_odds=0.0), game)) == (
        ErrorCode.ODDS_MISMATCH)


def test_check_odds_custom_tolerance():
    game = nba(team_a_odds=2.0)
    prediction = on(game, 0, team_a_odds=2.05, predicted_odds=2.05)
    assert code_of(check_odds(prediction, game)) == ErrorCode.ODDS_MISMATCH
    assert check_odds(prediction, game, tolerance=0.05) is None
    assert check(prediction, game, rules=Rules(odds_tolerance=0.05)) is None
    assert check(prediction, game, rules=Rules(odds_tolerance=0.04)) == ErrorCode.ODDS_MISMATCH


# --------------------------------------------------------------------------- wager


@pytest.mark.parametrize(("wager", "ok"), [(0.01, True), (1000.0, True), (0.0, False),
                                           (-0.0, False), (-1.0, False), (-1e-9, False)])
def test_check_wager(wager, ok):
    rejection = check_wager(on(nba(), wager=wager))
    assert code_of(rejection) == (None if ok else ErrorCode.INVALID_WAGER)


@pytest.mark.parametrize("wager", [math.nan, math.inf])
def test_check_wager_non_finite(wager):
    # The model refuses these, but a model_construct()-ed prediction must not slip through.
    prediction = on(nba()).model_copy(update={"wager": wager})
    assert code_of(check_wager(prediction)) == ErrorCode.INVALID_WAGER


@pytest.mark.parametrize(
    ("wager", "wagered", "ok"),
    [(1000.0, 0.0, True), (1000.01, 0.0, False), (0.01, 999.99, True), (0.02, 999.99, False),
     (500.0, 500.0, True), (500.0, 500.01, False), (1.0, 1000.0, False),
     (1.0, 2000.0, False), (999.999999, 0.0, True)],
)
def test_check_daily_limit(wager, wagered, ok):
    rejection = check_daily_limit(wager, wagered)
    assert code_of(rejection) == (None if ok else ErrorCode.WAGER_LIMIT)


def test_check_daily_limit_message_and_custom_limit():
    rejection = check_daily_limit(50.0, 980.0)
    assert "20" in rejection.message
    assert "1000" in rejection.message
    over = check_daily_limit(5.0, 2000.0)
    assert "(0 of 1000)" in over.message
    assert check_daily_limit(100.0, 0.0, limit=100.0) is None
    assert code_of(check_daily_limit(100.01, 0.0, limit=100.0)) == ErrorCode.WAGER_LIMIT


def test_daily_limit_through_check_prediction():
    game = nba()
    assert check(on(game, wager=1000.0), game) is None
    assert check(on(game, wager=1000.01), game) == ErrorCode.WAGER_LIMIT
    assert check(on(game, wager=0.01), game, wagered_today=999.99) is None
    assert check(on(game, wager=1.0), game, wagered_today=999.99) == ErrorCode.WAGER_LIMIT
    assert check(on(game, wager=10.0), game, wagered_today=995.0,
                 rules=Rules(daily_wager_limit=2000.0)) is None


# --------------------------------------------------------------------------- confidence


@pytest.mark.parametrize(("score", "ok"), [(None, True), (0.0, True), (0.5, True), (1.0, True),
                                           (-0.1, False), (1.1, False), (-1e-12, False),
                                           (1.0000001, False)])
def test_check_confidence(score, ok):
    rejection = check_confidence(on(nba(), confidence_score=score))
    assert code_of(rejection) == (None if ok else ErrorCode.INVALID_CONFIDENCE)
    assert check(on(nba(), confidence_score=score), nba()) == (
        None if ok else ErrorCode.INVALID_CONFIDENCE)


# --------------------------------------------------------------------------- ordering


def test_check_prediction_order():
    """Start from a prediction that breaks every rule; fix them one at a time in the hub's
    order and watch the first failure move down the list."""
    game = nba()
    fields = dict(game_id="nope", predicted_outcome=2, team_a="X", team_b="Y",
                  team_a_odds=9.0, team_b_odds=9.0, predicted_odds=9.0, wager=0.0,
                  confidence_score=1.5)
    steps = [
        (ErrorCode.UNKNOWN_GAME, {}),
        (ErrorCode.GAME_STARTED, {"game_id": game.game_id}),
        (ErrorCode.INVALID_OUTCOME, "in_time"),
        (ErrorCode.INVALID_PREDICTION, {"predicted_outcome": 0}),
        (ErrorCode.ODDS_MISMATCH, {"team_a": "Lakers", "team_b": "Celtics"}),
        (ErrorCode.INVALID_WAGER, {"team_a_odds": 2.0, "team_b_odds": 1.9,
                                   "predicted_odds": 2.0}),
        (ErrorCode.WAGER_LIMIT, {"wager": 1500.0}),
        (ErrorCode.INVALID_CONFIDENCE, {"wager": 100.0}),
        (None, {"confidence_score": 0.7}),
    ]
    now = START  # at kick-off: too late
    for expected, change in steps:
        if change == "in_time":
            now = BEFORE
        else:
            fields.update(change)
        assert check(Prediction(**fields), game, now=now) == expected, fields


def test_unknown_game_before_everything():
    game = nba()
    assert check(on(game, wager=-1.0), None, now=START) == ErrorCode.UNKNOWN_GAME
    assert check(on(game), nba(game_id="other")) == ErrorCode.UNKNOWN_GAME


def test_game_started_exactly_at_kick_off():
    game = nba()
    assert check(on(game), game, now=START - timedelta(microseconds=1)) is None
    assert check(on(game), game, now=START) == ErrorCode.GAME_STARTED
    assert check(on(game), game, now=START + timedelta(seconds=1)) == ErrorCode.GAME_STARTED


@pytest.mark.parametrize("closed", [nba(outcome=0), nba(outcome=1), nba(active=False)])
def test_settled_or_inactive_games_are_started(closed):
    assert check(on(closed), closed, now=START - timedelta(days=1)) == ErrorCode.GAME_STARTED


def test_tie_on_game_without_tie_odds_is_invalid_outcome():
    game = nba()
    assert check(on(game, "tie", predicted_odds=3.0), game) == ErrorCode.INVALID_OUTCOME
    # ...even if other rules fail too.
    assert check(on(game, 2, wager=-5, team_a_odds=99.0), game) == ErrorCode.INVALID_OUTCOME


def test_cutoff_margin_in_rules():
    game = nba()
    now = START - timedelta(minutes=10)
    prediction = on(game)
    assert check(prediction, game, now=now) is None
    assert check(prediction, game, now=now, rules=Rules(cutoff_margin=timedelta(minutes=9))) is None
    assert check(prediction, game, now=now,
                 rules=Rules(cutoff_margin=timedelta(minutes=10))) == ErrorCode.GAME_STARTED
    assert check(prediction, game, now=now,
                 rules=Rules(cutoff_margin=timedelta(minutes=15))) == ErrorCode.GAME_STARTED


def test_rejection_and_rules_are_immutable():
    rejection = Rejection(ErrorCode.WAGER_LIMIT, "too much")
    with pytest.raises(AttributeError):
        rejection.code = ErrorCode.INVALID_WAGER  # type: ignore[misc]
    with pytest.raises(AttributeError):
        Rules().odds_tolerance = 1.0  # type: ignore[misc]


# --------------------------------------------------------------------------- wager_day


@pytest.mark.parametrize(
    ("now", "day"),
    [
        (datetime(2025, 1, 1, 0, 0, tzinfo=UTC), date(2025, 1, 1)),
        (datetime(2025, 1, 1, 23, 59, 59, 999999, tzinfo=UTC), date(2025, 1, 1)),
        (datetime(2025, 1, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5))), date(2025, 1, 2)),
        (datetime(2025, 1, 2, 2, 0, tzinfo=timezone(timedelta(hours=5))), date(2025, 1, 1)),
        (datetime(2024, 12, 31, 19, 0, tzinfo=timezone(timedelta(hours=-5))), date(2025, 1, 1)),
        (datetime(2024, 2, 29, 1, 0, tzinfo=timezone(timedelta(hours=14))), date(2024, 2, 28)),
    ],
)
def test_wager_day_is_the_utc_day(now, day):
    assert wager_day(now) == day
