"""Bettensor's validator scoring (agents.scoring), pinned to hand-computed numbers.

Every expected value is worked out in the comments next to it from the formulas of issue
10 (section 2), checked against upstream Nickel5-Inc/bettensor ``scoring.py`` and
``entropy_system.py``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

import agents
from agents import scoring
from agents.scoring import ClosingOdds, ScoredPrediction

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)

FINITE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
ODDS = st.floats(min_value=1.01, max_value=50.0, allow_nan=False, allow_infinity=False)
WAGER = st.floats(min_value=0.01, max_value=1000.0, allow_nan=False, allow_infinity=False)


def predict(uid: int, game: int, outcome: int, odds: float, wager: float, *,
            hours: float = 0.0, won: bool | None = None) -> ScoredPrediction:
    """A prediction made ``hours`` after T0; ``won`` None means not settled yet, else
    settled with Bettensor's payout rule (wager x odds when won, else 0)."""
    return ScoredPrediction(
        uid=uid, game=game, predicted_outcome=outcome, predicted_odds=odds, wager=wager,
        time=T0 + timedelta(hours=hours),
        payout=wager * odds if won else 0.0, settled=won is not None,
    )


# --- CLV --------------------------------------------------------------------------


def test_clv_is_the_mean_of_predicted_over_closing_odds_where_closing_odds_exist():
    closing = {101: ClosingOdds(101, 2.0, 2.5), 102: ClosingOdds(102, 1.6, 2.5, 4.0),
               103: ClosingOdds(103, 1.5, 3.0, 0.0)}
    mine = [
        predict(1, 101, 0, 2.2, 10),   # 2.2 / 2.0 (team_a) = 1.1
        predict(1, 102, 1, 3.0, 10),   # 3.0 / 2.5 (team_b) = 1.2
        predict(1, 103, 2, 3.3, 10),   # tie closing odds 0: skipped
        predict(1, 999, 0, 9.0, 10),   # no closing odds for the game: skipped
    ]
    # (1.1 + 1.2) / 2 = 1.15
    assert scoring.clv(mine, closing) == pytest.approx(1.15)


def test_clv_is_zero_when_no_prediction_counts():
    assert scoring.clv([], {}) == 0.0
    assert scoring.clv([predict(1, 103, 2, 3.3, 10)], {103: ClosingOdds(103, 1.5, 3.0)}) == 0.0


def test_clv_upstream_divides_by_the_column_of_the_outcome_in_id_first_rows():
    # Upstream rows are [external_id, team_a, team_b, tie], indexed by the outcome.
    closed = [ClosingOdds(101, 2.0, 2.5, 3.1), ClosingOdds(102, 1.8, 4.0, 0.0)]
    day = [
        predict(1, 101, 0, 2.2, 10),   # column 0 = the id: 2.2 / 101 = 0.0217822
        predict(1, 102, 1, 4.4, 10),   # column 1 = team_a: 4.4 / 1.8 = 2.4444444
        predict(2, 102, 2, 3.0, 10),   # column 2 = team_b: 3.0 / 4.0 = 0.75
        predict(3, 101, 2, 3.2, 10),   # column 2 = team_b: 3.2 / 2.5 = 1.28
    ]
    upstream = scoring.clv_upstream(day, closed)
    # uid 1: (2.2 / 101 + 4.4 / 1.8) / 2 = (0.0217822 + 2.4444444) / 2 = 1.2331133
    assert upstream == pytest.approx({1: 1.2331133, 2: 0.75, 3: 1.28})
    # What was meant: uid 1 (2.2 / 2.0 + 4.4 / 4.0) / 2 = 1.1; uid 2 on a tie without
    # odds counts nothing.
    closing = {g.game: g for g in closed}
    assert scoring.clv(day[:2], closing) == pytest.approx(1.1)
    assert scoring.clv(day[2:3], closing) == 0.0


