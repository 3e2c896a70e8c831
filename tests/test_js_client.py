"""The JavaScript reference client (``clients/js``), written from PROTOCOL.md alone,
against the real hub: it proves the document is enough for another language.

``node clients/js/bin/miner.mjs`` connects with btauth/1, reads the welcome and the
stream, submits one valid signed prediction and one over the daily limit, and verifies
both receipts; the hub's SQLite store must then hold exactly the accepted one. The JS
unit tests (RFC 8785 vectors, PROTOCOL.md's worked examples) run under ``node --test``.
Both need ``npm ci --prefix clients/js`` (the README's test command runs it)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from server_stub import HubConfig
from server_stub.feed import StaticFeed
from server_stub.testing import LocalHub

from .kit.games import future_game
from .kit.keys import VALIDATOR, miner_key

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "js"
BOB = miner_key("Bob")
INSTALL = "npm ci --prefix clients/js"


def node() -> str:
    """The ``node`` binary, once the client's packages are installed (else the test fails
    saying how to install them: a skipped test would hide a broken setup)."""
    binary = shutil.which("node")
    if binary is None:
        pytest.fail(f"node (Node.js >= 20) is not on PATH; install it, then run `{INSTALL}`")
    if not (CLIENT / "node_modules").is_dir():
        pytest.fail(f"clients/js/node_modules is missing: run `{INSTALL}` first")
    return binary


async def run_miner(*args: str, timeout: float = 60.0) -> tuple[int, list[dict[str, Any]], str]:
    """Runs the JS miner CLI; (exit code, its JSON lines, stderr)."""
    process = await asyncio.create_subprocess_exec(
        node(), str(CLIENT / "bin" / "miner.mjs"), *args, cwd=CLIENT,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    events = [json.loads(line) for line in out.decode().splitlines()]
    return process.returncode, events, err.decode()


def only(events: list[dict[str, Any]], name: str, **fields: Any) -> list[dict[str, Any]]:
    return [event for event in events if event["event"] == name
            and all(event.get(key) == value for key, value in fields.items())]


def stored_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT miner_hotkey, prediction_id, game_id, wager, signature, "
                          "receipt FROM predictions").fetchall()


def games() -> StaticFeed:
    """One open game, and one closed that the client must not pick."""
    return StaticFeed([future_game("js-closed", active=False),
                       future_game("js-open", start_in=timedelta(hours=3))])


async def test_js_miner_submits_verifies_receipts_and_handles_a_rejection(tmp_path: Path) -> None:
    store = tmp_path / "hub.sqlite3"
    async with LocalHub(config=HubConfig(heartbeat_interval_s=5.0), signer=VALIDATOR,
                        feed=games(), store_path=store) as local:
        code, events, stderr = await run_miner(
            "--url", f"{local.url}/ws", "--validator", VALIDATOR.ss58_address,
            "--key", "//Bob", "--wager", "2.5", "--timeout", "20",
            # URLSearchParams writes the comma as %2C: the hub still splits there (§2.4)
            "--sports", "soccer,baseball")
        assert code == 0, (events, stderr)
        assert only(events, "done") == [{"event": "done", "ok": True}]
        welcome, = only(events, "welcome")
        assert welcome["validator_hotkey"] == VALIDATOR.ss58_address
        assert welcome["protocol"] == "bt-ws/1"
        assert isinstance(welcome["server_time_ns"], str)
        assert welcome["server_time_ns"].isdigit()
        snapshot = only(events, "game_update", snapshot=True)[0]
        assert snapshot["games"] == 2
        assert snapshot["epoch"] == welcome["epoch"]
        reply = next(e for e in only(events, "heartbeat") if e["echo_ns"] is not None)
        assert int(reply["rtt_ns"]) > 0

        valid, = only(events, "receipt", label="valid")
        assert (valid["status"], valid["code"], valid["verified"]) == ("accepted", "ok", True)
        refused, = only(events, "receipt", label="over_limit")
        assert (refused["status"], refused["code"], refused["verified"]) == (
            "rejected", "wager_limit", True)
        assert all(e["game_id"] == "js-open" for e in only(events, "submit"))

        rows = stored_rows(store)
        assert len(rows) == 1
        hotkey, prediction_id, game_id, wager, signature, receipt = rows[0]
        assert (hotkey, prediction_id, game_id, wager) == (
            BOB.ss58_address, valid["prediction_id"], "js-open", 2.5)
        assert signature.startswith("0x")
        assert json.loads(receipt)["received_at_ns"] == valid["received_at_ns"]


async def test_js_miner_reads_an_http_refusal(tmp_path: Path) -> None:
    """Bound to another validator, the upgrade is refused 401 wrong_receiver: the client
    reads the status and X-Bt-Error and exits 3, having stored nothing."""
    store = tmp_path / "hub.sqlite3"
    async with LocalHub(signer=VALIDATOR, feed=games(), store_path=store) as local:
        code, events, stderr = await run_miner(
            "--url", local.url, "--validator", BOB.ss58_address, "--key", "//Bob",
            "--timeout", "10")
    assert code == 3, (events, stderr)
    done, = only(events, "done")
    assert (done["ok"], done["status"], done["code"]) == (False, 401, "wrong_receiver")
    assert not only(events, "welcome")
    assert stored_rows(store) == []


def test_js_unit_tests_pass() -> None:
    """``node --test``: RFC 8785 vectors, btauth/1 and receipts against PROTOCOL.md."""
    done = subprocess.run([node(), "--test", "test/"], cwd=CLIENT, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# fail 0" in done.stdout
