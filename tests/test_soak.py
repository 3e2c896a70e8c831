"""The soak under chaos (bench/soak.py), CI size: 16 miners over 4 fault proxies for
25 s while the hub (its own subprocess, simulator feed) is restarted twice. Every
invariant is asserted on its own SoakResult field, so a failure names what broke.
``python -m bench.soak`` is the full-size run (200 miners, 5 minutes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bench.soak import run_soak

pytestmark = pytest.mark.slow


@pytest.mark.timeout(100)
async def test_short_soak_under_chaos_keeps_every_invariant(tmp_path: Path) -> None:
    result = await run_soak(16, 25.0, 2, seed=7, faults_per_proxy_minute=10.0,
                            settle_timeout=30.0, rss_interval=0.5, store_dir=str(tmp_path))
    report = "\n".join(result.report())

    # the run did what it says: load, chaos, restarts
    assert result.hub_restarts == 2, report
    assert len(result.incarnations) == 3, report
    assert all(inc.graceful for inc in result.incarnations), report
    assert result.predictions_made > 0, report
    assert result.confirmed > 0, report
    assert sum(result.faults.values()) > 0, report
    assert result.reconnects > 0, report

    # (a) the hub's store holds exactly the predictions the miners hold as confirmed
    assert result.missing_at_hub == [], report
    assert result.orphans_at_hub == [], report
    assert result.hub_duplicate_ids == [], report
    assert result.receipt_mismatches == [], report
    assert result.hub_rows == result.confirmed, report
    # (b) nothing left pending, nothing lost
    assert result.settled, report
    assert result.pending == 0, report
    assert result.pending_by_miner == {}, report
    assert result.lost == 0, report
    # (c) every miner's game table is the hub's
    assert result.table_mismatches == {}, report
    assert result.tables_matched == result.miners, report
    # (d) hub RSS after warm-up within warm-up + 25 % + 20 MiB, per incarnation
    for inc in result.incarnations:
        assert inc.warm_kib is not None, report
        assert inc.max_after_kib is not None, report
        assert inc.bound_kib is not None, report
        assert inc.max_after_kib <= inc.bound_kib, report
    # (e) no asyncio task leaked
    assert result.tasks_after == result.tasks_before, report
    assert result.leaked_tasks == [], report
    # (f) every miner connected at the end, none stopped for good
    assert result.connected_at_end == result.miners, report
    assert result.fatal_errors == [], report
    # (g) nothing in the hub's log looks like a crash
    assert result.hub_tracebacks == 0, report

    assert result.passed, report
    left = await asyncio.to_thread(lambda: list(tmp_path.iterdir()))
    assert left == [], "the soak left its files behind"


@pytest.mark.timeout(150)
async def test_short_soak_on_three_hubs_keeps_every_invariant(tmp_path: Path) -> None:
    """The same on three hubs sharing PostgreSQL and Redis (issue 13): restarts go round
    the hubs, miners fail over between them, and the shared store matches the miners."""
    from .kit.services import postgres_database, redis_prefix

    async with postgres_database() as dsn, redis_prefix() as (url, prefix):
        result = await run_soak(16, 25.0, 2, seed=11, faults_per_proxy_minute=10.0,
                                settle_timeout=30.0, rss_interval=0.5,
                                store_dir=str(tmp_path), hubs=3, store=dsn, backplane=url,
                                redis_prefix=prefix)
    report = "\n".join(result.report())
    assert result.hub_restarts == 2, report
    assert len(result.incarnations) == 5, report  # three hubs, two of them restarted
    assert all(inc.graceful for inc in result.incarnations), report
    assert result.confirmed > 0, report
    assert result.reconnects > 0, report
    assert result.missing_at_hub == [], report
    assert result.orphans_at_hub == [], report
    assert result.hub_duplicate_ids == [], report
    assert result.receipt_mismatches == [], report
    assert result.hub_rows == result.confirmed, report
    assert result.pending == 0, report
    assert result.lost == 0, report
    assert result.table_mismatches == {}, report
    assert result.connected_at_end == result.miners, report
    assert result.fatal_errors == [], report
    assert result.hub_tracebacks == 0, report
    assert result.passed, report
