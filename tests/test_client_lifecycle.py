"""ValidatorConnection's life: dead-link detection, permanent and retryable refusals,
the HTTP fallback and back, clock offset, and notebook-style use without ``async with``."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta

import pytest

from sdk.connection import ConnectionState, ValidatorConnection
from sdk.errors import (
    AuthenticationError,
    DeregisteredError,
    LinkError,
    NotRegisteredError,
    ReplacedError,
)
from sdk.models import Prediction
from sdk.options import ConnectionOptions
from server_stub import AllowListRegistry, GameSimulator, HubClock

from .kit.clientkit import (
    FAST_CLIENT,
    StateLog,
    UpdateLog,
    assert_verified_receipt,
    heartbeats_reach,
    hub_rows_by_id,
)
from .kit.games import future_game
from .kit.keys import VALIDATOR, miner_key
from .kit.waiting import eventually

# the classes whose tasks a closed connection must leave none of
CONNECTION_PARTS = ("ValidatorConnection.", "WebSocketTransport.", "HttpFallbackTransport.",
                    "Submissions.")
BOB = miner_key("Bob")
CHARLIE = miner_key("Charlie")

S = ConnectionState


async def test_half_open_link_is_detected_within_three_heartbeats(start_hub, fault_proxy,
                                                                  miner):
    running = await start_hub(heartbeat_interval_s=5.0)  # the hub would notice much later
    await running.post_games([future_game("g1")])
    proxy = await fault_proxy(running)
    interval = 0.4
    conn = miner(proxy, heartbeat_interval_s=interval)
    states = StateLog(conn)
    await conn.start()
    await conn.wait_ready(10.0)
    await eventually(lambda: conn.rtt is not None, 5.0)  # heartbeats flow
    await states.wait_for(S.OPEN)

    mark = len(states.changes)
    stalled_at = time.monotonic()
    proxy.stall()
    _, dropped_at = await states.wait_for(S.BACKOFF, after=mark, timeout=5.0)
    assert dropped_at - stalled_at <= 3 * interval + 0.3
    assert proxy.cuts == 0
    assert proxy.links >= 1
    assert conn.reconnects == 1

    proxy.resume()
    await states.wait_for(S.OPEN, after=mark, timeout=10.0)
    assert states.states[mark:][:2] == [S.BACKOFF, S.CONNECTING]
    await states.stop()


async def test_a_link_that_drops_right_after_opening_backs_off_exponentially(
        start_hub, fault_proxy, miner):
    running = await start_hub(connects_per_minute=6000.0, connect_burst=1000.0)
    await running.post_games([future_game("g1")])
    proxy = await fault_proxy(running)
    conn = miner(proxy, backoff_base=0.05, backoff_cap=1.0)
    states = StateLog(conn)
    await conn.start()
    await conn.wait_ready(10.0)

    async def drop_every_session() -> None:
        while True:
            opened = states.count(S.OPEN)
            proxy.cut()
            await states.wait_until(lambda opened=opened: states.count(S.OPEN) > opened,
                                    30.0)

    dropper = asyncio.create_task(drop_every_session())
    done, _ = await asyncio.wait({dropper}, timeout=2.0)
    dropper.cancel()
    await asyncio.gather(dropper, return_exceptions=True)
    assert not done
    # at a flat 0..50 ms delay this would be ~60 sessions; doubling keeps it to a handful
    assert 3 <= states.count(S.OPEN) <= 15, states.count(S.OPEN)
    await states.wait_for(S.OPEN, after=len(states.changes) - 1, timeout=5.0)
    await states.stop()


async def test_client_heartbeats_at_least_as_often_as_the_hub_asks(start_hub, fault_proxy,
                                                                    miner):
    running = await start_hub(heartbeat_interval_s=0.3)  # silent for 0.9 s: dropped
    await running.post_games([future_game("g1")])
    proxy = await fault_proxy(running)
    conn = miner(proxy, heartbeat_interval_s=30.0)  # a too-relaxed local setting
    await conn.start()
    await conn.wait_ready(10.0)
    sent = running.hub.stats.messages_in["heartbeat"]
    await eventually(lambda: running.hub.stats.messages_in["heartbeat"] >= sent + 5, 3.0)
    assert running.hub.stats.closes[1008] == 0
    assert conn.reconnects == 0
    assert conn.state is S.OPEN


async def test_403_raises_not_registered_at_once_without_retrying(start_hub, fault_proxy,
                                                                  miner):
    running = await start_hub(registry=AllowListRegistry([CHARLIE.ss58_address]))
    proxy = await fault_proxy(running)
    conn = miner(proxy, backoff_base=0.01, backoff_cap=0.02)
    states = StateLog(conn)
    started = time.monotonic()
    await conn.start()
    with pytest.raises(NotRegisteredError) as raised:
        await conn.wait_ready(5.0)
    assert time.monotonic() - started < 1.0
    assert raised.value.status == 403
    assert not raised.value.retryable
    assert "not registered" in str(raised.value)
    assert BOB.ss58_address in str(raised.value)
    assert conn.state is S.CLOSED
    assert conn.error is raised.value
    # No retry loop: while a registered miner connects and heartbeats through the same
    # proxy (0.3 s), a 10 ms backoff loop would have made dozens of attempts.
    async with miner(proxy, CHARLIE, heartbeat_interval_s=0.1):
        await heartbeats_reach(running, 3)
    attempts = len(proxy.upgrade_requests)  # Bob's one attempt, then Charlie's
    assert attempts == 2, f"the refused connection tried again ({attempts} upgrades)"
    assert running.hub.stats.handshake_refusals[403] == 1
    assert states.states == [S.CONNECTING, S.CLOSED]
    assert isinstance(states.error, NotRegisteredError)  # state_changes() ends with it
    with pytest.raises(NotRegisteredError):
        await conn.submit(Prediction.for_game(future_game("g1"), 0, 1.0))
    with pytest.raises(NotRegisteredError):
        async for _ in conn.game_updates():
            pass

    # the context-manager form raises it from ``async with``
    with pytest.raises(NotRegisteredError):
        async with miner(proxy):
            pass
    await states.stop()


async def test_4001_replaced_stops_the_old_connection_for_good(start_hub, fault_proxy, miner):
    running = await start_hub()
    await running.post_games([future_game("g1")])
    proxy = await fault_proxy(running)
    first = miner(proxy)
    first_states = StateLog(first)
    first_updates = UpdateLog(first)
    await first.start()
    await first.wait_ready(10.0)

    second = miner(proxy, heartbeat_interval_s=0.1)  # the same hotkey, a second process
    async with second:
        await first_states.wait_for(S.CLOSED, timeout=5.0)
        assert isinstance(first.error, ReplacedError)
        assert first.error.close_code == 4001
        assert not first.error.retryable
        assert isinstance(first_states.error, ReplacedError)
        assert isinstance(first_updates.error, ReplacedError)
        with pytest.raises(ReplacedError):
            await first.submit(Prediction.for_game(future_game("g1"), 0, 1.0))
        # No reconnect fight: the new one heartbeats for 0.3 s, many times the backoff
        # the old one would wait before coming back, and the old one stays down.
        await heartbeats_reach(running, 3)
        sessions = running.hub.stats.connections_total
        assert sessions == 2, f"the replaced connection came back ({sessions} sessions)"
        assert second.state is S.OPEN
        assert first.state is S.CLOSED
        assert first_states.states.count(S.OPEN) == 1
        receipt = await asyncio.wait_for(
            second.submit(Prediction.for_game(future_game("g1"), 0, 1.0)), 5.0)
        assert_verified_receipt(receipt, BOB.ss58_address)
    await first_states.stop()
    await first_updates.stop()


async def test_4003_deregistered_stops_the_connection(start_hub, fault_proxy, miner):
    running = await start_hub()
    await running.post_games([future_game("g1")])
    proxy = await fault_proxy(running)
    conn = miner(proxy)
    states = StateLog(conn)
    await conn.start()
    await conn.wait_ready(10.0)
    # what a metagraph refresh does:
    await running.hub.sessions.close_deregistered({BOB.ss58_address})
    await states.wait_for(S.CLOSED, timeout=5.0)
    assert isinstance(conn.error, DeregisteredError)
    assert conn.error.close_code == 4003
    # Another miner heartbeats for 0.3 s, many times Bob's backoff: Bob did not come back.
    async with miner(proxy, CHARLIE, heartbeat_interval_s=0.1):
        await heartbeats_reach(running, 3)
    sessions = running.hub.stats.connections_total  # Bob's first session, then Charlie's
    assert sessions == 2, f"the deregistered connection came back ({sessions} sessions)"
    await states.stop()


async def test_429_retry_after_is_honoured_before_the_next_attempt(start_hub, fault_proxy,
                                                                   miner):
    # one connect per 2 s per hotkey: a quick reconnect is refused with Retry-After: 2
    running = await start_hub(connects_per_minute=30.0, connect_burst=1.0)
    await running.post_games([future_game("g1")])
    proxy = await fault_proxy(running)
    conn = miner(proxy, backoff_base=0.01, backoff_cap=0.05)
    states = StateLog(conn)
    await conn.start()
    await conn.wait_ready(10.0)
    await states.wait_for(S.OPEN)
    assert len(proxy.upgrade_requests) == 1

    mark = len(states.changes)
    proxy.cut()
    await proxy.wait_upgrade_request(after=1, timeout=5.0)   # the refused attempt
    await proxy.wait_upgrade_request(after=2, timeout=10.0)  # the next one
    await states.wait_for(S.OPEN, after=mark, timeout=10.0)
    refused_at, retried_at = proxy.upgrade_requests[1:3]
    assert retried_at - refused_at >= 2.0
    assert retried_at - refused_at < 2.0 + 4 * 0.01 + 1.0  # jitter stays small
    assert running.hub.stats.handshake_refusals[429] == 1
    assert len(proxy.upgrade_requests) == 3
    assert states.states[mark:] == [S.BACKOFF, S.CONNECTING, S.BACKOFF, S.CONNECTING, S.OPEN]
    assert S.FALLBACK_HTTP not in states.states  # 429 is not a reason to leave WebSocket
    await states.stop()


async def test_http_fallback_and_back_with_an_uninterrupted_update_stream(start_hub,
                                                                         fault_proxy, miner):
    running = await start_hub()
    games = [future_game(g) for g in ("a", "b")]
    await running.post_games(games)
    proxy = await fault_proxy(running)
    conn = miner(proxy, ws_probe_interval=0.3, long_poll_timeout=1.0, fallback_after=2)
    updates = UpdateLog(conn)
    states = StateLog(conn)
    await conn.start()
    await conn.wait_ready(10.0)
    before = await running.post_games([future_game("a", team_a_odds=2.2)])
    await updates.wait_until(lambda: updates.seen_seq(before["seq"]), 5.0)

    # a proxy that stops allowing WebSockets: the miner moves to HTTP
    proxy.refuse_upgrades(True)
    proxy.cut()
    await states.wait_for(S.FALLBACK_HTTP, timeout=10.0)
    assert conn.state is S.FALLBACK_HTTP
    during = [await running.post_games([future_game("b", team_b_odds=3.5 + i / 10)])
              for i in range(3)]
    await updates.wait_until(lambda: updates.seen_seq(during[-1]["seq"]), 5.0)
    receipt = await asyncio.wait_for(
        conn.submit(Prediction.for_game(running.hub.stream.games["b"], 1, 2.0)), 5.0)
    assert receipt.status == "accepted"
    assert_verified_receipt(receipt, BOB.ss58_address)
    assert conn.state is S.FALLBACK_HTTP  # it really went over HTTP
    assert running.hub.stats.messages_in["http_prediction"] >= 1

    # WebSockets allowed again: the probe switches back
    opened = states.count(S.OPEN)
    proxy.refuse_upgrades(False)
    await states.wait_until(lambda: states.count(S.OPEN) > opened, 10.0)
    after = await running.post_games([future_game("a", team_a_odds=2.4)])
    await updates.wait_until(lambda: updates.seen_seq(after["seq"]), 5.0)

    seqs = [before["seq"], *(d["seq"] for d in during), after["seq"]]
    assert updates.incremental_seqs == seqs  # in order, nothing missing, nothing twice
    assert len(updates.snapshots) == 1
    assert updates.error is None
    assert not updates.task.done()
    assert conn.games == running.hub.stream.games
    rows = await hub_rows_by_id(running.store_path)
    assert list(rows) == [receipt.prediction_id]
    await updates.stop()
    await states.stop()


async def test_starting_behind_a_proxy_without_websockets_works_over_http(start_hub,
                                                                          fault_proxy,
                                                                          miner):
    running = await start_hub()
    game = future_game("h1")
    await running.post_games([game])
    proxy = await fault_proxy(running)
    proxy.refuse_upgrades(True)
    async with miner(proxy, ws_probe_interval=5.0) as conn:
        assert conn.state is S.FALLBACK_HTTP
        assert set(conn.games) == {"h1"}  # ready includes the table, over HTTP too
        receipt = await asyncio.wait_for(conn.submit(Prediction.for_game(game, 0, 1.5)), 5.0)
        assert_verified_receipt(receipt, BOB.ss58_address)
        assert running.hub.stats.connections_total == 0
        assert proxy.refused == 1  # one 426 was enough to switch (no retry storm first)


@pytest.mark.parametrize("skew_s", [-73.25, 41.5])
async def test_clock_offset_matches_a_skewed_hub_clock(start_hub, fault_proxy, miner, skew_s):
    running = await start_hub(clock=HubClock(offset_ns=int(skew_s * 1e9)))
    await running.post_games([future_game("g1")])
    proxy = await fault_proxy(running)
    conn = miner(proxy, heartbeat_interval_s=0.1)
    await conn.start()
    await conn.wait_ready(10.0)
    await eventually(lambda: conn.rtt is not None, 5.0)
    assert abs(conn.clock_offset - skew_s) < 0.05
    hub_now = running.hub.clock.now()
    assert abs((conn.server_now() - hub_now).total_seconds()) < 0.05
    assert conn.rtt is not None
    assert 0 <= conn.rtt < 0.5


async def test_notebook_style_top_level_await_without_a_context_manager(start_hub,
                                                                       fault_proxy):
    simulator = GameSimulator(seed=3, start=datetime.now(UTC), games=6,
                              kickoff_spacing=timedelta(minutes=30), drift=0.05)
    running = await start_hub(feed=simulator, tick_interval_s=0.05)
    fixed = future_game("notebook-1")
    await running.post_games([fixed])
    proxy = await fault_proxy(running)

    # -- what the cells of a notebook do, one top-level await at a time --
    conn = ValidatorConnection(proxy.url, BOB, VALIDATOR.ss58_address, outbox=":memory:",
                               options=dataclasses.replace(FAST_CLIENT, ready_timeout=None))
    await conn.start()
    await conn.wait_ready(10.0)
    assert "notebook-1" in conn.games
    assert len(conn.games) >= 7
    seen = []
    async for update in conn.game_updates():
        seen.append(update)
        if len(seen) == 3:
            break
    prediction = Prediction.for_game(conn.games["notebook-1"], "notebook-1-home", 5.0,
                                     confidence_score=0.6)
    receipt = await conn.submit(prediction, timeout=5.0)
    await conn.close()
    # ---------------------------------------------------------------------

    assert [u.seq for u in seen] == sorted(u.seq for u in seen)
    assert len(seen) == 3
    assert receipt.status == "accepted"
    assert_verified_receipt(receipt, BOB.ss58_address)
    assert conn.state is S.CLOSED
    leftovers = [t for t in asyncio.all_tasks() if not t.done()
                 and t.get_coro().__qualname__.startswith(CONNECTION_PARTS)]
    assert leftovers == []
    await eventually(lambda: not running.hub.sessions, 5.0)
    await conn.close()  # closing twice is harmless



async def test_wrong_validator_hotkey_is_a_permanent_error(start_hub):
    """A connection configured with another validator's hotkey gets 401 wrong_receiver:
    no retry can fix it, so it must stop at once with a message that says what to fix."""
    running = await start_hub()
    other = miner_key("NotTheValidator").ss58_address
    conn = ValidatorConnection(f"ws://127.0.0.1:{running.server.port}", miner_key("Bob"), other,
                               outbox=":memory:",
                               options=ConnectionOptions(backoff_base=0.05, backoff_cap=0.1))
    started = asyncio.get_running_loop().time()
    with pytest.raises(AuthenticationError) as caught:
        async with asyncio.timeout(10):
            await conn.__aenter__()
    assert caught.value.code == "wrong_receiver"
    assert caught.value.retryable is False
    assert "validator_hotkey" in str(caught.value)
    assert asyncio.get_running_loop().time() - started < 5
    assert running.hub.stats.handshake_refusals[401] == 1  # tried once, no retry loop


async def test_a_hub_that_is_down_is_waited_for_not_replaced_by_http(tmp_path, miner):
    """A restarting hub refuses TCP: that says nothing about WebSockets, so the client
    must keep backing off and come back over WebSocket, never via the HTTP fallback
    (a reconnect storm measured with bench/storm.py once sent clients there)."""
    import socket

    from server_stub import HubConfig
    from server_stub.testing import LocalHub

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn = miner(f"ws://127.0.0.1:{port}", fallback_after=1, ws_probe_interval=30.0)
    states = StateLog(conn)
    await conn.start()
    await eventually(lambda: states.count(S.BACKOFF) >= 3, 10.0)  # refused 3 times
    server = LocalHub(config=HubConfig(heartbeat_interval_s=5.0), signer=VALIDATOR,
                      store_path=tmp_path / "late.sqlite3", feed=None, port=port)
    await server.start()
    try:
        await conn.wait_ready(15.0)
        assert conn.state is S.OPEN
        assert S.FALLBACK_HTTP not in states.states
    finally:
        await conn.close()
        await server.stop()


def test_only_failed_upgrades_count_towards_the_http_fallback():
    """The rule behind the test above, without its race: refused TCP never leads to the
    fallback however often it happens; a hub that answers without upgrading does."""
    from sdk.errors import HandshakeError, HubUnreachableError
    from sdk.reconnect import Fallback, ReconnectPolicy

    policy = ReconnectPolicy(fallback_after=3)
    for _ in range(100):
        assert not isinstance(policy.connect_failed(HubUnreachableError("refused")), Fallback)
    assert not isinstance(policy.connect_failed(LinkError("reset mid-upgrade")), Fallback)
    assert not isinstance(policy.connect_failed(LinkError("reset mid-upgrade")), Fallback)
    assert isinstance(policy.connect_failed(LinkError("reset mid-upgrade")), Fallback)
    assert isinstance(ReconnectPolicy().connect_failed(HandshakeError("proxy", status=426)),
                      Fallback)
    busy = ReconnectPolicy(fallback_after=3)
    for _ in range(50):
        assert not isinstance(busy.connect_failed(HandshakeError("busy", status=503)), Fallback)
