"""Daily budget rules and runner stats (pure)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents import DailySpend, RunnerStats, fit_wager

AMOUNT = st.floats(min_value=-10.0, max_value=2000.0, allow_nan=False, allow_infinity=False)


def test_a_wager_that_fits_is_unchanged():
    assert fit_wager(10.0, 25.0) == 10.0
    assert fit_wager(25.0, 25.0) == 25.0
    assert fit_wager(25.0 + 1e-12, 25.0) == 25.0  # float noise is not "over"


def test_over_budget_scales_down_to_cents_or_drops():
    assert fit_wager(10.0, 5.0) == 5.0
    assert fit_wager(10.0, 4.999) == 4.99
    assert fit_wager(10.0, 0.3) == pytest.approx(0.3)
    assert fit_wager(10.0, 0.3) <= 0.3
    assert fit_wager(10.0, 0.005) is None  # below min_wager
    assert fit_wager(10.0, 0.0) is None
    assert fit_wager(10.0, -3.0) is None
    assert fit_wager(10.0, 5.0, policy="drop") is None
    assert fit_wager(10.0, 5.0, min_wager=6.0) is None
    with pytest.raises(ValueError, match="policy must be 'scale' or 'drop', not 'borrow'"):
        fit_wager(10.0, 5.0, policy="borrow")  # type: ignore[arg-type]


def test_nonsense_wagers_are_dropped():
    for wager in (0.0, -1.0, math.nan, math.inf, 0.001):
        assert fit_wager(wager, 100.0) is None


@given(AMOUNT, AMOUNT, st.sampled_from(["scale", "drop"]))
def test_fit_wager_never_exceeds_what_is_left(wager, left, policy):
    fitted = fit_wager(wager, left, policy=policy)
    if fitted is not None:
        assert 0.01 <= fitted <= max(left, 0.0)
        assert fitted <= wager


@given(st.lists(st.floats(min_value=0.0, max_value=300.0), max_size=30),
       st.floats(min_value=0.0, max_value=1000.0))
def test_reserving_fitted_wagers_respects_the_limit(wagers, limit):
    ledger = DailySpend()
    for wager in wagers:
        fitted = fit_wager(wager, ledger.left("2025-01-01", limit))
        if fitted is not None:
            ledger.reserve("2025-01-01", fitted)
    assert ledger.wagered("2025-01-01") <= limit + 1e-6


def test_ledger_days_are_separate():
    ledger = DailySpend()
    ledger.seed([("2025-01-01", 30.0), ("2025-01-01", 20.0), ("2025-01-02", 5.0)])
    assert ledger.left("2025-01-01", 100.0) == 50.0
    assert ledger.left("2025-01-02", 100.0) == 95.0
    assert ledger.left("2025-01-03", 100.0) == 100.0
    ledger.release("2025-01-01", 30.0)
    assert ledger.wagered("2025-01-01") == 20.0
    ledger.release("2025-01-01", 300.0)
    assert ledger.wagered("2025-01-01") == 0.0
    ledger.observe("2025-01-02", 60.0)  # someone else spent more
    ledger.observe("2025-01-02", 10.0)  # never believe less
    assert ledger.wagered("2025-01-02") == 60.0
    ledger.exhaust("2025-01-02", 100.0)
    assert ledger.left("2025-01-02", 100.0) == 0.0
    assert ledger.left("2025-01-02", 50.0) == 0.0


def test_runner_stats_totals_and_rows():
    stats = RunnerStats(agent="favorite")
    a, b = stats.validator("5A"), stats.validator("5B")
    assert stats.validator("5A") is a
    a.submitted, a.accepted, b.submitted, b.duplicate = 3, 2, 2, 1
    a.rejected["odds_mismatch"] += 1
    b.rejected["odds_mismatch"] += 2
    b.rejected["game_started"] += 1
    a.add_wager("2025-01-01", "g1", 10.0)
    a.add_wager("2025-01-01", "g2", 5.0)
    a.remove_wager("2025-01-01", "g2", 5.0)
    b.skipped["budget"] += 4
    assert (stats.submitted, stats.accepted, stats.duplicate) == (5, 2, 1)
    assert stats.rejected == {"odds_mismatch": 3, "game_started": 1}
    assert stats.skipped == {"budget": 4}
    assert stats.wagered("5A", "2025-01-01") == 10.0
    assert stats.wagered("5C", "2025-01-01") == 0.0
    assert a.wagered_by_game == {"g1": 10.0}
    rows = stats.rows()
    assert [r["validator"] for r in rows] == ["5A", "5B"]
    assert rows[1]["rejected"] == 3
    assert rows[1]["rejected_by_code"] == "game_started=1, odds_mismatch=2"
    summary = stats.to_dict()
    assert summary["validators"]["5A"]["wagered"] == {"2025-01-01": 10.0}
    assert summary["rejected"] == {"odds_mismatch": 3, "game_started": 1}
