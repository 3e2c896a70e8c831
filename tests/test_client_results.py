"""Results end to end: a miner's confirmed predictions settle in its outbox file when
the real hub publishes their games settled (live, or while the miner was away), and
``bt-miner status --json`` shows the figures per day."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from agents.cli import app
from sdk.frames import GameUpdate
from sdk.models import Game, Outcome, Prediction
from sdk.outbox import Outbox, OutboxEntry
from sdk.outbox_files import outbox_file_name

from .kit.games import future_game
from .kit.keys import VALIDATOR, miner_key
from .kit.waiting import within

BOB = miner_key("Bob")


def hub_url(running: Any) -> str:
    return f"ws://127.0.0.1:{running.server.port}"


def settled(game: Game, outcome: Outcome) -> Game:
    return game.model_copy(update={"outcome": outcome, "active": False})


async def until_settled(updates: AsyncIterator[GameUpdate], game_ids: set[str]) -> None:
    """Read updates until each of ``game_ids`` arrived settled (the connection queues
    their settlement in the outbox before handing the update to readers)."""
    waiting = set(game_ids)
    async for update in updates:
        waiting -= {game.game_id for game in update.games if game.settled}
        if not waiting:
            return


async def entries_by_game(outbox: Outbox) -> dict[str, OutboxEntry]:
    return {entry.game_id: entry for entry in await outbox.entries()}


async def status_json(outbox_dir: Path) -> dict[str, Any]:
    """``bt-miner status --json`` (in a worker thread: the command runs its own loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, app,
                                     ["status", "--json", "--outbox-dir", str(outbox_dir)])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)["outboxes"]
    assert len(reports) == 1
    report: dict[str, Any] = reports[0]
    return report


async def test_settled_games_settle_the_outbox_and_status_shows_the_day(
        start_hub, miner, tmp_path: Path) -> None:
    running = await start_hub()
    games = {name: future_game(name) for name in ("win", "loss", "tie", "open")}
    await running.post_games(list(games.values()))
    path = tmp_path / outbox_file_name(BOB.ss58_address, VALIDATOR.ss58_address)
    # (game, predicted outcome, wager): odds are the game's (2.1 / 3.4 / 3.3)
    plan = [("win", 0, 10.0), ("loss", 1, 20.0), ("tie", 2, 5.0), ("open", 0, 7.0)]
    async with miner(hub_url(running), outbox=path) as conn:
        for game_id, outcome, wager in plan:
            receipt = await within(conn.submit(Prediction.for_game(games[game_id], outcome,
                                                                   wager)), 10.0, "receipt")
            assert receipt.status == "accepted"
        assert conn.outbox is not None
        assert not any(e.settled for e in await conn.outbox.entries())

        updates = conn.game_updates()
        await running.post_games([settled(games["win"], Outcome.TEAM_A),
                                  settled(games["loss"], Outcome.TEAM_A),
                                  settled(games["tie"], Outcome.TIE)])
        await within(until_settled(updates, {"win", "loss", "tie"}), 10.0, "settled games")
        rows = await entries_by_game(conn.outbox)
        assert {g: (e.outcome, e.payout) for g, e in rows.items()} == {
            "win": (0, 10.0 * 2.1), "loss": (0, 0.0), "tie": (2, 5.0 * 3.3),
            "open": (None, None)}
        days = {e.wager_day for e in rows.values()}

    assert len(days) == 1  # the hub's UTC day of this test's wagers
    report = await status_json(tmp_path)
    assert report["accepted"] == 4  # the existing keys are still there
    assert report["results"] == [{
        "day": days.pop(), "settled": 3, "wins": 2, "wagered": 35.0,
        "payout": 10.0 * 2.1 + 5.0 * 3.3, "profit": 21.0 + 16.5 - 35.0,
        "roi": (21.0 + 16.5 - 35.0) / 35.0, "hit_rate": 2 / 3, "open": 1,
        "open_exposure": 7.0}]
    latest = {e["game_id"]: e for e in report["latest"]}
    assert (latest["tie"]["outcome"], latest["tie"]["payout"]) == (2, 16.5)


async def test_a_game_that_settled_while_the_miner_was_away_settles_on_its_return(
        start_hub, fault_proxy, miner, tmp_path: Path) -> None:
    running = await start_hub()
    away, unseen = future_game("away"), future_game("unseen")
    await running.post_games([away, unseen])
    proxy = await fault_proxy(running)
    path = tmp_path / outbox_file_name(BOB.ss58_address, VALIDATOR.ss58_address)

    first = miner(proxy, outbox=path, http_fallback=False)
    await first.start()
    await first.wait_ready(10.0)
    confirmed = Prediction.for_game(away, 1, 4.0)
    assert (await within(first.submit(confirmed), 10.0, "receipt")).status == "accepted"
    # the link goes away before the next prediction's receipt: it stays pending here,
    # while the hub gets it anyway (here from another process of the same miner)
    proxy.refuse_upgrades(True)
    proxy.cut()
    unconfirmed = Prediction.for_game(unseen, 0, 6.0)
    try:
        await first.submit(unconfirmed, timeout=0.3)
        raise AssertionError("nothing can confirm it now")
    except TimeoutError:
        pass
    await first.close()
    async with miner(hub_url(running), outbox=":memory:") as other:
        assert (await within(other.submit(unconfirmed), 10.0, "receipt")).status == "accepted"

    # both games end while the miner is away
    await running.post_games([settled(away, Outcome.TEAM_B), settled(unseen, Outcome.TEAM_A)])

    proxy.refuse_upgrades(False)
    second = miner(proxy, outbox=path)
    confirmations = second.confirmations()
    await second.start()
    await second.wait_ready(10.0)  # the snapshot (with both games settled) is applied
    assert second.outbox is not None
    rows = await entries_by_game(second.outbox)
    assert (rows["away"].outcome, rows["away"].payout) == (1, 4.0 * 3.4)
    assert rows["unseen"].status == "pending"
    assert not rows["unseen"].settled  # not confirmed yet: nothing staked, nothing settles

    # the outbox resend is answered "duplicate": confirmed after its game ended
    confirmation = await within(anext(confirmations), 10.0, "the resend's confirmation")
    assert (confirmation.prediction_id, confirmation.status) == (
        unconfirmed.prediction_id, "duplicate")
    rows = await entries_by_game(second.outbox)
    assert (rows["unseen"].outcome, rows["unseen"].payout) == (0, 6.0 * 2.1)
    assert rows["away"].settled_ns is not None
    settled_ns = rows["away"].settled_ns
    await second.close()

    report = await status_json(tmp_path)
    [day] = report["results"]
    assert (day["settled"], day["wins"], day["wagered"], day["open_exposure"]) == (
        2, 2, 10.0, 0.0)
    assert day["payout"] == 4.0 * 3.4 + 6.0 * 2.1
    # the same settled games again after a restart: nothing changes
    async with miner(hub_url(running), outbox=path) as third:
        assert third.outbox is not None
        again = await entries_by_game(third.outbox)
        assert again["away"].settled_ns == settled_ns
