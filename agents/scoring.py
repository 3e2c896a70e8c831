"""Bettensor's validator scoring, per miner, as pure functions (no I/O, no clocks).

A miner's reward on Bettensor follows from what the validator's scoring computes for
each UTC day: CLV, ROI, a risk-adjusted ROI ("Sortino" upstream), an entropy score,
their composite, and the tier scores and tier wager requirements built on the daily
composite. This module reproduces those numbers from plain values
(:class:`ScoredPrediction`, :class:`ClosingOdds`) so that a backtester or
``bt-miner status`` can tell a miner what their agent would score, without a
validator.

Upstream, every function here mirrors code in the repository ``Nickel5-Inc/bettensor``,
branch ``main`` (read at commit ``fbcb0557``):

* ``bettensor/validator/utils/scoring/scoring.py``, class ``ScoringSystem``:
  ``_calculate_clv_scores``, ``_calculate_roi_scores``, ``_calculate_risk_scores``,
  ``_update_composite_scores``, ``_meets_tier_requirements`` and ``tier_configs``;
* ``bettensor/validator/utils/scoring/entropy_system.py``, class ``EntropySystem``:
  ``calculate_prediction_similarity``, ``calculate_contrarian_component``,
  ``calculate_entropy_contribution``, ``get_current_ebdr_scores``;
* ``bettensor/validator/utils/scoring/scoring_data.py``, ``ScoringData``:
  ``preprocess_for_scoring`` and ``_fetch_closed_game_data`` (which games and rows a
  day is scored on);
* ``bettensor/validator/utils/io/miner_data.py``, ``MinerDataMixin``:
  ``insert_predictions`` / ``validate_prediction`` (the daily wager limit).

The formulas are those of issue 10, section 2. Where the real upstream code does
something else, this module follows the issue and the difference is written here:

* **CLV.** The intended formula is :func:`clv`. What upstream really computes is
  :func:`clv_upstream`, which has *two* indexing bugs, not one: (1) the column: the
  closing-odds rows are ``[external_id, team_a, team_b, tie]`` but are indexed by the
  predicted outcome, so outcome 0 is divided by the game's external id, outcome 1 by
  team_a's odds and outcome 2 by team_b's; (2) the row: a prediction's row is the rank of
  its game id among the *distinct game ids predicted that day, sorted ascending*, used as
  an index into the day's closed games *ordered by kick-off* (and those include games
  nobody predicted). The two orders agree only when every closed game was predicted and
  game ids rise with kick-off. The issue names only (1).
* **Closing odds.** The issue calls them the game's last odds before kick-off; upstream
  reads whatever ``team_a_odds/team_b_odds/tie_odds`` the game row holds when the day is
  scored. Callers choose what to pass.
* **Which games make "a day".** Upstream scores, on day D, every game with a final
  outcome whose kick-off lies in ``[D 23:59:59 - 48 h, D 23:59:59]`` (UTC), so a game can
  be scored on two consecutive days; :func:`upstream_scoring_window` gives that window.
  The functions here score whatever predictions they are given.
* **Days without games.** Upstream does not write a daily composite on a day with no
  closed game (the slot of its 45-day ring keeps its old value); the tier means here
  count such a day as 0, as the issue says.
* **Tier requirements.** Upstream also asks for "active days" in the window, but counts
  non-NaN cells of a (days x 6) score array, which always passes; only the wager sum
  matters, as here. Upstream wagers are summed per UTC day of the prediction's time;
  tier capacities, promotions and swaps are not part of this module.
* **Edge cases upstream only reaches by raising.** A wager similarity with both wagers 0
  makes upstream's similarity raise and return 0 (the validator refuses wagers <= 0, so
  this only matters for synthetic input); a risk of exactly 0 (odds 0.95) with a
  positive ROI divides by zero in numpy (``inf``). Both are mirrored.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sdk.models import as_utc

__all__ = [
    "CLV_WEIGHT",
    "DAILY_WAGER_LIMIT",
    "ENTROPY_WEIGHT",
    "RISK_WEIGHT",
    "ROI_WEIGHT",
    "TIER_MIN_WAGERS",
    "TIER_WINDOWS",
    "ClosingOdds",
    "DailyScore",
    "ScoredPrediction",
    "clv",
    "clv_upstream",
    "composite",
    "contrarian_component",
    "daily_entropy",
    "entropy_contributions",
    "fits_daily_limit",
    "prediction_similarity",
    "rescale_contribution",
    "risk_score",
    "roi",
    "score_day",
    "tier_requirements_met",
    "tier_scores",
    "upstream_scoring_window",
]

CLV_WEIGHT = 0.3
ROI_WEIGHT = 0.3
RISK_WEIGHT = 0.3
ENTROPY_WEIGHT = 0.1

TIER_WINDOWS: tuple[int, ...] = (3, 7, 15, 30, 45)
"""Days averaged for the scores of tiers 1..5 (upstream ``tier_configs[2:]['window']``)."""

TIER_MIN_WAGERS: tuple[float, ...] = (0.0, 4000.0, 10000.0, 20000.0, 35000.0)
"""Wager summed over each tier's window needed to hold tiers 1..5 (``min_wager``)."""