def test_clv_upstream_takes_the_row_by_rank_of_the_predicted_ids_not_by_id():
    # The day's closed games by kick-off: 202 first, then 101. Only 101 was predicted;
    # it is the first (rank 0) of the sorted predicted ids, so upstream reads row 0,
    # game 202's row [202, 1.5, 2.5, 0]; column 1 = 1.5; 3.0 / 1.5 = 2.0.
    closed = [ClosingOdds(202, 1.5, 2.5), ClosingOdds(101, 2.0, 3.0)]
    day = [predict(4, 101, 1, 3.0, 10)]
    assert scoring.clv_upstream(day, closed) == pytest.approx({4: 2.0})
    # The intended CLV uses game 101's team_b odds: 3.0 / 3.0 = 1.
    assert scoring.clv(day, {g.game: g for g in closed}) == pytest.approx(1.0)


def test_clv_upstream_gives_every_predicting_miner_a_value():
    # uid 5's only prediction reads column 2 = team_b = 0 (a synthetic row): not counted.
    closed = [ClosingOdds(7, 2.0, 0.0, 3.0)]
    assert scoring.clv_upstream([predict(5, 7, 2, 3.0, 10)], closed) == {5: 0.0}
    assert scoring.clv_upstream([], closed) == {}


# --- ROI --------------------------------------------------------------------------


def test_roi_is_the_unweighted_mean_over_settled_rows_with_a_wager():
    mine = [
        predict(1, 1, 0, 2.5, 100, won=True),   # (250 - 100) / 100 = 1.5
        predict(1, 2, 0, 3.0, 50, won=False),   # (0 - 50) / 50 = -1
        predict(1, 3, 0, 9.0, 10),              # not settled: skipped
        predict(1, 4, 0, 2.0, 0, won=True),     # wager 0: skipped
    ]
    # (1.5 - 1) / 2 = 0.25, though 100 was staked on the winner and 50 on the loser
    assert scoring.roi(mine) == pytest.approx(0.25)


def test_roi_is_zero_without_a_settled_row():
    assert scoring.roi([]) == 0.0
    assert scoring.roi([predict(1, 1, 0, 2.0, 10)]) == 0.0


@given(odds=ODDS, wagers=st.lists(WAGER, min_size=1, max_size=8))
def test_roi_of_winners_at_one_price_is_the_price_less_one(odds, wagers):
    mine = [predict(1, i, 0, odds, w, won=True) for i, w in enumerate(wagers)]
    assert scoring.roi(mine) == pytest.approx(odds - 1)


# --- risk score ("Sortino" upstream) ----------------------------------------------


def test_risk_score_by_hand_with_the_skipped_row_in_the_denominator():
    mine = [
        # roi = 1; p = 0.95 / 2 = 0.475; risk = 0.525; rr = 1 / 0.525 = 1.9047619
        predict(1, 1, 0, 2.0, 100, won=True),
        # roi = -1; p = 0.95 / 4 = 0.2375; risk = 0.7625; inverse = 0.2375 + 0.00001
        # = 0.23751; rr = -1 / 0.23751 = -4.2103490
        predict(1, 2, 0, 4.0, 100, won=False),
        # roi = -1; p = 0.95 / 20 = 0.0475; inverse = 0.04751; -1 / 0.04751 = -21.05
        # -> floored at -10
        predict(1, 3, 0, 20.0, 10, won=False),
        # not settled: skipped, but still counted below
        predict(1, 4, 0, 3.0, 10),
    ]
    # (1.9047619 - 4.2103490 - 10) / 4 = -12.3055871 / 4 = -3.0763968
    assert scoring.risk_score(mine) == pytest.approx(-3.0763968)


def test_risk_score_skips_zero_wagers_and_zero_odds_but_counts_them():
    mine = [
        predict(1, 1, 0, 2.0, 100, won=True),   # 1.9047619 as above
        predict(1, 2, 0, 2.0, 0, won=True),     # wager 0: skipped
        predict(1, 3, 0, 0.0, 10, won=False),   # odds 0: skipped
    ]
    # 1.9047619 / 3 = 0.6349206
    assert scoring.risk_score(mine) == pytest.approx(0.6349206)


