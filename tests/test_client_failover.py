"""One validator served by two hubs: the connection fails over between its URLs.

Two real hubs sign as the same validator (``//Alice``), each with its own SQLite store
and its own epoch (no shared backplane here: the next hub answers with a snapshot, which
the client must turn into the right game table). A hub stopped gracefully, cut
abruptly, or gone silent while predictions are in flight: the client continues on the
other within its backoff, and every prediction ends with exactly one confirmed,
validator-signed receipt in the outbox; on one shared PostgreSQL store, exactly one row
each, whichever hub took it. Sticky: with both up it stays where it is.
Then the policy's rules without sockets, and ``bt-miner --validator HOTKEY@a,b``.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bittensor import Wallet

from agents.cli.common import CliError, parse_validators
from sdk.backoff import Backoff
from sdk.codes import CloseCode
from sdk.connection import ConnectionState, ValidatorConnection
from sdk.errors import HubUnreachableError, close_error, handshake_error
from sdk.models import Prediction
from sdk.reconnect import Fail, Fallback, ReconnectPolicy, Wait
from sdk.signing import verify_receipt
from sdk.transports import HubAddress
from server_stub import HubConfig
from server_stub.testing import LocalHub

from .kit.clientkit import StateLog, heartbeats_reach, hub_rows_by_id
from .kit.games import future_game
from .kit.keys import VALIDATOR, miner_key
from .kit.process import console_script, fresh_user_env
from .kit.services import postgres_database
from .kit.waiting import eventually, within

S = ConnectionState
BOB = miner_key("Bob")
HUB = dict(messages_per_second=2000.0, message_burst=2000.0, heartbeat_interval_s=0.5,
           connects_per_minute=600.0, connect_burst=100.0, send_queue_size=4096)
GAMES = [future_game(f"f{i}") for i in range(4)]


async def two_hubs(start_hub: Any, tmp_path: Path) -> tuple[Any, Any]:
    """Hubs A and B of the same validator, each with its own store, offering the same
    games (each its own copy: without a backplane nothing is shared)."""
    hubs = []
    for name in ("a", "b"):
        running = await start_hub(store_path=tmp_path / f"hub-{name}.sqlite3", **HUB)
        await running.post_games(GAMES)
        hubs.append(running)
    return hubs[0], hubs[1]


def bt_miner() -> list[str]:
    script = console_script("bt-miner")
    return [str(script)] if script is not None else [sys.executable, "-m", "agents.cli"]


def ws_url(running: Any) -> str:
    return f"{running.server.url}/ws"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def burst(conn: ValidatorConnection, count: int) -> tuple[list[Prediction],
                                                                 list[asyncio.Task[Any]]]:
    """``count`` predictions submitted over ~1.5 s, as a miner's agent would."""
    predictions = [Prediction.for_game(GAMES[i % len(GAMES)], i % 2, 0.5)
                   for i in range(count)]

    async def submit(prediction: Prediction) -> Any:
        await asyncio.sleep(random.uniform(0, 1.5))
        return await conn.submit(prediction)

    return predictions, [asyncio.create_task(submit(p)) for p in predictions]


async def check_one_receipt_each(conn: ValidatorConnection, predictions: list[Prediction],
                                 results: list[Any], a: Any, b: Any) -> tuple[int, int]:
    """Every prediction: one confirmed outbox row whose receipt is the one ``submit``
    returned, signed by the validator, and stored by the hub that signed it (A or B:
    they sign with the same key). Returns how many of the receipts each hub gave."""
    rows_a, rows_b = await hub_rows_by_id(a.store_path), await hub_rows_by_id(b.store_path)
    entries = {e.prediction_id: e for e in await conn.outbox.entries(VALIDATOR.ss58_address)}
    assert set(entries) == {p.prediction_id for p in predictions}
    from_a = from_b = 0
    for prediction, receipt in zip(predictions, results, strict=True):
        entry = entries[prediction.prediction_id]
        assert entry.status in ("accepted", "duplicate"), entry
        assert entry.receipt is not None
        assert verify_receipt(entry.receipt, VALIDATOR.ss58_address)
        assert receipt.model_dump(mode="json") == entry.receipt
        holders = [rows[prediction.prediction_id]["receipt"] for rows in (rows_a, rows_b)
                   if prediction.prediction_id in rows]
        assert entry.receipt in holders, (entry.receipt, holders)
        from_a += entry.receipt == rows_a.get(prediction.prediction_id, {}).get("receipt")
        from_b += entry.receipt == rows_b.get(prediction.prediction_id, {}).get("receipt")
    return from_a, from_b


