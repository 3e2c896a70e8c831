"""Units of the hub: the game stream, rate limits, the nonce store and btauth mapping,
miner registries (the metagraph one through an injected fetch, down to the 4003 close
of a connected miner), and the SQLite store's idempotence."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest
from bittensor import http_auth

from server_stub import AllowListRegistry, MetagraphRegistry, OpenRegistry, PredictionStore
from server_stub.auth import BoundedNonceStore, HubHTTPError, NonceStoreFull, authenticate
from server_stub.ratelimit import KeyedLimiter, TokenBucket
from server_stub.registry import Decision, read_allowlist
from server_stub.store import PredictionRecord, StoreClosed
from server_stub.stream import ALL_GAMES, GameFilter, GameStream

from .kit.games import future_game
from .kit.keys import VALIDATOR, miner_key
from .kit.waiting import eventually
from .kit.wire import receive_close, welcome_and_snapshot

BOB = miner_key("Bob")
CHARLIE = miner_key("Charlie")
SOCCER = GameFilter.of(["soccer"])
NBA = GameFilter.of(leagues=["NBA"])


def nba(game_id: str, **kw):
    return future_game(game_id, sport="basketball", league="NBA", **kw)


# -- GameFilter / GameStream ----------------------------------------------------------------


def test_filter_normalises_and_matches():
    assert GameFilter.from_query(" Soccer, ,MLB ", None) == GameFilter.of(["soccer", "mlb"])
    assert GameFilter.from_query(None, None) == ALL_GAMES
    assert GameFilter.from_query("", "") == ALL_GAMES
    assert SOCCER.matches(future_game("g1"))
    assert not SOCCER.matches(nba("n1"))
    both = GameFilter.of(["soccer"], ["laliga"])
    assert not both.matches(future_game("g1"))  # EPL is not LaLiga
    assert both.matches(future_game("g2", league="LaLiga"))
    assert [g.game_id for g in NBA.select([future_game("g1"), nba("n1")])] == ["n1"]


def test_stream_apply_counts_only_changes():
    stream = GameStream(8, epoch="e1")
    game = future_game("g1")
    record = stream.apply([game])
    assert record is not None
    assert (record.seq, [g.game_id for g in record.games]) == (1, ["g1"])
    # the same state again, even with a new last_update_date, is no change
    assert stream.apply([game.model_copy(update={"last_update_date": game.last_update_date
                                                 + timedelta(seconds=5)})]) is None
    assert stream.seq == 1
    record = stream.apply([game.model_copy(update={"team_a_odds": 2.0}), future_game("g2")])
    assert record.seq == 2
    assert {g.game_id for g in record.games} == {"g1", "g2"}
    assert stream.games["g1"].team_a_odds == 2.0
    assert [g.game_id for g in stream.snapshot(SOCCER)] == ["g1", "g2"]
    stream.forget(["g1", "missing"])
    assert list(stream.games) == ["g2"]


def test_stream_history_is_bounded():
    stream = GameStream(3, epoch="e1")
    for i in range(1, 8):
        stream.apply([future_game(f"g{i}")])
    assert stream.seq == 7
    assert stream.oldest_seq == 5
    assert GameStream(2).oldest_seq == 1
    with pytest.raises(ValueError, match="history_size must be at least 1"):
        GameStream(0)


def test_missed_replays_filtered_with_prev_seq_chain_or_none():
    stream = GameStream(16, epoch="e1")
    stream.apply([future_game("g1")])      # 1
    stream.apply([nba("n2")])              # 2
    stream.apply([future_game("g3")])      # 3
    stream.apply([nba("n4"), future_game("g4")])  # 4
    assert stream.missed("e1", 1, SOCCER) == [
        (3, [stream.games["g3"]], 1), (4, [stream.games["g4"]], 3)]
    assert [(seq, prev) for seq, _, prev in stream.missed("e1", 0, NBA)] == [(2, 0), (4, 2)]
    assert stream.missed("e1", 4, ALL_GAMES) == []
    assert stream.missed("other", 1, SOCCER) is None
    assert stream.missed(None, 1, SOCCER) is None
    assert stream.missed("e1", None, SOCCER) is None
    assert stream.missed("e1", 5, SOCCER) is None
    assert stream.missed("e1", -1, SOCCER) is None
    small = GameStream(2, epoch="e2")
    for i in range(1, 6):
        small.apply([future_game(f"g{i}")])
    assert small.missed("e2", 2, ALL_GAMES) is None  # seq 3 fell out of history
    assert [seq for seq, _, _ in small.missed("e2", 3, ALL_GAMES)] == [4, 5]


def test_prev_seq_chains_live_broadcasts_per_filter():
    stream = GameStream(16, epoch="e1")
    chains: dict[GameFilter, list[tuple[int, int]]] = {SOCCER: [], NBA: [], ALL_GAMES: []}
    for games in ([future_game("g1")], [nba("n1")], [nba("n2")], [future_game("g2")],
                  [future_game("g3"), nba("n3")]):
        record = stream.apply(games)
        for flt, chain in chains.items():
            if flt.select(record.games):
                chain.append((record.seq, stream.prev_seq(flt, record)))
    assert chains[SOCCER] == [(1, 0), (4, 1), (5, 4)]
    assert chains[NBA] == [(2, 0), (3, 2), (5, 3)]
    assert chains[ALL_GAMES] == [(1, 0), (2, 1), (3, 2), (4, 3), (5, 4)]
    # A filter first seen late scans the history back.
    late = GameFilter.of(leagues=["epl"])
    record = stream.apply([future_game("g9")])
    assert stream.prev_seq(late, record) == 5


# -- rate limits ---------------------------------------------------------------------------


def test_token_bucket_refills_up_to_capacity():
    bucket = TokenBucket(rate=2.0, capacity=3.0, updated=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_time() == pytest.approx(0.5)
    assert bucket.take(100.5)
    assert not bucket.take(100.5)
    assert [bucket.take(1000.0) for _ in range(4)] == [True, True, True, False]  # capped


def test_keyed_limiter_is_per_key_and_bounded():
    limiter = KeyedLimiter(rate=1.0, capacity=1.0, max_keys=3)
    assert limiter.allow("a", 0.0)
    assert not limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0)
    assert limiter.retry_after("a") == pytest.approx(1.0)
    assert limiter.retry_after("never-seen") == 0.0
    for key in ("c", "d", "e"):
        limiter.allow(key, 0.0)
    assert len(limiter) == 3  # the least recently used buckets were forgotten
    assert limiter.allow("a", 0.0)  # forgotten: a fresh, full bucket


# -- nonce store and btauth ------------------------------------------------------------------


async def test_bounded_nonce_store_refuses_replays_and_never_evicts_fresh():
    store = BoundedNonceStore(retention=0.1, max_entries=100)
    assert store.check_and_store("a", 1)
    assert not store.check_and_store("a", 1)
    assert store.check_and_store("b", 1)
    for nonce in range(2, 100):
        assert store.check_and_store("a", nonce)
    assert len(store) == 100
    with pytest.raises(NonceStoreFull):
        store.check_and_store("a", 1000)
    assert not store.check_and_store("a", 50)  # still remembered, not evicted
    await asyncio.sleep(0.15)
    assert store.check_and_store("a", 1000)  # the old ones expired
    assert len(store) == 1
    assert store.check_and_store("a", 1)  # expired entries may come back (stale anyway)


def _auth(headers, store=None, path="/ws", body=b"", **kw):
    return authenticate(headers, body, method="GET", path=path,
                        validator_hotkey=VALIDATOR.ss58_address,
                        nonce_store=store if store is not None else BoundedNonceStore(), **kw)


def _sign(key=BOB, path="/ws", receiver=VALIDATOR.ss58_address, **kw):
    return http_auth.sign(key, method="GET", path=path, receiver_ss58=receiver, **kw)


def test_authenticate_accepts_a_fresh_signed_request():
    assert _auth(_sign(), BoundedNonceStore()) == BOB.ss58_address


def _replayed(store: BoundedNonceStore) -> dict[str, str]:
    headers = _sign()
    _auth(headers, store)  # accepted once
    return headers


@pytest.mark.parametrize(("make_headers", "status", "code", "detail"), [
    pytest.param(lambda store: {}, 401, "unauthorized", "missing btauth/1 headers",
                 id="unsigned"),
    pytest.param(lambda store: {**_sign(), http_auth.HEADER_NONCE: "x"}, 400,
                 "malformed_request", "Nonce is not a decimal integer", id="bad-nonce"),
    pytest.param(lambda store: _sign(receiver=CHARLIE.ss58_address), 401, "wrong_receiver",
                 "signed for a different receiving hotkey", id="other-receiver"),
    pytest.param(lambda store: _sign(nonce_ns=time.time_ns() - 30 * 10**9), 401,
                 "stale_request", "older than the 10s freshness window", id="stale"),
    pytest.param(lambda store: _sign(path="/other"), 401, "unauthorized",
                 "signature does not verify", id="other-path"),
    pytest.param(_replayed, 401, "replayed_request", "nonce was already accepted",
                 id="replayed"),
])
def test_authenticate_maps_each_failure_to_status_and_code(make_headers, status, code, detail):
    store = BoundedNonceStore()
    headers = make_headers(store)
    with pytest.raises(HubHTTPError, match=f"^{status} {code}: .*{detail}") as info:
        _auth(headers, store)
    assert (info.value.status, info.value.code) == (status, code)


def test_authenticate_asks_to_retry_when_the_nonce_store_is_full():
    full = BoundedNonceStore(max_entries=100)
    for nonce in range(100):
        full.check_and_store("someone", nonce)
    with pytest.raises(HubHTTPError, match=r"^429 .*try again shortly") as info:
        _auth(_sign(), full)
    assert info.value.status == 429
    assert info.value.retry_after


# -- registries ------------------------------------------------------------------------------


async def test_static_registries():
    open_registry = OpenRegistry(denied=[CHARLIE.ss58_address])
    assert open_registry.check(BOB.ss58_address) is Decision.ALLOWED
    assert open_registry.check(CHARLIE.ss58_address) is Decision.BLACKLISTED
    assert open_registry.registered_count() is None
    assert not open_registry.is_registered(BOB.ss58_address)
    allow = AllowListRegistry([BOB.ss58_address], denied=[CHARLIE.ss58_address])
    assert allow.check(BOB.ss58_address) is Decision.ALLOWED
    assert allow.check("5Unknown") is Decision.NOT_REGISTERED
    assert allow.check(CHARLIE.ss58_address) is Decision.BLACKLISTED
    assert allow.registered_count() == 1
    assert allow.is_registered(BOB.ss58_address)
    await allow.start(lambda removed: asyncio.sleep(0))
    await allow.stop()


def test_read_allowlist(tmp_path: Path):
    path = tmp_path / "allow.txt"
    path.write_text(f"# miners\n{BOB.ss58_address}  # bob\n\n  {CHARLIE.ss58_address}\n")
    assert read_allowlist(path) == {BOB.ss58_address: None, CHARLIE.ss58_address: None}
    with pytest.raises(ValueError, match="cannot read allowlist"):
        read_allowlist(tmp_path / "missing.txt")


class ChainStub:
    """The metagraph as the injected fetch sees it: a list that tests edit."""

    def __init__(self, *hotkeys: str) -> None:
        self.hotkeys = list(hotkeys)
        self.fail = False
        self.calls = 0

    async def fetch(self) -> list[str]:
        self.calls += 1
        if self.fail:
            raise ConnectionError("chain unreachable")
        return list(self.hotkeys)


async def test_metagraph_registry_refreshes_and_reports_removals():
    chain = ChainStub(BOB.ss58_address, CHARLIE.ss58_address)
    removed_batches: list[set[str]] = []

    async def on_removed(hotkeys: set[str]) -> None:
        removed_batches.append(hotkeys)

    registry = MetagraphRegistry(chain.fetch, refresh_interval=0.05,
                                 denied=["5Denied"])
    assert registry.check(BOB.ss58_address) is Decision.UNAVAILABLE
    assert registry.registered_count() is None
    await registry.start(on_removed)
    try:
        assert registry.check(BOB.ss58_address) is Decision.ALLOWED
        assert registry.check("5Other") is Decision.NOT_REGISTERED
        assert registry.check("5Denied") is Decision.BLACKLISTED
        assert registry.registered_count() == 2
        chain.hotkeys.remove(BOB.ss58_address)
        await eventually(lambda: removed_batches == [{BOB.ss58_address}])
        assert registry.check(BOB.ss58_address) is Decision.NOT_REGISTERED
        # A failing refresh keeps the last good list.
        chain.fail = True
        failures = registry.failures
        await eventually(lambda: registry.failures > failures)
        assert registry.check(CHARLIE.ss58_address) is Decision.ALLOWED
        assert removed_batches == [{BOB.ss58_address}]
    finally:
        await registry.stop()
    calls = chain.calls
    await asyncio.sleep(0.15)
    assert chain.calls == calls  # stopped: no more fetches


async def test_metagraph_registry_retries_until_first_fetch(start_hub):
    chain = ChainStub(BOB.ss58_address)
    chain.fail = True
    registry = MetagraphRegistry(chain.fetch, refresh_interval=60.0, retry_interval=0.05)
    running = await start_hub(registry=registry)
    status, body, headers = await running.handshake_status(BOB)
    assert status == 503
    assert body["error"] == "shutting_down"
    assert "registry" in body["detail"]
    assert int(headers["Retry-After"]) >= 1
    chain.fail = False
    await eventually(lambda: registry.registered_count() == 1)
    ws = await running.connect(BOB)
    await welcome_and_snapshot(ws)


async def test_deregistered_miner_is_closed_with_4003(start_hub):
    chain = ChainStub(BOB.ss58_address, CHARLIE.ss58_address)
    registry = MetagraphRegistry(chain.fetch, refresh_interval=0.05)
    running = await start_hub(registry=registry)
    bob = await running.connect(BOB)
    charlie = await running.connect(CHARLIE)
    await welcome_and_snapshot(bob)
    await welcome_and_snapshot(charlie)
    health = await running.health()
    assert health["registered_miners"] == 2
    assert health["connected_share"] == 1.0
    chain.hotkeys.remove(BOB.ss58_address)
    code, _ = await receive_close(bob)
    assert code == 4003
    assert CHARLIE.ss58_address in running.hub.sessions
    assert running.hub.stats.closes[4003] == 1
    status, body, _ = await running.handshake_status(BOB)
    assert status == 403
    assert body["error"] == "not_registered"
    health = await running.health()
    assert health["registered_miners"] == 1
    assert health["connected_share"] == 1.0


# -- the store ---------------------------------------------------------------------------------


def _record(pid: str, *, hotkey: str = BOB.ss58_address, wager: float = 10.0,
            received_at_ns: int = 1, day: str = "2030-01-01") -> PredictionRecord:
    receipt = {"prediction_id": pid, "status": "accepted", "received_at_ns": received_at_ns}
    return PredictionRecord(miner_hotkey=hotkey, prediction_id=pid, game_id="g1", wager=wager,
                            wager_day=day, received_at_ns=received_at_ns,
                            prediction={"prediction_id": pid}, signature=None,
                            receipt=receipt)


def _row_count(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    finally:
        db.close()


async def test_store_is_idempotent_per_miner_and_prediction(tmp_path: Path):
    path = tmp_path / "store.sqlite3"
    store = await PredictionStore(path).open()
    try:
        first = await store.record(_record("p1", received_at_ns=111))
        assert first.stored
        assert first.receipt["received_at_ns"] == 111
        again = await store.record(_record("p1", received_at_ns=222, wager=99.0))
        assert not again.stored
        assert again.receipt["received_at_ns"] == 111
        # Two writes of one key in the same group commit: still one row.
        a, b = await asyncio.gather(store.record(_record("p2", received_at_ns=5)),
                                    store.record(_record("p2", received_at_ns=6)))
        assert (a.stored, b.stored) == (True, False)
        assert b.receipt["received_at_ns"] == 5
        other = await store.record(_record("p1", hotkey=CHARLIE.ss58_address))
        assert other.stored
        assert await store.count() == 3
        assert await store.count(BOB.ss58_address) == 2
        assert await store.wagered(BOB.ss58_address, "2030-01-01") == 20.0
        assert await store.wagered(BOB.ss58_address, "2030-01-02") == 0.0
        assert (await store.receipt(BOB.ss58_address, "p1"))["received_at_ns"] == 111
        assert await store.receipt(BOB.ss58_address, "nope") is None
        assert _row_count(path) == 3  # visible to another connection: committed
    finally:
        await store.close()
    with pytest.raises(StoreClosed):
        store.record(_record("p3"))
    await store.close()  # idempotent


async def test_store_keeps_games_and_rows_across_reopen(tmp_path: Path):
    path = tmp_path / "store.sqlite3"
    store = await PredictionStore(path, synchronous="NORMAL").open()
    await store.record(_record("p1"))
    await store.save_games([future_game("g1"), nba("n1")])
    await store.save_games([future_game("g1", team_a_odds=1.5)])
    await store.close()
    store = await PredictionStore(path).open()
    try:
        games = {g.game_id: g for g in await store.load_games()}
        assert set(games) == {"g1", "n1"}
        assert games["g1"].team_a_odds == 1.5
        assert not (await store.record(_record("p1"))).stored
    finally:
        await store.close()
    with pytest.raises(ValueError, match="unknown synchronous mode 'SOMETIMES'"):
        PredictionStore(path, synchronous="SOMETIMES")
