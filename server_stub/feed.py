"""Where the hub's games come from: the :class:`GameFeed` protocol, a static feed of
games from a JSON file (:func:`load_games_file`), and the simulator
(:mod:`server_stub.simulator`). The only I/O here is reading that file.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Awaitable
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from sdk.models import Game

__all__ = ["FeedError", "GameFeed", "StaticFeed", "feed_games", "load_games_file"]



class GameFeed(Protocol):
    """Where games come from: the simulator, a file, a Bettensor validator's database,
    or nothing (admin posts only).

    The hub publishes ``initial_games()`` at start, then calls ``step(now)`` every
    tick with its clock's time and publishes what changed (the stream drops games
    whose state did not change, so a feed may return every game it knows). A feed
    that does I/O returns awaitables, so the event loop never waits on it."""

    def initial_games(self) -> list[Game] | Awaitable[list[Game]]: ...

    def step(self, now: datetime) -> list[Game] | Awaitable[list[Game]]: ...


async def feed_games(result: list[Game] | Awaitable[list[Game]]) -> list[Game]:
    """What a feed call returned, awaited if the feed is asynchronous."""
    return await result if inspect.isawaitable(result) else result


class StaticFeed:
    """Games from a file: published once at start, never changing by themselves."""

    def __init__(self, games: list[Game]) -> None:
        self._games = games

    def initial_games(self) -> list[Game]:
        return list(self._games)

    def step(self, now: datetime) -> list[Game]:
        return []


class FeedError(ValueError):
    """A games file could not be used; the message names the file and the problem."""



def _describe_error(err: ErrorDetails) -> str:
    loc = ".".join(str(part) for part in err["loc"]) or "(game)"
    return f"field {loc!r}: {err['msg']}"


def load_games_file(path: str | os.PathLike[str]) -> list[Game]:
    """Read games from a JSON file: ``{"games": [Game, ...]}`` or a bare list.

    Raises :class:`FeedError` naming the file (and the game's index and field) when
    the file is missing or unreadable, is not valid JSON, has the wrong shape, or a
    game is invalid (wrong types, decimal odds not above 1, duplicate ``game_id``).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FeedError(f"games file {str(file)!r}: file not found") from None
    except IsADirectoryError:
        raise FeedError(f"games file {str(file)!r}: is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        raise FeedError(f"games file {str(file)!r}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise FeedError(f"games file {str(file)!r}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FeedError(
            f"games file {str(file)!r}: invalid JSON at line {exc.lineno} column {exc.colno}: "
            f"{exc.msg}"
        ) from None

    if isinstance(data, dict):
        if "games" not in data:
            raise FeedError(
                f'games file {str(file)!r}: a JSON object must have a "games" list '
                f"(found keys: {', '.join(sorted(map(str, data))) or 'none'})"
            )
        items = data["games"]
        if not isinstance(items, list):
            raise FeedError(
                f'games file {str(file)!r}: "games" must be a list, got {type(items).__name__}'
            )
    elif isinstance(data, list):
        items = data
    else:
        raise FeedError(
            f'games file {str(file)!r}: expected {{"games": [...]}} or a list of games, '
            f"got {type(data).__name__}"
        )

    games: list[Game] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        where = f"games file {str(file)!r}: game #{index}"
        if not isinstance(item, dict):
            raise FeedError(f"{where}: expected a JSON object, got {type(item).__name__}")
        gid = item.get("game_id")
        if isinstance(gid, str) and gid:
            where += f" (game_id {gid!r})"
        try:
            game = Game.model_validate(item)
        except ValidationError as exc:
            problems = "; ".join(_describe_error(e) for e in exc.errors())
            raise FeedError(f"{where}: {problems}") from None
        for field in ("team_a_odds", "team_b_odds", "tie_odds"):
            value = getattr(game, field)
            if value is not None and value <= 1.0:
                raise FeedError(
                    f"{where}: field {field!r}: decimal odds must be greater than 1, got {value}"
                )
        if game.game_id in seen:
            raise FeedError(
                f"{where}: duplicate game_id {game.game_id!r} (first at game #{seen[game.game_id]})"
            )
        seen[game.game_id] = index
        games.append(game)
    return games