async def follows_b(conn: ValidatorConnection, b: Any) -> None:
    """The client's table is B's (from B's snapshot), and B's next update reaches it."""
    await eventually(lambda: conn.epoch == b.hub.stream.epoch, 10.0)
    assert conn.games == b.hub.stream.games
    late = future_game("late-on-b")
    await b.post_games([late])
    await eventually(lambda: "late-on-b" in conn.games, 10.0)
    assert conn.games == b.hub.stream.games


# -- a hub dies while predictions are in flight ------------------------------------------------


async def test_hub_a_stopped_mid_burst_the_client_continues_on_b(start_hub, miner, tmp_path):
    random.seed(13)
    a, b = await two_hubs(start_hub, tmp_path)
    conn = miner([ws_url(a), ws_url(b)], backoff_base=0.2, backoff_cap=10.0)
    states = StateLog(conn)
    await conn.start()
    await conn.wait_ready(10.0)
    assert conn.url == ws_url(a)
    epoch_a = conn.epoch

    predictions, submits = await burst(conn, 300)
    await eventually(lambda: sum(t.done() for t in submits) >= 40, 20.0)
    mark = len(states.changes)
    await a.server.stop()  # graceful: every miner gets 1001 going away
    await states.wait_for(S.OPEN, after=mark, timeout=10.0)
    # straight to B: one jittered wait below backoff_base (the sleep may overrun on a
    # busy machine, never by the 10 s cap), and no attempt at the dead hub
    assert states.states[mark:] == [S.BACKOFF, S.CONNECTING, S.OPEN]
    (left, _), (connecting, _), (reopened, _) = states.changes[mark:]
    assert connecting - left < 0.2 + 1.0
    assert reopened - left < 0.2 + 5.0
    assert conn.url == ws_url(b)

    results = await within(asyncio.gather(*submits), 60.0, "every submit answered")
    from_a, from_b = await check_one_receipt_each(conn, predictions, results, a, b)
    assert from_a >= 40
    assert from_b > 0
    assert from_a + from_b == len(predictions)
    assert epoch_a != conn.epoch
    await follows_b(conn, b)
    await states.stop()


async def test_hub_a_cut_abruptly_mid_burst_the_client_continues_on_b(start_hub, fault_proxy,
                                                                       miner, tmp_path):
    random.seed(14)
    a, b = await two_hubs(start_hub, tmp_path)
    proxy = await fault_proxy(a)
    conn = miner([proxy, ws_url(b)])
    states = StateLog(conn)
    await conn.start()
    await conn.wait_ready(10.0)

    predictions, submits = await burst(conn, 300)
    await eventually(lambda: sum(t.done() for t in submits) >= 40, 20.0)
    mark = len(states.changes)
    await proxy.close()  # links aborted (no close frame), nothing listens any more
    await states.wait_for(S.OPEN, after=mark, timeout=10.0)
    assert states.states[mark:] == [S.BACKOFF, S.CONNECTING, S.OPEN]
    assert conn.url == ws_url(b)

    results = await within(asyncio.gather(*submits), 60.0, "every submit answered")
    from_a, from_b = await check_one_receipt_each(conn, predictions, results, a, b)
    assert from_a >= 40
    assert from_b > 0
    await follows_b(conn, b)
    await states.stop()


