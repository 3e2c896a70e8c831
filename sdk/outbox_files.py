"""Where outbox files live and how they are named: one file per miner hotkey
(``<miner>.sqlite3``), and the per-miner-and-validator name older versions used
(``<miner>-<validator>.sqlite3``), which ``bt-miner status`` still reads and a
connection adopts (:meth:`sdk.outbox.Outbox.import_legacy`). No I/O."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["default_outbox_dir", "default_outbox_path", "outbox_file_name",
           "parse_outbox_file_name"]

_SS58 = r"[1-9A-HJ-NP-Za-km-z]{40,60}"
_FILE_NAME = re.compile(rf"^(?P<miner>{_SS58})(-(?P<validator>{_SS58}))?\.sqlite3$")


def outbox_file_name(miner_hotkey: str, validator_hotkey: str | None = None) -> str:
    """The outbox file of one miner (every validator's rows), or with
    ``validator_hotkey`` the name older versions gave the file of one miner and one
    validator (see :func:`parse_outbox_file_name`)."""
    if validator_hotkey is None:
        return f"{miner_hotkey}.sqlite3"
    return f"{miner_hotkey}-{validator_hotkey}.sqlite3"


def parse_outbox_file_name(name: str) -> tuple[str, str | None] | None:
    """``(miner_hotkey, validator_hotkey)`` of a name made by :func:`outbox_file_name`
    (``validator_hotkey`` None for a miner's file); None for any other file."""
    match = _FILE_NAME.match(name)
    return None if match is None else (match["miner"], match["validator"])


def default_outbox_dir() -> Path:
    """Where outboxes live by default (the user data dir)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("bettensor-ws")) / "outbox"


def default_outbox_path(miner_hotkey: str) -> Path:
    """The default outbox of a miner: one file for all its validators."""
    return default_outbox_dir() / outbox_file_name(miner_hotkey)
