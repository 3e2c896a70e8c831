"""``GameTable``: a connection's copy of the hub's games, kept across reconnects.

Updates from whichever transport is up are applied in stream order
(:class:`~sdk.tracker.StreamTracker`). A gap (an update whose ``prev_seq`` we never
saw, or one from another epoch) asks for one snapshot, and until it arrives the
connection sends no resume point, so the hub answers with a snapshot rather than a
replay we could not apply. Every applied update goes into each reader's own buffer
(:class:`~sdk.channels.UpdateChannel`): a slow reader never stalls the socket.
Settled games in an applied update (or snapshot) go to ``on_settled`` first, so a
reader that sees the update and then reads the outbox finds the predictions settled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from .channels import Fanout
from .frames import GameUpdate, Welcome
from .models import Game, Outcome
from .tracker import ApplyResult, StreamTracker

log = logging.getLogger("sdk.connection")

_UNFINISHED = int(Outcome.UNFINISHED)  # a plain int: compared once per game per update


class GameTable:
    """The games, the stream position, the resync state and the update readers."""

    def __init__(self, on_settled: Callable[[dict[str, int]], None] | None = None) -> None:
        self.on_settled = on_settled
        """Called with ``{game_id: outcome}`` of the settled games in each applied
        update; must not block (it runs on the socket's reader)."""
        self.tracker = StreamTracker()
        self.resyncing = False
        self.synced = asyncio.Event()  # the table matches the hub's (set once)
        self.readers: Fanout[GameUpdate] = Fanout()

    @property
    def games(self) -> dict[str, Game]:
        return self.tracker.games

    def settled_outcomes(self) -> dict[str, int]:
        """``{game_id: outcome}`` of the settled games the table holds."""
        return {game_id: int(game.outcome) for game_id, game in self.games.items()
                if game.settled}

    def resume_params(self) -> dict[str, Any]:
        """``epoch`` and ``since`` to resume the stream with (none while resyncing)."""
        epoch, since = self.tracker.resume_point()
        if epoch is None or since is None or self.resyncing:
            return {}
        return {"epoch": epoch, "since": since}

    def stream_query(self, sports: list[str], leagues: list[str],
                     extra: Mapping[str, Any]) -> str:
        """The query string that (re)joins the stream for this filter, resuming where
        the table stands, with ``extra`` parameters."""
        params = self.resume_params()
        if sports:
            params["sports"] = ",".join(sports)
        if leagues:
            params["leagues"] = ",".join(leagues)
        params.update(extra)
        return f"?{urlencode(params)}" if params else ""

    def on_welcome(self, welcome: Welcome) -> None:
        if welcome.epoch != self.tracker.epoch:
            self.resyncing = False  # a new history: the snapshot it starts with will do
        elif welcome.resumed:
            self.synced.set()  # the table we hold continues into this session

    def apply(self, update: GameUpdate) -> bool:
        """Apply one update and hand it to the readers; True when the stream has a gap
        and a snapshot must be requested (once: not again while one is awaited)."""
        result = self.tracker.apply(update)
        if result is ApplyResult.GAP:
            if self.resyncing:
                return False
            log.info("game stream gap before seq %d: resyncing", update.seq)
            self.resyncing = True
            return True
        if result is ApplyResult.STALE:
            return False
        if update.snapshot:
            self.resyncing = False
        self.synced.set()
        if self.on_settled is not None:
            settled = {game.game_id: int(game.outcome) for game in update.games
                       if game.outcome != _UNFINISHED}
            if settled:
                self.on_settled(settled)
        self.readers.push(update)
        return False

    def prune(self, now: datetime) -> None:
        """Drop settled games past retention at hub time ``now`` (the hub drops the same)."""
        self.tracker.prune(now)