async def test_a_silent_hub_is_left_for_the_next_without_another_try(start_hub, fault_proxy,
                                                                     miner, tmp_path):
    """A blackholed hub (no RST, no close) is dropped after three silent heartbeats;
    trying it again would cost a whole handshake timeout, so the next attempt goes to B."""
    a, b = await two_hubs(start_hub, tmp_path)
    proxy = await fault_proxy(a)
    conn = miner([proxy, ws_url(b)], handshake_timeout=30.0)
    await conn.start()
    await conn.wait_ready(10.0)
    await eventually(lambda: conn.rtt is not None, 5.0)
    upgrades = len(proxy.upgrade_requests)
    proxy.stall()
    await eventually(lambda: conn.url == ws_url(b) and conn.state is S.OPEN, 10.0)
    assert len(proxy.upgrade_requests) == upgrades
    receipt = await within(conn.submit(Prediction.for_game(GAMES[0], 0, 1.0)), 10.0,
                           "a receipt from B")
    assert verify_receipt(receipt.model_dump(mode="json"), VALIDATOR.ss58_address)
    assert receipt.prediction_id in await hub_rows_by_id(b.store_path)


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """A database of this test's own (name it before ``start_hub``: dropped after the
    hubs have stopped)."""
    async with postgres_database() as dsn:
        yield dsn


async def test_on_a_shared_postgresql_store_each_prediction_is_one_row_whichever_hub(
        pg_dsn, start_hub, fault_proxy, miner):
    """The HA set-up: what hub A stored but could not confirm before its link died is
    answered by B as a duplicate with A's original receipt. The link to A holds every
    chunk 0.3 s, so when it is cut the confirmations of the last 0.3 s are lost."""
    import asyncpg

    random.seed(15)
    a = await start_hub(store_url=pg_dsn, **HUB)
    b = await start_hub(store_url=pg_dsn, **HUB)
    for running in (a, b):
        await running.post_games(GAMES)
    proxy = await fault_proxy(a)
    proxy.delay(0.3)
    conn = miner([proxy, ws_url(b)])
    await conn.start()
    await conn.wait_ready(10.0)
    predictions, submits = await burst(conn, 300)
    await eventually(lambda: sum(t.done() for t in submits) >= 40, 20.0)
    await proxy.close()
    results = await within(asyncio.gather(*submits), 60.0, "every submit answered")
    assert conn.url == ws_url(b)

    db = await asyncpg.connect(pg_dsn)
    try:
        rows = await db.fetch("SELECT prediction_id, miner_hotkey, receipt FROM predictions")
    finally:
        await db.close()
    stored = {row["prediction_id"]: json.loads(row["receipt"]) for row in rows}
    assert len(rows) == len(stored) == len(predictions)
    assert {row["miner_hotkey"] for row in rows} == {BOB.ss58_address}
    entries = {e.prediction_id: e for e in await conn.outbox.entries(VALIDATOR.ss58_address)}
    for prediction, receipt in zip(predictions, results, strict=True):
        entry = entries[prediction.prediction_id]
        assert entry.status in ("accepted", "duplicate")
        original = stored[prediction.prediction_id]
        # a duplicate is B's own signed answer carrying the original time of receipt
        assert entry.receipt["received_at_ns"] == original["received_at_ns"]
        if entry.status == "accepted":
            assert entry.receipt == original
        assert receipt.model_dump(mode="json") == entry.receipt
        assert verify_receipt(entry.receipt, VALIDATOR.ss58_address)
    assert sum(e.status == "duplicate" for e in entries.values()) > 0


# -- sticky ------------------------------------------------------------------------------------


async def test_with_both_hubs_up_it_stays_on_the_first(start_hub, miner, tmp_path):
    a, b = await two_hubs(start_hub, tmp_path)
    conn = miner([ws_url(a), ws_url(b)])
    await conn.start()
    await conn.wait_ready(10.0)
    await heartbeats_reach(a, 4)
    receipt = await within(conn.submit(Prediction.for_game(GAMES[1], 1, 1.0)), 10.0, "receipt")
    assert conn.url == ws_url(a)
    assert conn.reconnects == 0
    assert (a.hub.stats.connections_total, b.hub.stats.connections_total) == (1, 0)
    assert receipt.prediction_id in await hub_rows_by_id(a.store_path)
    assert await hub_rows_by_id(b.store_path) == {}


