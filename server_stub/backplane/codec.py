"""The shared stream's keys and entries, as bytes in Redis. Pure: no I/O.

Per validator, under one prefix (default ``bt-ws:<validator ss58>``):

- ``<prefix>:epoch``: the current epoch (16 hex characters), set once per history;
- ``<prefix>:seq``: the last seq given out (INCR);
- ``<prefix>:stream``: a Redis Stream, one entry per update with the id ``<seq>-0``
  and the fields ``epoch``, ``hub`` (who appended it) and ``games`` (a JSON array);
- ``<prefix>:games``: the game table, a hash ``game_id -> Game JSON``;
- ``<prefix>:feed-lease``: the hub that runs the feed (:mod:`.lease`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import TypeAdapter

from sdk.models import Game

from ..stream import UpdateRecord

_GAMES = TypeAdapter(list[Game])


def default_prefix(validator_hotkey: str) -> str:
    """The key prefix of a validator's hubs unless ``--redis-prefix`` says otherwise."""
    return f"bt-ws:{validator_hotkey}"


def new_epoch() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True, slots=True)
class StreamKeys:
    """The keys of one validator's shared stream."""

    prefix: str

    @property
    def epoch(self) -> str:
        return f"{self.prefix}:epoch"

    @property
    def seq(self) -> str:
        return f"{self.prefix}:seq"

    @property
    def stream(self) -> str:
        return f"{self.prefix}:stream"

    @property
    def games(self) -> str:
        return f"{self.prefix}:games"

    @property
    def feed_lease(self) -> str:
        return f"{self.prefix}:feed-lease"

    def all(self) -> list[str]:
        """epoch, seq, stream, games: the KEYS of the scripts, in that order."""
        return [self.epoch, self.seq, self.stream, self.games]


def game_fields(games: Sequence[Game]) -> list[str]:
    """``[game_id, json, game_id, json, ...]``: HSET arguments of the table."""
    fields: list[str] = []
    for game in games:
        fields += [game.game_id, game.model_dump_json()]
    return fields


def games_payload(fields: Sequence[str]) -> str:
    """The ``games`` field of an entry, from :func:`game_fields`."""
    return "[" + ",".join(fields[1::2]) + "]"


def decode_games(payload: bytes | str) -> list[Game]:
    return _GAMES.validate_json(payload)


def decode_table(table: dict[bytes, bytes]) -> list[Game]:
    return [Game.model_validate_json(value) for value in table.values()]


def entry_seq(entry_id: bytes | str) -> int:
    """The seq of a stream entry (its id is ``<seq>-0``)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


@dataclass(frozen=True, slots=True)
class Entry:
    """One decoded stream entry."""

    seq: int
    epoch: str
    hub: str
    games: list[Game]

    def record(self) -> UpdateRecord:
        return UpdateRecord(self.seq, tuple(self.games))


def decode_entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Entry:
    return Entry(seq=entry_seq(entry_id), epoch=fields[b"epoch"].decode(),
                 hub=fields[b"hub"].decode(), games=decode_games(fields[b"games"]))


# KEYS: epoch, seq, stream, games.  ARGV: epoch, maxlen, hub, games payload, then
# game_id, game json pairs.  -1: the epoch is not (or no longer) this one.
APPEND_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], seq .. '-0',
           'epoch', ARGV[1], 'hub', ARGV[3], 'games', ARGV[4])
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
return seq
"""

# KEYS: epoch, seq, stream, games.  ARGV: the new epoch, then game_id, game json
# pairs (the table to start from).  Returns the epoch in force: the one given when
# this call started the history, the existing one when another hub was first.
NEW_EPOCH_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('SET', KEYS[2], 0)
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""
