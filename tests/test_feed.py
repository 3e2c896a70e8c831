"""Tests for server_stub.simulator (the game simulator) and server_stub.feed (the JSON
games-file loader)."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest

from sdk.models import Game, Outcome
from sdk.tracker import SETTLED_RETENTION
from server_stub.feed import FeedError, load_games_file
from server_stub.simulator import GameSimulator

START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SPACING = timedelta(minutes=3)
DURATION = timedelta(minutes=5)


def sim(seed: int = 0, **kwargs) -> GameSimulator:
    return GameSimulator(seed=seed, start=START, **kwargs)


def times(every: timedelta, total: timedelta, start: datetime = START) -> list[datetime]:
    count = int(total / every)
    return [start + every * (i + 1) for i in range(count)]


def dumps(games: list[Game]) -> list[dict]:
    return [g.model_dump(mode="json") for g in games]


def implied(game: Game) -> float:
    total = 1 / game.team_a_odds + 1 / game.team_b_odds
    if game.tie_odds is not None:
        total += 1 / game.tie_odds
    return total


def run_collect(s: GameSimulator, steps: list[datetime]) -> list[Game]:
    """Every game state the simulator ever published (initial + each step)."""
    seen = list(s.initial_games())
    for now in steps:
        seen.extend(s.step(now))
    return seen


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_outputs():
    steps = times(timedelta(seconds=20), timedelta(minutes=90))
    a, b = sim(7), sim(7)
    assert dumps(a.initial_games()) == dumps(b.initial_games())
    for now in steps:
        assert dumps(a.step(now)) == dumps(b.step(now))
    assert dumps(a.games()) == dumps(b.games())


def test_different_seeds_differ():
    a, b = sim(1).initial_games(), sim(2).initial_games()
    fixtures_a = [(g.league, g.team_a, g.team_b, g.team_a_odds) for g in a]
    fixtures_b = [(g.league, g.team_a, g.team_b, g.team_a_odds) for g in b]
    assert fixtures_a != fixtures_b
    assert {g.game_id for g in a}.isdisjoint({g.game_id for g in b})


def test_game_ids_stable_and_unique():
    s = sim(3)
    ids = [g.game_id for g in s.initial_games()]
    assert ids == [f"sim-3-{n}" for n in range(12)]
    published = run_collect(s, times(timedelta(seconds=30), timedelta(hours=3)))
    # new fixtures get new ids, never a reused one with other teams
    by_id: dict[str, tuple[str, str]] = {}
    for g in published:
        assert by_id.setdefault(g.game_id, (g.team_a, g.team_b)) == (g.team_a, g.team_b)
    assert len(by_id) > 12 + 50


def test_initial_games_all_in_future_and_count():
    s = sim(0, games=12)
    games = s.initial_games()
    assert len(games) == 12
    assert all(g.event_start_date > START for g in games)
    assert all(g.active and g.outcome == Outcome.UNFINISHED for g in games)
    assert all(g.last_update_date == START for g in games)


def test_naive_start_is_treated_as_utc():
    s = GameSimulator(seed=0, start=datetime(2030, 1, 1, 12, 0))
    assert dumps(s.initial_games()) == dumps(sim(0).initial_games())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"games": 0}, "games must be at least 1"),
        ({"kickoff_spacing": timedelta(0)}, "kickoff_spacing must be positive"),
        ({"match_duration": timedelta(seconds=-1)}, "match_duration must not be negative"),
        ({"drift": -0.1}, "drift must be a finite number >= 0"),
        ({"drift": math.nan}, "drift must be a finite number >= 0"),
    ],
)
def test_bad_parameters_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sim(0, **kwargs)


# --------------------------------------------------------------------------- changes only


def test_only_changed_games_returned():
    s = sim(5)
    state = {g.game_id: g for g in s.initial_games()}
    total_returned = 0
    for now in times(timedelta(seconds=15), timedelta(minutes=60)):
        before = {g.game_id: g for g in s.games()}
        changed = s.step(now)
        ids = [g.game_id for g in changed]
        assert len(ids) == len(set(ids)), "a game returned twice in one step"
        for g in changed:
            assert g.last_update_date == now
            if g.game_id in state:
                assert not g.same_state(state[g.game_id]), f"{g.game_id} returned unchanged"
            state[g.game_id] = g
        # everything not returned is exactly as before
        after = {g.game_id: g for g in s.games()}
        for gid, g in after.items():
            if gid not in ids:
                assert g == before[gid]
        total_returned += len(changed)
    assert total_returned > 0


def test_same_now_twice_returns_nothing():
    s = sim(0)
    now = START + timedelta(seconds=50)
    assert s.step(now) != []
    assert s.step(now) == []


def test_no_drift_means_no_odds_changes_before_kickoff():
    s = sim(0, drift=0.0)
    first_kickoff = min(g.event_start_date for g in s.initial_games())
    for now in times(timedelta(seconds=5), first_kickoff - START - timedelta(seconds=1)):
        assert s.step(now) == []


def test_odds_drift_about_drift_per_minute():
    """De-vigged two-way probabilities move by ~N(0, drift) over one simulated minute."""
    moves = []
    for seed in range(60):
        s = sim(seed, drift=0.03)
        before = {g.game_id: g for g in s.initial_games() if not g.can_tie}
        after = {g.game_id: g for g in s.step(START + timedelta(minutes=1))}
        for gid, g0 in before.items():
            g1 = after.get(gid, g0)
            p0 = (1 / g0.team_a_odds) / implied(g0)
            p1 = (1 / g1.team_a_odds) / implied(g1)
            moves.append(abs(p1 - p0))
    assert len(moves) > 100
    mean_move = sum(moves) / len(moves)
    # E|N(0, 0.03)| = 0.024; allow for rounding and reflection at the bounds
    assert 0.016 < mean_move < 0.032, mean_move


def test_odds_frozen_from_kickoff_until_settlement():
    s = sim(0)
    g0 = s.initial_games()[0]
    s.step(g0.event_start_date)
    frozen = next(g for g in s.games() if g.game_id == g0.game_id)
    for now in times(timedelta(seconds=10), DURATION - timedelta(seconds=10), g0.event_start_date):
        changed = {g.game_id for g in s.step(now)}
        assert g0.game_id not in changed
    current = next(g for g in s.games() if g.game_id == g0.game_id)
    assert current == frozen
    assert current.active
    assert current.outcome == Outcome.UNFINISHED


# --------------------------------------------------------------------------- odds sanity


def test_odds_sane_and_margin_within_bounds():
    s = sim(11, games=20)
    published = run_collect(s, times(timedelta(seconds=20), timedelta(hours=4)))
    assert len(published) > 1000
    for g in published:
        for odds in (g.team_a_odds, g.team_b_odds, g.tie_odds):
            if odds is not None:
                assert 1.01 <= odds <= 30.0, g
                assert round(odds, 2) == odds
        assert 1.04 <= implied(g) <= 1.08, (g, implied(g))


def test_tie_market_only_for_soccer():
    published = run_collect(sim(4, games=30), times(timedelta(minutes=1), timedelta(hours=2)))
    leagues = {(g.sport, g.league) for g in published}
    assert leagues == {
        ("soccer", "EPL"),
        ("soccer", "La Liga"),
        ("baseball", "MLB"),
        ("football", "NFL"),
    }
    for g in published:
        if g.sport == "soccer":
            assert g.can_tie is True, g
            assert g.tie_odds is not None, g
        else:
            assert g.can_tie is False, g
            assert g.tie_odds is None, g
        assert g.team_a != g.team_b


def test_soccer_draw_odds_realistic():
    games = [g for seed in range(20) for g in sim(seed).initial_games() if g.can_tie]
    assert games
    for g in games:
        assert 2.8 <= g.tie_odds <= 6.0, g


# --------------------------------------------------------------------------- schedule


def test_kickoffs_in_order_and_spaced():
    s = sim(9, kickoff_spacing=SPACING)
    games = s.initial_games()
    starts = [g.event_start_date for g in games]
    assert starts == sorted(starts)
    assert len(set(starts)) == len(starts)
    for n, g in enumerate(games):
        scheduled = START + (n + 1) * SPACING
        assert scheduled <= g.event_start_date < scheduled + SPACING * 0.25


def test_replacement_fixtures_kick_off_after_existing_ones():
    s = sim(2)
    latest = max(g.event_start_date for g in s.initial_games())
    known = {g.game_id for g in s.initial_games()}
    new_count = 0
    for now in times(timedelta(seconds=30), timedelta(hours=2)):
        for g in s.step(now):
            if g.game_id not in known:
                known.add(g.game_id)
                new_count += 1
                assert g.event_start_date > now
                assert g.event_start_date > latest
                latest = g.event_start_date
    assert new_count > 20


# --------------------------------------------------------------------------- settlement


def test_settlement_after_match_duration():
    s = sim(6, match_duration=DURATION)
    g0 = s.initial_games()[0]
    just_before = g0.event_start_date + DURATION - timedelta(microseconds=1)
    s.step(just_before)
    assert next(g for g in s.games() if g.game_id == g0.game_id).outcome == Outcome.UNFINISHED
    at = g0.event_start_date + DURATION
    changed = {g.game_id: g for g in s.step(at)}
    assert g0.game_id in changed
    settled = changed[g0.game_id]
    assert settled.active is False
    assert settled.outcome in (Outcome.TEAM_A, Outcome.TEAM_B, Outcome.TIE)
    assert settled.last_update_date == at
    assert settled.event_start_date == g0.event_start_date


def test_outcomes_valid_per_league_and_all_occur():
    outcomes: dict[bool, set[Outcome]] = {True: set(), False: set()}
    for seed in range(10):
        s = sim(seed)
        for now in times(timedelta(minutes=1), timedelta(hours=1)):
            for g in s.step(now):
                if g.settled:
                    assert not g.active
                    outcomes[g.can_tie].add(g.outcome)
    assert outcomes[False] == {Outcome.TEAM_A, Outcome.TEAM_B}
    assert outcomes[True] == {Outcome.TEAM_A, Outcome.TEAM_B, Outcome.TIE}


def test_settled_game_returned_once():
    s = sim(1)
    settle_counts: dict[str, int] = {}
    for now in times(timedelta(seconds=20), timedelta(hours=2)):
        for g in s.step(now):
            if g.settled:
                settle_counts[g.game_id] = settle_counts.get(g.game_id, 0) + 1
    assert settle_counts
    assert set(settle_counts.values()) == {1}


def test_replacements_keep_unsettled_count():
    in_play_max = math.ceil(DURATION / SPACING)
    for games in (1, 5, 12):
        s = sim(8, games=games)
        known = {g.game_id for g in s.initial_games()}
        total_settled = 0
        for now in times(timedelta(seconds=45), timedelta(hours=3)):
            changed = s.step(now)
            settled_now = sum(1 for g in changed if g.settled)
            new = [g for g in changed if g.game_id not in known]
            known.update(g.game_id for g in new)
            assert len(new) == settled_now
            assert all(g.event_start_date > now and not g.settled for g in new)
            unsettled = [g for g in s.games() if not g.settled]
            assert len(unsettled) == games
            future = [g for g in unsettled if g.event_start_date > now]
            assert len(future) >= games - in_play_max
            total_settled += settled_now
        assert total_settled > 15


def test_big_time_jump_settles_everything_and_refills_future():
    s = sim(0)
    now = START + timedelta(hours=2)
    changed = s.step(now)
    settled = [g for g in changed if g.settled]
    assert len(settled) == 12
    fresh = [g for g in changed if not g.settled]
    assert len(fresh) == 12
    assert all(g.event_start_date > now for g in fresh)
    starts = [g.event_start_date for g in fresh]
    assert starts == sorted(starts)
    assert len(set(starts)) == 12


# --------------------------------------------------------------------------- bounded table


def test_table_bounded_and_old_settled_dropped():
    s = sim(12)
    spacing_per_hour = SETTLED_RETENTION / SPACING
    bound = 12 + math.ceil(spacing_per_hour) + 2
    settled_ids: list[tuple[str, datetime]] = []
    for now in times(timedelta(minutes=1), timedelta(hours=10)):
        for g in s.step(now):
            if g.settled:
                settled_ids.append((g.game_id, now))
        table = s.games()
        assert len(table) <= bound
        held = {g.game_id for g in table}
        for gid, at in settled_ids:
            if now - at > SETTLED_RETENTION + timedelta(minutes=1):
                assert gid not in held
    assert len(settled_ids) > 150
    # recent settled games are still held
    assert any(g.settled for g in s.games())


# --------------------------------------------------------------------------- time order


def test_time_going_backwards_changes_nothing():
    a, b = sim(4), sim(4)
    t1, t2 = START + timedelta(minutes=10), START + timedelta(minutes=12)
    a.step(t1)
    b.step(t1)
    a.step(t2)
    b.step(t2)
    before = dumps(a.games())
    assert a.step(t1) == []
    assert a.step(START) == []
    assert dumps(a.games()) == before
    assert a.now == t2
    # and the backward calls did not perturb the random stream
    t3 = START + timedelta(minutes=20)
    assert dumps(a.step(t3)) == dumps(b.step(t3))


# --------------------------------------------------------------------------- speed


def test_step_is_fast():
    s = sim(0, games=12)
    steps = times(timedelta(seconds=5), timedelta(hours=1))
    t0 = time.perf_counter()
    for now in steps:
        s.step(now)
    per_step = (time.perf_counter() - t0) / len(steps)
    assert per_step < 0.001, f"{per_step * 1e6:.0f} µs per step"


# --------------------------------------------------------------------------- file loader


def game_dict(**overrides) -> dict:
    base = {
        "game_id": "g-1",
        "team_a": "Arsenal",
        "team_b": "Chelsea",
        "sport": "soccer",
        "league": "EPL",
        "event_start_date": "2030-08-17T14:00:00Z",
        "team_a_odds": 2.1,
        "team_b_odds": 3.4,
        "tie_odds": 3.5,
        "can_tie": True,
        "last_update_date": "2030-08-10T09:00:00Z",
    }
    base.update(overrides)
    return base


def write(tmp_path: Path, content, name: str = "games.json") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content), encoding="utf-8")
    return path


def test_example_file_loads():
    ref = resources.files("server_stub") / "fixtures" / "example_games.json"
    with resources.as_file(ref) as path:
        games = load_games_file(path)
    assert 3 <= len(games) <= 4
    assert all(g.event_start_date.year == 2030 for g in games)
    assert all(g.active and not g.settled for g in games)
    for g in games:
        assert (g.tie_odds is not None) == g.can_tie == (g.sport == "soccer")
        assert 1.03 <= implied(g) <= 1.09
    assert len({g.game_id for g in games}) == len(games)


def test_load_object_shape(tmp_path):
    path = write(
        tmp_path, {"games": [game_dict(), game_dict(game_id="g-2", tie_odds=None, can_tie=False)]}
    )
    games = load_games_file(path)
    assert [g.game_id for g in games] == ["g-1", "g-2"]
    assert games[0].tie_odds == 3.5
    assert games[1].tie_odds is None
    assert games[0].event_start_date == datetime(2030, 8, 17, 14, 0, tzinfo=UTC)


def test_load_bare_list_shape_and_str_path(tmp_path):
    path = write(tmp_path, [game_dict()])
    games = load_games_file(str(path))
    assert len(games) == 1
    assert isinstance(games[0], Game)
    assert games[0].outcome == Outcome.UNFINISHED


def test_load_empty_list(tmp_path):
    assert load_games_file(write(tmp_path, {"games": []})) == []


def test_missing_file(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(FeedError, match=r"nope\.json.*not found"):
        load_games_file(path)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(FeedError, match="directory"):
        load_games_file(tmp_path)


def test_bad_json(tmp_path):
    path = write(tmp_path, '{"games": [\n  {"game_id": "x",}\n]}')
    with pytest.raises(FeedError) as exc:
        load_games_file(path)
    msg = str(exc.value)
    assert "games.json" in msg
    assert "invalid JSON" in msg
    assert "line 2" in msg


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.json"
    path.write_bytes(b'{"games": ["\xe9"]}')
    with pytest.raises(FeedError, match=r"latin\.json.*UTF-8"):
        load_games_file(path)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (42, "got int"),
        ("just text", "got str"),
        ({"fixtures": []}, 'must have a "games" list'),
        ({"games": {"g-1": {}}}, '"games" must be a list'),
    ],
)
def test_wrong_top_level_shape(tmp_path, content, needle):
    path = write(tmp_path, json.dumps(content))
    with pytest.raises(FeedError) as exc:
        load_games_file(path)
    assert "games.json" in str(exc.value)
    assert needle in str(exc.value)


def test_item_not_an_object(tmp_path):
    path = write(tmp_path, {"games": [game_dict(), "oops"]})
    with pytest.raises(FeedError, match=r"games.json.*game #1: expected a JSON object"):
        load_games_file(path)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"team_a_odds": "abc"}, "team_a_odds"),
        ({"event_start_date": "next tuesday"}, "event_start_date"),
        ({"team_b": ""}, "team_b"),
        ({"outcome": 7}, "outcome"),
    ],
)
def test_invalid_game_names_index_and_field(tmp_path, bad, field):
    path = write(
        tmp_path,
        {"games": [game_dict(), game_dict(game_id="g-2"), game_dict(game_id="g-3", **bad)]},
    )
    with pytest.raises(FeedError) as exc:
        load_games_file(path)
    msg = str(exc.value)
    assert "games.json" in msg
    assert "game #2" in msg
    assert "'g-3'" in msg
    assert f"'{field}'" in msg


def test_missing_field(tmp_path):
    item = game_dict()
    del item["team_b_odds"]
    path = write(tmp_path, [item])
    with pytest.raises(FeedError, match=r"game #0.*'team_b_odds'.*[Ff]ield required"):
        load_games_file(path)


def test_nan_odds_rejected(tmp_path):
    path = write(
        tmp_path,
        '[{"game_id": "g", "team_a": "A", "team_b": "B", "sport": "s", '
        '"league": "l", "event_start_date": "2030-01-01T00:00:00Z", '
        '"team_a_odds": NaN, "team_b_odds": 2.0}]',
    )
    with pytest.raises(FeedError, match=r"game #0.*'team_a_odds'.*finite"):
        load_games_file(path)


def test_odds_not_above_one_rejected(tmp_path):
    path = write(tmp_path, [game_dict(tie_odds=0.9)])
    with pytest.raises(FeedError, match=r"game #0.*'tie_odds'.*greater than 1"):
        load_games_file(path)


def test_duplicate_game_id_rejected(tmp_path):
    path = write(tmp_path, [game_dict(), game_dict(team_a="Fulham"), game_dict()])
    with pytest.raises(FeedError, match=r"game #1.*duplicate game_id 'g-1'.*game #0"):
        load_games_file(path)


def test_feed_error_is_value_error():
    assert issubclass(FeedError, ValueError)


def test_id_prefix_makes_game_ids_unique_per_run():
    start = datetime(2030, 1, 1, tzinfo=UTC)
    first = GameSimulator(seed=0, start=start, id_prefix="sim-0-run1").initial_games()
    second = GameSimulator(seed=0, start=start, id_prefix="sim-0-run2").initial_games()
    assert all(g.game_id.startswith("sim-0-run1-") for g in first)
    assert not {g.game_id for g in first} & {g.game_id for g in second}
    # same seed: the same fixtures, only named apart
    assert [g.team_a for g in first] == [g.team_a for g in second]