def test_risk_score_of_an_exact_break_even_is_zero():
    # odds 1.0 and a win: roi = 0, not > 0, so 0 / inverse = 0
    assert scoring.risk_score([predict(1, 1, 0, 1.0, 10, won=True)]) == 0.0
    assert scoring.risk_score([]) == 0.0


def test_risk_score_positive_roi_divides_by_risk_exactly():
    # odds 2.2: roi = 1.2; risk = 1 - 0.95 / 2.2 = 1.25 / 2.2; rr = 1.2 * 2.2 / 1.25 = 2.112
    assert scoring.risk_score([predict(1, 1, 0, 2.2, 100, won=True)]) == pytest.approx(2.112)


@given(
    settled=st.lists(st.tuples(ODDS, WAGER, st.booleans()), min_size=1, max_size=6),
    skipped=st.integers(min_value=0, max_value=6),
)
def test_each_skipped_row_dilutes_the_risk_score(settled, skipped):
    scored = [predict(1, i, 0, o, w, won=won) for i, (o, w, won) in enumerate(settled)]
    open_rows = [predict(1, 100 + i, 0, 2.0, 10) for i in range(skipped)]
    alone = scoring.risk_score(scored)
    assert scoring.risk_score(scored + open_rows) == pytest.approx(
        alone * len(scored) / (len(scored) + skipped))


# --- entropy ----------------------------------------------------------------------


def test_contrarian_component_by_hand():
    assert scoring.contrarian_component(0, 0) == 0.5          # no prediction on the game yet
    assert scoring.contrarian_component(0, 3) == pytest.approx(0.5)   # sqrt(1) - 0.5
    # 1 - 1/4 = 0.75; sqrt(0.75) - 0.5 = 0.8660254 - 0.5 = 0.3660254
    assert scoring.contrarian_component(1, 4) == pytest.approx(0.3660254)
    assert scoring.contrarian_component(4, 4) == pytest.approx(-0.5)  # sqrt(0) - 0.5


def test_similarity_by_hand():
    pool = [predict(1, 1, 0, 2.0, 100), predict(2, 1, 0, 2.0, 100, hours=1)]
    new = predict(3, 1, 0, 2.5, 50, hours=3)
    # time: dt 3 h -> 1 / (1 + 3) = 0.25; dt 2 h -> 1 / 3; mean 0.2916667
    # wager: 1 - |50 - 100| / 100 = 0.5 for both
    # odds: 1 / (1 + 0.5) = 0.6666667 for both
    # 0.5 * 0.2916667 + 0.4 * 0.5 + 0.1 * 0.6666667 = 0.1458333 + 0.2 + 0.0666667 = 0.4125
    assert scoring.prediction_similarity(new, pool) == pytest.approx(0.4125)
    assert scoring.prediction_similarity(new, []) == 0.0


def test_similarity_with_two_zero_wagers_is_zero_as_upstream_fails_to_it():
    pool = [predict(1, 1, 0, 2.0, 0)]
    assert scoring.prediction_similarity(predict(2, 1, 0, 2.0, 0), pool) == 0.0


def test_rescale_contribution_over_the_stored_pool():
    assert scoring.rescale_contribution(-0.3, []) == 0.0          # the first of a pool
    assert scoring.rescale_contribution(0.0, [0.0, 0.0]) == 0.0   # min = max
    # stored [0] and raw 0.2: min 0, max 0.2 -> (0.2 - 0) / 0.2 * 20 - 10 = 10
    assert scoring.rescale_contribution(0.2, [0.0]) == pytest.approx(10.0)
    # stored [0, -10] and raw -0.25: (-0.25 + 10) / 10 * 20 - 10 = 9.5
    assert scoring.rescale_contribution(-0.25, [0.0, -10.0]) == pytest.approx(9.5)


def _entropy_game() -> list[ScoredPrediction]:
    return [
        predict(1, 1, 0, 2.0, 100),             # P1
        predict(2, 1, 0, 2.0, 100, hours=1),    # P2
        predict(3, 1, 1, 3.0, 50, hours=2),     # P3
        predict(3, 1, 0, 2.5, 50, hours=3),     # P4
    ]


