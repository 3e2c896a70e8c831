"""Several hubs of one validator share one game stream through a real Redis: the same
epoch and seq everywhere, resume on any hub, one feed at a time, a new epoch when Redis
comes back empty; and a game acknowledged by ``POST /admin/games`` survives a kill -9.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from bittensor import http_auth

from sdk.models import Game
from server_stub import HubConfig
from server_stub.stream import ALL_GAMES, GameFilter, GameStream, UpdateRecord
from server_stub.testing import LocalHub

from .kit.games import future_game, games_body
from .kit.hubkit import RunningHub
from .kit.keys import VALIDATOR, miner_key
from .kit.process import console_script, fresh_user_env
from .kit.services import private_redis, redis_prefix
from .kit.waiting import eventually, within
from .kit.wire import receive_json, receive_type, welcome_and_snapshot

BOB = miner_key("Bob")
CHARLIE = miner_key("Charlie")
DAVE = miner_key("Dave")


def ids(update: dict[str, Any]) -> list[str]:
    return sorted(game["game_id"] for game in update["games"])


@dataclass
class Shared:
    """Hubs of one validator (//Alice) sharing a Redis prefix, each with its own store."""

    url: str
    prefix: str
    tmp_path: Path
    session: aiohttp.ClientSession
    hubs: list[RunningHub] = field(default_factory=list)

    async def start(self, name: str, *, feed: Any = None, url: str | None = None,
                    **overrides: Any) -> RunningHub:
        config = HubConfig(**{"heartbeat_interval_s": 5.0, "backplane_url": url or self.url,
                              "redis_prefix": self.prefix, **overrides})
        path = self.tmp_path / f"{name}.sqlite3"
        server = LocalHub(config=config, signer=VALIDATOR, store_path=path, feed=feed)
        await server.start()
        hub = RunningHub(server=server, session=self.session, store_path=path, config=config)
        self.hubs.append(hub)
        return hub

    async def stop(self, hub: RunningHub) -> None:
        for ws in hub.sockets:
            await ws.close()
        await hub.server.stop()


@pytest.fixture
async def shared(tmp_path: Path) -> AsyncIterator[Shared]:
    async with redis_prefix() as (url, prefix):
        session = aiohttp.ClientSession()
        group = Shared(url, prefix, tmp_path, session)
        try:
            yield group
        finally:
            for hub in group.hubs:  # before the prefix's keys are deleted
                await group.stop(hub)
            await session.close()


# -- the pure parts -------------------------------------------------------------------


def test_changes_apply_record_and_reset_keep_one_history() -> None:
    stream = GameStream(4)
    g1, g2 = future_game("g1"), future_game("g2")
    assert stream.changes([g1, g2, g1.model_copy(update={"team_a_odds": 1.9})]) == [
        g2, g1.model_copy(update={"team_a_odds": 1.9})]
    record = stream.apply_record(7, [g1])
    assert (record.seq, stream.seq) == (7, 7)
    assert stream.changes([g1]) == []
    with pytest.raises(ValueError, match="not after"):
        stream.apply_record(7, [g2])
    stream.apply_record(8, [g2])
    assert [u.seq for u in stream.missed_updates(stream.epoch, 6, ALL_GAMES) or []] == [7, 8]
    stream.reset("e2", 20, [g2], [UpdateRecord(19, (g2,)), UpdateRecord(20, (g2,))])
    assert (stream.epoch, stream.seq, list(stream.games)) == ("e2", 20, ["g2"])
    assert stream.missed_updates("e2", 18, ALL_GAMES) is not None
    assert stream.missed_updates("e2", 17, ALL_GAMES) is None  # older than the history
    update = stream.broadcast_update(stream.apply_record(21, [g1]), GameFilter.of(["soccer"]))
    assert update is not None
    assert update.prev_seq == 20


# -- one stream, every hub ------------------------------------------------------------


async def test_a_game_posted_on_one_hub_reaches_miners_on_three_hubs_with_one_seq(shared):
    hubs = [await shared.start(name) for name in ("a", "b", "c")]
    sockets = [await hub.connect(key) for hub, key in zip(hubs, (BOB, CHARLIE, DAVE),
                                                          strict=True)]
    welcomes = [(await welcome_and_snapshot(ws))[0] for ws in sockets]
    assert len({w["epoch"] for w in welcomes}) == 1
    epoch = welcomes[0]["epoch"]

    g1 = future_game("g1")
    answer = await hubs[0].post_games([g1])
    assert (answer["epoch"], answer["seq"], answer["changed"]) == (epoch, 1, 1)
    for ws in sockets:
        update = (await receive_type(ws, "game_update"))["data"]
        assert (update["epoch"], update["seq"], update["prev_seq"]) == (epoch, 1, 0)
        assert ids(update) == ["g1"]

    answer = await hubs[2].post_games([future_game("g2"), g1])  # g1 unchanged
    assert (answer["seq"], answer["changed"]) == (2, 1)
    for ws in sockets:
        update = (await receive_type(ws, "game_update"))["data"]
        assert (update["epoch"], update["seq"], ids(update)) == (epoch, 2, ["g2"])
    for hub in hubs:
        health = await hub.health()
        assert (health["epoch"], health["seq"], health["games"]) == (epoch, 2, 2)
        assert health["backplane"]["kind"] == "redis"
    # every hub keeps the games in its own store too (a new epoch may start from any)
    for hub in hubs:
        await eventually(lambda hub=hub: stored_game_ids(hub.store_path) == {"g1", "g2"})


async def test_a_miner_resumes_on_another_hub_with_exactly_the_missed_updates(shared):
    a, b = await shared.start("a"), await shared.start("b")
    ws = await a.connect(BOB)
    welcome, _ = await welcome_and_snapshot(ws)
    await a.post_games([future_game("g1")])
    await b.post_games([future_game("n1", sport="basketball", league="NBA")])
    seen = [(await receive_type(ws, "game_update"))["data"]["seq"] for _ in range(2)]
    assert seen == [1, 2]
    await ws.close()

    await a.post_games([future_game("g2")])
    await b.post_games([future_game("n2", sport="basketball", league="NBA")])
    await a.post_games([future_game("g3")])
    resumed = await b.connect(BOB, epoch=welcome["epoch"], since=2)
    hello = await receive_json(resumed)
    assert hello["type"] == "welcome"
    assert (hello["data"]["resumed"], hello["data"]["replayed"], hello["data"]["seq"]) == (
        True, 3, 5)
    replay = [(await receive_json(resumed))["data"] for _ in range(3)]
    assert [(u["seq"], u["prev_seq"], ids(u)) for u in replay] == [
        (3, 2, ["g2"]), (4, 3, ["n2"]), (5, 4, ["g3"])]
    assert not any(u["snapshot"] for u in replay)

    # with a filter, on a third hub: only its updates, prev_seq chained over the others
    c = await shared.start("c")
    soccer = await c.connect(CHARLIE, epoch=welcome["epoch"], since=1, sports="soccer")
    hello = await receive_json(soccer)
    assert (hello["data"]["resumed"], hello["data"]["replayed"]) == (True, 2)
    replay = [(await receive_json(soccer))["data"] for _ in range(2)]
    assert [(u["seq"], u["prev_seq"], ids(u)) for u in replay] == [
        (3, 1, ["g2"]), (5, 3, ["g3"])]
    await a.post_games([future_game("g4")])  # live, after the replay
    live = (await receive_type(soccer, "game_update"))["data"]
    assert (live["seq"], live["prev_seq"], ids(live)) == (6, 5, ["g4"])


async def test_history_beyond_its_length_gives_a_snapshot_on_any_hub(shared):
    a = await shared.start("a", history_size=4)
    b = await shared.start("b", history_size=4)
    for i in range(10):
        await (a if i % 2 else b).post_games([future_game(f"g{i}")])
    epoch = (await a.health())["epoch"]
    late = await b.connect(BOB, epoch=epoch, since=1)
    welcome, snapshot = await welcome_and_snapshot(late)
    assert (welcome["resumed"], snapshot["snapshot"], snapshot["seq"]) == (False, True, 10)
    assert ids(snapshot) == sorted(f"g{i}" for i in range(10))
    recent = await a.connect(CHARLIE, epoch=epoch, since=7)
    hello = await receive_json(recent)
    assert (hello["data"]["resumed"], hello["data"]["replayed"]) == (True, 3)
    # a hub started later loads the newest history from Redis, not only the table
    c = await shared.start("c", history_size=4)
    again = await c.connect(DAVE, epoch=epoch, since=6)
    hello = await receive_json(again)
    assert (hello["data"]["resumed"], hello["data"]["replayed"]) == (True, 4)
    assert [(await receive_json(again))["data"]["seq"] for _ in range(4)] == [7, 8, 9, 10]


# -- the feed lease ---------------------------------------------------------------------


class TaggedFeed:
    """A feed that says which hub ran it: one game whose ``team_a`` is the hub's name and
    whose odds move every tick."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.start = datetime.now(UTC) + timedelta(days=1)

    def _game(self) -> Game:
        self.calls += 1
        return Game(game_id="fed", team_a=self.name, team_b="away", sport="soccer",
                    league="EPL", event_start_date=self.start,
                    team_a_odds=round(1.5 + self.calls / 100, 2), team_b_odds=3.0,
                    tie_odds=3.2, can_tie=True)

    def initial_games(self) -> list[Game]:
        return [self._game()]

    def step(self, now: datetime) -> list[Game]:
        return [self._game()]


async def test_exactly_one_hub_runs_the_feed_and_another_takes_over_when_it_stops(shared):
    feeds = {name: TaggedFeed(name) for name in ("a", "b", "c")}
    # a lease long enough that a loaded machine cannot let it lapse between renewals
    hubs = {name: await shared.start(name, feed=feeds[name], feed_lease_s=3.0,
                                     tick_interval_s=0.05) for name in feeds}
    holders = [name for name, hub in hubs.items()
               if (await hub.health())["backplane"]["feed_lease"]]
    assert holders == ["a"]  # the first hub took it; the others found it held
    watcher = await hubs["c"].connect(BOB)
    await welcome_and_snapshot(watcher)
    for _ in range(3):  # several ticks, all from a's feed
        update = (await receive_type(watcher, "game_update"))["data"]
        assert update["games"][0]["team_a"] == "a"
    assert feeds["b"].calls == feeds["c"].calls == 0

    await shared.stop(hubs.pop("a"))  # graceful: the lease is released at once
    taken = await within(_next_feeder(watcher, "a"), 5.0, "another hub running the feed")
    assert taken in ("b", "c")
    await asyncio.sleep(0.5)  # a few ticks: the other hub must not be feeding too
    other = "c" if taken == "b" else "b"
    assert feeds[other].calls == 0
    states = {name: (await hub.health())["backplane"]["feed_lease"]
              for name, hub in hubs.items()}
    assert states == {taken: True, other: False}


async def _next_feeder(ws: aiohttp.ClientWebSocketResponse, old: str) -> str:
    while True:
        update = (await receive_type(ws, "game_update", timeout=10.0))["data"]
        feeder = update["games"][0]["team_a"]
        if feeder != old:
            return str(feeder)


# -- Redis lost --------------------------------------------------------------------------


async def test_redis_restarted_empty_starts_a_new_epoch_from_the_stores(shared, tmp_path):
    async with private_redis(tmp_path) as server:
        a = await shared.start("a", url=server.url)
        b = await shared.start("b", url=server.url)
        on_a, on_b = await a.connect(BOB), await b.connect(CHARLIE)
        welcome, _ = await welcome_and_snapshot(on_a)
        await welcome_and_snapshot(on_b)
        await a.post_games([future_game("g1")])
        await b.post_games([future_game("g2")])
        for ws in (on_a, on_b):
            assert [(await receive_type(ws, "game_update"))["data"]["seq"]
                    for _ in range(2)] == [1, 2]

        await server.restart()  # Redis comes back with nothing
        snapshots = [await next_snapshot(ws, hub, within_s=20.0)
                     for ws, hub in ((on_a, a), (on_b, b))]
        for snapshot in snapshots:
            assert snapshot["epoch"] != welcome["epoch"]
            assert ids(snapshot) == ["g1", "g2"]  # the table is back, from a store
        assert snapshots[0]["epoch"] == snapshots[1]["epoch"]
        new_epoch = snapshots[0]["epoch"]
        client = aioredis.Redis.from_url(server.url)
        try:
            assert sorted(await client.hkeys(f"{shared.prefix}:games")) == [b"g1", b"g2"]
        finally:
            await client.aclose()

        answer = await b.post_games([future_game("g3")])
        assert answer["epoch"] == new_epoch
        for ws in (on_a, on_b):
            update = (await receive_type(ws, "game_update"))["data"]
            assert (update["epoch"], update["seq"], ids(update)) == (
                new_epoch, snapshots[0]["seq"] + 1, ["g3"])
        for hub in (a, b):
            assert (await hub.health())["backplane"]["resyncs"] >= 1
            await shared.stop(hub)
        shared.hubs.clear()


async def next_snapshot(ws: aiohttp.ClientWebSocketResponse, hub: RunningHub, *,
                        within_s: float) -> dict[str, Any]:
    """The next snapshot ``game_update`` (other frames skipped) within ``within_s`` in
    all; otherwise fail with what came instead and the hub's view."""
    seen: list[str] = []
    try:
        async with asyncio.timeout(within_s):
            while True:
                frame = await receive_json(ws, within_s)
                data = frame["data"]
                if frame["type"] == "game_update" and data.get("snapshot"):
                    return dict(data)
                seen.append(f"{frame['type']}:{data.get('epoch')}:{data.get('seq')}")
    except TimeoutError:
        pass
    stream = hub.hub.stream
    raise AssertionError(
        f"no snapshot within {within_s} s; frames instead: {seen}; hub at epoch "
        f"{stream.epoch} seq {stream.seq}, sessions {list(hub.hub.sessions)}, backplane "
        f"{hub.hub.backplane.health()}")


async def test_while_redis_is_down_admin_posts_get_503_and_the_games_come_back_after(
        shared, tmp_path):
    async with private_redis(tmp_path) as server:
        a = await shared.start("a", url=server.url)
        ws = await a.connect(BOB)
        welcome, _ = await welcome_and_snapshot(ws)
        await a.post_games([future_game("g1")])
        await receive_type(ws, "game_update")

        await server.stop()
        body = games_body([future_game("g2")])
        status, answer, headers = await a.request("POST", "/admin/games", key=VALIDATOR,
                                                  body=body, timeout=30.0)
        assert status == 503, answer
        assert answer["error"] == "internal_error"
        assert "post them again" in answer["detail"]
        assert headers["Retry-After"] == "1"
        assert stored_game_ids(a.store_path) == {"g1", "g2"}  # committed all the same

        await server.start()  # empty: a new epoch, its table from a's store
        snapshot = await next_snapshot(ws, a, within_s=20.0)
        assert snapshot["epoch"] != welcome["epoch"]
        assert ids(snapshot) == ["g1", "g2"]
        await asyncio.wait_for(shared.stop(a), 30.0)
        shared.hubs.clear()


async def test_a_post_meeting_a_lost_epoch_starts_a_new_one_and_lands_in_it(shared):
    a = await shared.start("a", feed_lease_s=30.0)
    ws = await a.connect(BOB)
    welcome, _ = await welcome_and_snapshot(ws)
    await a.post_games([future_game("g1")])
    await receive_type(ws, "game_update")
    client = aioredis.Redis.from_url(shared.url)
    try:  # the shared keys vanish (a flushed Redis); the hub's reader has not looked yet
        await client.delete(*(f"{shared.prefix}:{key}"
                              for key in ("epoch", "seq", "stream", "games")))
    finally:
        await client.aclose()
    answer = await a.post_games([future_game("g2")])
    assert answer["epoch"] != welcome["epoch"]
    assert answer["changed"] == 1
    snapshot = (await receive_type(ws, "game_update"))["data"]
    assert (snapshot["snapshot"], snapshot["epoch"]) == (True, answer["epoch"])
    seen = set(ids(snapshot))
    if "g2" not in seen:  # the snapshot came before the post's update
        update = (await receive_type(ws, "game_update"))["data"]
        assert (update["epoch"], update["seq"], ids(update)) == (answer["epoch"],
                                                                 answer["seq"], ["g2"])
        seen |= set(ids(update))
    assert seen == {"g1", "g2"}


async def test_one_feed_lease_holder_at_a_time_and_a_released_lease_is_free(shared):
    from server_stub.backplane.lease import FeedLease

    client = aioredis.Redis.from_url(shared.url)
    key = f"{shared.prefix}:feed-lease"
    # a lease long enough that a loaded machine cannot let it lapse between two lines
    first, second = (FeedLease(client, key, name, ttl_s=10.0) for name in ("one", "two"))
    # and a short one, to see it run out
    brief, other = (FeedLease(client, f"{key}-brief", name, ttl_s=0.3)
                    for name in ("brief", "other"))
    try:
        assert await first.refresh() is True
        assert await second.refresh() is False
        assert await first.refresh() is True  # extended, still the holder
        await first.release()
        assert not first.held
        assert await second.refresh() is True
        assert await first.refresh() is False
        assert (first.takeovers, second.takeovers) == (1, 1)
        assert await brief.refresh() is True
        await eventually(lambda: not brief.held, timeout=2.0)  # not renewed: runs out
        assert await other.refresh() is True  # and Redis let it expire too
        assert (brief.takeovers, other.takeovers) == (1, 1)
    finally:
        await client.aclose()


# -- acknowledged means durable ----------------------------------------------------------


def stored_game_ids(store_path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(str(store_path))) as db:
        return {row[0] for row in db.execute("SELECT game_id FROM games")}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hub_command(port: int, store: Path, *extra: str) -> list[str]:
    script = console_script("bt-validator-stub")
    base = [str(script)] if script is not None else [sys.executable, "-m", "server_stub"]
    return [*base, "serve", "--dev", "--port", str(port), "--store", str(store),
            "--log-level", "warning", *extra]


async def start_process(command: list[str], tmp_path: Path, port: int,
                        session: aiohttp.ClientSession) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        *command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, env=fresh_user_env(tmp_path))

    async def ready() -> None:
        while True:
            if proc.returncode is not None:
                assert proc.stderr is not None
                raise AssertionError(f"hub exited {proc.returncode}: "
                                     f"{(await proc.stderr.read()).decode()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/ws/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)  # the process is starting: nothing to await

    try:
        await within(ready(), 30.0, "the hub process listening")
    except BaseException:
        await kill(proc)
        raise
    return proc


async def kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 10)


