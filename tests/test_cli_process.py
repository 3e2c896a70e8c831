"""``bt-miner`` as a real process: the demo on a machine with no keys, chain or network;
a missing wallet; a graceful SIGTERM; a validator that refuses the hotkey (exit 3)."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from bittensor import Wallet

from server_stub.registry import AllowListRegistry

from .kit.keys import VALIDATOR, miner_key
from .kit.process import console_script, fresh_user_env


def bt_miner() -> list[str]:
    script = console_script("bt-miner")
    return [str(script)] if script is not None else [sys.executable, "-m", "agents.cli"]


def accepted_count(stdout: str) -> int:
    match = re.search(r"^predictions: \d+ submitted, (\d+) accepted", stdout, re.MULTILINE)
    assert match, stdout
    return int(match.group(1))


def test_demo_runs_on_a_fresh_machine(tmp_path: Path) -> None:
    env = fresh_user_env(tmp_path)
    done = subprocess.run([*bt_miner(), "demo", "--duration", "5"], capture_output=True,
                          text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "summary: agent value" in done.stdout
    assert accepted_count(done.stdout) >= 1
    assert "validator-signed receipts" in done.stdout
    assert "✓ 0x" in done.stdout
    assert "wagered today" in done.stdout
    assert "per game" in done.stdout
    assert not list((tmp_path / "home").rglob("*.sqlite3"))  # nothing left in the user dirs


def test_missing_wallet_exits_2_naming_the_path(tmp_path: Path) -> None:
    wallets = tmp_path / "wallets"
    done = subprocess.run(
        [*bt_miner(), "run", "--wallet.name", "nope", "--wallet.path", str(wallets),
         "--validator", f"{VALIDATOR.ss58_address}@ws://127.0.0.1:9"],
        capture_output=True, text=True, timeout=60, env=fresh_user_env(tmp_path),
        stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: hotkey file not found: ")
    assert str(wallets / "nope" / "hotkeys" / "default") in lines[0]
    assert done.stdout == ""


async def _read_until(stream: asyncio.StreamReader, needle: str, seen: list[str]) -> None:
    while True:
        line = await stream.readline()
        if not line:
            raise AssertionError(f"stream ended before {needle!r}: {''.join(seen)}")
        seen.append(line.decode())
        if needle in seen[-1]:
            return


async def test_sigterm_stops_gracefully_with_a_summary(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *bt_miner(), "run", "--dev", "--agent", "favorite", "--log-level", "debug",
        "--outbox-dir", str(tmp_path / "outbox"), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=fresh_user_env(tmp_path))
    assert proc.stdout is not None
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        # the runner logs each receipt at debug level: wait for the first accepted one
        await asyncio.wait_for(_read_until(proc.stderr, ": accepted (wager", seen), 30)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, "".join(seen) + stderr.decode()
    assert "SIGTERM: stopping" in stderr.decode()
    assert accepted_count(stdout.decode()) >= 1
    assert list((tmp_path / "outbox").glob("*.sqlite3"))  # the outbox is where it was put


async def test_refused_hotkey_exits_3(start_hub: Any, tmp_path: Path) -> None:
    wallets = tmp_path / "wallets"
    wallet = Wallet(name="miner", hotkey="default", path=str(wallets))
    wallet.create_new_hotkey(use_password=False, suppress=True, overwrite=True)
    hub = await start_hub(registry=AllowListRegistry([miner_key("Dave").ss58_address]))
    proc = await asyncio.create_subprocess_exec(
        *bt_miner(), "run", "--wallet.name", "miner", "--wallet.path", str(wallets),
        "--validator", f"{VALIDATOR.ss58_address}@ws://127.0.0.1:{hub.server.port}",
        "--outbox-dir", str(tmp_path / "outbox"), "--log-level", "error",
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=fresh_user_env(tmp_path))
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 3, stderr.decode()
    last = stderr.decode().strip().splitlines()[-1]
    assert last.startswith("error: [not_registered]")
    assert "403" in last


def test_help_and_bad_flag_via_the_console_script(tmp_path: Path) -> None:
    done = subprocess.run([*bt_miner()], capture_output=True, text=True, timeout=60,
                          env=fresh_user_env(tmp_path), stdin=subprocess.DEVNULL)
    assert done.returncode == 0
    assert all(c in done.stdout for c in ("run", "demo", "watch", "submit", "status", "agents"))
    assert "Exit codes" in done.stdout
    done = subprocess.run([*bt_miner(), "demo", "--duration", "soon"], capture_output=True,
                          text=True, timeout=60, env=fresh_user_env(tmp_path),
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: ")
    assert "--duration" in done.stderr