async def test_a_hub_back_up_is_not_failed_back_to_and_the_list_wraps(start_hub, miner,
                                                                      tmp_path):
    port = free_port()
    b = await start_hub(store_path=tmp_path / "hub-b.sqlite3", **HUB)
    await b.post_games(GAMES)
    conn = miner([f"ws://127.0.0.1:{port}", ws_url(b)])
    await conn.start()
    await conn.wait_ready(10.0)  # A refuses TCP: B it is
    assert conn.url == ws_url(b)
    a = LocalHub(config=HubConfig(**HUB), signer=VALIDATOR, feed=None, port=port,
                 store_path=tmp_path / "hub-a.sqlite3")
    await a.start()
    try:
        await heartbeats_reach(b, 4)  # time passes with A up
        assert a.hub.stats.connections_total == 0
        assert conn.url == ws_url(b)
        await b.server.stop()  # now B goes away: the next URL is A again
        await eventually(lambda: conn.url == f"ws://127.0.0.1:{port}/ws"
                         and conn.state is S.OPEN, 10.0)
        assert a.hub.stats.connections_total == 1
    finally:
        await conn.close()
        await a.stop()


async def test_a_hub_without_websockets_is_skipped_for_the_next_hubs_websocket(
        start_hub, fault_proxy, miner, tmp_path):
    a, b = await two_hubs(start_hub, tmp_path)
    proxy = await fault_proxy(a)
    proxy.refuse_upgrades(True)  # 426: the HTTP fallback would work there
    conn = miner([proxy, ws_url(b)])
    states = StateLog(conn)
    await conn.start()
    await conn.wait_ready(10.0)
    assert conn.state is S.OPEN
    assert conn.url == ws_url(b)
    assert S.FALLBACK_HTTP not in states.states
    assert proxy.refused == 1
    await states.stop()


# -- the rules, without sockets ----------------------------------------------------------------


def rules(endpoints: int = 2, **kwargs: Any) -> ReconnectPolicy:
    return ReconnectPolicy(Backoff(0.5, 1000.0), endpoints=endpoints, **kwargs)


def test_failed_connects_go_round_the_urls_with_delays_growing_per_round():
    policy = rules(3)
    ceilings = []
    for _ in range(8):
        before = policy.endpoint
        decision = policy.connect_failed(HubUnreachableError("refused"))
        assert isinstance(decision, Wait)
        assert policy.endpoint == (before + 1) % 3
        ceilings.append(decision.delay)
    assert max(ceilings[:3]) <= 0.5  # every hub of the first round within backoff_base
    assert max(ceilings[3:6]) <= 1.0
    assert max(ceilings[6:]) <= 2.0
    assert policy.endpoint == 2
    policy.session_opened()
    assert policy.endpoint == 2  # sticky: the one that opened
    policy.session_ended(60.0, close_error(CloseCode.SLOW_CONSUMER))
    assert policy.endpoint == 2


@pytest.mark.parametrize(("close_code", "moves"), [
    (CloseCode.GOING_AWAY, True), (1006, True), (CloseCode.INTERNAL_ERROR, True), (None, True),
    (CloseCode.SLOW_CONSUMER, False), (CloseCode.RATE_LIMITED, False),
    (CloseCode.POLICY_VIOLATION, False), (CloseCode.MESSAGE_TOO_BIG, False)])
def test_a_session_end_moves_on_unless_the_hub_closed_it_because_of_us(close_code, moves):
    policy = rules()
    policy.session_opened()
    error = None if close_code is None else close_error(close_code)
    assert isinstance(policy.session_ended(30.0, error), Wait)
    assert policy.endpoint == (1 if moves else 0)


def test_retry_after_binds_the_hub_that_sent_it_not_the_next():
    policy = rules()
    busy = handshake_error(503, {"error": "shutting_down"}, retry_after=30.0)
    first = policy.connect_failed(busy)
    assert isinstance(first, Wait)
    assert first.delay <= 0.5
    second = policy.connect_failed(busy)  # B says so too: the round is complete
    assert isinstance(second, Wait)
    assert second.delay >= 30.0


