"""``--app-dir``: a new user's own agent module, next to them, loads with ``bt-miner run
--agent my_agents:HomeTeam --dev`` (the real console script, as a real process)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .kit.process import console_script, fresh_user_env

# the README's "Writing an agent" example, as a user would save it
MY_AGENTS = '''\
from agents import Agent, Pick

class HomeTeam(Agent):
    """Flat 5 on the home side of every soccer game."""
    sports = ("soccer",)

    async def on_games(self, games, ctx):
        return [Pick(game.game_id, outcome=0, wager=5) for game in games]
'''


def bt_miner() -> str:
    script = console_script("bt-miner")
    if script is None:
        pytest.skip("the bt-miner console script is not installed next to this Python")
    return str(script)


def run_home_team(cwd: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([bt_miner(), "run", "--agent", "my_agents:HomeTeam", "--dev",
                           "--duration", "3", *extra], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=fresh_user_env(tmp_path), stdin=subprocess.DEVNULL)


def accepted(stdout: str) -> int:
    match = re.search(r"^predictions: \d+ submitted, (\d+) accepted", stdout, re.MULTILINE)
    assert match, stdout
    return int(match.group(1))


def test_agent_module_in_the_working_directory(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "my_agents.py").write_text(MY_AGENTS)
    done = run_home_team(folder, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "summary: agent HomeTeam" in done.stdout
    assert accepted(done.stdout) >= 1


def test_agent_module_in_another_directory(tmp_path: Path) -> None:
    other = tmp_path / "other" / "dir"
    other.mkdir(parents=True)
    (other / "my_agents.py").write_text(MY_AGENTS)

    # from tmp_path the module is not on the import path: the plain command cannot find it
    missing = run_home_team(tmp_path, tmp_path)
    assert missing.returncode == 2
    assert "module 'my_agents' not found" in missing.stderr

    done = run_home_team(tmp_path, tmp_path, "--app-dir", "other/dir")
    assert done.returncode == 0, done.stderr
    assert "summary: agent HomeTeam" in done.stdout
    assert accepted(done.stdout) >= 1


def test_app_dir_must_be_a_directory(tmp_path: Path) -> None:
    done = run_home_team(tmp_path, tmp_path, "--app-dir", "nowhere")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: --app-dir 'nowhere' is not a directory"
