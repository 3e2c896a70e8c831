"""The agent contract and the built-in agents, without sockets: a hand-made context."""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents import Agent, AgentContext, FavoriteAgent, Pick, ValueAgent
from agents.base import agent_logger
from agents.builtin import market
from sdk.models import Game, Prediction

from .kit.games import future_game


def make_ctx(games: list[Game] | None = None, *, bankroll: float = 1000.0,
             validator: str = "5Validator") -> AgentContext:
    table = {g.game_id: g for g in games or []}
    return AgentContext(validator_hotkey=validator, server_time=datetime.now(UTC),
                        bankroll_left=bankroll, daily_budget=1000.0,
                        wagered_today=1000.0 - bankroll, games=MappingProxyType(table),
                        logger=agent_logger("test", validator))


def two_way(game_id: str, a: float, b: float, **kw) -> Game:
    return future_game(game_id, sport="basketball", league="NBA", team_a_odds=a,
                       team_b_odds=b, **kw)


# -- base contract ----------------------------------------------------------------------


def test_agent_name_and_description_default_from_the_class():
    class MyStrategy(Agent):
        """Bets on nothing at all.

        More text."""

        async def on_games(self, games, ctx):
            return []

    assert MyStrategy.name == "MyStrategy"
    assert MyStrategy.description == "Bets on nothing at all."
    assert FavoriteAgent.name == "favorite"
    assert ValueAgent.name == "value"

    class Sub(FavoriteAgent):
        pass

    assert Sub.name == "Sub"  # a subclass does not impersonate its parent


def test_agent_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        Agent()  # type: ignore[abstract]


def test_interested_in_filters_sports_and_leagues_case_insensitively():
    agent = FavoriteAgent(sports=("Soccer",), leagues=("epl", "La Liga"))
    assert agent.interested_in(future_game("a", sport="soccer", league="EPL"))
    assert agent.interested_in(future_game("b", sport="SOCCER", league="la liga"))
    assert not agent.interested_in(future_game("c", sport="soccer", league="MLS"))
    assert not agent.interested_in(future_game("d", sport="basketball", league="EPL"))
    assert FavoriteAgent().interested_in(future_game("e", sport="cricket", league="IPL"))


def test_pick_accepts_every_outcome_form():
    assert Pick("g1", 0, 10.0).outcome == 0
    tie = Pick("g1", "tie", 0.0, confidence=1.0, model_name="m")
    assert (tie.outcome, tie.wager, tie.confidence, tie.model_name) == ("tie", 0.0, 1.0, "m")
    assert Pick("g1", "g1-home", 1).wager == 1


@pytest.mark.parametrize(("bad", "message"), [
    pytest.param({"game_id": ""}, "Pick.game_id must be a non-empty string, not ''",
                 id="empty-game"),
    pytest.param({"outcome": True}, "Pick.outcome must be 0, 1, 2, a team name or 'tie', "
                 "not True", id="bool-outcome"),
    pytest.param({"outcome": 1.5}, "Pick.outcome must be 0, 1, 2, a team name or 'tie', "
                 "not 1.5", id="float-outcome"),
    pytest.param({"wager": -1.0}, "Pick.wager must be a finite number >= 0, not -1.0",
                 id="negative-wager"),
    pytest.param({"wager": math.nan}, "Pick.wager must be a finite number >= 0, not nan",
                 id="nan-wager"),
    pytest.param({"wager": math.inf}, "Pick.wager must be a finite number >= 0, not inf",
                 id="inf-wager"),
    pytest.param({"wager": "10"}, "Pick.wager must be a finite number >= 0, not '10'",
                 id="text-wager"),
    pytest.param({"confidence": 1.5}, "Pick.confidence must be within [0, 1], not 1.5",
                 id="confidence-above-1"),
    pytest.param({"confidence": -0.1}, "Pick.confidence must be within [0, 1], not -0.1",
                 id="negative-confidence"),
])
def test_pick_refuses_invalid_fields(bad, message):
    values = {"game_id": "g1", "outcome": 0, "wager": 1.0, **bad}
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Pick(**values)


def test_pick_completes_at_the_games_current_odds():
    game = future_game("g1", team_a_odds=1.8, team_b_odds=4.2, tie_odds=3.6)
    prediction = Pick("g1", "g1-away", 12.5, confidence=0.4).to_prediction(
        game, model_name="agent")
    assert isinstance(prediction, Prediction)
    assert (prediction.predicted_outcome, prediction.predicted_odds) == (1, 4.2)
    assert (prediction.team_a_odds, prediction.team_b_odds, prediction.tie_odds) == \
        (1.8, 4.2, 3.6)
    assert (prediction.wager, prediction.confidence_score, prediction.model_name) == \
        (12.5, 0.4, "agent")
    tie = Pick("g1", "tie", 1.0, model_name="own").to_prediction(game, wager=0.5,
                                                                  model_name="agent")
    assert (tie.predicted_outcome, tie.predicted_odds, tie.wager, tie.model_name) == \
        (2, 3.6, 0.5, "own")
    with pytest.raises(ValueError, match="pick for 'other' completed with game 'g1'"):
        Pick("other", 0, 1.0).to_prediction(game)


