"""The agent contract: what a strategy sees (:class:`AgentContext`), what it returns
(:class:`Pick` or a full :class:`~sdk.models.Prediction`) and the :class:`Agent` base
class it subclasses.

An agent is pure strategy: it never opens sockets, never signs and never sleeps on a
network. The :class:`~agents.runner.AgentRunner` owns all I/O: it feeds the agent the
games of each validator, completes picks at that validator's current odds, enforces
the daily budget and cutoffs, and submits.

A minimal agent::

    class HomeTeam(Agent):
        name = "home"
        sports = ("soccer",)

        async def on_games(self, games, ctx):
            return [Pick(game.game_id, outcome=0, wager=5.0) for game in games]
"""

from __future__ import annotations

import abc
import logging
import math
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sdk.models import Game, Prediction

if TYPE_CHECKING:
    from sdk.frames import Confirmation, Limits

__all__ = ["Agent", "AgentContext", "AgentLogger", "Pick"]


@dataclass(frozen=True, slots=True)
class Pick:
    """What an agent wants to bet, without the odds: the runner completes it into a
    :class:`~sdk.models.Prediction` at the validator's *current* odds
    (:meth:`Prediction.for_game`), so one pick works for every validator.

    ``outcome``: 0 (team_a), 1 (team_b), 2 (tie), or a team name / ``"tie"``.
    ``wager``: amount to stake (> 0; the runner scales it down or drops it when the
    validator's daily budget cannot cover it). ``confidence``: optional, in [0, 1].
    ``model_name``: optional; defaults to the agent's name.
    """

    game_id: str
    outcome: int | str
    wager: float
    confidence: float | None = None
    model_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.game_id, str) or not self.game_id:
            raise ValueError(f"Pick.game_id must be a non-empty string, not {self.game_id!r}")
        if isinstance(self.outcome, bool) or not isinstance(self.outcome, int | str):
            raise ValueError("Pick.outcome must be 0, 1, 2, a team name or 'tie', "
                             f"not {self.outcome!r}")
        if (isinstance(self.wager, bool) or not isinstance(self.wager, int | float)
                or not math.isfinite(self.wager) or self.wager < 0):
            raise ValueError(f"Pick.wager must be a finite number >= 0, not {self.wager!r}")
        if self.confidence is not None and (
                isinstance(self.confidence, bool)
                or not isinstance(self.confidence, int | float)
                or not 0.0 <= self.confidence <= 1.0):
            raise ValueError(f"Pick.confidence must be within [0, 1], not {self.confidence!r}")

    def to_prediction(self, game: Game, *, wager: float | None = None,
                      model_name: str | None = None, **fields: Any) -> Prediction:
        """This pick as a prediction on ``game`` at the game's current odds."""
        if game.game_id != self.game_id:
            raise ValueError(f"pick for {self.game_id!r} completed with game {game.game_id!r}")
        return Prediction.for_game(
            game, self.outcome, self.wager if wager is None else wager,
            confidence_score=self.confidence,
            model_name=self.model_name or model_name, **fields)


class AgentLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every message with ``[agent@validator]`` and carries both in ``extra``."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = self.extra or {}
        kwargs["extra"] = {**extra, **(kwargs.get("extra") or {})}
        validator = str(extra.get("validator") or "")
        where = f"{extra.get('agent')}@{validator[:8]}" if validator else f"{extra.get('agent')}"
        return f"[{where}] {msg}", kwargs


def agent_logger(agent_name: str, validator_hotkey: str | None = None) -> AgentLogger:
    return AgentLogger(logging.getLogger(f"agents.{agent_name}"),
                       {"agent": agent_name, "validator": validator_hotkey})


@dataclass(frozen=True, slots=True)
class AgentContext:
    """What an agent knows about one validator when it is called.

    ``bankroll_left``: what may still be wagered with this validator today (its hub
    clock's UTC day), after everything already submitted (this run and earlier ones,
    from the outbox). ``server_time``: the validator's clock as estimated locally.
    ``games``: that validator's whole current game table (read-only).
    ``predicted``: game_ids already predicted for this validator.
    """

    validator_hotkey: str
    server_time: datetime
    bankroll_left: float
    daily_budget: float
    wagered_today: float
    games: Mapping[str, Game]
    logger: logging.LoggerAdapter[logging.Logger]
    predicted: frozenset[str] = frozenset()
    limits: Limits | None = None
    day: date | None = field(default=None)


class Agent(abc.ABC):
    """Base class of every prediction strategy.

    Class attributes: ``name`` (how it is loaded and logged; defaults to the class
    name), ``description`` (one line for ``bt-miner agents``; defaults to the first line
    of the docstring), ``sports`` / ``leagues`` of interest (empty: all; matched
    case-insensitively), ``allow_repeat`` (offer and submit games already predicted
    for a validator; off by default: one prediction per game and validator).

    Only :meth:`on_games` is required. Hooks are called once per validator
    connection with that validator's context; one agent instance serves every
    validator of a runner, so keep per-validator state keyed by
    ``ctx.validator_hotkey``. Exceptions raised by an agent are logged and counted,
    never fatal.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    sports: tuple[str, ...] = ()
    leagues: tuple[str, ...] = ()
    allow_repeat: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = cls.__name__
        if not cls.__dict__.get("description"):
            doc = (cls.__doc__ or "").strip()
            cls.description = doc.splitlines()[0].strip() if doc else ""

    def interested_in(self, game: Game) -> bool:
        """Whether ``game`` is in this agent's sports and leagues."""
        sports = {s.casefold() for s in self.sports}
        leagues = {s.casefold() for s in self.leagues}
        return ((not sports or game.sport.casefold() in sports)
                and (not leagues or game.league.casefold() in leagues))

    @abc.abstractmethod
    async def on_games(self, games: list[Game], ctx: AgentContext) -> list[Prediction | Pick]:
        """Decide on ``games`` (new or changed, not started, not settled, in this
        agent's sports/leagues, and, unless ``allow_repeat``, not yet predicted for
        this validator). Return picks or predictions; an empty list is fine."""

    async def on_start(self, ctx: AgentContext) -> None:  # noqa: B027 - optional hook
        """Called once per validator when the runner starts serving it."""

    async def on_confirmation(self, confirmation: Confirmation,  # noqa: B027
                              ctx: AgentContext) -> None:
        """Called with every verified confirmation from the validator (accepted,
        duplicate or rejected), including receipts of earlier runs' resends."""

    async def on_stop(self, ctx: AgentContext) -> None:  # noqa: B027 - optional hook
        """Called once per validator when the runner stops."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