async def post_then_kill(session: aiohttp.ClientSession, port: int,
                         proc: asyncio.subprocess.Process, game: Game) -> None:
    """POST the game; SIGKILL the hub the moment the 200 is read."""
    body = games_body([game])
    headers = http_auth.sign(VALIDATOR, method="POST", path="/admin/games", body=body,
                             receiver_ss58=VALIDATOR.ss58_address)
    headers["Content-Type"] = "application/json"
    async with session.post(f"http://127.0.0.1:{port}/admin/games", data=body,
                            headers=headers) as response:
        status = response.status
        proc.send_signal(signal.SIGKILL)
        assert status == 200, await response.text()
    await asyncio.wait_for(proc.wait(), 10)


@pytest.mark.parametrize("backplane", [False, True], ids=["sqlite", "sqlite+redis"])
async def test_a_game_acknowledged_survives_a_kill_9_right_after_the_answer(
        tmp_path: Path, backplane: bool) -> None:
    store = tmp_path / "hub.sqlite3"
    port = _free_port()
    async with contextlib.AsyncExitStack() as stack:
        extra: list[str] = ["--feed", "none"]
        if backplane:
            url, prefix = await stack.enter_async_context(redis_prefix())
            extra += ["--backplane", url, "--redis-prefix", prefix]
        session = await stack.enter_async_context(aiohttp.ClientSession())
        proc = await start_process(hub_command(port, store, *extra), tmp_path, port, session)
        try:
            await post_then_kill(session, port, proc, future_game("acked"))
        finally:
            await kill(proc)
        assert stored_game_ids(store) == {"acked"}  # in the store file, after the kill

        proc = await start_process(hub_command(port, store, *extra), tmp_path, port, session)
        try:
            async with session.get(f"http://127.0.0.1:{port}/ws/health") as response:
                health = await response.json()
            assert health["games"] == 1
        finally:
            await kill(proc)


