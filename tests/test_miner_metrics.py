"""``bt-miner run --metrics-port``: the Prometheus exposition of a running miner, read
from its connections, runner and outbox at scrape time; end to end against a real hub."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bittensor import Wallet
from prometheus_client.parser import text_string_to_metric_families

from agents.metrics import (
    METRIC_NAMES,
    MinerReading,
    ValidatorReading,
    exposition,
    serve_metrics,
)
from sdk.models import Outcome
from sdk.outbox import Outbox
from sdk.outbox_files import outbox_file_name

from .kit.games import future_game
from .kit.keys import VALIDATOR
from .kit.process import fresh_user_env
from .test_cli_process import bt_miner

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def test_a_reading_becomes_every_documented_metric() -> None:
    up = ValidatorReading(hotkey="5Up", state="open", rtt_s=0.012, clock_offset_s=-0.5,
                          reconnects=2, predictions={("accepted", ""): 3,
                                                     ("rejected", "odds_mismatch"): 1},
                          wagered_today=15.0, daily_limit=100.0, settled=2,
                          settled_wagered=10.0, settled_payout=21.0, submitted=4,
                          skipped={"budget": 1})
    down = ValidatorReading(hotkey="5Down", state="backoff", pending=2,
                            predictions={("pending", ""): 2})
    text = exposition(MinerReading("5Miner", "favorite", 12.5, (up, down))).decode()
    found = samples(text)

    assert value(found, "bt_miner_info", miner="5Miner", agent="favorite") == 1
    assert value(found, "bt_miner_connection_up", validator="5Up") == 1
    assert value(found, "bt_miner_connection_up", validator="5Down") == 0
    assert value(found, "bt_miner_connection_state", validator="5Down", state="backoff") == 1
    assert value(found, "bt_miner_connection_state", validator="5Down", state="open") == 0
    assert value(found, "bt_miner_rtt_seconds", validator="5Up") == 0.012
    assert value(found, "bt_miner_rtt_seconds", validator="5Down") is None  # no echo yet
    assert value(found, "bt_miner_reconnects_total", validator="5Up") == 2
    assert value(found, "bt_miner_predictions", validator="5Up", status="accepted",
                 code="") == 3
    assert value(found, "bt_miner_predictions", validator="5Up", status="rejected",
                 code="odds_mismatch") == 1
    assert value(found, "bt_miner_outbox_pending", validator="5Down") == 2
    assert value(found, "bt_miner_wagered_today", validator="5Up") == 15
    assert value(found, "bt_miner_daily_limit", validator="5Up") == 100
    assert value(found, "bt_miner_settled_profit", validator="5Up") == 11
    assert value(found, "bt_miner_skipped_total", validator="5Up", reason="budget") == 1
    assert {f.name for f in text_string_to_metric_families(text)} == set(METRIC_NAMES)


async def test_settled_totals_sum_only_the_settled_predictions(tmp_path: Path) -> None:
    outbox = await Outbox(tmp_path / "outbox.sqlite3").open()
    try:
        for pid, game_id in (("p1", "g1"), ("p2", "g2"), ("p3", "g3")):
            prediction = {"prediction_id": pid, "game_id": game_id, "wager": 5.0,
                          "predicted_outcome": 0, "predicted_odds": 2.0}
            await outbox.add(validator_hotkey="5V", miner_hotkey="5M", prediction=prediction,
                             signature=None, wager_day="2026-01-01")
        await outbox.settle("p1", "accepted", validator_hotkey="5V")
        await outbox.settle("p2", "accepted", validator_hotkey="5V")
        assert await outbox.settled_totals("5V") == (0, 0.0, 0.0)
        # g1 won (outcome 0 as predicted), g2 lost, p3 is still pending: not settled
        await outbox.record_outcomes("5V", {"g1": 0, "g2": 1, "g3": 0})
        assert await outbox.settled_totals("5V", "5M") == (2, 10.0, 10.0)
        assert await outbox.settled_totals("5V", "5Other") == (0, 0.0, 0.0)
    finally:
        await outbox.close()


async def test_a_port_in_use_is_an_os_error() -> None:
    async def read() -> MinerReading:
        return MinerReading("5M", "a", 0.0)

    async with serve_metrics(read) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        try:
            async with serve_metrics(read, port=port):
                raise AssertionError("a second server bound the same port")
        except OSError:
            pass
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            assert "bt_miner_info" in await response.text()


async def _read_until(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> str:
    while True:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError(f"stream ended before {pattern!r}: {''.join(seen)}")
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match.group(1)


async def _scrape_until(session: aiohttp.ClientSession, url: str, done: Any,
                        timeout: float = 30.0) -> Samples:
    """Scrape until ``done(samples)`` (bounded in time)."""
    async def poll() -> Samples:
        while True:
            async with session.get(url) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                found = samples(await response.text())
            if done(found):
                return found
            await asyncio.sleep(0.2)

    return await asyncio.wait_for(poll(), timeout)


async def test_bt_miner_run_serves_metrics_that_match_its_outbox(start_hub: Any,
                                                                 tmp_path: Path) -> None:
    wallets = tmp_path / "wallets"
    wallet = Wallet(name="miner", hotkey="default", path=str(wallets))
    wallet.create_new_hotkey(use_password=False, suppress=True, overwrite=True)
    miner = wallet.hotkey.ss58_address
    hub = await start_hub(heartbeat_interval_s=0.5)
    games = [future_game(f"g{i}") for i in range(3)]
    await hub.post_games(games)
    validator = VALIDATOR.ss58_address
    outbox_dir = tmp_path / "outbox"
    proc = await asyncio.create_subprocess_exec(
        *bt_miner(), "run", "--wallet.name", "miner", "--wallet.path", str(wallets),
        "--validator", f"{validator}@ws://127.0.0.1:{hub.server.port}", "--agent", "favorite",
        "--agent-opt", "stake=4", "--outbox-dir", str(outbox_dir), "--metrics-port", "0",
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=fresh_user_env(tmp_path))
    assert proc.stdout is not None
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        url = await asyncio.wait_for(
            _read_until(proc.stderr, r"metrics: (http://127\.0\.0\.1:\d+/metrics)", seen), 30)
        async with aiohttp.ClientSession() as session:
            # every game predicted and accepted, and a heartbeat echoed
            found = await _scrape_until(session, url, lambda s: value(
                s, "bt_miner_predictions", validator=validator, status="accepted",
                code="") == len(games) and value(s, "bt_miner_rtt_seconds",
                                                 validator=validator) is not None)
            assert value(found, "bt_miner_connection_up", validator=validator) == 1
            assert value(found, "bt_miner_connection_state", validator=validator,
                         state="open") == 1
            assert value(found, "bt_miner_outbox_pending", validator=validator) == 0
            assert value(found, "bt_miner_wagered_today", validator=validator) == 12
            assert value(found, "bt_miner_daily_limit", validator=validator) == 1000
            assert value(found, "bt_miner_submitted_total", validator=validator) == 3
            assert value(found, "bt_miner_settled_predictions", validator=validator) == 0
            assert value(found, "bt_miner_info", miner=miner, agent="favorite") == 1

            # the results arrive: the favorite (team_a at 2.1) wins two games of three
            results = [g.model_copy(update={"outcome": Outcome.TEAM_A if i < 2
                                             else Outcome.TEAM_B})
                       for i, g in enumerate(games)]
            await hub.post_games(results)
            found = await _scrape_until(session, url, lambda s: value(
                s, "bt_miner_settled_predictions", validator=validator) == 3)
            assert value(found, "bt_miner_settled_wagered", validator=validator) == 12
            payout = value(found, "bt_miner_settled_payout", validator=validator)
            profit = value(found, "bt_miner_settled_profit", validator=validator)
            assert payout == pytest.approx(2 * 4 * 2.1)
            assert profit == pytest.approx(2 * 4 * 2.1 - 12)
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, "".join(seen) + stderr.decode()

    # what was scraped is what the outbox holds
    payout = found[("bt_miner_settled_payout", (("validator", validator),))]
    outbox = await Outbox(outbox_dir / outbox_file_name(miner)).open()
    try:
        assert await outbox.counts(validator) == {"accepted": len(games)}
        assert await outbox.settled_totals(validator, miner) == (3, 12.0, payout)
        days = {entry.wager_day for entry in await outbox.entries(validator, miner)}
        assert [await outbox.wagered(validator, day, miner) for day in days] == [12.0]
    finally:
        await outbox.close()


def test_a_metrics_port_in_use_exits_2_before_predicting(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from agents.cli import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["run", "--dev", "--duration", "1",
                                          "--outbox-dir", str(tmp_path),
                                          "--metrics-port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.output
    assert "summary" not in result.stdout