def test_entropy_contributions_by_hand():
    # P1: first of pool (1, 0) and of the game: similarity 0, contrarian 0.5,
    #     raw 0.4 * 0.5 = 0.2, stored 0 (first of its pool).
    # P2: similarity to P1: 0.5 * 1/(1+1) + 0.4 * 1 + 0.1 * 1 = 0.75; contrarian: 1 of 1
    #     on the outcome -> sqrt(0) - 0.5 = -0.5; raw = 0.6 * -0.75 + 0.4 * -0.5 = -0.65;
    #     over stored [0] + raw: min -0.65, max 0 -> 0 * 20 - 10 = -10.
    # P3: first of pool (1, 1): 0 (contrarian 0 of 2 -> 0.5, raw 0.2, not used).
    # P4: similarity to P1, P2 = 0.4125 (test_similarity_by_hand); contrarian: 2 of 3
    #     -> sqrt(1/3) - 0.5 = 0.0773503; raw = -0.6 * 0.4125 + 0.4 * 0.0773503
    #     = -0.2475 + 0.0309401 = -0.2165599; over stored [0, -10] + raw: min -10, max 0
    #     -> (-0.2165599 + 10) / 10 * 20 - 10 = 9.5668802.
    assert scoring.entropy_contributions(_entropy_game()) == pytest.approx(
        [0.0, -10.0, 0.0, 9.5668802])


def test_daily_entropy_by_hand_from_the_contributions():
    game = _entropy_game()
    contributions = scoring.entropy_contributions(game)
    # sums on game 1: uid 1: 0; uid 2: -10; uid 3: 0 + 9.5668802; max 9.5668802 > 0
    # -> uid 2: -10 / 9.5668802 = -1.0452728; uid 3: 1
    assert scoring.daily_entropy(game, contributions, {1}) == pytest.approx(
        {1: 0.0, 2: -1.0452728, 3: 1.0})
    # Game 1 did not close that day: nothing counts.
    assert scoring.daily_entropy(game, contributions, {2}) == {}


def test_daily_entropy_sums_only_the_days_games_and_divides_by_a_positive_max():
    preds = [predict(1, 1, 0, 2.0, 10), predict(1, 1, 1, 2.0, 10),
             predict(2, 1, 0, 2.0, 10), predict(2, 9, 0, 2.0, 10)]
    # uid 1: 2 + 3 = 5; uid 2: -4 (the 5.0 on game 9 is another day's); max 5
    # -> uid 1: 1.0, uid 2: -4 / 5 = -0.8
    assert scoring.daily_entropy(preds, [2.0, 3.0, -4.0, 5.0], {1}) == pytest.approx(
        {1: 1.0, 2: -0.8})


@pytest.mark.parametrize("values", [[-2.0, -1.0, -4.0], [0.0, -1.0, -3.0]])
def test_daily_entropy_is_not_divided_when_the_max_is_not_positive(values):
    preds = [predict(1, 1, 0, 2.0, 10), predict(1, 1, 0, 2.0, 10), predict(2, 1, 0, 2.0, 10)]
    # uid 1: values[0] + values[1]; uid 2: values[2]; left as they are
    assert scoring.daily_entropy(preds, values, {1}) == {
        1: values[0] + values[1], 2: values[2]}


def test_daily_entropy_needs_one_contribution_per_prediction():
    with pytest.raises(ValueError, match=r"^1 predictions but 2 contributions$"):
        scoring.daily_entropy([predict(1, 1, 0, 2.0, 10)], [1.0, 2.0], {1})


_ENTROPY_ROWS = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 2), ODDS, WAGER,
              st.floats(min_value=0, max_value=48)),
    max_size=25,
)


