"""One outbox per process: connections to different real hubs that name the same path
share one SQLite file and one writer thread, keep their rows apart per validator, and
the file closes with the last of them; files made by older versions still open."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from bittensor import http_auth
from bittensor.keyfiles import Keypair

from sdk.connection import ValidatorConnection
from sdk.models import Game, Prediction
from sdk.outbox import Outbox
from sdk.outbox_files import outbox_file_name
from server_stub import HubConfig
from server_stub.testing import LocalHub

from .kit.clientkit import FAST_CLIENT
from .kit.games import future_game, games_body
from .kit.keys import miner_key

BOB = miner_key("Bob")
VALIDATORS = [Keypair.create_from_uri(f"//{name}") for name in ("Alice", "Dave")]

OLD_SCHEMA = """
CREATE TABLE outbox (
    prediction_id    TEXT PRIMARY KEY,
    validator_hotkey TEXT NOT NULL,
    miner_hotkey     TEXT NOT NULL,
    game_id          TEXT NOT NULL,
    wager            REAL NOT NULL,
    wager_day        TEXT NOT NULL,
    prediction       TEXT NOT NULL,
    signature        TEXT,
    status           TEXT NOT NULL DEFAULT 'pending',
    code             TEXT,
    message          TEXT,
    receipt          TEXT,
    created_ns       INTEGER NOT NULL,
    updated_ns       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX outbox_by_status ON outbox (validator_hotkey, status, created_ns);
"""
"""The outbox table as the first release made it (keyed by prediction_id alone)."""


@pytest.fixture
async def hubs(tmp_path: Path) -> AsyncIterator[list[LocalHub]]:
    """Two real hubs on loopback, each its own validator hotkey, each offering game g1."""
    started: list[LocalHub] = []
    async with aiohttp.ClientSession() as session:
        try:
            for index, signer in enumerate(VALIDATORS):
                hub = LocalHub(config=HubConfig(heartbeat_interval_s=5.0), signer=signer,
                               feed=None, store_path=tmp_path / f"hub-{index}.sqlite3")
                await hub.start()
                started.append(hub)
                await post_games(session, hub, signer, [future_game("g1")])
            yield started
        finally:
            for hub in started:
                await hub.stop()


async def post_games(session: aiohttp.ClientSession, hub: LocalHub, signer: Keypair,
                     games: list[Game]) -> None:
    body = games_body(games)
    headers = http_auth.sign(signer, method="POST", path="/admin/games", body=body,
                             receiver_ss58=signer.ss58_address)
    headers["Content-Type"] = "application/json"
    async with session.post(f"{hub.http_url}/admin/games", data=body,
                            headers=headers) as response:
        assert response.status == 200, await response.text()


def connection(hub: LocalHub, outbox: object) -> ValidatorConnection:
    return ValidatorConnection(hub.url, BOB, hub.validator_hotkey, outbox=outbox,  # type: ignore[arg-type]
                               options=dataclasses.replace(FAST_CLIENT))


def outbox_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("outbox"))


async def test_connections_to_two_hubs_share_one_file_and_one_writer_thread(
        hubs: list[LocalHub], tmp_path: Path) -> None:
    path = tmp_path / "miner.sqlite3"
    before = outbox_threads()
    first, second = (connection(hub, path) for hub in hubs)
    await first.start()
    await second.start()
    try:
        await asyncio.wait_for(asyncio.gather(first.wait_ready(), second.wait_ready()), 10.0)
        assert first.outbox is second.outbox
        assert first.outbox is not None
        assert first.outbox.users == 2
        assert outbox_threads() == before + 1

        # the same prediction (same id) to both validators: one row each, apart
        prediction = Prediction.for_game(first.games["g1"], "g1-home", 3.0)
        receipts = await asyncio.wait_for(
            asyncio.gather(first.submit(prediction), second.submit(prediction)), 10.0)
        assert [r.validator_hotkey for r in receipts] == [h.validator_hotkey for h in hubs]
        assert all(r.status == "accepted" for r in receipts)
        for hub in hubs:
            rows = await first.outbox.entries(hub.validator_hotkey)
            assert [(r.prediction_id, r.status) for r in rows] == [
                (prediction.prediction_id, "accepted")]
            assert rows[0].receipt is not None
            assert rows[0].receipt["validator_hotkey"] == hub.validator_hotkey
        files = await asyncio.to_thread(lambda: sorted(p.name for p in tmp_path.glob("*.sqlite3")))
        assert files == ["hub-0.sqlite3", "hub-1.sqlite3", "miner.sqlite3"]

        # closing one leaves the other working on the same file
        await first.close()
        outbox = second.outbox
        assert outbox is not None
        assert not outbox.closed
        assert outbox.users == 1
        another = Prediction.for_game(second.games["g1"], "g1-away", 2.0)
        receipt = await asyncio.wait_for(second.submit(another), 10.0)
        assert receipt.status == "accepted"
        assert outbox_threads() == before + 1
    finally:
        await first.close()
        await second.close()
    # the last close closes the file and ends its thread
    assert outbox.closed
    assert outbox_threads() == before
    with sqlite3.connect(path) as db:
        counted = db.execute("SELECT validator_hotkey, COUNT(*) FROM outbox"
                             " GROUP BY validator_hotkey ORDER BY 1").fetchall()
    assert counted == sorted([(hubs[0].validator_hotkey, 1), (hubs[1].validator_hotkey, 2)])


async def test_an_injected_outbox_is_shared_and_stays_open_for_its_owner(
        hubs: list[LocalHub]) -> None:
    outbox = await Outbox().open()  # in memory: shared only by being passed in
    try:
        conns = [connection(hub, outbox) for hub in hubs]
        for conn in conns:
            await conn.start()
        for conn in conns:
            await asyncio.wait_for(conn.wait_ready(), 10.0)
            assert conn.outbox is outbox
        for conn in conns:
            await conn.close()
        assert not outbox.closed
    finally:
        await outbox.close()


async def test_concurrent_openers_of_one_path_get_one_outbox(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    outboxes = await asyncio.gather(*(Outbox.shared(path) for _ in range(5)))
    assert all(outbox is outboxes[0] for outbox in outboxes)
    assert outboxes[0].users == 5
    for outbox in outboxes[:-1]:
        await outbox.release()
        assert not outbox.closed
    await outboxes[-1].release()
    assert outboxes[0].closed
    reopened = await Outbox.shared(path)
    try:
        assert reopened is not outboxes[0]
        assert not reopened.closed
    finally:
        await reopened.release()


def write_old_file(path: Path, validator_hotkey: str, prediction: dict[str, object],
                   status: str = "pending") -> None:
    db = sqlite3.connect(path)
    try:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO outbox (prediction_id, validator_hotkey, miner_hotkey, game_id,"
                   " wager, wager_day, prediction, status, created_ns, updated_ns)"
                   " VALUES (?, ?, ?, ?, ?, '2026-11-01', ?, ?, 1, 1)",
                   (prediction["prediction_id"], validator_hotkey, BOB.ss58_address,
                    prediction["game_id"], prediction["wager"], json.dumps(prediction), status))
        db.commit()
    finally:
        db.close()


async def test_an_old_format_file_opens_with_its_rows_and_the_new_key(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    prediction = Prediction.for_game(future_game("g1"), "g1-home", 3.0).wire()
    write_old_file(path, VALIDATORS[0].ss58_address, prediction, status="accepted")
    outbox = await Outbox.shared(path)
    try:
        entry = await outbox.get(str(prediction["prediction_id"]))
        assert entry is not None
        assert entry.status == "accepted"
        # the same id for another validator is now its own row
        assert await outbox.add(validator_hotkey=VALIDATORS[1].ss58_address,
                                miner_hotkey=BOB.ss58_address, prediction=prediction,
                                signature=None, wager_day="2026-11-01")
        assert len(await outbox.entries()) == 2
    finally:
        await outbox.release()


async def test_a_miner_file_adopts_the_pending_rows_of_the_older_per_validator_file(
        hubs: list[LocalHub], tmp_path: Path) -> None:
    hub = hubs[0]
    game = future_game("g1")
    prediction = Prediction.for_game(game, "g1-home", 3.0)
    older = tmp_path / outbox_file_name(BOB.ss58_address, hub.validator_hotkey)
    write_old_file(older, hub.validator_hotkey, prediction.wire())
    conn = connection(hub, tmp_path / outbox_file_name(BOB.ss58_address))
    async with conn:
        # the adopted pending prediction is resent; submit() answers with its receipt
        receipt = await asyncio.wait_for(conn.submit(prediction), 10.0)
        assert receipt.status in ("accepted", "duplicate")
        assert conn.outbox is not None
        assert [e.prediction_id for e in await conn.outbox.entries(hub.validator_hotkey)] == [
            prediction.prediction_id]
    assert not older.exists()
    assert older.with_name(older.name + ".imported").is_file()


async def test_status_reports_each_validator_of_a_miner_file_and_an_older_file(
        tmp_path: Path) -> None:
    from agents.cli.status import read_outboxes

    game = future_game("g1")
    outbox = await Outbox.shared(tmp_path / outbox_file_name(BOB.ss58_address))
    try:
        for validator in VALIDATORS:
            await outbox.add(validator_hotkey=validator.ss58_address,
                             miner_hotkey=BOB.ss58_address,
                             prediction=Prediction.for_game(game, "g1-home", 2.0).wire(),
                             signature=None, wager_day="2026-11-01")
    finally:
        await outbox.release()
    older = tmp_path / outbox_file_name(BOB.ss58_address, VALIDATORS[0].ss58_address)
    write_old_file(older, VALIDATORS[0].ss58_address,
                   Prediction.for_game(game, "g1-away", 1.0).wire())
    reports = await read_outboxes(tmp_path, today="2026-11-01")
    seen = sorted((r.path.name, r.validator_hotkey, r.counts["pending"], r.wagered_today)
                  for r in reports)
    assert seen == sorted([
        (outbox_file_name(BOB.ss58_address), VALIDATORS[0].ss58_address, 1, 2.0),
        (outbox_file_name(BOB.ss58_address), VALIDATORS[1].ss58_address, 1, 2.0),
        (older.name, VALIDATORS[0].ss58_address, 1, 1.0)])
