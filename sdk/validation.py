"""The prediction rules, as pure functions shared by the hub and the SDK pre-check.

Each ``check_*`` returns ``None`` when the rule passes or a :class:`Rejection`
with the machine code and a human message. :func:`check_prediction` applies them
in the hub's order and returns the first failure. Nothing here reads a clock:
the caller passes ``now`` (the hub clock; the SDK passes its estimate of it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from .codes import ErrorCode
from .models import Game, Outcome, Prediction

DEFAULT_ODDS_TOLERANCE = 0.01
DEFAULT_DAILY_WAGER_LIMIT = 1000.0
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a prediction is refused: a machine code and a message for humans."""

    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class Rules:
    """Parameters of the rules. The SDK adds a safety margin before kick-off."""

    odds_tolerance: float = DEFAULT_ODDS_TOLERANCE
    daily_wager_limit: float = DEFAULT_DAILY_WAGER_LIMIT
    cutoff_margin: timedelta = timedelta(0)


def wager_day(now: datetime) -> date:
    """The UTC day a wager counts against (by the hub clock)."""
    return now.astimezone(UTC).date()


def check_game_exists(prediction: Prediction, game: Game | None) -> Rejection | None:
    if game is None or game.game_id != prediction.game_id:
        return Rejection(ErrorCode.UNKNOWN_GAME, f"unknown game {prediction.game_id!r}")
    return None


def check_not_started(game: Game, now: datetime,
                      margin: timedelta = timedelta(0)) -> Rejection | None:
    if game.settled or not game.active:
        return Rejection(ErrorCode.GAME_STARTED, f"game {game.game_id!r} is closed for predictions")
    if now + margin >= game.event_start_date:
        return Rejection(
            ErrorCode.GAME_STARTED,
            f"game {game.game_id!r} started at {game.event_start_date.isoformat()}",
        )
    return None


def check_outcome(prediction: Prediction, game: Game) -> Rejection | None:
    outcome = prediction.predicted_outcome
    if outcome not in (Outcome.TEAM_A, Outcome.TEAM_B, Outcome.TIE):
        return Rejection(ErrorCode.INVALID_OUTCOME,
                         f"predicted_outcome must be 0, 1 or 2, not {outcome}")
    if outcome == Outcome.TIE and (not game.can_tie or game.tie_odds is None):
        return Rejection(ErrorCode.INVALID_OUTCOME,
                         f"game {game.game_id!r} has no tie market")
    return None


def check_teams(prediction: Prediction, game: Game) -> Rejection | None:
    if (prediction.team_a, prediction.team_b) != (game.team_a, game.team_b):
        return Rejection(
            ErrorCode.INVALID_PREDICTION,
            f"teams {prediction.team_a!r} v {prediction.team_b!r} do not match game "
            f"{game.game_id!r} ({game.team_a!r} v {game.team_b!r})",
        )
    return None


def _odds_differ(claimed: float | None, actual: float | None, tolerance: float) -> bool:
    if actual is None:
        return claimed is not None
    if claimed is None:
        return True
    return abs(claimed - actual) > tolerance + _EPSILON


def check_odds(prediction: Prediction, game: Game,
               tolerance: float = DEFAULT_ODDS_TOLERANCE) -> Rejection | None:
    pairs: tuple[tuple[str, float | None, float | None], ...] = (
        ("team_a_odds", prediction.team_a_odds, game.team_a_odds),
        ("team_b_odds", prediction.team_b_odds, game.team_b_odds))
    if game.can_tie:
        pairs += (("tie_odds", prediction.tie_odds, game.tie_odds),)
    for name, claimed, actual in pairs:
        if _odds_differ(claimed, actual, tolerance):
            return Rejection(ErrorCode.ODDS_MISMATCH,
                             f"{name} {claimed} differs from the current {actual} "
                             f"by more than {tolerance}")
    current = game.odds_for(prediction.predicted_outcome)
    if _odds_differ(prediction.predicted_odds, current, tolerance):
        return Rejection(ErrorCode.ODDS_MISMATCH,
                         f"predicted_odds {prediction.predicted_odds} differ from the current "
                         f"{current} by more than {tolerance}")
    return None


def check_wager(prediction: Prediction) -> Rejection | None:
    if not math.isfinite(prediction.wager) or prediction.wager <= 0:
        return Rejection(ErrorCode.INVALID_WAGER, f"wager must be > 0, not {prediction.wager}")
    return None


def check_daily_limit(wager: float, wagered_today: float,
                      limit: float = DEFAULT_DAILY_WAGER_LIMIT) -> Rejection | None:
    if wagered_today + wager > limit + _EPSILON:
        left = max(limit - wagered_today, 0.0)
        return Rejection(ErrorCode.WAGER_LIMIT,
                         f"wager {wager:g} exceeds what is left today ({left:g} of {limit:g})")
    return None


def check_confidence(prediction: Prediction) -> Rejection | None:
    score = prediction.confidence_score
    if score is not None and not 0.0 <= score <= 1.0:
        return Rejection(ErrorCode.INVALID_CONFIDENCE,
                         f"confidence_score must be within [0, 1], not {score}")
    return None


def check_prediction(prediction: Prediction, game: Game | None, *, now: datetime,
                     wagered_today: float, rules: Rules = Rules()) -> Rejection | None:
    """All rules in the hub's order; the first failure, or None when acceptable."""
    missing = check_game_exists(prediction, game)
    if missing is not None or game is None:
        return missing
    return (
        check_not_started(game, now, rules.cutoff_margin)
        or check_outcome(prediction, game)
        or check_teams(prediction, game)
        or check_odds(prediction, game, rules.odds_tolerance)
        or check_wager(prediction)
        or check_daily_limit(prediction.wager, wagered_today, rules.daily_wager_limit)
        or check_confidence(prediction)
    )
