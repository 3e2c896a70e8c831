"""Built-in agents: ``favorite`` (flat stake on the shortest price) and ``value``
(de-vigged probabilities, a home-advantage / rating tilt, fractional Kelly).

Both are deliberately simple, deterministic and cheap: they are examples to copy and
baselines to beat, not betting advice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from sdk.models import Game, Outcome, Prediction

from . import pricing
from .base import Agent, AgentContext, Pick

__all__ = ["FavoriteAgent", "ValueAgent", "market"]

_ELO_LOGIT = math.log(10.0) / 400.0  # Elo points -> log-odds


def market(game: Game) -> list[tuple[int, float]]:
    """The game's open outcomes as ``(outcome, decimal odds)``: team_a, team_b and the
    tie when the game has a tie market. Empty when any price is not a valid decimal
    price (> 1), so a broken feed never produces a bet."""
    prices = [(int(Outcome.TEAM_A), game.team_a_odds), (int(Outcome.TEAM_B), game.team_b_odds)]
    if game.can_tie and game.tie_odds is not None:
        prices.append((int(Outcome.TIE), game.tie_odds))
    if any(not math.isfinite(odds) or odds <= 1.0 for _, odds in prices):
        return []
    return prices


def _check_positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, not {value!r}")


class FavoriteAgent(Agent):
    """Flat stake on the favourite (the shortest odds) of every game."""

    name = "favorite"

    def __init__(self, *, stake: float = 10.0, include_tie: bool = True,
                 max_odds: float | None = None, sports: tuple[str, ...] | None = None,
                 leagues: tuple[str, ...] | None = None) -> None:
        """``stake``: amount per game; ``include_tie``: the tie may be the pick when it is
        the shortest price; ``max_odds``: skip games whose favourite pays more than this
        (no clear favourite); ``sports`` / ``leagues``: restrict the games."""
        _check_positive("stake", stake)
        _check_positive("max_odds", max_odds, allow_none=True)
        self.stake = float(stake)
        self.include_tie = include_tie
        self.max_odds = max_odds
        if sports is not None:
            self.sports = tuple(sports)
        if leagues is not None:
            self.leagues = tuple(leagues)

    def choose(self, game: Game) -> tuple[int, float, float] | None:
        """(outcome, odds, de-vigged probability) of the favourite, or None to skip."""
        prices = market(game)
        if not prices:
            return None
        fair = pricing.devig([odds for _, odds in prices])
        candidates = [(odds, index) for index, (outcome, odds) in enumerate(prices)
                      if self.include_tie or outcome != Outcome.TIE]
        odds, index = min(candidates)  # ties between equal prices: team_a first
        if self.max_odds is not None and odds > self.max_odds:
            return None
        return prices[index][0], odds, fair[index]

    async def on_games(self, games: list[Game], ctx: AgentContext) -> list[Prediction | Pick]:
        bankroll = ctx.bankroll_left
        picks: list[Prediction | Pick] = []
        for game in sorted(games, key=lambda g: g.event_start_date):
            choice = self.choose(game)
            if choice is None:
                continue
            amount = min(self.stake, bankroll)
            if amount <= 0:
                break
            outcome, _, probability = choice
            picks.append(Pick(game.game_id, outcome, amount,
                              confidence=round(probability, 6), model_name=self.name))
            bankroll -= amount
        return picks


@dataclass(frozen=True, slots=True)
class Valuation:
    """The value agent's view of one outcome."""

    outcome: int
    odds: float
    probability: float
    edge: float


class ValueAgent(Agent):
    """Fractional Kelly on de-vigged odds tilted by home advantage and ratings."""

    name = "value"

    def __init__(self, *, kelly: float = 0.25, home_advantage: float = 0.1,
                 ratings: Mapping[str, float] | None = None, max_stake: float = 100.0,
                 min_stake: float = 0.01, min_edge: float = 0.0,
                 devig_method: pricing.DevigMethod = "proportional",
                 sports: tuple[str, ...] | None = None,
                 leagues: tuple[str, ...] | None = None) -> None:
        """``kelly``: fraction of full Kelly to stake (0.25 = quarter Kelly);
        ``home_advantage``: log-odds shift towards team_a (the home side);
        ``ratings``: optional Elo-style ratings by team name (400 points = 10x odds);
        ``max_stake``: cap per game; ``min_stake``: smaller stakes are skipped;
        ``min_edge``: only bet when ``p * odds - 1`` exceeds it (never below 0);
        ``devig_method``: ``"proportional"`` or ``"power"``."""
        if not math.isfinite(kelly) or not 0 < kelly <= 1:
            raise ValueError(f"kelly must be within (0, 1], not {kelly!r}")
        if not math.isfinite(home_advantage):
            raise ValueError(f"home_advantage must be finite, not {home_advantage!r}")
        _check_positive("max_stake", max_stake)
        if not math.isfinite(min_stake) or min_stake < 0:
            raise ValueError(f"min_stake must be >= 0, not {min_stake!r}")
        if not math.isfinite(min_edge):
            raise ValueError(f"min_edge must be finite, not {min_edge!r}")
        pricing.devig([2.0, 2.0], devig_method)  # validates the method name
        self.kelly = float(kelly)
        self.home_advantage = float(home_advantage)
        self.ratings = dict(ratings or {})
        self.max_stake = float(max_stake)
        self.min_stake = float(min_stake)
        self.min_edge = max(float(min_edge), 0.0)
        self.devig_method: pricing.DevigMethod = devig_method
        if sports is not None:
            self.sports = tuple(sports)
        if leagues is not None:
            self.leagues = tuple(leagues)

    def shift(self, game: Game) -> float:
        """Log-odds tilt towards team_a: home advantage plus the rating difference."""
        rating_a = self.ratings.get(game.team_a, 0.0)
        rating_b = self.ratings.get(game.team_b, 0.0)
        return self.home_advantage + (rating_a - rating_b) * _ELO_LOGIT

    def valuations(self, game: Game) -> list[Valuation]:
        """Every open outcome of ``game`` with the model probability and edge."""
        prices = market(game)
        if not prices:
            return []
        fair = pricing.devig([odds for _, odds in prices], self.devig_method)
        model = pricing.tilt(fair, self.shift(game))
        return [Valuation(outcome, odds, p, pricing.edge(p, odds))
                for (outcome, odds), p in zip(prices, model, strict=True)]

    def best(self, game: Game) -> Valuation | None:
        """The outcome with the largest edge above ``min_edge`` (None: no value)."""
        values = [v for v in self.valuations(game) if v.edge > self.min_edge]
        return max(values, key=lambda v: v.edge, default=None)

    async def on_games(self, games: list[Game], ctx: AgentContext) -> list[Prediction | Pick]:
        # Best edges first, each sized on what the previous picks left of today's budget.
        found = [(value, game) for game in games if (value := self.best(game)) is not None]
        found.sort(key=lambda item: item[0].edge, reverse=True)
        bankroll = ctx.bankroll_left
        picks: list[Prediction | Pick] = []
        for value, game in found:
            amount = pricing.stake(value.probability, value.odds, bankroll,
                                   fraction=self.kelly, max_stake=self.max_stake,
                                   min_stake=self.min_stake)
            if amount <= 0:
                continue
            picks.append(Pick(game.game_id, value.outcome, amount,
                              confidence=round(value.probability, 6), model_name=self.name))
            bankroll -= amount
        if picks:
            ctx.logger.debug("%d value bets out of %d games", len(picks), len(games))
        return picks