@given(rows=_ENTROPY_ROWS)
def test_entropy_contributions_stay_in_range_and_pools_start_at_zero(rows):
    preds = [predict(uid, game, outcome, odds, wager, hours=h)
             for uid, game, outcome, odds, wager, h in rows]
    contributions = scoring.entropy_contributions(preds)
    assert len(contributions) == len(preds)
    seen: set[tuple[int, int]] = set()
    for prediction, value in zip(preds, contributions, strict=True):
        assert -10.0 - 1e-9 <= value <= 10.0 + 1e-9
        key = (prediction.game, prediction.predicted_outcome)
        if key not in seen:
            assert value == 0.0
        seen.add(key)
    daily = scoring.daily_entropy(preds, contributions, {0, 1, 2})
    if daily and max(daily.values()) > 0:
        assert max(daily.values()) == pytest.approx(1.0)


# --- composite and tiers ----------------------------------------------------------


def test_composite_by_hand():
    # 0.3 * 1.1 + 0.3 * 0.25 + 0.3 * -3 + 0.1 * 1 = 0.33 + 0.075 - 0.9 + 0.1 = -0.395
    assert scoring.composite(1.1, 0.25, -3.0, 1.0) == pytest.approx(-0.395)
    # not normalised: large parts give a large score
    assert scoring.composite(10.0, 10.0, 10.0, 10.0) == pytest.approx(10.0)


@given(a=st.tuples(FINITE, FINITE, FINITE, FINITE), b=st.tuples(FINITE, FINITE, FINITE, FINITE),
       k=st.floats(min_value=-100, max_value=100, allow_nan=False))
def test_composite_is_linear_in_its_parts(a, b, k):
    summed = tuple(x + y for x, y in zip(a, b, strict=True))
    assert scoring.composite(*summed) == pytest.approx(
        scoring.composite(*a) + scoring.composite(*b), rel=1e-9, abs=1e-6)
    scaled = tuple(k * x for x in a)
    assert scoring.composite(*scaled) == pytest.approx(k * scoring.composite(*a),
                                                       rel=1e-9, abs=1e-6)


def test_tier_scores_are_window_means_with_missing_and_zero_days():
    # oldest first, ending today: [0.9, 0.0, 0.6, 0.3]; sum 1.8
    # tier 1 (3 days): (0.0 + 0.6 + 0.3) / 3 = 0.3
    # tier 2 (7): 1.8 / 7 = 0.2571429; tier 3: 1.8 / 15 = 0.12; tier 4: 1.8 / 30 = 0.06;
    # tier 5: 1.8 / 45 = 0.04
    assert scoring.tier_scores([0.9, 0.0, 0.6, 0.3]) == pytest.approx(
        (0.3, 0.2571429, 0.12, 0.06, 0.04))
    assert scoring.tier_scores([]) == (0.0, 0.0, 0.0, 0.0, 0.0)


def test_tier_scores_forget_days_older_than_45():
    # 5 days of 10 then 45 days of 1: every window sees only 1s
    assert scoring.tier_scores([10.0] * 5 + [1.0] * 45) == pytest.approx((1.0,) * 5)


@given(value=FINITE, extra=st.integers(min_value=0, max_value=20))
def test_a_constant_full_history_scores_the_constant_in_every_tier(value, extra):
    assert scoring.tier_scores([value] * (45 + extra)) == pytest.approx((value,) * 5)


def test_tier_requirements_at_their_boundaries():
    # 4 days of 1000 at the end: 3 days 3000 >= 0; 7 days 4000 >= 4000 (just);
    # 15 days 4000 < 10000
    assert scoring.tier_requirements_met([1000.0] * 4) == (True, True, False, False, False)
    assert scoring.tier_requirements_met([999.99, 1000.0, 1000.0, 1000.0]) == (
        True, False, False, False, False)                  # 3999.99 < 4000
    # 35 days of 1000 then 10 of 0: 45 days 35000 (just); 30 days 20 * 1000 = 20000 (just);
    # 15 days 5 * 1000 = 5000 < 10000; 7 days 0 < 4000
    history = [1000.0] * 35 + [0.0] * 10
    assert scoring.tier_requirements_met(history) == (True, False, False, True, True)
    # one day later the first 1000 leaves the 45-day window: 34000 < 35000
    assert scoring.tier_requirements_met([*history, 0.0]) == (
        True, False, False, False, False)  # 30 days: 19 * 1000 = 19000 < 20000
    assert scoring.tier_requirements_met([]) == (True, False, False, False, False)


