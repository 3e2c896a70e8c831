"""The game stream: the current game table, its epoch and seq, a bounded history of
updates for resuming miners, and the ``game_update`` frames built from them (the one
place that builds them, for the WebSocket and the long-poll alike). Pure logic, no I/O.

``epoch`` names one continuous history: it changes whenever the history is lost
(every hub start, or, with a shared stream, when Redis lost it), so a miner that
resumes with an old epoch gets a snapshot. ``seq`` increases by one per published
update: :meth:`GameStream.apply` numbers them itself (one hub), :meth:`GameStream.
apply_record` takes the number a shared stream gave (:mod:`server_stub.backplane`).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sdk.frames import GameUpdate
from sdk.models import Game
from sdk.tracker import SETTLED_RETENTION, expired_games

_FILTER_CACHE_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class GameFilter:
    """A miner's sports/leagues interest; empty sets match everything."""

    sports: frozenset[str] = frozenset()
    leagues: frozenset[str] = frozenset()

    @classmethod
    def of(cls, sports: Iterable[str] = (), leagues: Iterable[str] = ()) -> GameFilter:
        sport_set = frozenset(s.strip().casefold() for s in sports if s.strip())
        league_set = frozenset(s.strip().casefold() for s in leagues if s.strip())
        if not sport_set and not league_set:
            return ALL_GAMES  # shared: most miners want everything, and each holds its filter
        return cls(sport_set, league_set)

    @classmethod
    def from_query(cls, sports: str | None, leagues: str | None) -> GameFilter:
        """From comma-separated query parameters (``sports=soccer,mlb``)."""
        return cls.of((sports or "").split(","), (leagues or "").split(","))

    def matches(self, game: Game) -> bool:
        return (not self.sports or game.sport.casefold() in self.sports) and (
            not self.leagues or game.league.casefold() in self.leagues
        )

    def select(self, games: Iterable[Game]) -> list[Game]:
        return [game for game in games if self.matches(game)]


ALL_GAMES = GameFilter()


@dataclass(frozen=True, slots=True)
class UpdateRecord:
    """One published update: the games that changed at ``seq``."""

    seq: int
    games: tuple[Game, ...]