async def test_the_feed_lease_of_a_killed_hub_expires_and_another_hub_takes_over(shared):
    port = _free_port()
    command = hub_command(port, shared.tmp_path / "killed.sqlite3", "--feed", "simulate",
                          "--backplane", shared.url, "--redis-prefix", shared.prefix,
                          "--feed-lease", "1")
    proc = await start_process(command, shared.tmp_path, port, shared.session)
    try:
        feed = TaggedFeed("survivor")
        survivor = await shared.start("survivor", feed=feed, feed_lease_s=1.0,
                                      tick_interval_s=0.05)
        assert (await survivor.health())["backplane"]["feed_lease"] is False
        await asyncio.sleep(0.5)  # a few of the survivor's ticks: it must not feed
        assert feed.calls == 0
        proc.send_signal(signal.SIGKILL)  # no release: the lease must expire
        await asyncio.wait_for(proc.wait(), 10)
        await eventually(lambda: feed.calls > 0, timeout=5.0)
        assert (await survivor.health())["backplane"]["feed_lease"] is True
    finally:
        await kill(proc)


def test_serve_refuses_a_backplane_that_is_not_redis(tmp_path: Path) -> None:
    done = subprocess.run(hub_command(_free_port(), tmp_path / "x.sqlite3", "--backplane",
                                      "http://127.0.0.1:6379"),
                          capture_output=True, text=True, timeout=60,
                          env=fresh_user_env(tmp_path), stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert "--backplane" in done.stderr
    assert "redis://" in done.stderr
