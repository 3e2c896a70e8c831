"""``bt-validator-stub serve`` as a real process: dev mode, Ctrl-C, bad flags."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys

import aiohttp
import pytest
from bittensor import http_auth
from typer.testing import CliRunner

from server_stub.cli import app

from .kit.keys import VALIDATOR, miner_key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_dev_hub_serves_a_miner_and_ctrl_c_sends_1001(tmp_path):
    port = free_port()
    store = tmp_path / "hub.sqlite3"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server_stub", "serve", "--dev", "--port", str(port),
        "--store", str(store), "--heartbeat", "5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        banner = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert VALIDATOR.ss58_address.encode() in banner  # --dev is //Alice
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # bounded: the banner comes just before listening
                try:
                    async with session.get(f"http://127.0.0.1:{port}/ws/health") as response:
                        health = await response.json()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            assert health["status"] == "ok"
            assert health["games"] > 0
            async with session.get(f"http://127.0.0.1:{port}/") as response:
                assert response.status == 200  # the dashboard, local by default
                assert "/dashboard/dashboard.js" in await response.text()
            headers = http_auth.sign(miner_key("Bob"), method="GET", path="/ws",
                                     receiver_ss58=VALIDATOR.ss58_address)
            ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws", headers=headers)
            welcome = json.loads((await ws.receive(timeout=5)).data)
            assert welcome["type"] == "welcome"
            proc.send_signal(signal.SIGINT)
            for _ in range(500):
                message = await ws.receive(timeout=15)
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
            assert ws.close_code == 1001
        output, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, output.decode()
        assert b"store flushed" in output
        assert store.exists()  # an explicit --store is kept, even in --dev
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_missing_wallet_names_the_path_it_looked_at(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--wallet.name", "nope", "--wallet.path",
                                      str(tmp_path), "--open"])
    assert result.exit_code == 2
    assert str(tmp_path / "nope" / "hotkeys" / "default") in result.output


def test_exactly_one_registry_must_be_chosen():
    runner = CliRunner()
    none = runner.invoke(app, ["serve", "--validator-uri", "//Alice"])
    assert none.exit_code == 2
    assert "choose exactly one miner registry" in none.output
    two = runner.invoke(app, ["serve", "--validator-uri", "//Alice", "--open", "--allow", "x"])
    assert two.exit_code == 2
    assert "--open, --allow/--allowlist" in two.output


@pytest.mark.parametrize(("content", "reason"), [
    pytest.param("{not json", "invalid JSON at line 1 column 2", id="not-json"),
    pytest.param('[{"game_id": "g"}]', "game #0 (game_id 'g'): field 'team_a': Field required",
                 id="missing-field"),
    pytest.param(None, "not found", id="missing-file"),
])
def test_bad_feed_file_is_a_clear_error(tmp_path, content, reason):
    bad = tmp_path / "games.json"
    if content is not None:
        bad.write_text(content)
    result = CliRunner().invoke(app, ["serve", "--validator-uri", "//Alice", "--open",
                                      "--feed", str(bad)])
    assert result.exit_code == 2, result.output
    # One line names the file and says what is wrong with it.
    assert f"error: games file '{bad}': " in result.output
    assert reason in result.output


def test_help_explains_the_flags():
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for flag in ("--wallet.name", "--validator-uri", "--allowlist", "--netuid",
                 "--subtensor.network", "--store", "--feed", "--heartbeat", "--dev",
                 "--dashboard"):
        assert flag in result.output


def test_dashboard_takes_off_local_or_public_only():
    result = CliRunner().invoke(app, ["serve", "--dev", "--dashboard", "everyone"])
    assert result.exit_code == 2
    assert "everyone" in result.output