DAILY_WAGER_LIMIT = 1000.0
"""Most a miner may wager per UTC day with one validator."""

_HOUSE_EDGE = 0.05
_RISK_EPSILON = 0.00001
_RISK_FLOOR = -10.0


@dataclass(frozen=True, slots=True)
class ScoredPrediction:
    """One prediction as the validator stored it.

    ``game`` is the game's id (upstream: its external id); ``predicted_outcome`` is
    0 team_a, 1 team_b, 2 tie; ``time`` is when the validator accepted it (upstream
    ``prediction_date``; a naive datetime is UTC). ``payout`` is ``wager *
    predicted_odds`` for a won, settled prediction and 0 otherwise; ``settled`` says
    the game's outcome is known.
    """

    uid: int
    game: int
    predicted_outcome: int
    predicted_odds: float
    wager: float
    time: datetime
    payout: float = 0.0
    settled: bool = False


@dataclass(frozen=True, slots=True)
class ClosingOdds:
    """A game's closing decimal odds per outcome (``tie`` 0 where a tie is impossible)."""

    game: int
    team_a: float
    team_b: float
    tie: float = 0.0

    def for_outcome(self, outcome: int) -> float:
        """The closing odds of ``outcome`` (0 team_a, 1 team_b, 2 tie)."""
        if outcome == 0:
            return self.team_a
        if outcome == 1:
            return self.team_b
        if outcome == 2:
            return self.tie
        raise ValueError(f"an outcome is 0, 1 or 2, not {outcome!r}")

    def upstream_row(self) -> tuple[float, float, float, float]:
        """The row upstream builds for this game: ``[external_id, team_a, team_b, tie]``."""
        return (float(self.game), self.team_a, self.team_b, self.tie)


def _mean(total: float, count: int) -> float:
    return total / count if count else 0.0


def clv(predictions: Iterable[ScoredPrediction], closing: Mapping[int, ClosingOdds]) -> float:
    """One miner's closing line value: the mean of ``predicted_odds / closing odds of the
    predicted outcome`` over the predictions whose closing odds are > 0 (0 if none).

    Above 1 means the miner got better odds than the market closed at. This is the
    formula upstream ``ScoringSystem._calculate_clv_scores`` (``scoring.py``) intends;
    :func:`clv_upstream` is what it computes.
    """
    total, count = 0.0, 0
    for prediction in predictions:
        odds = closing.get(prediction.game)
        if odds is None or prediction.predicted_outcome not in (0, 1, 2):
            continue
        closing_odds = odds.for_outcome(prediction.predicted_outcome)
        if closing_odds > 0:
            value = prediction.predicted_odds / closing_odds
            if math.isfinite(value):
                total += value
                count += 1
    return _mean(total, count)