def test_agent_logger_prefixes_agent_and_validator(caplog):
    logger = agent_logger("value", "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty")
    with caplog.at_level(logging.INFO, logger="agents.value"):
        logger.info("hello %s", "world")
    record = caplog.records[-1]
    assert record.getMessage() == "[value@5FHneW46] hello world"
    assert record.agent == "value"


# -- favorite ---------------------------------------------------------------------------


async def test_favorite_picks_the_shortest_price_with_a_flat_stake():
    games = [two_way("a", 1.5, 2.6), two_way("b", 2.9, 1.4),
             future_game("c", team_a_odds=4.0, team_b_odds=3.9, tie_odds=2.5)]
    picks = await FavoriteAgent(stake=7.0).on_games(games, make_ctx(games))
    # The confidence is the favourite's proportionally de-vigged probability.
    assert [(p.game_id, p.outcome, p.wager, p.model_name) for p in picks] == [
        ("a", 0, 7.0, "favorite"), ("b", 1, 7.0, "favorite"), ("c", 2, 7.0, "favorite")]
    assert [p.confidence for p in picks] == pytest.approx([
        (1 / 1.5) / (1 / 1.5 + 1 / 2.6),
        (1 / 1.4) / (1 / 2.9 + 1 / 1.4),
        (1 / 2.5) / (1 / 4.0 + 1 / 3.9 + 1 / 2.5)], abs=1e-6)


async def test_favorite_options():
    games = [future_game("c", team_a_odds=4.0, team_b_odds=3.9, tie_odds=2.5),
             two_way("even", 3.1, 3.0)]
    no_tie = await FavoriteAgent(include_tie=False).on_games(games, make_ctx(games))
    assert [(p.game_id, p.outcome) for p in no_tie] == [("c", 1), ("even", 1)]
    capped = await FavoriteAgent(max_odds=2.8).on_games(games, make_ctx(games))
    assert [p.game_id for p in capped] == ["c"]  # no favourite at 3.0 or shorter


