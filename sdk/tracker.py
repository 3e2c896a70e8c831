"""Client-side view of the game stream: epoch/seq tracking, gap detection and the
game table. Pure logic, no I/O: the connection feeds it frames."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import Enum

from .frames import GameUpdate
from .models import Game

SETTLED_RETENTION = timedelta(hours=1)
"""Settled games leave the game tables (hub and client alike) this long after their
last update, so a hub running for days keeps its snapshots small."""


def expired_games(games: Mapping[str, Game], before: datetime) -> list[str]:
    """Ids of settled games last updated before ``before`` (the pruning rule both
    sides apply, each on its own estimate of the hub clock)."""
    return [game_id for game_id, game in games.items()
            if game.settled and game.last_update_date < before]


class ApplyResult(Enum):
    APPLIED = "applied"     # new state, pass it on
    STALE = "stale"         # already seen (seq not newer): ignore
    GAP = "gap"             # something was missed: resync (subscribe) before trusting the table


class StreamTracker:
    """Holds ``games`` and the resume point (``epoch``, ``seq``) of one hub stream."""

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.seq: int | None = None
        self.games: dict[str, Game] = {}
        self.gaps = 0
        self.snapshots = 0

    def resume_point(self) -> tuple[str | None, int | None]:
        """``epoch`` and ``since`` to send when reconnecting."""
        return self.epoch, self.seq

    def prune(self, now: datetime, retention: timedelta = SETTLED_RETENTION) -> list[str]:
        expired = expired_games(self.games, now - retention)
        for game_id in expired:
            del self.games[game_id]
        return expired

    def apply(self, update: GameUpdate) -> ApplyResult:
        if update.snapshot:
            self.games = {game.game_id: game for game in update.games}
            self.epoch, self.seq = update.epoch, update.seq
            self.snapshots += 1
            return ApplyResult.APPLIED
        if update.epoch != self.epoch or self.seq is None:
            # an incremental update from a history we do not hold: cannot be trusted
            self.gaps += 1
            return ApplyResult.GAP
        if update.seq <= self.seq:
            return ApplyResult.STALE
        if update.prev_seq > self.seq:
            self.gaps += 1
            return ApplyResult.GAP
        for game in update.games:
            self.games[game.game_id] = game
        self.seq = update.seq
        return ApplyResult.APPLIED
