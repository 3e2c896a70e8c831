"""Pricing maths of the agents (pure functions): de-vig, tilt, edge, Kelly, stake."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from agents import pricing

ODDS = st.floats(min_value=1.01, max_value=200.0, allow_nan=False, allow_infinity=False)
MARKET = st.lists(ODDS, min_size=2, max_size=3)
PROB = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
BANKROLL = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)
METHODS = st.sampled_from(["proportional", "multiplicative", "power"])


def test_implied_probabilities_and_overround():
    assert pricing.implied_probabilities([2.0, 4.0]) == [0.5, 0.25]
    assert pricing.overround([2.0, 2.0]) == pytest.approx(0.0)
    assert pricing.overround([1.9, 1.9]) == pytest.approx(2 / 1.9 - 1)
    assert pricing.overround([2.1, 3.4, 3.3]) > 0


@pytest.mark.parametrize(("bad", "message"), [
    pytest.param([], "a market needs at least one outcome", id="empty"),
    pytest.param([1.0, 2.0], "decimal odds must be a finite number > 1, not 1.0", id="evens-1"),
    pytest.param([0.5, 3.0], "decimal odds must be a finite number > 1, not 0.5", id="below-1"),
    pytest.param([math.nan, 2.0], "decimal odds must be a finite number > 1, not nan",
                 id="nan"),
    pytest.param([math.inf, 2.0], "decimal odds must be a finite number > 1, not inf",
                 id="inf"),
    pytest.param([-2.0, 2.0], "decimal odds must be a finite number > 1, not -2.0",
                 id="negative"),
])
def test_invalid_odds_are_refused(bad, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        pricing.implied_probabilities(bad)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        pricing.devig(bad)


def test_unknown_devig_method():
    with pytest.raises(ValueError, match="unknown de-vig method"):
        pricing.devig([2.0, 2.0], "shin")  # type: ignore[arg-type]


def test_devig_examples():
    assert pricing.devig([1.9, 1.9]) == pytest.approx([0.5, 0.5])
    fair = pricing.devig([2.1, 3.4, 3.3])
    raw = [1 / 2.1, 1 / 3.4, 1 / 3.3]
    assert fair == pytest.approx([r / sum(raw) for r in raw])
    # The power method takes more margin off the long shot than proportional does.
    proportional = pricing.devig([1.3, 3.5])
    power = pricing.devig([1.3, 3.5], "power")
    assert power[0] > proportional[0]
    assert power[1] < proportional[1]


@given(MARKET, METHODS)
def test_devigged_probabilities_sum_to_one(odds, method):
    fair = pricing.devig(odds, method)
    assert len(fair) == len(odds)
    assert math.fsum(fair) == pytest.approx(1.0, abs=1e-9)
    assert all(0.0 < p < 1.0 for p in fair)


@given(MARKET, METHODS)
def test_devig_keeps_the_order_of_the_prices(odds, method):
    fair = pricing.devig(odds, method)
    for i in range(len(odds)):
        for j in range(len(odds)):
            if odds[i] < odds[j]:
                assert fair[i] >= fair[j] - 1e-12


@given(st.lists(st.floats(min_value=0.01, max_value=0.98), min_size=2, max_size=3), METHODS)
def test_devig_leaves_a_fair_book_unchanged(weights, method):
    total = sum(weights)
    probs = [w / total for w in weights]
    assume(all(p < 0.99 for p in probs))
    fair = pricing.devig([1 / p for p in probs], method)
    assert fair == pytest.approx(probs, abs=1e-6)


@given(st.lists(st.floats(min_value=0.05, max_value=1.0), min_size=2, max_size=3),
       st.floats(min_value=0.001, max_value=0.3))
def test_devig_removes_the_margin(weights, margin):
    probs = [w / sum(weights) for w in weights]
    assume(all(p * (1 + margin) < 0.99 for p in probs))
    odds = [1 / (p * (1 + margin)) for p in probs]
    assert pricing.overround(odds) == pytest.approx(margin)
    fair = pricing.devig(odds)
    assert fair == pytest.approx(probs)
    for fair_p, raw in zip(fair, pricing.implied_probabilities(odds), strict=True):
        assert fair_p < raw


@given(st.lists(st.floats(min_value=0.01, max_value=1.0), min_size=2, max_size=3),
       st.floats(min_value=-5.0, max_value=5.0))
def test_tilt_sums_to_one_and_moves_mass_towards_team_a(probs, shift):
    tilted = pricing.tilt(probs, shift)
    assert math.fsum(tilted) == pytest.approx(1.0, abs=1e-9)
    base = pricing.tilt(probs, 0.0)
    assert base == pytest.approx([p / sum(probs) for p in probs])
    if shift > 0:
        assert tilted[0] >= base[0] - 1e-12
    if len(probs) == 3:  # the tie keeps its share
        assert tilted[2] == pytest.approx(base[2])


def test_tilt_is_a_log_odds_shift_for_two_outcomes():
    tilted = pricing.tilt([0.5, 0.5], 0.4)
    assert math.log(tilted[0] / tilted[1]) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="tilt needs at least two outcomes"):
        pricing.tilt([1.0], 0.1)
    with pytest.raises(ValueError, match="shift must be finite, not nan"):
        pricing.tilt([0.5, 0.5], math.nan)


def test_edge():
    assert pricing.edge(0.5, 2.0) == pytest.approx(0.0)
    assert pricing.edge(0.6, 2.0) == pytest.approx(0.2)
    assert pricing.edge(0.25, 3.0) == pytest.approx(-0.25)


def test_kelly_examples():
    assert pricing.kelly_fraction(0.6, 2.0) == pytest.approx(0.2)
    assert pricing.kelly_fraction(0.5, 2.0) == 0.0
    assert pricing.kelly_fraction(0.3, 2.0) == 0.0
    assert pricing.kelly_fraction(1.0, 3.0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"a probability must be within \[0, 1\], not 1.2"):
        pricing.kelly_fraction(1.2, 2.0)
    with pytest.raises(ValueError, match=r"decimal odds must be a finite number > 1, not 1\.0"):
        pricing.kelly_fraction(0.5, 1.0)


@given(PROB, ODDS)
def test_kelly_is_zero_without_an_edge_and_within_unit_interval(p, odds):
    f = pricing.kelly_fraction(p, odds)
    assert 0.0 <= f <= 1.0
    if p * odds - 1 <= 0:
        assert f == 0.0
    else:
        assert f == pytest.approx((p * odds - 1) / (odds - 1))


@given(PROB, PROB, ODDS)
def test_kelly_grows_with_the_probability(p1, p2, odds):
    low, high = sorted((p1, p2))
    assert pricing.kelly_fraction(low, odds) <= pricing.kelly_fraction(high, odds) + 1e-12


@given(PROB, ODDS, BANKROLL, st.floats(min_value=0.0, max_value=3.0),
       st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e4)))
def test_stake_never_exceeds_the_bankroll_or_the_cap(p, odds, bankroll, fraction, cap):
    amount = pricing.stake(p, odds, bankroll, fraction=fraction, max_stake=cap)
    assert 0.0 <= amount <= bankroll
    if cap is not None:
        assert amount <= cap
    if p * odds - 1 <= 0:
        assert amount == 0.0


@given(PROB, ODDS, st.floats(min_value=1.0, max_value=1e5), st.floats(0.01, 1.0))
def test_stake_is_fractional_kelly_of_the_bankroll(p, odds, bankroll, fraction):
    amount = pricing.stake(p, odds, bankroll, fraction=fraction)
    assert amount == pytest.approx(fraction * pricing.kelly_fraction(p, odds) * bankroll)


def test_stake_edges():
    assert pricing.stake(0.6, 2.0, 1000.0) == pytest.approx(0.25 * 0.2 * 1000)
    assert pricing.stake(0.6, 2.0, 1000.0, max_stake=10.0) == 10.0
    assert pricing.stake(0.6, 2.0, 0.0) == 0.0
    assert pricing.stake(0.6, 2.0, -5.0) == 0.0
    assert pricing.stake(0.6, 2.0, 10.0, min_stake=1.0) == 0.0  # 0.5 < min_stake
    assert pricing.stake(0.6, 2.0, 100.0, fraction=5.0) == pytest.approx(20.0)  # full Kelly


@pytest.mark.parametrize(("bad", "message"), [
    pytest.param({"bankroll": math.inf}, "bankroll must be finite, not inf", id="bankroll"),
    pytest.param({"fraction": -0.1}, "fraction must be a finite number >= 0, not -0.1",
                 id="fraction"),
    pytest.param({"max_stake": -1.0}, "max_stake must be >= 0, not -1.0", id="max_stake"),
])
def test_stake_refuses_bad_arguments(bad, message):
    kwargs = {"bankroll": 100.0, **bad}
    bankroll = kwargs.pop("bankroll")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        pricing.stake(0.6, 2.0, bankroll, **kwargs)