def clv_upstream(
    day_predictions: Sequence[ScoredPrediction], closed_games: Sequence[ClosingOdds],
) -> dict[int, float]:
    """CLV per miner exactly as upstream ``ScoringSystem._calculate_clv_scores``
    (``scoring.py``) computes it, indexing bugs included (see the module docstring).

    ``day_predictions`` are *all* miners' predictions scored that day (the row index of
    one depends on the others); ``closed_games`` the day's closed games ordered as
    upstream lists them, by kick-off ascending. Every miner with a prediction gets a
    value, 0 when none of theirs counted. Like upstream, raises IndexError when there
    are fewer closed games than distinct predicted games.
    """
    rows = [game.upstream_row() for game in closed_games]
    row_of_game = {game: i for i, game in enumerate(sorted({p.game for p in day_predictions}))}
    totals: dict[int, float] = {}
    counts: dict[int, int] = {}
    for prediction in day_predictions:
        totals.setdefault(prediction.uid, 0.0)
        counts.setdefault(prediction.uid, 0)
        column = prediction.predicted_outcome
        if not 0 <= column < 4:
            continue
        divisor = rows[row_of_game[prediction.game]][column]
        if divisor > 0:
            value = prediction.predicted_odds / divisor
            if math.isfinite(value):
                totals[prediction.uid] += value
                counts[prediction.uid] += 1
    return {uid: _mean(totals[uid], counts[uid]) for uid in totals}


def roi(predictions: Iterable[ScoredPrediction]) -> float:
    """One miner's ROI: the unweighted mean of ``(payout - wager) / wager`` over the
    settled predictions with a wager other than 0 (0 if none).

    Mirrors upstream ``ScoringSystem._calculate_roi_scores`` (``scoring.py``): a 10 bet
    and a 500 bet weigh the same.
    """
    total, count = 0.0, 0
    for prediction in predictions:
        if not prediction.settled or prediction.wager == 0:
            continue
        value = (prediction.payout - prediction.wager) / prediction.wager
        if math.isfinite(value):
            total += value
            count += 1
    return _mean(total, count)


def risk_score(predictions: Sequence[ScoredPrediction]) -> float:
    """One miner's risk-adjusted ROI for a day (upstream's "Sortino" score).

    Mirrors upstream ``ScoringSystem._calculate_risk_scores`` (``scoring.py``). Per
    prediction, skipping unsettled ones and those with wager <= 0 or odds <= 0:
    ``roi = (payout - wager) / wager``; ``p = 0.95 / predicted_odds`` (implied
    probability less a 5 % house edge); ``risk = min(1 - p, 1)``; ``inverse = (1 - risk)
    + 0.00001``; ``rr = roi / risk`` when ``roi > 0`` else ``max(roi / inverse, -10)``.
    The sum is divided by the number of *all* the given predictions, skipped ones
    included, so a skipped row dilutes the score toward 0.
    """
    total = 0.0
    for prediction in predictions:
        if not prediction.settled or prediction.wager <= 0 or prediction.predicted_odds <= 0:
            continue
        value = (prediction.payout - prediction.wager) / prediction.wager
        adjusted_probability = (1 / prediction.predicted_odds) * (1 - _HOUSE_EDGE)
        risk = min(1 - adjusted_probability, 1.0)
        inverse_risk = (1 - risk) + _RISK_EPSILON
        if value > 0:
            # numpy, upstream, gives inf for x / 0.0 where Python would raise.
            total += value / risk if risk != 0 else math.inf
        else:
            total += max(value / inverse_risk, _RISK_FLOOR)
    return _mean(total, len(predictions))


def prediction_similarity(
    prediction: ScoredPrediction, pool: Sequence[ScoredPrediction],
) -> float:
    """How much ``prediction`` looks like the earlier ones in its (game, outcome) pool,
    in [0, 1]; 0 for the first.

    Mirrors upstream ``EntropySystem.calculate_prediction_similarity``
    (``entropy_system.py``): ``clip(0.5 * mean(1 / (1 + |dt| / 3600)) + 0.4 * mean(1 -
    |w - w_i| / max(w, w_i)) + 0.1 * mean(1 / (1 + |odds - odds_i|)), 0, 1)`` with ``dt``
    in seconds. Two zero wagers make upstream fail and answer 0, and so does this.
    """
    if not pool:
        return 0.0
    when = as_utc(prediction.time)
    time_similarity = _average(
        1.0 / (1.0 + abs((when - as_utc(other.time)).total_seconds()) / 3600) for other in pool)
    odds_similarity = _average(
        1.0 / (1.0 + abs(prediction.predicted_odds - other.predicted_odds)) for other in pool)
    wager_terms: list[float] = []
    for other in pool:
        larger = max(prediction.wager, other.wager)
        if larger == 0:
            return 0.0
        wager_terms.append(1.0 - abs(prediction.wager - other.wager) / larger)
    similarity = 0.5 * time_similarity + 0.4 * _average(wager_terms) + 0.1 * odds_similarity
    return max(0.0, min(1.0, similarity))


