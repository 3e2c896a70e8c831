"""Recordings of a validator's game stream: what ``bt-miner record`` writes and the
backtester replays.

Format (``bt-miner-recording/1``): UTF-8 text, one JSON object per line, in the
order the miner received them::

    {"type": "game_update", "hub_time": "2026-05-01T14:03:07.512345+00:00",
     "epoch": "9f2c...", "seq": 41, "prev_seq": 40, "snapshot": false,
     "games": [{"game_id": "...", "team_a": "...", ..., "last_update_date": "..."}]}

* ``hub_time``: the validator's clock (as the miner estimated it, ISO 8601 UTC) when
  the update arrived; the replay publishes the update at that time.
* ``epoch``, ``seq``, ``prev_seq``, ``snapshot``, ``games``: the ``game_update`` frame
  exactly as PROTOCOL.md defines it (``games`` in :class:`~sdk.models.Game` JSON form).
  A line with ``"snapshot": true`` carries the whole table (it replaces what came
  before): the first line of every recording session is one, unless the hub resumed
  a stream the file already holds.

A recording is resumable: appending to an existing file skips every update whose
``(epoch, seq)`` the file already holds (so reconnects and later runs neither repeat
nor reorder lines), and a last line cut short by a crash is dropped before appending.
Lines of an unknown ``type`` are skipped by readers (room for later additions).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sdk.frames import GameUpdate
from sdk.models import as_utc

__all__ = ["RECORDING_FORMAT", "RecordedUpdate", "RecordingError", "RecordingWriter",
           "decode_line", "encode_line", "read_recording"]

RECORDING_FORMAT = "bt-miner-recording/1"
LINE_TYPE = "game_update"


class RecordingError(ValueError):
    """A recording line that cannot be read."""


@dataclass(frozen=True, slots=True)
class RecordedUpdate:
    """One recorded ``game_update`` and the hub time it arrived at."""

    hub_time: datetime
    update: GameUpdate

    @property
    def key(self) -> tuple[str, int]:
        return self.update.epoch, self.update.seq


def encode_line(hub_time: datetime, update: GameUpdate) -> str:
    """One recording line (without the newline)."""
    data: dict[str, Any] = {"type": LINE_TYPE, "hub_time": as_utc(hub_time).isoformat()}
    data.update(update.model_dump(mode="json"))
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def decode_line(text: str) -> RecordedUpdate | None:
    """The update of one line; None for a line of another ``type``;
    :class:`RecordingError` for one that is not a valid recording line."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise RecordingError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RecordingError("a line must be a JSON object")
    if data.get("type") != LINE_TYPE:
        return None
    try:
        hub_time = as_utc(datetime.fromisoformat(str(data["hub_time"])))
        update = GameUpdate.model_validate(
            {k: v for k, v in data.items() if k not in ("type", "hub_time")})
    except (KeyError, ValueError) as exc:
        raise RecordingError(f"not a game_update line: {exc}") from None
    return RecordedUpdate(hub_time, update)


def _complete_lines(raw: bytes) -> tuple[list[str], int]:
    """The complete lines of ``raw`` and the byte length they span (a last line
    without its newline is an interrupted write: not counted)."""
    end = raw.rfind(b"\n") + 1
    return raw[:end].decode("utf-8").splitlines(), end


def parse_lines(lines: Iterable[str], *, source: str = "recording") -> Iterator[RecordedUpdate]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            recorded = decode_line(line)
        except RecordingError as exc:
            raise RecordingError(f"{source}, line {number}: {exc}") from None
        if recorded is not None:
            yield recorded


def read_recording(path: str | Path) -> list[RecordedUpdate]:
    """Every update of a recording, in file order (an unfinished last line ignored)."""
    path = Path(path)
    lines, _ = _complete_lines(path.read_bytes())
    return list(parse_lines(lines, source=str(path)))


class RecordingWriter:
    """Appends updates to a recording, skipping those it already holds.

    ``open()`` reads what the file holds (creating it when missing) and drops an
    unfinished last line; :meth:`write` appends one update unless its ``(epoch, seq)``
    is not newer than the last one recorded for that epoch, and flushes it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.last_seq: dict[str, int] = {}
        self.written = 0
        self.skipped = 0
        self.held = 0
        self._file: IO[str] | None = None

    def open(self) -> RecordingWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        raw = self.path.read_bytes() if self.path.exists() else b""
        lines, end = _complete_lines(raw)
        for recorded in parse_lines(lines, source=str(self.path)):
            epoch, seq = recorded.key
            self.last_seq[epoch] = max(seq, self.last_seq.get(epoch, seq))
            self.held += 1
        if end != len(raw):
            with self.path.open("r+b") as handle:
                handle.truncate(end)
        self._file = self.path.open("a", encoding="utf-8")
        return self

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RecordingWriter:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def write(self, hub_time: datetime, update: GameUpdate) -> bool:
        """Append ``update`` received at ``hub_time``; False when it is already held."""
        if self._file is None:
            raise RuntimeError("the RecordingWriter is not open")
        last = self.last_seq.get(update.epoch)
        if last is not None and update.seq <= last:
            self.skipped += 1
            return False
        self._file.write(encode_line(hub_time, update) + "\n")
        self._file.flush()
        self.last_seq[update.epoch] = update.seq
        self.written += 1
        return True
