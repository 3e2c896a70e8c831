"""Pricing maths for agents: pure functions, no I/O, no clocks.

All odds are *decimal* odds (the payout per unit staked, stake included: 2.0 is
evens). A market's implied probabilities ``1/odds`` sum to more than 1; the excess
is the bookmaker's margin (the *vig* or *overround*). De-vigging removes it to
estimate the market's fair probabilities.

Conventions used throughout:

* ``edge(p, odds) = p * odds - 1``: the expected profit per unit staked when the true
  probability is ``p``.
* Kelly: the growth-optimal fraction of a bankroll to stake on a single bet is
  ``f* = (p * odds - 1) / (odds - 1)`` (0 when the edge is not positive). Agents
  stake a *fraction* of it (fractional Kelly, e.g. a quarter) because ``p`` is an
  estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

DevigMethod = Literal["proportional", "multiplicative", "power"]

__all__ = [
    "DevigMethod",
    "devig",
    "edge",
    "implied_probabilities",
    "kelly_fraction",
    "overround",
    "stake",
    "tilt",
]


def _check_odds(odds: float) -> float:
    value = float(odds)
    if not math.isfinite(value) or value <= 1.0:
        raise ValueError(f"decimal odds must be a finite number > 1, not {odds!r}")
    return value


def _check_probability(p: float) -> float:
    value = float(p)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"a probability must be within [0, 1], not {p!r}")
    return value


def implied_probabilities(odds: Sequence[float]) -> list[float]:
    """The raw implied probabilities ``1 / odds`` of each outcome (vig included).

    >>> implied_probabilities([2.0, 4.0])
    [0.5, 0.25]

    Raises ValueError for an empty market or odds that are not finite numbers > 1.
    """
    if len(odds) == 0:
        raise ValueError("a market needs at least one outcome")
    return [1.0 / _check_odds(o) for o in odds]


def overround(odds: Sequence[float]) -> float:
    """The bookmaker's margin: ``sum(1 / odds) - 1`` (0 for a fair book, > 0 with vig,
    < 0 for an arbitrage).

    >>> round(overround([1.9, 1.9]), 6)
    0.052632
    """
    return math.fsum(implied_probabilities(odds)) - 1.0


def _power_exponent(raw: Sequence[float]) -> float:
    """``k`` with ``sum(r ** k) == 1`` (bisection; every r is in (0, 1))."""
    total = math.fsum(raw)
    if len(raw) == 1 or math.isclose(total, 1.0, rel_tol=0.0, abs_tol=1e-15):
        return 1.0
    # sum(r ** k) decreases in k; it is len(raw) >= 1 at k = 0 and -> 0 as k -> inf.
    low, high = 0.0, 1.0
    while math.fsum(r ** high for r in raw) > 1.0:
        low, high = high, high * 2.0
        if high > 1e6:  # pragma: no cover - cannot happen for odds > 1
            break
    for _ in range(200):
        mid = (low + high) / 2.0
        if math.fsum(r ** mid for r in raw) > 1.0:
            low = mid
        else:
            high = mid
        if high - low < 1e-15:
            break
    return (low + high) / 2.0


def devig(odds: Sequence[float], method: DevigMethod = "proportional") -> list[float]:
    """Fair probabilities of each outcome with the bookmaker's margin removed.

    ``"proportional"`` (alias ``"multiplicative"``, the usual normalisation): each
    implied probability divided by their sum, ``p_i = (1/o_i) / sum(1/o_j)``.

    ``"power"``: ``p_i = (1/o_i) ** k`` with ``k`` chosen so they sum to 1. It takes
    more margin off long shots than off favourites (the favourite-longshot bias).

    The result always sums to 1 (up to float rounding), keeps the order of the odds
    (shorter odds, higher probability) and is unchanged by a fair book.

    >>> devig([1.9, 1.9])
    [0.5, 0.5]
    """
    raw = implied_probabilities(odds)
    if method in ("proportional", "multiplicative"):
        fair = [r / math.fsum(raw) for r in raw]
    elif method == "power":
        k = _power_exponent(raw)
        powered = [r ** k for r in raw]
        fair = [p / math.fsum(powered) for p in powered]  # exact normalisation
    else:
        raise ValueError(f"unknown de-vig method {method!r}: "
                         "use 'proportional', 'multiplicative' or 'power'")
    return fair


def tilt(probabilities: Sequence[float], shift: float) -> list[float]:
    """Move probability between the first two outcomes (team_a, team_b) by ``shift``
    in log-odds; any further outcome (the tie) keeps its share of the rest.

    With two outcomes this is exactly ``logit(p_a') = logit(p_a) + shift``. Used for a
    home-advantage or rating adjustment: positive ``shift`` favours team_a. The result
    sums to 1; ``shift == 0`` returns the input normalised.
    """
    if len(probabilities) < 2:
        raise ValueError("tilt needs at least two outcomes")
    probs = [_check_probability(p) for p in probabilities]
    if not math.isfinite(shift):
        raise ValueError(f"shift must be finite, not {shift!r}")
    total = math.fsum(probs)
    if total <= 0:
        raise ValueError("probabilities must not all be 0")
    probs = [p / total for p in probs]
    a, b = probs[0], probs[1]
    pair = a + b
    if pair <= 0.0:
        return probs
    # Split the pair's mass by the shifted odds ratio, computed stably.
    half = max(min(shift / 2.0, 350.0), -350.0)
    wa, wb = a * math.exp(half), b * math.exp(-half)
    share_a = wa / (wa + wb)
    return [pair * share_a, pair * (1.0 - share_a), *probs[2:]]


def edge(p: float, odds: float) -> float:
    """Expected profit per unit staked: ``p * odds - 1``."""
    return _check_probability(p) * _check_odds(odds) - 1.0


def kelly_fraction(p: float, odds: float) -> float:
    """Full-Kelly fraction of the bankroll for a bet at decimal ``odds`` won with
    probability ``p``: ``(p * odds - 1) / (odds - 1)``, and 0 when the edge is not
    positive (never bet without an edge; never a negative stake). Always in [0, 1].
    """
    probability = _check_probability(p)
    price = _check_odds(odds)
    advantage = probability * price - 1.0
    if advantage <= 0.0:
        return 0.0
    return min(advantage / (price - 1.0), 1.0)


def stake(p: float, odds: float, bankroll: float, *, fraction: float = 0.25,
          max_stake: float | None = None, min_stake: float = 0.0) -> float:
    """Fractional-Kelly stake: ``fraction * kelly_fraction(p, odds) * bankroll``,
    capped by ``max_stake`` and by the bankroll itself; 0 when there is no edge, no
    bankroll, or the stake would be below ``min_stake``. A ``fraction`` above 1
    (over-betting Kelly, which only adds risk) is treated as 1.

    Never negative and never more than ``bankroll`` (or ``max_stake``).
    """
    if not math.isfinite(bankroll):
        raise ValueError(f"bankroll must be finite, not {bankroll!r}")
    if not math.isfinite(fraction) or fraction < 0.0:
        raise ValueError(f"fraction must be a finite number >= 0, not {fraction!r}")
    if max_stake is not None and (math.isnan(max_stake) or max_stake < 0.0):
        raise ValueError(f"max_stake must be >= 0, not {max_stake!r}")
    if bankroll <= 0.0:
        return 0.0
    amount = min(fraction, 1.0) * kelly_fraction(p, odds) * bankroll
    amount = min(amount, bankroll)
    if max_stake is not None:
        amount = min(amount, max_stake)
    if amount <= 0.0 or amount < min_stake:
        return 0.0
    return amount