def test_the_tier_tables_are_upstreams():
    assert scoring.TIER_WINDOWS == (3, 7, 15, 30, 45)
    assert scoring.TIER_MIN_WAGERS == (0, 4000, 10000, 20000, 35000)
    assert (scoring.CLV_WEIGHT, scoring.ROI_WEIGHT, scoring.RISK_WEIGHT,
            scoring.ENTROPY_WEIGHT) == (0.3, 0.3, 0.3, 0.1)


# --- daily limit and the scoring window -------------------------------------------


@pytest.mark.parametrize(("wagered", "wager", "fits"), [
    pytest.param(0.0, 1000.0, True, id="the-whole-limit"),
    pytest.param(600.0, 400.0, True, id="up-to-the-limit"),
    pytest.param(600.0, 400.01, False, id="a-cent-over"),
    pytest.param(1000.0, 0.01, False, id="limit-used"),
    pytest.param(0.0, 0.0, False, id="zero-wager"),
    pytest.param(0.0, -5.0, False, id="negative-wager"),
])
def test_daily_wager_limit(wagered, wager, fits):
    assert scoring.DAILY_WAGER_LIMIT == 1000.0
    assert scoring.fits_daily_limit(wagered, wager) is fits


def test_upstream_scores_the_48_hours_up_to_the_end_of_the_day():
    assert scoring.upstream_scoring_window(date(2025, 3, 10)) == (
        datetime(2025, 3, 8, 23, 59, 59, tzinfo=UTC),
        datetime(2025, 3, 10, 23, 59, 59, tzinfo=UTC),
    )


# --- one day, all parts -----------------------------------------------------------


def test_score_day_by_hand():
    closed = [ClosingOdds(101, 2.0, 4.0, 3.5)]
    day = [predict(7, 101, 0, 2.2, 100, won=True), predict(8, 101, 1, 4.0, 50, won=False)]
    scores = scoring.score_day(day, closed, {7: 0.5})
    seven, eight = scores[7], scores[8]
    # uid 7: clv 2.2 / 2.0 = 1.1; upstream 2.2 / 101 (column 0 = id) = 0.0217822;
    # roi (220 - 100) / 100 = 1.2; risk 2.112 (test above); entropy 0.5
    assert (seven.clv, seven.clv_upstream, seven.roi, seven.risk, seven.entropy) == \
        pytest.approx((1.1, 0.0217822, 1.2, 2.112, 0.5))
    # 0.3 * 1.1 + 0.3 * 1.2 + 0.3 * 2.112 + 0.1 * 0.5 = 0.33 + 0.36 + 0.6336 + 0.05 = 1.3736
    assert seven.composite == pytest.approx(1.3736)
    # 0.3 * 0.0217822 + 0.36 + 0.6336 + 0.05 = 0.0065347 + 1.0436 = 1.0501347
    assert seven.composite_upstream == pytest.approx(1.0501347)
    # uid 8: clv 4.0 / 4.0 = 1; upstream column 1 = team_a: 4.0 / 2.0 = 2; roi -1;
    # risk -1 / (0.95 / 4 + 0.00001) = -4.2103490; no entropy entry -> 0
    assert (eight.clv, eight.clv_upstream, eight.roi, eight.risk, eight.entropy) == \
        pytest.approx((1.0, 2.0, -1.0, -4.2103490, 0.0))
    assert sorted(scores) == [7, 8]


def test_closing_odds_outcomes():
    odds = ClosingOdds(5, 1.9, 2.1, 3.3)
    assert [odds.for_outcome(o) for o in (0, 1, 2)] == [1.9, 2.1, 3.3]
    assert odds.upstream_row() == (5.0, 1.9, 2.1, 3.3)
    with pytest.raises(ValueError, match=re.escape("an outcome is 0, 1 or 2, not 3")):
        odds.for_outcome(3)


def test_the_package_exports_the_scoring_api():
    for name in scoring.__all__:
        assert getattr(agents, name) is getattr(scoring, name), name
        assert name in agents.__all__