def _average(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items)


def contrarian_component(outcome_count: int, game_count: int) -> float:
    """The reward for going against the crowd, in [-0.5, 0.5]: ``sqrt(clip(1 -
    outcome_count / game_count, 0, 1)) - 0.5``, and 0.5 when the game has no prediction.

    ``outcome_count`` and ``game_count`` are the earlier predictions on the same outcome
    and on the whole game. Mirrors upstream ``EntropySystem.calculate_contrarian_component``
    (``entropy_system.py``).
    """
    if game_count == 0:
        return 0.5
    share = max(0.0, min(1.0, 1 - outcome_count / game_count))
    return math.sqrt(share) - 0.5


def rescale_contribution(raw: float, stored: Sequence[float]) -> float:
    """A raw contribution rescaled against its pool: ``((raw - min) / (max - min)) * 20 -
    10`` over ``stored`` (the pool's earlier, already rescaled contributions) plus
    ``raw``; 0 when ``stored`` is empty or min = max.

    Stored values are on the [-10, 10] scale and ``raw`` is not (it lies in [-0.8,
    0.2]); upstream mixes them so, and so does this. Mirrors the normalisation step of
    upstream ``EntropySystem.calculate_entropy_contribution`` (``entropy_system.py``).
    """
    if not stored:
        return 0.0
    candidates = [*stored, raw]
    low, high = min(candidates), max(candidates)
    if high - low > 0:
        return ((raw - low) / (high - low)) * 20 - 10
    return 0.0


def entropy_contributions(predictions: Iterable[ScoredPrediction]) -> list[float]:
    """Each prediction's stored entropy contribution, in [-10, 10], in the given order.

    ``predictions`` must be in the order the validator inserted them (all miners, all
    games): each one is scored at insert time against the earlier ones. Mirrors upstream
    ``EntropySystem.calculate_entropy_contribution`` (``entropy_system.py``): ``raw =
    0.6 * -similarity + 0.4 * contrarian``, then rescaled to ``((raw - min) / (max -
    min)) * 20 - 10`` over the pool's *stored* (already rescaled) contributions plus
    ``raw``; 0 for the first prediction of a pool or when min = max.
    """
    pools: dict[tuple[int, int], list[ScoredPrediction]] = defaultdict(list)
    stored: dict[tuple[int, int], list[float]] = defaultdict(list)
    per_game: dict[int, int] = defaultdict(int)
    result: list[float] = []
    for prediction in predictions:
        key = (prediction.game, prediction.predicted_outcome)
        pool = pools[key]
        similarity = prediction_similarity(prediction, pool)
        contrarian = contrarian_component(len(pool), per_game[prediction.game])
        raw = 0.6 * -similarity + 0.4 * contrarian
        contribution = rescale_contribution(raw, stored[key])
        pool.append(prediction)
        stored[key].append(contribution)
        per_game[prediction.game] += 1
        result.append(contribution)
    return result


def daily_entropy(
    predictions: Sequence[ScoredPrediction],
    contributions: Sequence[float],
    day_games: Collection[int],
) -> dict[int, float]:
    """Each miner's entropy score for a day: their contributions on ``day_games`` (the
    day's closed games) summed, then all divided by the day's largest sum when that is
    positive (left as they are otherwise).

    ``contributions`` pairs with ``predictions`` (see :func:`entropy_contributions`).
    Mirrors upstream ``EntropySystem.get_current_ebdr_scores`` (``entropy_system.py``).
    """
    if len(predictions) != len(contributions):
        raise ValueError(
            f"{len(predictions)} predictions but {len(contributions)} contributions")
    sums: dict[int, float] = defaultdict(float)
    for prediction, contribution in zip(predictions, contributions, strict=True):
        if prediction.game in day_games:
            sums[prediction.uid] += contribution
    largest = max(sums.values(), default=0.0)
    if largest > 0:
        return {uid: value / largest for uid, value in sums.items()}
    return dict(sums)


