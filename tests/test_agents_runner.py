"""The agent runner against real hubs on loopback (real sockets, real signatures, real
SQLite files): per-validator odds, per-validator daily budgets on each hub's own UTC
day, one prediction per game and validator, agents that misbehave."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bittensor.keyfiles import Keypair

from agents import Agent, AgentContext, AgentRunner, FavoriteAgent, Pick, ValueAgent
from sdk import ConnectionOptions, ConnectionState, Prediction, ValidatorConnection
from sdk.models import Game
from server_stub import HubClock, HubConfig, OpenRegistry
from server_stub.testing import LocalHub

from .kit.games import future_game
from .kit.hubkit import RunningHub
from .kit.keys import VALIDATOR, miner_key
from .kit.waiting import eventually

BOB = miner_key("Bob")
DAY = timedelta(days=1)


# -- helpers ----------------------------------------------------------------------------


@dataclass
class ValidatorHub(RunningHub):
    """A hub signing with its own validator key (RunningHub is pinned to //Alice)."""

    key: Keypair = VALIDATOR

    @property
    def validator_hotkey(self) -> str:
        return self.key.ss58_address

    async def post_games(self, games: list[Game], key: Keypair | None = None) -> dict[str, Any]:
        return await super().post_games(games, key or self.key)


@pytest.fixture
async def start_validator(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await start_validator("//Dave", clock=..., **HubConfig overrides)``."""
    running: list[ValidatorHub] = []
    session = aiohttp.ClientSession()

    async def start(uri: str, *, clock: HubClock | None = None, registry: Any = None,
                    **overrides: Any) -> ValidatorHub:
        key = Keypair.create_from_uri(uri)
        config = HubConfig(**{"heartbeat_interval_s": 5.0, **overrides})
        path = tmp_path / f"hub-{uri.strip('/')}.sqlite3"
        server = LocalHub(config=config, signer=key, store_path=path, clock=clock,
                          registry=registry, feed=None)
        await server.start()
        hub = ValidatorHub(server=server, session=session, store_path=path, config=config,
                           key=key)
        running.append(hub)
        return hub

    yield start
    for hub in running:
        await hub.server.stop()
    await session.close()


def connection(hub: RunningHub, *, outbox: Any = ":memory:", key: Keypair = BOB
               ) -> ValidatorConnection:
    return ValidatorConnection(f"ws://127.0.0.1:{hub.server.port}", key, hub.validator_hotkey,
                               outbox=outbox, options=ConnectionOptions(
                                   backoff_base=0.05, backoff_cap=0.5,
                                   heartbeat_interval_s=1.0, handshake_timeout=5.0))


def hub_rows(hub: RunningHub, miner: Keypair = BOB) -> list[dict[str, Any]]:
    """The hub's stored predictions, read from its SQLite file like another process."""
    db = sqlite3.connect(hub.store_path)
    try:
        rows = db.execute("SELECT game_id, wager, wager_day, prediction FROM predictions"
                          " WHERE miner_hotkey = ? ORDER BY game_id",
                          (miner.ss58_address,)).fetchall()
    finally:
        db.close()
    return [{"game_id": g, "wager": w, "wager_day": d, **json.loads(p)} for g, w, d, p in rows]


def per_game(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["game_id"]] = counts.get(row["game_id"], 0) + 1
    return counts


def games_at(start: timedelta, *ids: str, sport: str = "soccer", **odds: Any) -> list[Game]:
    """Games ``ids`` starting one hour apart from ``start`` (deterministic order)."""
    return [future_game(gid, sport=sport, start_in=start + timedelta(hours=i), **odds)
            for i, gid in enumerate(ids)]


class Recorder(FavoriteAgent):
    """The favourite agent with a flat stake whatever the bankroll (the runner must
    enforce the budget), recording every call per validator."""

    name = "recorder"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.offered: dict[str, list[list[str]]] = {}
        self.contexts: dict[str, list[AgentContext]] = {}
        self.confirmations: dict[str, list[Any]] = {}
        self.started: list[str] = []
        self.stopped: list[str] = []

    def offered_ids(self, validator: str) -> set[str]:
        return {gid for call in self.offered.get(validator, []) for gid in call}

    async def on_start(self, ctx: AgentContext) -> None:
        self.started.append(ctx.validator_hotkey)
        self.contexts.setdefault(ctx.validator_hotkey, []).append(ctx)

    async def on_games(self, games: list[Game], ctx: AgentContext) -> list[Pick]:
        self.offered.setdefault(ctx.validator_hotkey, []).append([g.game_id for g in games])
        self.contexts.setdefault(ctx.validator_hotkey, []).append(ctx)
        picks = []
        for game in games:
            choice = self.choose(game)
            if choice is not None:
                picks.append(Pick(game.game_id, choice[0], self.stake))
        return picks

    async def on_confirmation(self, confirmation: Any, ctx: AgentContext) -> None:
        self.confirmations.setdefault(ctx.validator_hotkey, []).append(confirmation)

    async def on_stop(self, ctx: AgentContext) -> None:
        self.stopped.append(ctx.validator_hotkey)


async def stopped(runner: AgentRunner) -> None:
    await asyncio.wait_for(runner.stop(), 20)


# -- one validator ----------------------------------------------------------------------


async def test_one_validator_end_to_end(start_hub):
    hub = await start_hub()
    await hub.post_games([
        *games_at(timedelta(hours=2), "g1", "g2", sport="soccer"),
        future_game("b1", sport="basketball", league="NBA", team_a_odds=2.6,
                    team_b_odds=1.5),
        future_game("late", start_in=timedelta(seconds=3)),  # inside the cutoff margin
        future_game("done", outcome=1),  # settled
        future_game("off", active=False),
    ])
    agent = Recorder(stake=10.0)
    conn = connection(hub)
    runner = AgentRunner(agent, [conn], cutoff_margin_s=30.0)
    await runner.start()
    try:
        await eventually(lambda: runner.stats.accepted == 3, timeout=10)
        hk = hub.validator_hotkey
        assert agent.offered_ids(hk) == {"g1", "g2", "b1"}
        rows = hub_rows(hub)
        assert per_game(rows) == {"b1": 1, "g1": 1, "g2": 1}
        by_game = {r["game_id"]: r for r in rows}
        assert (by_game["g1"]["predicted_outcome"], by_game["g1"]["predicted_odds"]) == (0, 2.1)
        assert (by_game["b1"]["predicted_outcome"], by_game["b1"]["predicted_odds"]) == (1, 1.5)
        assert all(r["wager"] == 10.0 and r["model_name"] == "recorder" for r in rows)
        ctx = agent.contexts[hk][0]
        assert ctx.bankroll_left == 1000.0
        assert ctx.daily_budget == 1000.0
        assert abs((ctx.server_time - datetime.now(UTC)).total_seconds()) < 5
        assert set(ctx.games) == {"g1", "g2", "b1", "late", "done", "off"}
        with pytest.raises(TypeError):
            ctx.games["x"] = ctx.games["g1"]  # type: ignore[index]
        await eventually(lambda: len(agent.confirmations.get(hk, [])) == 3, timeout=5)
        assert {c.status for c in agent.confirmations[hk]} == {"accepted"}

        # Odds move on every game and a new one appears: only the new one is offered
        # and predicted; every game keeps exactly one row.
        calls = len(agent.offered[hk])
        await hub.post_games([
            *games_at(timedelta(hours=2), "g1", "g2", team_a_odds=1.7, team_b_odds=4.0),
            future_game("b1", sport="basketball", league="NBA", team_a_odds=2.2,
                        team_b_odds=1.7),
            *games_at(timedelta(hours=5), "g3"),
        ])
        await eventually(lambda: runner.stats.accepted == 4, timeout=10)
        assert agent.offered[hk][calls:] == [["g3"]]
        assert per_game(hub_rows(hub)) == {"b1": 1, "g1": 1, "g2": 1, "g3": 1}
        assert agent.contexts[hk][-1].bankroll_left == 970.0
        assert agent.contexts[hk][-1].predicted == {"g1", "g2", "b1"}
        assert runner.stats.validators[hk].wagered_by_game == {
            "g1": 10.0, "g2": 10.0, "b1": 10.0, "g3": 10.0}
    finally:
        await stopped(runner)
    assert agent.stopped == [hub.validator_hotkey]
    assert agent.started == [hub.validator_hotkey]
    assert conn.state is ConnectionState.CLOSED  # the runner started it, so it closed it
    assert runner.stats.submitted == 4
    assert runner.stats.rejected == {}


async def test_sports_and_leagues_of_interest(start_hub):
    hub = await start_hub()
    await hub.post_games([future_game("s1", sport="soccer", league="EPL"),
                          future_game("s2", sport="soccer", league="MLS"),
                          future_game("b1", sport="basketball", league="NBA", tie_odds=None,
                                      can_tie=False)])
    agent = Recorder(sports=("SOCCER",), leagues=("epl",))
    runner = AgentRunner(agent, [connection(hub)])
    await runner.start()
    try:
        await eventually(lambda: runner.stats.accepted == 1, timeout=10)
        assert per_game(hub_rows(hub)) == {"s1": 1}
        assert agent.offered_ids(hub.validator_hotkey) == {"s1"}
    finally:
        await stopped(runner)


# -- three validators -------------------------------------------------------------------


async def test_three_validators_own_odds_budgets_and_days(start_validator):
    # Hub 3's clock runs a day ahead: its UTC day is tomorrow, and its budget is spent
    # on that day. Games start in 30 h so they are open on every hub's clock.
    limits = {"//Alice": 25.0, "//Dave": 1000.0, "//Eve": 30.0}
    hubs = [await start_validator("//Alice", daily_wager_limit=25.0),
            await start_validator("//Dave", daily_wager_limit=1000.0),
            await start_validator("//Eve", daily_wager_limit=30.0,
                                  clock=HubClock(offset_ns=24 * 3600 * 10**9))]
    start = timedelta(hours=30)
    ids = ("g1", "g2", "g3", "g4")
    # Same games, different prices: the favourite is team_a on hub 1, team_b on hub 2,
    # the tie on hub 3.
    prices = [dict(team_a_odds=1.6, team_b_odds=5.0, tie_odds=3.9),
              dict(team_a_odds=4.4, team_b_odds=1.7, tie_odds=3.6),
              dict(team_a_odds=3.1, team_b_odds=3.2, tie_odds=2.4)]
    for hub, odds in zip(hubs, prices, strict=True):
        await hub.post_games(games_at(start, *ids, **odds))

    agent = Recorder(stake=10.0)
    runner = AgentRunner(agent, [connection(hub) for hub in hubs], daily_budget=100.0,
                         rescan_interval_s=0.5)
    await runner.start()
    try:
        # Budgets: min(100, hub limit) per validator and day: 25 = 10+10+5 (scaled),
        # 100 (plenty), 30 = 10+10+10 (then nothing left for g4).
        expected = [{"g1": 10.0, "g2": 10.0, "g3": 5.0},
                    {"g1": 10.0, "g2": 10.0, "g3": 10.0, "g4": 10.0},
                    {"g1": 10.0, "g2": 10.0, "g3": 10.0}]
        await eventually(lambda: runner.stats.accepted == 10, timeout=15)
        today = datetime.now(UTC).date()
        for hub, odds, limit, wagers in zip(hubs, prices, limits.values(), expected,
                                            strict=True):
            rows = hub_rows(hub)
            assert {r["game_id"]: r["wager"] for r in rows} == wagers
            assert sum(r["wager"] for r in rows) <= min(100.0, limit)
            favourite = min(("team_a_odds", "team_b_odds", "tie_odds"), key=odds.__getitem__)
            for row in rows:  # each validator got its own prices
                assert row["predicted_odds"] == odds[favourite]
                assert (row["team_a_odds"], row["team_b_odds"], row["tie_odds"]) == \
                    (odds["team_a_odds"], odds["team_b_odds"], odds["tie_odds"])
                assert row["predicted_outcome"] == ("team_a_odds", "team_b_odds",
                                                    "tie_odds").index(favourite)
        # Each validator's wagers count against its own UTC day.
        assert {r["wager_day"] for r in hub_rows(hubs[0])} == {today.isoformat()}
        ahead = (datetime.now(UTC) + DAY).date()
        assert {r["wager_day"] for r in hub_rows(hubs[2])} == {ahead.isoformat()}
        assert agent.contexts[hubs[2].validator_hotkey][0].day == ahead
        assert runner.stats.wagered(hubs[2].validator_hotkey, ahead.isoformat()) == 30.0
        assert runner.stats.wagered(hubs[1].validator_hotkey, today.isoformat()) == 40.0
        assert [runner.stats.validators[h.validator_hotkey].scaled for h in hubs] == [1, 0, 0]

        # More updates for the same games (odds move), and a new game everywhere: no
        # validator gets a second prediction for any game; the budgets hold, and only
        # the validator with budget left gets the new game.
        for round_ in range(2):
            for hub, odds in zip(hubs, prices, strict=True):
                moved = {k: v + 0.1 * (round_ + 1) for k, v in odds.items()}
                await hub.post_games(games_at(start, *ids, "g5", **moved))
        for hub in hubs:
            await eventually(lambda hub=hub: "g5" in agent.offered_ids(hub.validator_hotkey),
                             timeout=10)
        await eventually(lambda: runner.stats.accepted == 11, timeout=10)
        expected[1]["g5"] = 10.0
        await asyncio.sleep(0.3)  # let any (wrong) extra submission reach the hubs
        for hub, wagers in zip(hubs, expected, strict=True):
            rows = hub_rows(hub)
            assert set(per_game(rows).values()) == {1}, rows
            assert {r["game_id"]: r["wager"] for r in rows} == wagers
        # The odds may move between a pick and its arrival (two quick rounds): the hub
        # refuses it and the game is picked again at the new odds.
        assert set(runner.stats.rejected) <= {"odds_mismatch"}
        assert runner.stats.skipped["budget"] >= 3
    finally:
        await stopped(runner)
    assert sorted(agent.stopped) == sorted(hub.validator_hotkey for hub in hubs)


# -- misbehaving agents -----------------------------------------------------------------


class Troublemaker(Agent):
    """Raises, hangs and returns garbage, then behaves."""

    name = "troublemaker"

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    async def on_start(self, ctx: AgentContext) -> None:
        raise RuntimeError("on_start exploded")

    async def on_games(self, games: list[Game], ctx: AgentContext) -> list[Any]:
        call = self.calls[ctx.validator_hotkey] = self.calls.get(ctx.validator_hotkey, 0) + 1
        if call == 1:
            raise ValueError("on_games exploded")
        if call == 2:
            await asyncio.sleep(3600)  # hangs: the runner's agent timeout cuts it
        if call == 3:
            return "not a list"  # type: ignore[return-value]
        picks: list[Any] = ["junk", Pick("nope", 0, 1.0)]
        picks += [Pick(g.game_id, 0, 5.0) for g in games]
        picks.append(Pick(games[0].game_id, 1, 5.0))  # a second pick for the same game
        return picks

    async def on_confirmation(self, confirmation: Any, ctx: AgentContext) -> None:
        raise RuntimeError("on_confirmation exploded")

    async def on_stop(self, ctx: AgentContext) -> None:
        raise RuntimeError("on_stop exploded")


async def test_agent_exceptions_never_kill_the_connection_or_the_runner(start_hub, caplog):
    hub = await start_hub()
    await hub.post_games(games_at(timedelta(hours=2), "g1", "g2"))
    agent = Troublemaker()
    conn = connection(hub)
    runner = AgentRunner(agent, [conn], agent_timeout_s=0.5, rescan_interval_s=0.1)
    await runner.start()
    try:
        await eventually(lambda: runner.stats.accepted == 2, timeout=15)
        assert per_game(hub_rows(hub)) == {"g1": 1, "g2": 1}
        assert {r["predicted_outcome"] for r in hub_rows(hub)} == {0}
        stats = runner.stats.validators[hub.validator_hotkey]
        # on_start, on_games raising, hanging, returning a str, one junk item
        await eventually(lambda: stats.agent_errors >= 7, timeout=5)  # + 2 on_confirmation
        assert stats.skipped["unknown_game"] == 1
        assert stats.skipped["repeat"] == 1
        assert stats.skipped["invalid_pick"] == 1
        assert conn.state is ConnectionState.OPEN
        assert runner.running
        assert "on_games exploded" in caplog.text
        assert "troublemaker" in caplog.text
        assert "did not finish within 0.5s" in caplog.text
    finally:
        await stopped(runner)
    assert "on_stop exploded" in caplog.text
    assert runner.stats.validators[hub.validator_hotkey].errors == 0


async def test_one_failing_validator_does_not_stop_the_others(start_validator):
    good = await start_validator("//Alice")
    bad = await start_validator("//Dave")
    refusing = await start_validator("//Eve", registry=OpenRegistry(denied=[BOB.ss58_address]))
    for hub in (good, bad, refusing):
        await hub.post_games(games_at(timedelta(hours=2), "g1"))

    class PicksOnlyOnAlice(FavoriteAgent):
        name = "alice-only"

        async def on_games(self, games, ctx):
            if ctx.validator_hotkey != good.validator_hotkey:
                raise RuntimeError("cannot handle this validator")
            return await super().on_games(games, ctx)

    conns = [connection(refusing), connection(bad), connection(good)]
    runner = AgentRunner(PicksOnlyOnAlice(), conns)
    await runner.start()
    try:
        await eventually(lambda: runner.stats.accepted == 1, timeout=10)
        await bad.server.stop()  # and one hub goes away entirely
        await good.post_games(games_at(timedelta(hours=4), "g2"))
        await eventually(lambda: runner.stats.accepted == 2, timeout=10)
        assert per_game(hub_rows(good)) == {"g1": 1, "g2": 1}
        assert hub_rows(bad) == []
        assert runner.stats.validators[bad.validator_hotkey].agent_errors == 1
        # The hub that refuses this hotkey (403, permanent) is given up on, alone.
        refused = runner.stats.validators[refusing.validator_hotkey]
        await eventually(lambda: refused.errors == 1, timeout=5)
        assert conns[0].state is ConnectionState.CLOSED
        assert hub_rows(refusing) == []
        assert runner.running
    finally:
        await stopped(runner)


# -- budget, outbox and rejections ------------------------------------------------------


async def test_restart_with_the_same_outbox_neither_repeats_nor_overspends(start_hub,
                                                                           tmp_path):
    hub = await start_hub(daily_wager_limit=100.0)
    await hub.post_games(games_at(timedelta(hours=2), "g1", "g2"))
    outbox = tmp_path / "outbox.sqlite3"
    first = AgentRunner(FavoriteAgent(stake=30.0), [connection(hub, outbox=outbox)])
    await first.start()
    try:
        await eventually(lambda: first.stats.accepted == 2, timeout=10)
    finally:
        await stopped(first)

    await hub.post_games(games_at(timedelta(hours=4), "g3", "g4"))
    agent = Recorder(stake=30.0)
    second = AgentRunner(agent, [connection(hub, outbox=outbox)])
    await second.start()
    try:
        await eventually(lambda: second.stats.accepted == 2, timeout=10)
        hk = hub.validator_hotkey
        ctx = agent.contexts[hk][0]
        assert (ctx.wagered_today, ctx.bankroll_left) == (60.0, 40.0)
        assert ctx.predicted == {"g1", "g2"}
        assert agent.offered_ids(hk) == {"g3", "g4"}  # g1, g2 are never offered again
        rows = hub_rows(hub)
        assert per_game(rows) == {"g1": 1, "g2": 1, "g3": 1, "g4": 1}
        assert {r["game_id"]: r["wager"] for r in rows} == {
            "g1": 30.0, "g2": 30.0, "g3": 30.0, "g4": 10.0}  # 100 a day
    finally:
        await stopped(second)


async def test_rejections_are_counted_by_code_and_the_hub_budget_wins(start_hub):
    hub = await start_hub(daily_wager_limit=50.0)
    await hub.post_games([*games_at(timedelta(hours=2), "g1", "g2", "g3"),
                          future_game("b1", sport="basketball", league="NBA",
                                      tie_odds=None, can_tie=False)])
    # Another outbox (say, another machine with the same hotkey) already spent 40 today.
    async with connection(hub) as other:
        await eventually(lambda: "g3" in other.games, timeout=5)
        receipt = await other.submit(Prediction.for_game(other.games["g3"], 0, 40.0),
                                     timeout=5)
        assert receipt.status == "accepted"

    class Bettor(Agent):
        name = "bettor"
        allow_repeat = True

        async def on_games(self, games, ctx):
            by_id = {g.game_id: g for g in games}
            picks: list[Any] = []
            if "b1" in by_id:
                picks.append(Pick("b1", "tie", 5.0))  # no tie market: invalid_outcome
            if "g1" in by_id:
                picks.append(Pick("g1", 0, 20.0))  # the hub has only 10 left today
            return picks

    runner = AgentRunner(Bettor(), [connection(hub)], rescan_interval_s=None)
    await runner.start()
    try:
        await eventually(lambda: sum(runner.stats.rejected.values()) == 2, timeout=10)
        assert runner.stats.rejected == {"invalid_outcome": 1, "wager_limit": 1}
        stats = runner.stats.validators[hub.validator_hotkey]
        assert stats.wagered_by_game == {}  # rejected wagers do not count
        # The hub said the day is spent: the next pick is not even sent.
        await hub.post_games(games_at(timedelta(hours=2), "g1", team_a_odds=1.9))
        await eventually(lambda: stats.skipped["budget"] >= 1, timeout=10)
        assert runner.stats.submitted == 2
        assert per_game(hub_rows(hub)) == {"g3": 1}
    finally:
        await stopped(runner)


async def test_a_pick_at_stale_odds_is_retried_at_the_new_odds(start_hub):
    hub = await start_hub()
    await hub.post_games(games_at(timedelta(hours=2), "g1"))

    class Slow(Agent):
        """Returns a prediction at the odds it was shown after they moved."""

        name = "slow"
        calls = 0

        async def on_games(self, games, ctx):
            Slow.calls += 1
            if Slow.calls == 1:
                stale = Prediction.for_game(games[0], 0, 10.0)
                await hub.post_games(games_at(timedelta(hours=2), "g1", team_a_odds=1.9))
                return [stale]
            return [Pick(g.game_id, 0, 10.0) for g in games]

    runner = AgentRunner(Slow(), [connection(hub)], rescan_interval_s=None)
    await runner.start()
    try:
        await eventually(lambda: runner.stats.accepted == 1, timeout=10)
        assert runner.stats.rejected == {"odds_mismatch": 1}
        [row] = hub_rows(hub)
        assert (row["predicted_odds"], row["team_a_odds"]) == (1.9, 1.9)
        assert runner.stats.validators[hub.validator_hotkey].wagered_by_game == {"g1": 10.0}
    finally:
        await stopped(runner)


async def test_stop_leaves_connections_it_did_not_start_open(start_hub):
    hub = await start_hub()
    await hub.post_games(games_at(timedelta(hours=2), "g1"))
    async with connection(hub) as conn:
        await eventually(lambda: "g1" in conn.games, timeout=5)
        agent = Recorder()
        runner = AgentRunner(agent, [conn])
        task = asyncio.create_task(runner.run())
        await eventually(lambda: runner.stats.accepted == 1, timeout=10)
        await stopped(runner)
        stats = await asyncio.wait_for(task, 5)
        assert stats is runner.stats
        assert stats.accepted == 1
        assert conn.state is ConnectionState.OPEN
        assert agent.stopped == [hub.validator_hotkey]
        # The game table was already loaded before the runner subscribed: still offered.
        assert agent.offered_ids(hub.validator_hotkey) == {"g1"}


async def test_value_agent_on_a_live_hub(start_hub):
    hub = await start_hub()
    await hub.post_games([
        future_game("fair", sport="basketball", league="NBA", team_a_odds=2.0,
                    team_b_odds=2.0, tie_odds=None, can_tie=False),
        future_game("vig", sport="basketball", league="NBA", team_a_odds=1.8,
                    team_b_odds=1.8, tie_odds=None, can_tie=False),
    ])
    runner = AgentRunner(ValueAgent(home_advantage=0.2, kelly=0.25),
                         [connection(hub)], daily_budget=200.0)
    await runner.start()
    try:
        await eventually(lambda: runner.stats.accepted == 1, timeout=10)
        [row] = hub_rows(hub)
        assert (row["game_id"], row["predicted_outcome"], row["model_name"]) == ("fair", 0,
                                                                                "value")
        assert 0 < row["wager"] <= 200.0 * 0.25
        assert 0.5 < row["confidence_score"] < 0.6
    finally:
        await stopped(runner)


def test_runner_arguments_are_checked():
    conn = ValidatorConnection("ws://127.0.0.1:9", BOB, VALIDATOR.ss58_address)
    with pytest.raises(ValueError, match="more than one connection"):
        AgentRunner(FavoriteAgent(), [conn, ValidatorConnection(
            "ws://127.0.0.1:10", BOB, VALIDATOR.ss58_address)])
    with pytest.raises(ValueError, match="daily_budget"):
        AgentRunner(FavoriteAgent(), [conn], daily_budget=-1.0)
    with pytest.raises(ValueError, match="over_budget"):
        AgentRunner(FavoriteAgent(), [conn], over_budget="borrow")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        AgentRunner("favorite", [conn])  # type: ignore[arg-type]
