"""``BettensorGameFeed``: the games a Bettensor validator offers, as the hub's stream.

Every poll reads the offered window of ``game_data`` and hands the hub the whole
list; the hub's stream keeps only what changed (odds, active, outcome, start time),
so one poll becomes at most one ``game_update``, settlements included. Settled games
whose last update is older than the stream's retention are left out, as the stream
prunes them: otherwise every poll would bring them back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sdk.models import Game
from sdk.tracker import SETTLED_RETENTION, expired_games

from .database import ValidatorDatabase

__all__ = ["BettensorGameFeed"]

ClockNow = Callable[[], datetime]


class BettensorGameFeed:
    """A :class:`~server_stub.feed.GameFeed` reading the validator's ``game_data``."""

    def __init__(self, db: ValidatorDatabase, *, clock_now: ClockNow) -> None:
        self.db = db
        self._now = clock_now
        self.polls = 0

    async def initial_games(self) -> list[Game]:
        return await self.step(self._now())

    async def step(self, now: datetime) -> list[Game]:
        games = await self.db.offered_games(now)
        self.polls += 1
        table = {game.game_id: game for game in games}
        for game_id in expired_games(table, now - SETTLED_RETENTION):
            del table[game_id]
        return list(table.values())