def test_the_http_fallback_waits_until_every_hub_refused_the_websocket():
    policy = rules()
    assert isinstance(policy.connect_failed(handshake_error(426, None)), Wait)
    assert policy.endpoint == 1
    assert policy.connect_failed(handshake_error(426, None)) == Fallback(retry_websocket=False)
    assert policy.endpoint == 1  # served over HTTP by the hub that just refused
    assert isinstance(policy.fallback_unavailable(), Wait)
    assert policy.endpoint == 0


def test_permanent_errors_stop_whatever_the_number_of_urls():
    error = handshake_error(403, {"error": "not_registered"})
    assert rules(3).connect_failed(error) == Fail(error)
    with pytest.raises(ValueError, match="at least one URL"):
        rules(0)


def test_hub_addresses_from_a_comma_list_or_a_sequence():
    one = HubAddress.parse_all("ws://a:1")
    assert [x.url for x in one] == ["ws://a:1/ws"]
    listed = HubAddress.parse_all(" ws://a:1, https://b/hub ,")
    assert [x.url for x in listed] == ["ws://a:1/ws", "wss://b:443/hub"]
    assert HubAddress.parse_all(["ws://a:1", "https://b/hub"]) == listed
    with pytest.raises(ValueError, match="twice"):
        HubAddress.parse_all("ws://a:1,http://a:1/ws")
    with pytest.raises(ValueError, match="no validator URL"):
        HubAddress.parse_all([])
    with pytest.raises(ValueError, match="ws://, wss://"):
        HubAddress.parse_all("ws://a:1,ftp://b")
    conn = ValidatorConnection("ws://a:1,ws://b:2", BOB, VALIDATOR.ss58_address)
    assert conn.urls == ("ws://a:1/ws", "ws://b:2/ws")
    assert conn.url == "ws://a:1/ws"


# -- bt-miner --validator HOTKEY@ws://a,ws://b --------------------------------------------------


def test_cli_reads_several_hubs_of_one_validator():
    alice, charlie = VALIDATOR.ss58_address, miner_key("Charlie").ss58_address
    found = parse_validators([f"{alice}@ws://a:8091, ws://b:8091", "wss://c/ws"], [charlie])
    assert [(v.hotkey, v.url) for v in found] == [
        (alice, "ws://a:8091,ws://b:8091"), (charlie, "wss://c/ws")]
    for spec, fragment in [(f"{alice}@ws://a:1,,ws://b:2", "empty address"),
                           (f"{alice}@ws://a:1,ftp://b", "not a ws://"),
                           (f"{alice}@ws://a:1,ws://a:1", "same hub twice")]:
        with pytest.raises(CliError, match=fragment):
            parse_validators([spec], [])
    with pytest.raises(CliError, match=r"more than once .*@ws://a:8091,ws://b:8091"):
        parse_validators([f"{alice}@ws://a:1", f"{alice}@ws://b:2"], [])


async def test_bt_miner_submit_fails_over_to_the_second_hub(start_hub, tmp_path):
    wallets = tmp_path / "wallets"
    wallet = Wallet(name="miner", hotkey="default", path=str(wallets))
    wallet.create_new_hotkey(use_password=False, suppress=True, overwrite=True)
    b = await start_hub(store_path=tmp_path / "hub-b.sqlite3")
    await b.post_games(GAMES)
    dead = f"ws://127.0.0.1:{free_port()}"
    proc = await asyncio.create_subprocess_exec(
        *bt_miner(), "submit", "--wallet.name", "miner", "--wallet.path", str(wallets),
        "--validator", f"{VALIDATOR.ss58_address}@{dead},{b.server.url}",
        "--game-id", "f0", "--outcome", "0", "--wager", "2", "--timeout", "20",
        "--outbox-dir", str(tmp_path / "outbox"),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=fresh_user_env(tmp_path))
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert stdout.decode().startswith("accepted: prediction "), stdout.decode()
    rows = await hub_rows_by_id(b.store_path)
    assert [row["miner_hotkey"] for row in rows.values()] == [wallet.hotkey.ss58_address]
