"""The command lines as a user runs them: the installed console scripts, in the
environment of a fresh user (empty home and data dirs, no wallets)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def console_script(name: str) -> Path | None:
    """The console script ``name`` installed next to this Python, if any."""
    script = Path(sys.executable).parent / name
    return script if script.exists() else None


def fresh_user_env(tmp_path: Path) -> dict[str, str]:
    """A fresh user: empty HOME and data dirs, no wallets, and nothing of this checkout
    on the import path (``PYTHONPATH`` unset), output unbuffered and not wrapped."""
    env = dict(os.environ)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local" / "share"),
               PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    env.pop("COLUMNS", None)
    return env