@pytest.mark.parametrize(("bad", "message"), [
    pytest.param({"stake": 0}, "stake must be a finite number > 0, not 0", id="stake"),
    pytest.param({"max_odds": math.nan}, "max_odds must be a finite number > 0, not nan",
                 id="max_odds"),
])
def test_favorite_options_are_checked(bad, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        FavoriteAgent(**bad)


async def test_favorite_never_stakes_more_than_the_bankroll_left():
    games = [two_way(f"g{i}", 1.5, 2.6, start_in=timedelta(hours=2 + i)) for i in range(4)]
    picks = await FavoriteAgent(stake=10.0).on_games(games, make_ctx(games, bankroll=25.0))
    assert [(p.game_id, p.wager) for p in picks] == [("g0", 10.0), ("g1", 10.0), ("g2", 5.0)]
    assert await FavoriteAgent().on_games(games, make_ctx(games, bankroll=0.0)) == []


def test_market_refuses_broken_prices():
    assert market(two_way("x", 1.0, 2.0)) == []
    assert market(future_game("y")) == [(0, 2.1), (1, 3.4), (2, 3.3)]
    assert market(future_game("z", can_tie=False)) == [(0, 2.1), (1, 3.4)]


# -- value ------------------------------------------------------------------------------


async def test_value_never_bets_the_market_back_to_itself():
    # No home advantage, no ratings: the model is the de-vigged market, and with a
    # margin every edge is negative.
    games = [future_game("g1"), two_way("g2", 1.9, 1.9), two_way("g3", 1.2, 4.5)]
    agent = ValueAgent(home_advantage=0.0)
    assert await agent.on_games(games, make_ctx(games)) == []


async def test_value_stakes_fractional_kelly_on_the_home_advantage():
    game = two_way("g1", 2.0, 2.0)
    agent = ValueAgent(home_advantage=0.2, kelly=0.25, max_stake=1000.0)
    [pick] = await agent.on_games([game], make_ctx([game], bankroll=800.0))
    p = 1 / (1 + math.exp(-0.2))  # evens shifted by 0.2 in log-odds
    assert pick.outcome == 0
    assert pick.confidence == pytest.approx(p, abs=1e-6)
    assert pick.wager == pytest.approx(0.25 * (p * 2.0 - 1) / (2.0 - 1) * 800.0)


async def test_value_follows_ratings_and_caps_the_stake():
    game = two_way("g1", 2.0, 2.0)
    agent = ValueAgent(home_advantage=0.1, ratings={"g1-away": 200.0}, max_stake=5.0)
    [pick] = await agent.on_games([game], make_ctx([game]))
    assert (pick.outcome, pick.wager) == (1, 5.0)
    assert agent.shift(game) == pytest.approx(0.1 - 200 * 2.302585 / 400, rel=1e-5)


async def test_value_min_edge():
    game = two_way("g1", 2.0, 2.0)
    small_edge = 2.0 / (1 + math.exp(-0.1)) - 1  # evens tilted by the default 0.1
    assert await ValueAgent(min_edge=small_edge + 0.001).on_games([game], make_ctx([game])) == []
    [pick] = await ValueAgent(min_edge=small_edge - 0.001).on_games([game], make_ctx([game]))
    assert pick.outcome == 0


# 1.25 and 5/3 imply 0.8 and 0.6; 0.8**2 + 0.6**2 == 1, so the power method's exponent is
# exactly 2 and the fair probabilities are 0.64 and 0.36 (proportional: 0.8/1.4, 0.6/1.4).
POWER_ODDS = (1.25, 5 / 3)
POWER_FAIR = (0.64, 0.36)


def test_value_power_devig_matches_the_hand_computed_probabilities():
    game = two_way("g1", *POWER_ODDS)
    power = ValueAgent(devig_method="power", home_advantage=0.0)
    fair = [v.probability for v in power.valuations(game)]
    assert math.fsum(fair) == pytest.approx(1.0, abs=1e-12)
    assert fair[0] > fair[1]  # the shorter price stays the likelier outcome
    assert fair == pytest.approx(POWER_FAIR, abs=1e-9)
    proportional = ValueAgent(home_advantage=0.0)
    assert [v.probability for v in proportional.valuations(game)] == pytest.approx(
        [0.8 / 1.4, 0.6 / 1.4], abs=1e-9)


async def test_value_power_devig_stakes_on_the_tilted_underdog():
    game = two_way("g1", *POWER_ODDS)
    agent = ValueAgent(devig_method="power", home_advantage=-1.5, kelly=0.25,
                       max_stake=1000.0)
    [pick] = await agent.on_games([game], make_ctx([game], bankroll=1000.0))
    a, b = POWER_FAIR[0] * math.exp(-0.75), POWER_FAIR[1] * math.exp(0.75)
    p_away = b / (a + b)  # logit(p_home) shifted by -1.5
    odds = POWER_ODDS[1]
    assert (pick.outcome, pick.model_name) == (1, "value")
    assert pick.confidence == pytest.approx(p_away, abs=1e-6)
    assert pick.wager == pytest.approx(0.25 * (p_away * odds - 1) / (odds - 1) * 1000.0)


@pytest.mark.parametrize(("bad", "message"), [
    pytest.param({"kelly": 0}, "kelly must be within (0, 1], not 0", id="kelly-0"),
    pytest.param({"kelly": 1.5}, "kelly must be within (0, 1], not 1.5", id="kelly-1.5"),
    pytest.param({"home_advantage": math.inf}, "home_advantage must be finite, not inf",
                 id="home_advantage"),
    pytest.param({"max_stake": 0}, "max_stake must be a finite number > 0, not 0",
                 id="max_stake"),
    pytest.param({"min_stake": -1}, "min_stake must be >= 0, not -1", id="min_stake"),
    pytest.param({"min_edge": math.nan}, "min_edge must be finite, not nan", id="min_edge"),
    pytest.param({"devig_method": "nope"}, "unknown de-vig method 'nope'", id="devig_method"),
])
def test_value_options_are_checked(bad, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        ValueAgent(**bad)


async def test_value_funds_the_best_edges_first():
    small = two_way("small", 2.0, 2.0)
    large = two_way("large", 2.2, 2.0)  # a longer home price: the larger edge
    agent = ValueAgent(home_advantage=0.2, kelly=1.0, max_stake=1000.0)
    picks = await agent.on_games([small, large], make_ctx([small, large], bankroll=100.0))
    # Each home probability is the de-vigged market's log-odds (ln(b/a)) plus 0.2.
    p_large = 1 / (1 + math.exp(-(0.2 + math.log(2.0 / 2.2))))
    p_small = 1 / (1 + math.exp(-0.2))
    large_stake = (p_large * 2.2 - 1) / (2.2 - 1) * 100.0  # full Kelly on the whole bankroll
    small_stake = (p_small * 2.0 - 1) / (2.0 - 1) * (100.0 - large_stake)  # on what is left
    assert [(p.game_id, p.outcome) for p in picks] == [("large", 0), ("small", 0)]
    assert [p.wager for p in picks] == pytest.approx([large_stake, small_stake])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(1.05, 10.0), st.floats(1.05, 10.0)), min_size=1,
                max_size=12),
       st.floats(0.0, 2000.0), st.floats(-1.0, 1.0), st.floats(0.05, 1.0))
async def test_value_stakes_never_exceed_the_bankroll_left(prices, bankroll, home, kelly):
    games = [two_way(f"g{i}", a, b) for i, (a, b) in enumerate(prices)]
    agent = ValueAgent(home_advantage=home, kelly=kelly, max_stake=10_000.0)
    picks = await agent.on_games(games, make_ctx(games, bankroll=bankroll))
    assert sum(p.wager for p in picks) <= bankroll + 1e-9
    assert all(p.wager > 0 for p in picks)
    assert len({p.game_id for p in picks}) == len(picks)
    for pick in picks:  # only positive edges are bet
        value = {v.outcome: v for v in agent.valuations(games[int(pick.game_id[1:])])}
        assert value[pick.outcome].edge > 0