class GameStream:
    """Game table + epoch/seq + bounded history."""

    def __init__(self, history_size: int = 1024, *, epoch: str | None = None,
                 games: Iterable[Game] = ()) -> None:
        if history_size < 1:
            raise ValueError("history_size must be at least 1")
        self.epoch = epoch or uuid.uuid4().hex[:16]
        self.seq = 0
        self.games: dict[str, Game] = {game.game_id: game for game in games}
        self.version = 0
        """Changes whenever the table does (an update, a pruned game): a snapshot built
        at one version stays right until the next."""
        self._history: deque[UpdateRecord] = deque(maxlen=history_size)
        # Per filter: the last seq that matched it, and its value before the latest
        # record, so each broadcast finds prev_seq without scanning history.
        self._last_match: OrderedDict[GameFilter, int] = OrderedDict()
        self._prev_of_latest: dict[GameFilter, int] = {}

    @property
    def oldest_seq(self) -> int:
        """The oldest seq still in history (``seq + 1`` when history is empty)."""
        return self._history[0].seq if self._history else self.seq + 1

    def apply(self, games: Iterable[Game]) -> UpdateRecord | None:
        """Upsert games; record and return one update of those that changed (None if none)."""
        changed: dict[str, Game] = {}
        for game in games:
            current = self.games.get(game.game_id)
            if current is not None and current.same_state(game):
                continue
            self.games[game.game_id] = game
            changed[game.game_id] = game
        if not changed:
            return None
        self.version += 1
        self.seq += 1
        record = UpdateRecord(self.seq, tuple(changed.values()))
        self._remember(record)
        return record

    def _remember(self, record: UpdateRecord) -> None:
        self._prev_of_latest = dict(self._last_match)
        for flt in self._last_match:
            if any(flt.matches(game) for game in record.games):
                self._last_match[flt] = record.seq
        self._history.append(record)

    def changes(self, games: Iterable[Game]) -> list[Game]:
        """The games that differ from the table (ignoring ``last_update_date``), without
        applying them; within ``games`` a later entry of an id wins. What a publish
        commits to the store before anything is sent."""
        latest: dict[str, Game] = {}
        for game in games:
            latest.pop(game.game_id, None)  # keep the later entry's position too
            latest[game.game_id] = game
        return [game for game in latest.values()
                if (current := self.games.get(game.game_id)) is None
                or not current.same_state(game)]

    def apply_record(self, seq: int, games: Iterable[Game]) -> UpdateRecord:
        """Apply an update some other part numbered (a shared stream): every game is
        upserted and the record kept at ``seq``, which must be past :attr:`seq`."""
        if seq <= self.seq:
            raise ValueError(f"seq {seq} is not after the stream's seq {self.seq}")
        record = UpdateRecord(seq, tuple(games))
        for game in record.games:
            self.games[game.game_id] = game
        self.version += 1
        self.seq = seq
        self._remember(record)
        return record

    def reset(self, epoch: str, seq: int, games: Iterable[Game],
              history: Iterable[UpdateRecord] = ()) -> None:
        """Start over as another history (a shared stream's epoch changed, or this hub
        fell behind it): the table, seq and history given; the records of ``history``
        oldest first, each at most ``seq``. Connected miners need a snapshot after it."""
        self.epoch = epoch
        self.games = {game.game_id: game for game in games}
        self.version += 1
        self._history.clear()
        self._last_match.clear()
        self._prev_of_latest.clear()
        self._history.extend(record for record in history if record.seq <= seq)
        self.seq = seq

    def forget(self, game_ids: Iterable[str]) -> None:
        """Drop games from the table (history keeps its past records)."""
        for game_id in game_ids:
            if self.games.pop(game_id, None) is not None:
                self.version += 1

    def prune(self, now: datetime, retention: timedelta = SETTLED_RETENTION) -> list[str]:
        """Drop settled games older than ``retention`` (clients apply the same rule)."""
        expired = expired_games(self.games, now - retention)
        self.forget(expired)
        return expired

    def snapshot(self, flt: GameFilter = ALL_GAMES) -> list[Game]:
        return flt.select(self.games.values())

    def prev_seq(self, flt: GameFilter, record: UpdateRecord) -> int:
        """The seq of the last update before ``record`` that matched ``flt``.

        Falls back to the history floor when no earlier match is in history: a miner
        that has seen at least that far cannot have missed anything.
        """
        if record.seq == self.seq and flt in self._prev_of_latest:
            return self._prev_of_latest[flt]
        previous = self._scan_back(flt, record.seq)
        if record.seq == self.seq:
            self._prev_of_latest[flt] = previous
            self._last_match[flt] = record.seq if any(map(flt.matches, record.games)) else previous
            while len(self._last_match) > _FILTER_CACHE_LIMIT:
                self._last_match.popitem(last=False)
        return previous

    def _scan_back(self, flt: GameFilter, before_seq: int) -> int:
        for past in reversed(self._history):
            if past.seq < before_seq and any(map(flt.matches, past.games)):
                return past.seq
        return max(self.oldest_seq - 1, 0)

    def missed(self, epoch: str | None, since: int | None,
               flt: GameFilter) -> list[tuple[int, list[Game], int]] | None:
        """The updates after ``since`` for ``flt`` as (seq, games, prev_seq), oldest first.

        ``None`` means the gap cannot be replayed (other epoch, no resume point,
        ``since`` out of history or ahead of ``seq``): send a snapshot instead.
        """
        if epoch != self.epoch or since is None or since < 0 or since > self.seq:
            return None
        if since < self.oldest_seq - 1:
            return None
        replay: list[tuple[int, list[Game], int]] = []
        prev = since
        for record in self._history:
            if record.seq <= since:
                continue
            games = flt.select(record.games)
            if games:
                replay.append((record.seq, games, prev))
                prev = record.seq
        return replay

    def snapshot_update(self, flt: GameFilter = ALL_GAMES) -> GameUpdate:
        """A ``game_update`` snapshot: every game of the table that ``flt`` selects."""
        return GameUpdate(epoch=self.epoch, seq=self.seq, games=self.snapshot(flt),
                          snapshot=True)

    def missed_updates(self, epoch: str | None, since: int | None,
                       flt: GameFilter) -> list[GameUpdate] | None:
        """:meth:`missed` as ``game_update`` frames; None: send a snapshot instead."""
        missed = self.missed(epoch, since, flt)
        if missed is None:
            return None
        return [GameUpdate(epoch=self.epoch, seq=seq, prev_seq=prev, games=games)
                for seq, games, prev in missed]

    def broadcast_update(self, record: UpdateRecord, flt: GameFilter) -> GameUpdate | None:
        """The ``game_update`` of ``record`` for miners of ``flt``; None when it changes
        none of their games."""
        games = flt.select(record.games)
        if not games:
            return None
        return GameUpdate(epoch=self.epoch, seq=record.seq,
                          prev_seq=self.prev_seq(flt, record), games=games)
