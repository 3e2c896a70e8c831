"""Smoke test of the benchmarks: each quick mode runs to the end and prints its
verdict lines. Performance is measured by the benchmarks, never asserted here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("module", "extra", "expected"), [
    ("bench.fanout", [], ["RATIO fanout.throughput[32 miners, compress=off]",
                          "RATIO fanout.p99_paced[32 miners, compress=on]",
                          "RATIO fanout.deflate_cost[hub, 32 miners]"]),
    ("bench.memory", [], ["RATIO memory.per_connection[200 miners, compress=off]"]),
    ("bench.client", [], ["RATIO client.cpu_per_update[10 clients]",
                          "RATIO client.memory_per_connection[10 clients]",
                          "CHECK client.sdk_kib_per_connection[10 clients]"]),
    ("bench.predictions", ["--miner-signature", "both"], [
        "RATIO predictions.round_trips[10 miners, sync=FULL]",
        "RATIO predictions.round_trips[10 miners, sync=NORMAL]",
        "CHECK predictions.p99_ms[10 miners, sync=FULL]",
        "CHECK predictions.server_cpu_us[10 miners, sync=FULL]",
        "RATIO predictions.round_trips[10 miners, sync=FULL, unsigned]",
        "CHECK predictions.server_cpu_us[10 miners, sync=NORMAL, unsigned]"]),
    ("bench.predictions", ["--book", "both", "--sync", "full"], [
        "RATIO predictions.round_trips[10 miners, sync=FULL, book=bettensor]",
        "RATIO predictions.bettensor_vs_own[10 miners, sync=FULL]",
        "CHECK predictions.bettensor_lock_hold_max_ms[10 miners, sync=FULL]",
        "RATIO predictions.bettensor_vs_own[10 miners, sync=FULL, validator writing]",
        "CHECK predictions.bettensor_lock_hold_max_ms[10 miners, sync=FULL, "
        "validator writing]",
        "CHECK predictions.validator_writer_tps[10 miners, sync=FULL]",
        "RATIO predictions.bettensor_vs_own[10 miners, sync=FULL, indexes]",
        "CHECK predictions.bettensor_lock_hold_max_ms[10 miners, sync=FULL, indexes, "
        "validator writing]",
        "CHECK predictions.validator_writer_tps[10 miners, sync=FULL, indexes]"]),
])
def test_quick_mode_completes(module: str, extra: list[str], expected: list[str],
                              tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", module, "--quick", "--store-dir", str(tmp_path), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for line in expected:
        assert any(row.startswith(line + " = ") for row in result.stdout.splitlines()), (
            f"missing {line!r} in:\n{result.stdout[-3000:]}")
    assert "Traceback" not in output, output[-3000:]
    assert list(tmp_path.iterdir()) == [], "the benchmark left its store behind"


def test_canonical_bytes_benchmark_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "bench.canonical", "--number", "200"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    for label in ("prediction", "receipt"):
        assert f"RATIO canonical.vs_json_dumps[{label}] = " in result.stdout


@pytest.mark.timeout(200)
def test_two_hubs_against_one_benchmark_runs() -> None:
    """bench.hubs --quick: one hub, then two, on real PostgreSQL and Redis."""
    from .kit.services import service_env

    result = subprocess.run([sys.executable, "-m", "bench.hubs", "--quick"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                           **service_env()},
                            capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    for kind in ("predictions", "fanout"):
        assert f"RATIO hubs.{kind}[2 vs 1 hub] = " in result.stdout
    assert "failures" not in result.stdout, result.stdout