def composite(clv: float, roi: float, risk: float, entropy: float) -> float:
    """The daily composite score ``0.3 * clv + 0.3 * roi + 0.3 * risk + 0.1 * entropy``,
    not normalised. Mirrors upstream ``ScoringSystem._update_composite_scores``."""
    return CLV_WEIGHT * clv + ROI_WEIGHT * roi + RISK_WEIGHT * risk + ENTROPY_WEIGHT * entropy


def tier_scores(daily_composites: Sequence[float]) -> tuple[float, ...]:
    """The scores of tiers 1..5: the mean daily composite over the last 3, 7, 15, 30 and
    45 days.

    ``daily_composites`` runs oldest to newest and ends with the day being scored, one
    value per UTC day (0 for a day without score); days before its start count as 0,
    so a 2-day history has a 7-day mean of its sum / 7. Mirrors the rolling averages of
    upstream ``ScoringSystem._update_composite_scores`` (``scoring.py``).
    """
    return tuple(sum(daily_composites[-window:]) / window for window in TIER_WINDOWS)


def tier_requirements_met(daily_wagers: Sequence[float]) -> tuple[bool, ...]:
    """For tiers 1..5, whether the wager summed over the tier's window (the last 3, 7,
    15, 30, 45 days) reaches 0, 4000, 10000, 20000, 35000.

    ``daily_wagers`` runs oldest to newest, one total per UTC day, ending today.
    Mirrors upstream ``ScoringSystem._meets_tier_requirements`` (``scoring.py``; its
    active-days test always passes, see the module docstring).
    """
    return tuple(
        sum(daily_wagers[-window:]) >= minimum
        for window, minimum in zip(TIER_WINDOWS, TIER_MIN_WAGERS, strict=True)
    )


def fits_daily_limit(wagered_today: float, wager: float) -> bool:
    """Whether a validator accepts ``wager`` after ``wagered_today`` on the same UTC day:
    positive, and the day's total stays within 1000.

    Mirrors upstream ``MinerDataMixin.validate_prediction`` / ``insert_predictions``
    (``bettensor/validator/utils/io/miner_data.py``).
    """
    return wager > 0 and wagered_today + wager <= DAILY_WAGER_LIMIT


def upstream_scoring_window(day: date) -> tuple[datetime, datetime]:
    """The kick-off range (inclusive, UTC) of the games upstream scores on ``day``: the
    48 hours up to ``day`` 23:59:59. Mirrors ``ScoringData._fetch_closed_game_data``."""
    end = datetime.combine(day, time(23, 59, 59), tzinfo=UTC)
    return end - timedelta(hours=48), end


@dataclass(frozen=True, slots=True)
class DailyScore:
    """One miner's scores for one day."""

    uid: int
    clv: float
    clv_upstream: float
    roi: float
    risk: float
    entropy: float

    @property
    def composite(self) -> float:
        """The daily composite with the intended CLV."""
        return composite(self.clv, self.roi, self.risk, self.entropy)

    @property
    def composite_upstream(self) -> float:
        """The daily composite upstream computes (its CLV)."""
        return composite(self.clv_upstream, self.roi, self.risk, self.entropy)


def score_day(
    day_predictions: Sequence[ScoredPrediction],
    closed_games: Sequence[ClosingOdds],
    entropy: Mapping[int, float],
) -> dict[int, DailyScore]:
    """Every miner's :class:`DailyScore` for one day, keyed by uid.

    ``day_predictions``: all miners' predictions on the day's closed games;
    ``closed_games``: those games' closing odds, by kick-off ascending (the order
    :func:`clv_upstream` needs); ``entropy``: :func:`daily_entropy` of the day (a miner
    missing from it scores 0). Mirrors upstream ``ScoringSystem._update_raw_scores``.
    """
    by_uid: dict[int, list[ScoredPrediction]] = defaultdict(list)
    for prediction in day_predictions:
        by_uid[prediction.uid].append(prediction)
    closing = {game.game: game for game in closed_games}
    upstream = clv_upstream(day_predictions, closed_games)
    return {
        uid: DailyScore(
            uid=uid,
            clv=clv(mine, closing),
            clv_upstream=upstream[uid],
            roi=roi(mine),
            risk=risk_score(mine),
            entropy=entropy.get(uid, 0.0),
        )
        for uid, mine in by_uid.items()
    }
