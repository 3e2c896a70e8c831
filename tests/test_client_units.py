"""Pure parts of the client SDK: backoff, stream tracker, clock sync, reader channels,
pacing and the durable outbox (a real SQLite file)."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from pathlib import Path

import pytest
from bittensor.keyfiles import Keypair

from sdk.backoff import Backoff
from sdk.channels import Channel, UpdateChannel, merge_updates
from sdk.clocksync import ClockEstimator
from sdk.frames import GameUpdate
from sdk.outbox import COUNTED_STATUSES, Outbox
from sdk.outbox_files import default_outbox_path, outbox_file_name, parse_outbox_file_name
from sdk.pacing import TokenBucket
from sdk.sqlite import DatabaseClosed
from sdk.tracker import ApplyResult, StreamTracker

from .kit.games import future_game

# -- backoff ----------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 8, 20, 200])
def test_backoff_full_jitter_stays_within_zero_and_the_exponential_ceiling(attempt):
    random.seed(attempt)
    backoff = Backoff(base=0.5, cap=30.0)
    ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
    delays = [backoff.delay(attempt) for _ in range(2000)]
    assert all(0.0 <= d <= ceiling for d in delays)
    # full jitter: the draws cover the whole range, not just its top
    assert min(delays) < 0.1 * ceiling
    assert max(delays) > 0.9 * ceiling


def test_backoff_is_capped_and_treats_attempt_zero_as_one():
    backoff = Backoff(base=1.0, cap=4.0)
    assert max(backoff.delay(50) for _ in range(500)) <= 4.0
    assert max(backoff.delay(0) for _ in range(500)) <= 1.0
    assert max(backoff.delay(-3) for _ in range(500)) <= 1.0


def test_backoff_retry_after_is_a_floor_with_bounded_jitter_on_top():
    backoff = Backoff(base=0.5, cap=30.0)
    delays = [backoff.delay(attempt, retry_after=2.0) for attempt in (1, 3, 9)
              for _ in range(300)]
    assert all(2.0 <= d <= 4.0 for d in delays)  # spread as wide as the wait itself
    assert max(delays) > 3.5
    assert min(delays) < 2.5
    assert len({round(d, 6) for d in delays}) > 100  # crowds told 2 s do not return together
    # a Retry-After longer than the cap is still honoured
    assert all(backoff.delay(1, retry_after=60.0) >= 60.0 for _ in range(50))
    # absent / non-positive Retry-After: plain jitter
    assert all(backoff.delay(1, retry_after=0) <= 0.5 for _ in range(50))
    assert all(backoff.delay(1, retry_after=None) <= 0.5 for _ in range(50))


@pytest.mark.parametrize(("base", "cap"), [(0, 1), (1, 0), (-1, 5)])
def test_backoff_rejects_non_positive_parameters(base, cap):
    with pytest.raises(ValueError, match="backoff base and cap must be positive"):
        Backoff(base=base, cap=cap)


# -- stream tracker ---------------------------------------------------------------------


def update(seq: int, *game_ids: str, epoch: str = "e1", prev: int | None = None,
           snapshot: bool = False, odds: float = 2.1) -> GameUpdate:
    return GameUpdate(epoch=epoch, seq=seq, prev_seq=seq - 1 if prev is None else prev,
                      games=[future_game(g, team_a_odds=odds) for g in game_ids],
                      snapshot=snapshot)


def test_tracker_snapshot_then_incremental_updates():
    tracker = StreamTracker()
    assert tracker.resume_point() == (None, None)
    assert tracker.apply(update(5, "a", "b", snapshot=True, prev=0)) is ApplyResult.APPLIED
    assert set(tracker.games) == {"a", "b"}
    assert tracker.resume_point() == ("e1", 5)
    assert tracker.apply(update(6, "c")) is ApplyResult.APPLIED
    assert tracker.apply(update(7, "a", odds=2.5)) is ApplyResult.APPLIED
    assert tracker.games["a"].team_a_odds == 2.5
    assert set(tracker.games) == {"a", "b", "c"}
    assert tracker.resume_point() == ("e1", 7)
    assert tracker.snapshots == 1
    assert tracker.gaps == 0


def test_tracker_ignores_stale_updates_without_changing_state():
    tracker = StreamTracker()
    tracker.apply(update(3, "a", snapshot=True))
    tracker.apply(update(4, "a", odds=3.0))
    before = dict(tracker.games)
    assert tracker.apply(update(4, "a", odds=9.0)) is ApplyResult.STALE
    assert tracker.apply(update(2, "b")) is ApplyResult.STALE
    assert tracker.games == before
    assert tracker.seq == 4


def test_tracker_filtered_seq_jumps_are_not_gaps_but_prev_seq_jumps_are():
    tracker = StreamTracker()
    tracker.apply(update(10, "a", snapshot=True))
    # other sports advanced seq to 14; the previous update for this filter was 10
    assert tracker.apply(update(15, "a", prev=10)) is ApplyResult.APPLIED
    # an update whose previous matching update (17) was never seen: a gap
    assert tracker.apply(update(20, "b", prev=17)) is ApplyResult.GAP
    assert "b" not in tracker.games
    assert tracker.seq == 15
    assert tracker.gaps == 1


def test_tracker_epoch_change_or_no_history_is_a_gap_until_a_snapshot():
    tracker = StreamTracker()
    assert tracker.apply(update(1, "a")) is ApplyResult.GAP  # nothing held yet
    tracker.apply(update(4, "a", "b", snapshot=True))
    assert tracker.apply(update(5, "c", epoch="e2")) is ApplyResult.GAP
    assert tracker.epoch == "e1"
    assert "c" not in tracker.games
    # the new epoch's snapshot replaces the table (games gone from the hub are gone here)
    assert tracker.apply(update(2, "c", epoch="e2", snapshot=True)) is ApplyResult.APPLIED
    assert tracker.resume_point() == ("e2", 2)
    assert set(tracker.games) == {"c"}
    assert tracker.apply(update(3, "d", epoch="e2")) is ApplyResult.APPLIED


# -- clock sync -------------------------------------------------------------------------


def test_clock_offset_and_rtt_from_one_echo():
    clock = ClockEstimator()
    assert clock.offset_ns == 0
    assert clock.rtt_ns is None
    # sent at 1000, hub stamped 5_000_600 (hub is 5_000_000 ahead), received at 1200
    sample = clock.add_echo(1000, 5_000_000 + 1100, 1200)
    assert sample is not None
    assert clock.rtt_ns == 200
    assert clock.offset_ns == 5_000_000


def test_clock_trusts_the_lowest_rtt_sample_and_ignores_backwards_steps():
    clock = ClockEstimator(window=4)
    skew = -7_000_000_000
    clock.add_echo(0, skew + 900, 1000)           # rtt 1000, asymmetric: offset error 400
    clock.add_echo(2000, skew + 2010, 2020)       # rtt 20: the best sample
    clock.add_echo(3000, skew + 3700, 4000)       # rtt 1000
    assert clock.offset_ns == skew
    assert clock.rtt_ns == 1000                   # rtt reports the latest echo
    assert clock.add_echo(5000, 0, 4000) is None  # local clock went backwards
    assert clock.offset_ns == skew
    for start in range(10_000, 14_000, 1000):     # the window forgets the best sample
        clock.add_echo(start, skew + start + 500 + 100, start + 1000)
    assert clock.offset_ns == skew + 100


def test_clock_rough_reading_is_used_only_until_a_real_echo():
    clock = ClockEstimator()
    clock.add_rough(server_ns=10_000_000, received_ns=4_000_000)
    assert clock.offset_ns == 6_000_000
    clock.add_rough(server_ns=0, received_ns=4_000_000)  # ignored: already have a reading
    assert clock.offset_ns == 6_000_000
    clock.add_echo(100, 3_000_150, 200)
    assert clock.offset_ns == 3_000_000


# -- channels ---------------------------------------------------------------------------


async def test_channel_is_fifo_and_close_ends_or_fails_iteration():
    channel: Channel[int] = Channel()
    for item in range(5):
        channel.push(item)
    channel.close()
    channel.push(99)  # after close: ignored
    assert [item async for item in channel] == [0, 1, 2, 3, 4]

    failing: Channel[int] = Channel()
    failing.push(1)
    failing.close(RuntimeError("stopped"))
    assert await failing.get() == 1
    with pytest.raises(RuntimeError, match="stopped"):
        await failing.get()


async def test_channel_wakes_a_waiting_reader():
    channel: Channel[str] = Channel()
    reader = asyncio.create_task(channel.get())
    await asyncio.sleep(0)
    assert not reader.done()
    channel.push("x")
    assert await asyncio.wait_for(reader, 1.0) == "x"


async def test_confirmation_channel_never_drops_anything():
    channel: Channel[int] = Channel()
    for item in range(20_000):
        channel.push(item)
    assert len(channel) == 20_000
    got = [await channel.get() for _ in range(20_000)]
    assert got == list(range(20_000))


async def test_update_channel_coalesces_to_the_latest_state_per_game():
    channel = UpdateChannel(capacity=4)
    odds = {}
    for seq in range(1, 101):
        game = f"g{seq % 7}"
        odds[game] = 1.5 + seq / 100
        channel.push(update(seq, game, odds=odds[game]))
        assert len(channel) <= 4
    assert channel.coalesced > 0
    items = [await channel.get() for _ in range(len(channel))]
    assert [u.seq for u in items] == sorted(u.seq for u in items)
    assert items[-1].seq == 100
    latest: dict[str, float] = {}
    for item in items:
        for game in item.games:
            latest[game.game_id] = game.team_a_odds
    assert latest == odds
    # each merged update says where it starts, so a tracker can check continuity
    for before, after in itertools.pairwise(items):
        assert after.prev_seq == before.seq


def test_merge_updates_restarts_at_the_last_snapshot():
    merged = merge_updates([update(1, "a"), update(2, "b"),
                            update(3, "c", snapshot=True, prev=0), update(4, "d")])
    assert merged.snapshot is True
    assert merged.seq == 4
    assert merged.prev_seq == 0
    assert [g.game_id for g in merged.games] == ["c", "d"]
    plain = merge_updates([update(5, "a", odds=2.0), update(6, "a", odds=2.4)])
    assert plain.snapshot is False
    assert plain.prev_seq == 4
    assert plain.seq == 6
    assert [g.team_a_odds for g in plain.games] == [2.4]


# -- pacing -----------------------------------------------------------------------------


def test_reserve_spends_the_burst_then_hands_out_later_slots():
    bucket = TokenBucket(rate=10.0, capacity=3.0, updated=100.0)
    assert [bucket.reserve(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    waits = [bucket.reserve(100.0) for _ in range(4)]
    assert waits == pytest.approx([0.1, 0.2, 0.3, 0.4])
    # after the debt is paid back and more time passes the burst refills, up to capacity
    assert bucket.reserve(100.0 + 0.4 + 10.0) == 0.0
    assert bucket.tokens == pytest.approx(2.0)


def test_reserve_keeps_the_long_run_rate():
    bucket = TokenBucket(rate=50.0, capacity=5.0, updated=0.0)
    now, sent = 0.0, []
    for _ in range(500):
        wait = bucket.reserve(now)
        sent.append(now + wait)
    # 500 messages reserved at once: the last may go at (500 - 5) / 50 s
    assert max(sent) == pytest.approx((500 - 5) / 50)
    # in any 1 s window no more than rate + capacity are sent
    sent.sort()
    for index, start in enumerate(sent):
        in_window = sum(1 for t in sent[index:] if t < start + 1.0)
        assert in_window <= 50 + 5


def test_take_and_wait_time():
    bucket = TokenBucket(rate=2.0, capacity=1.0, updated=0.0)
    assert bucket.take(0.0) is True
    assert bucket.take(0.1) is False
    assert bucket.wait_time() == pytest.approx(0.4)
    assert bucket.take(0.5) is True


# -- outbox -----------------------------------------------------------------------------

V1, V2 = "validator-1", "validator-2"


def wire(game_id: str = "g1", wager: float = 10.0) -> dict:
    from sdk.models import Prediction

    return Prediction.for_game(future_game(game_id), 0, wager).wire()


async def add(outbox: Outbox, prediction: dict, validator: str = V1,
              day: str = "2030-01-01") -> bool:
    return await outbox.add(validator_hotkey=validator, miner_hotkey="miner",
                            prediction=prediction, signature="0xsig", wager_day=day)


async def test_outbox_add_is_idempotent_and_pending_is_oldest_first():
    outbox = await Outbox(":memory:").open()
    try:
        first, second, other = wire(), wire("g2"), wire("g3")
        assert await add(outbox, first) is True
        assert await add(outbox, second) is True
        assert await add(outbox, other, validator=V2) is True
        assert await add(outbox, first) is False
        pending = await outbox.pending(V1)
        assert [e.prediction_id for e in pending] == [first["prediction_id"],
                                                       second["prediction_id"]]
        entry = pending[0]
        assert entry.prediction == first
        assert entry.signature == "0xsig"
        assert entry.status == "pending"
        assert entry.receipt is None
        assert entry.wager == 10.0
        assert entry.game_id == "g1"
        assert await outbox.get(str(uuid.uuid4())) is None
    finally:
        await outbox.close()


async def test_outbox_settle_keeps_the_first_receipt_and_counts_by_status():
    outbox = await Outbox(":memory:").open()
    try:
        accepted, rejected, waiting = wire(wager=100.0), wire(wager=50.0), wire(wager=7.0)
        for prediction in (accepted, rejected, waiting):
            await add(outbox, prediction)
        receipt = {"prediction_id": accepted["prediction_id"], "status": "accepted",
                   "received_at_ns": 1}
        await outbox.settle(accepted["prediction_id"], "accepted", code="ok",
                            message="accepted", receipt=receipt)
        # a later duplicate answer never overwrites the accepted receipt
        await outbox.settle(accepted["prediction_id"], "duplicate", code="ok",
                            receipt={"status": "duplicate", "received_at_ns": 2})
        await outbox.settle(rejected["prediction_id"], "rejected", code="odds_mismatch",
                            message="odds moved")
        entry = await outbox.get(accepted["prediction_id"])
        assert entry is not None
        assert entry.status == "accepted"
        assert entry.receipt == receipt
        gone = await outbox.get(rejected["prediction_id"])
        assert gone is not None
        assert (gone.status, gone.code) == ("rejected", "odds_mismatch")
        assert [e.prediction_id for e in await outbox.pending(V1)] == [
            waiting["prediction_id"]]
        # wagered: pending and accepted count, rejected does not, other days do not
        assert await outbox.wagered(V1, "2030-01-01") == pytest.approx(107.0)
        assert await outbox.wagered(V1, "2030-01-02") == 0.0
        assert await outbox.wagered(V2, "2030-01-01") == 0.0
        assert await outbox.counts(V1) == {"accepted": 1, "rejected:odds_mismatch": 1,
                                           "pending": 1}
        assert await outbox.counts() == await outbox.counts(V1)
    finally:
        await outbox.close()


@pytest.mark.parametrize("status", ["pending", "accepted", "duplicate", "rejected"])
async def test_outbox_wagered_counts_exactly_the_counted_statuses(status: str):
    outbox = await Outbox(":memory:").open()
    try:
        prediction = wire(wager=12.0)
        await add(outbox, prediction)
        if status != "pending":
            await outbox.settle(prediction["prediction_id"], status, code="ok")
        expected = 12.0 if status in COUNTED_STATUSES else 0.0
        assert await outbox.wagered(V1, "2030-01-01") == pytest.approx(expected)
    finally:
        await outbox.close()
    assert {"pending", "accepted", "duplicate"} == COUNTED_STATUSES


def test_outbox_file_names_round_trip_for_a_miner_file_and_an_older_pair_file():
    miner, validator = (Keypair.create_from_uri(uri).ss58_address for uri in ("//Bob", "//Alice"))
    name = outbox_file_name(miner)
    assert parse_outbox_file_name(name) == (miner, None)
    assert default_outbox_path(miner).name == name
    older = outbox_file_name(miner, validator)
    assert parse_outbox_file_name(older) == (miner, validator)


@pytest.mark.parametrize("name", [
    "hub.sqlite3", "outbox.sqlite3", f"{'5' * 48}.db", f"{'5' * 48}-{'5' * 48}.db",
    f"{'5' * 48}-{'0' * 48}.sqlite3",  # 0 is not a base58 digit
    f"x{'5' * 48}-{'5' * 48}.sqlite3.bak",
])
def test_other_files_are_not_outboxes(name: str):
    assert parse_outbox_file_name(name) is None


async def test_outbox_file_survives_reopen(tmp_path: Path):
    path = tmp_path / "nested" / "outbox.sqlite3"
    outbox = await Outbox(path).open()
    kept, done = wire(), wire("g2")
    await add(outbox, kept)
    await add(outbox, done)
    await outbox.settle(done["prediction_id"], "accepted", code="ok",
                        receipt={"status": "accepted"})
    await outbox.close()
    assert outbox.closed
    with pytest.raises(DatabaseClosed):
        outbox.settle(kept["prediction_id"], "accepted")

    reopened = await Outbox(path).open()
    try:
        assert [e.prediction_id for e in await reopened.pending(V1)] == [kept["prediction_id"]]
        entry = await reopened.get(done["prediction_id"])
        assert entry is not None
        assert entry.receipt == {"status": "accepted"}
        assert await reopened.counts(V1) == {"pending": 1, "accepted": 1}
    finally:
        await reopened.close()


async def test_outbox_settle_resolves_only_after_the_commit(tmp_path: Path):
    outbox = await Outbox(tmp_path / "o.sqlite3").open()
    try:
        predictions = [wire(wager=1.0) for _ in range(200)]
        await asyncio.gather(*(add(outbox, p) for p in predictions))
        futures = [outbox.settle(p["prediction_id"], "accepted", receipt={"n": i})
                   for i, p in enumerate(predictions)]
        await asyncio.wait_for(asyncio.gather(*futures), 10.0)
        assert await outbox.pending(V1) == []
        assert (await outbox.counts(V1)) == {"accepted": 200}
    finally:
        await outbox.close()

