"""Bettensor's settlement rule for one prediction, as a pure function.

A validator pays ``wager x predicted_odds`` when the predicted outcome is the game's
outcome and nothing otherwise: there are no pushes, a tie is just a third outcome
(a bet on either team loses it). A game still unfinished settles nothing.
"""

from __future__ import annotations

from .models import Outcome

FINAL_OUTCOMES = frozenset({Outcome.TEAM_A, Outcome.TEAM_B, Outcome.TIE})
"""Game outcomes that settle predictions (``Outcome.UNFINISHED`` settles none)."""


def payout(wager: float, predicted_outcome: int, predicted_odds: float,
           game_outcome: int) -> float | None:
    """What a prediction returns once its game ends: ``wager * predicted_odds`` when
    ``predicted_outcome == game_outcome``, else 0.0; None while the game is unfinished
    (``game_outcome`` 3, or anything but 0, 1, 2)."""
    if game_outcome not in FINAL_OUTCOMES:
        return None
    return wager * predicted_odds if predicted_outcome == game_outcome else 0.0
