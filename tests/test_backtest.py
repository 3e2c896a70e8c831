"""The backtester: football-data CSVs, recordings, the replay through the real runner
(hub rules, no lookahead, determinism, speed), the JSON and the CLI end to end."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agents import Agent, AgentContext, FavoriteAgent, Pick, ValueAgent
from agents.backtest.backtester import backtest, load_data
from agents.backtest.footballdata import (
    CLOSE_BEFORE,
    PUBLISH_BEFORE,
    SETTLE_AFTER,
    match_events,
    parse_matches,
)
from agents.backtest.recording import RecordingWriter, read_recording
from agents.backtest.replay import ReplayConnection, VirtualClock, replay_agent
from agents.backtest.results import max_drawdown
from agents.cli.main import app
from sdk.codes import ConfirmationStatus, ErrorCode
from sdk.errors import PredictionRejected
from sdk.frames import GameUpdate
from sdk.models import Game, Outcome, Prediction
from sdk.tracker import ApplyResult, StreamTracker

HEADER = ("Div,Date,Time,HomeTeam,AwayTeam,FTHG,FTAG,FTR,B365H,B365D,B365A,PSH,PSD,PSA,"
          "AvgH,AvgD,AvgA,B365CH,B365CD,B365CA,PSCH,PSCD,PSCA,AvgCH,AvgCD,AvgCA")
ROWS = [
    # dd/mm/yyyy, B365 opening and closing
    "E0,12/08/2023,15:00,Arsenal,Chelsea,2,0,H,2.10,3.40,3.60,,,,,,,2.00,3.50,3.80,,,,,,",
    # dd/mm/yy, only Pinnacle opening, Avg closing
    "E0,13/08/23,17:30,Everton,Fulham,1,1,D,,,,2.50,3.20,2.90,,,,,,,,,,2.40,3.30,3.00",
    # only Avg odds, no closing: the opening odds close
    "E0,19/08/2023,12:30,Fulham,Arsenal,0,1,A,,,,,,,4.50,3.80,1.75,,,,,,,,,",
    # no odds at all: skipped
    "E0,19/08/2023,15:00,Chelsea,Everton,3,0,H,,,,,,,,,,,,,,,,,,",
    # not played yet (no FTR)
    "E0,26/08/2023,15:00,Chelsea,Fulham,,,,1.50,4.20,6.00,,,,,,,,,,,,,,,",
]


def write_csv(path: Path, rows: list[str] = ROWS) -> Path:
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def season_csv(path: Path, matches: int = 380, seed: int = 7) -> Path:
    """A synthetic season: 20 teams, ten matches a weekend, B365 opening and closing."""
    rng = random.Random(seed)
    teams = [f"Team {n:02d}" for n in range(20)]
    pairs = [(h, a) for h in teams for a in teams if h != a]
    rng.shuffle(pairs)
    start = datetime(2023, 8, 12, 15, 0)
    rows = []
    for n, (home, away) in enumerate(pairs[:matches]):
        kickoff = start + timedelta(days=7 * (n // 10), hours=2.5 * (n % 3))
        weights = [rng.uniform(0.2, 0.6) for _ in range(3)]
        total = sum(weights)
        opening = [round(total / (w * 1.05), 2) for w in weights]
        closing = [round(o * rng.uniform(0.93, 1.07), 2) for o in opening]
        result = rng.choices("HDA", weights=weights)[0]
        rows.append(f"E0,{kickoff:%d/%m/%Y},{kickoff:%H:%M},{home},{away},1,0,{result},"
                    f"{opening[0]},{opening[1]},{opening[2]},,,,,,,"
                    f"{closing[0]},{closing[1]},{closing[2]},,,,,,")
    return write_csv(path, rows)


# -- the CSV format --------------------------------------------------------------------------


def test_csv_rows_dates_odds_fallbacks_and_skipped(tmp_path: Path) -> None:
    parsed = parse_matches(write_csv(tmp_path / "e0.csv").read_text())
    assert parsed.skipped == 1
    arsenal, everton, fulham, chelsea = parsed.matches
    assert arsenal.kickoff == datetime(2023, 8, 12, 15, 0, tzinfo=UTC)
    assert everton.kickoff == datetime(2023, 8, 13, 17, 30, tzinfo=UTC)  # dd/mm/yy
    assert (arsenal.opening, arsenal.closing) == ((2.10, 3.40, 3.60), (2.00, 3.50, 3.80))
    assert (everton.opening, everton.closing) == ((2.50, 3.20, 2.90), (2.40, 3.30, 3.00))
    assert fulham.opening == fulham.closing == (4.50, 3.80, 1.75)
    assert [m.result for m in parsed.matches] == [Outcome.TEAM_A, Outcome.TIE, Outcome.TEAM_B,
                                                  Outcome.UNFINISHED]
    assert chelsea.home == "Chelsea"
    assert chelsea.league == "E0"


def test_a_csv_match_appears_48h_before_closes_10min_before_settles_2h_after(
        tmp_path: Path) -> None:
    match = parse_matches(write_csv(tmp_path / "e0.csv").read_text()).matches[0]
    states = [(e.hub_time, g) for e in match_events([match]) for g in e.update.games]
    (published, opened), (closing_at, closed), (settled_at, settled) = states
    assert published == match.kickoff - PUBLISH_BEFORE == opened.last_update_date
    assert (opened.team_a_odds, opened.tie_odds, opened.team_b_odds) == (2.10, 3.40, 3.60)
    assert closing_at == match.kickoff - CLOSE_BEFORE
    assert (closed.team_a_odds, closed.tie_odds, closed.team_b_odds) == (2.00, 3.50, 3.80)
    assert settled_at == match.kickoff + SETTLE_AFTER
    assert settled.outcome == Outcome.TEAM_A
    assert not settled.active
    assert opened.team_a == "Arsenal"
    assert opened.team_b == "Chelsea"
    assert opened.can_tie
    assert opened.sport == "soccer"
    assert opened.outcome == Outcome.UNFINISHED


# -- the replay hub: the hub's rules at the virtual time -------------------------------------


def _game(kickoff: datetime, at: datetime, odds: float = 2.0) -> Game:
    return Game(game_id="g1", team_a="A", team_b="B", sport="soccer", league="L",
                event_start_date=kickoff, team_a_odds=odds, team_b_odds=3.0, tie_odds=3.2,
                can_tie=True, last_update_date=at)


async def test_replay_hub_applies_cutoff_odds_tolerance_and_daily_limit_per_virtual_day(
        ) -> None:
    start = datetime(2024, 3, 1, 22, 0, tzinfo=UTC)
    clock = VirtualClock(start)
    conn = ReplayConnection(clock)
    kickoff = start + timedelta(days=1)
    conn.publish(GameUpdate(epoch="e", seq=1, games=[_game(kickoff, start)], snapshot=True))
    game = conn.games["g1"]

    def bet(wager: float, odds_game: Game = game) -> Prediction:
        return Prediction.for_game(odds_game, 0, wager)

    assert (await conn.submit(bet(900))).status is ConfirmationStatus.ACCEPTED
    with pytest.raises(PredictionRejected) as over:
        await conn.submit(bet(200))
    assert over.value.code == ErrorCode.WAGER_LIMIT
    with pytest.raises(PredictionRejected) as stale:
        await conn.submit(bet(5, _game(kickoff, start, odds=2.5)))
    assert stale.value.code == ErrorCode.ODDS_MISMATCH
    clock.now = start + timedelta(hours=3)  # the next UTC day: a new budget
    assert (await conn.submit(bet(200))).status is ConfirmationStatus.ACCEPTED
    clock.now = kickoff
    with pytest.raises(PredictionRejected) as late:
        await conn.submit(bet(5))
    assert late.value.code == ErrorCode.GAME_STARTED
    assert dict(conn.rejected) == {ErrorCode.WAGER_LIMIT: 1, ErrorCode.ODDS_MISMATCH: 1,
                                   ErrorCode.GAME_STARTED: 1}
    assert [a.accepted_at for a in conn.accepted] == [start, start + timedelta(hours=3)]


class Greedy(Agent):
    """Bets 400 on every game: the runner's budget (the hub's limit) caps each day."""

    name = "greedy"

    async def on_games(self, games: list[Game], ctx: AgentContext) -> list[Prediction | Pick]:
        return [Pick(g.game_id, 0, 400.0) for g in games]


async def test_the_runner_budget_and_hub_limit_hold_per_replay_day(tmp_path: Path) -> None:
    data = load_data(season_csv(tmp_path / "s.csv", matches=40))
    run = await replay_agent(Greedy(), data.events)
    per_day: dict[str, float] = {}
    for accepted in run.accepted:
        day = accepted.accepted_at.date().isoformat()
        per_day[day] = per_day.get(day, 0.0) + accepted.prediction.wager
    assert per_day
    assert max(per_day.values()) <= 1000.0 + 1e-9
    assert any(abs(total - 1000.0) < 1e-9 for total in per_day.values())
    assert run.stats.validators["replay-validator"].scaled > 0


# -- no lookahead ----------------------------------------------------------------------------


class Peeker(Agent):
    """Tries to see the future: records everything visible at each call."""

    name = "peeker"

    def __init__(self) -> None:
        self.seen: list[tuple[datetime, dict[str, Game], list[str]]] = []

    async def on_games(self, games: list[Game], ctx: AgentContext) -> list[Prediction | Pick]:
        self.seen.append((ctx.server_time, dict(ctx.games), [g.game_id for g in games]))
        return [Pick(g.game_id, 0, 1.0) for g in games]


async def test_an_agent_never_sees_odds_or_outcomes_before_they_are_published(
        tmp_path: Path) -> None:
    data = load_data(season_csv(tmp_path / "s.csv", matches=30))
    published: dict[str, list[tuple[datetime, Game]]] = {}
    for event in data.events:
        for game in event.update.games:
            published.setdefault(game.game_id, []).append((event.hub_time, game))
    agent = Peeker()
    run = await replay_agent(agent, data.events)
    assert agent.seen
    assert run.accepted
    for now, table, offered in agent.seen:
        for game_id, game in table.items():
            history = [state for at, state in published[game_id] if at <= now]
            assert history, f"{game_id} visible at {now} before it was published"
            assert game == history[-1], f"{game_id} at {now} is not its latest published state"
            if game.settled:
                assert now >= game.event_start_date + SETTLE_AFTER
        future = [gid for gid, states in published.items() if states[0][0] > now]
        assert not set(future) & set(table)
        for game_id in offered:
            assert not table[game_id].settled
            assert table[game_id].event_start_date > now
    # the prices taken are those published at the time, never the closing ones in advance
    for accepted in run.accepted:
        p = accepted.prediction
        visible = [g for at, g in published[p.game_id] if at <= accepted.accepted_at][-1]
        assert p.predicted_odds == visible.team_a_odds


# -- determinism, speed, JSON ---------------------------------------------------------------


async def test_same_input_same_json_and_the_seed_only_changes_ids(tmp_path: Path) -> None:
    data = load_data(season_csv(tmp_path / "s.csv", matches=60))
    first = (await backtest([FavoriteAgent(), ValueAgent()], data)).to_json()
    again = (await backtest([FavoriteAgent(), ValueAgent()], data)).to_json()
    assert json.dumps(first) == json.dumps(again)
    other = (await backtest([FavoriteAgent(), ValueAgent()], data, seed=1)).to_json()
    ids = [r["prediction_id"] for a in first["agents"] for r in a["predictions_rows"]]
    other_ids = [r["prediction_id"] for a in other["agents"] for r in a["predictions_rows"]]
    assert len(set(ids)) == len(ids)
    assert not set(ids) & set(other_ids)
    assert [a["profit"] for a in first["agents"]] == [a["profit"] for a in other["agents"]]


async def test_a_380_match_season_replays_within_the_bound(tmp_path: Path) -> None:
    data = load_data(season_csv(tmp_path / "season.csv"))
    assert data.games == 380
    started = time.perf_counter()
    result = await backtest([FavoriteAgent(), ValueAgent()], data)
    elapsed = time.perf_counter() - started
    assert elapsed < 30.0, f"a season took {elapsed:.1f} s"
    favorite = result.reports[0]
    assert favorite.predictions == 380
    assert favorite.settled == 380


def test_max_drawdown() -> None:
    assert max_drawdown([]) == 0.0
    assert max_drawdown([5, -3, -4, 10, -2]) == 7.0
    assert max_drawdown([-1, -1]) == 2.0


async def test_json_shape_and_figures_agree_with_the_rows(tmp_path: Path) -> None:
    data = load_data(write_csv(tmp_path / "e0.csv"))
    assert data.skipped_rows == 1
    assert data.games == 4
    out = (await backtest([FavoriteAgent(stake=10)], data)).to_json()
    assert out["format"] == "bt-miner-backtest/1"
    assert out["data"]["kind"] == "csv"
    assert out["data"]["skipped_rows"] == 1
    (agent,) = out["agents"]
    rows = agent["predictions_rows"]
    assert {"prediction_id", "game_id", "kickoff", "predicted_outcome", "predicted_odds",
            "closing_odds", "wager", "outcome", "payout"} <= set(rows[0])
    assert len(rows) == agent["predictions"] == 4
    by_game = {r["game_id"].split("-", 2)[2]: r for r in rows}
    arsenal = by_game["Arsenal-Chelsea"]  # favourite home at 2.10, won, closed at 2.00
    assert (arsenal["predicted_outcome"], arsenal["predicted_odds"]) == (0, 2.10)
    assert arsenal["closing_odds"] == 2.00
    assert arsenal["payout"] == pytest.approx(21.0)
    unplayed = by_game["Chelsea-Fulham"]
    assert unplayed["outcome"] is None
    assert unplayed["payout"] is None
    settled = [r for r in rows if r["payout"] is not None]
    assert agent["wagered"] == pytest.approx(40.0)
    assert agent["open_wager"] == pytest.approx(10.0)
    assert agent["payout"] == pytest.approx(sum(r["payout"] for r in settled))
    assert agent["profit"] == pytest.approx(sum(r["payout"] - r["wager"] for r in settled))
    assert agent["hit_rate"] == pytest.approx(
        sum(1 for r in settled if r["payout"] > 0) / len(settled))
    assert len(agent["tier_scores"]) == 5
    assert agent["tiers_met"] == [1]
    days = agent["days"]
    assert {"day", "wagered", "profit", "cumulative_profit", "composite", "clv", "roi",
            "risk_score", "entropy"} <= set(days[0])
    assert days[-1]["cumulative_profit"] == pytest.approx(agent["profit"])
    assert sum(d["wagered"] for d in days) == pytest.approx(agent["wagered"])
    assert any(d["composite"] != 0 for d in days)


# -- recordings ------------------------------------------------------------------------------


def test_a_recording_skips_what_it_holds_and_drops_a_cut_last_line(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    at = datetime(2024, 1, 1, tzinfo=UTC)
    game = _game(at + timedelta(hours=1), at)
    with RecordingWriter(path) as writer:
        assert writer.write(at, GameUpdate(epoch="e", seq=3, games=[game], snapshot=True))
        assert writer.write(at, GameUpdate(epoch="e", seq=4, prev_seq=3, games=[game]))
        assert not writer.write(at, GameUpdate(epoch="e", seq=4, prev_seq=3, games=[game]))
    with path.open("a") as handle:
        handle.write('{"type":"game_update","hub_ti')  # a crash mid-line
    with RecordingWriter(path) as writer:
        assert writer.held == 2
        assert not writer.write(at, GameUpdate(epoch="e", seq=3, games=[game], snapshot=True))
        assert writer.write(at, GameUpdate(epoch="e", seq=5, prev_seq=4, games=[game]))
        assert writer.write(at, GameUpdate(epoch="f", seq=1, games=[game], snapshot=True))
    recorded = read_recording(path)
    assert [r.key for r in recorded] == [("e", 3), ("e", 4), ("e", 5), ("f", 1)]
    assert recorded[0].update.snapshot
    assert recorded[0].hub_time == at
    assert recorded[1].update.games == [game]


async def test_record_then_backtest_gives_what_the_live_run_received(tmp_path: Path) -> None:
    from bittensor.keyfiles import Keypair

    from agents.cli.record import record_updates
    from sdk.connection import ValidatorConnection
    from server_stub.testing import LocalHub

    from .kit.waiting import eventually, within

    path = tmp_path / "rec.jsonl"
    signer = Keypair.create_from_uri("//Bob")
    async with LocalHub() as hub:
        live: list[GameUpdate] = []
        async with ValidatorConnection(hub.url, Keypair.create_from_uri("//Charlie"),
                                       hub.validator_hotkey, outbox=":memory:") as watcher:
            updates = watcher.game_updates()

            async def follow() -> None:
                async for update in updates:
                    live.append(update)

            follower = asyncio.create_task(follow())
            sessions = []
            for _ in range(2):  # two runs into the same file: resumed, no repeats
                writer = RecordingWriter(path).open()
                stop = asyncio.Event()
                task = asyncio.create_task(record_updates(
                    hub.url, signer, hub.validator_hotkey, writer, stop=stop))
                await eventually(lambda w=writer: w.written >= 5, timeout=30)
                stop.set()
                conn = await within(task, 15, "the recorder stopping")
                assert conn.error is None
                writer.close()
                sessions.append(writer.written)
            await eventually(lambda: live and live[-1].seq >= read_recording(path)[-1].key[1],
                             timeout=15)
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

    recorded = read_recording(path)
    assert len(recorded) == sum(sessions)
    keys = [r.key for r in recorded]
    assert len(set(keys)) == len(keys)
    assert keys == sorted(keys)
    assert recorded[0].update.snapshot
    # no gap: the second run either continues the held stream or starts with a snapshot
    tracker = StreamTracker()
    assert all(tracker.apply(r.update) is ApplyResult.APPLIED for r in recorded)
    # every recorded update is the one the live connection received with that seq
    live_by_seq = {u.seq: u for u in live}
    common = [r for r in recorded if r.update.seq in live_by_seq and not r.update.snapshot]
    assert len(common) >= 5
    for r in common:
        assert r.update.games == live_by_seq[r.update.seq].games

    # the replay offers the agent exactly the states the live stream carried
    live_states = {(g.game_id, g.model_dump_json()) for u in live for g in u.games}
    data = load_data(path)
    assert data.kind == "recording"
    assert len(data.events) == len(recorded)
    agent = Peeker()
    await replay_agent(agent, data.events)
    assert agent.seen
    for _, table, _ in agent.seen:
        for game in table.values():
            state = (game.game_id, game.model_dump_json())
            assert state in live_states or any(
                r.update.snapshot and game in r.update.games for r in recorded)


# -- the command line ------------------------------------------------------------------------

cli = CliRunner()


def test_cli_backtest_end_to_end(tmp_path: Path) -> None:
    csv_path = season_csv(tmp_path / "s.csv", matches=50)
    out, png = tmp_path / "bt.json", tmp_path / "bt.png"
    result = cli.invoke(app, ["backtest", "--agent", "favorite", "--agent", "value",
                              "--data", str(csv_path), "--json", str(out), "--plot", str(png),
                              "--agent-opt", "value.kelly=0.5", "--agent-opt", "favorite.stake=20",
                              "--agent-opt", 'leagues=["E0"]'],
                        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "favorite" in result.output
    assert "value" in result.output
    assert "50 games" in result.output
    data: dict[str, Any] = json.loads(out.read_text())
    favorite, value = data["agents"]
    assert favorite["options"] == {"stake": 20, "leagues": ["E0"]}
    assert value["options"] == {"kelly": 0.5, "leagues": ["E0"]}
    assert {r["wager"] for r in favorite["predictions_rows"]} == {20.0}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_backtest_usage_errors(tmp_path: Path) -> None:
    missing = cli.invoke(app, ["backtest", "--agent", "favorite", "--data",
                               str(tmp_path / "none.csv")])
    assert missing.exit_code == 2
    assert "none.csv" in missing.output
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    neither = cli.invoke(app, ["backtest", "--agent", "favorite", "--data", str(junk)])
    assert neither.exit_code == 2
    assert "football-data" in neither.output
    scoped = cli.invoke(app, ["backtest", "--agent", "favorite", "--data",
                              str(write_csv(tmp_path / "e0.csv")), "--agent-opt", "x.k=1"])
    assert scoped.exit_code == 2
    assert "--agent" in scoped.output


def test_cli_record_dev_then_backtest_the_recording(tmp_path: Path) -> None:
    out = tmp_path / "stream.jsonl"
    recorded = cli.invoke(app, ["record", "--dev", "--out", str(out), "--duration", "2"],
                          catch_exceptions=False)
    assert recorded.exit_code == 0, recorded.output
    lines = read_recording(out)
    assert lines
    assert lines[0].update.snapshot
    assert f"recorded {len(lines)} update(s)" in recorded.output
    replayed = cli.invoke(app, ["backtest", "--agent", "favorite", "--data", str(out)],
                          catch_exceptions=False)
    assert replayed.exit_code == 0, replayed.output
    assert "(recording)" in replayed.output
