"""Data model: games and predictions, compatible with Bettensor's TeamGame and
TeamGamePrediction.

The models check *types* (and that numbers are finite); the business rules that
decide whether a prediction is acceptable (odds tolerance, wager limits, cutoffs)
live in :mod:`sdk.validation`, so a rule failure gets its own machine code instead
of a generic type error.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import IntEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)


class Outcome(IntEnum):
    """Game outcome / predicted outcome encoding (Bettensor's)."""

    TEAM_A = 0
    TEAM_B = 1
    TIE = 2
    UNFINISHED = 3


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC: a naive datetime is taken as UTC wall time (what a JSON
    timestamp without an offset means on the wire), an aware one is converted."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is past datetime.max in UTC
        raise ValueError("datetime is out of range once converted to UTC") from None


# Checked inside pydantic-core, not by a Python validator: every received game_update
# has three odds per game (bench/client.py: SDK CPU per update).
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]

NsTimestamp = Annotated[int, Field(ge=-(2**63), lt=2**63),
                        PlainSerializer(str, return_type=str, when_used="json")]
"""Nanoseconds since the Unix epoch: an int in Python, a decimal string on the wire.

About 1.8e18 is beyond 2**53, so a JSON number would lose its last digits in any
parser that reads numbers as doubles (JavaScript's, RFC 8785's), and a receipt rebuilt
from them would no longer verify. A number is still accepted on input."""


def ns_value(value: object) -> int | None:
    """An ``*_ns`` value read from JSON as an int: a decimal string (what the wire
    carries) or an int; None for anything else."""
    if type(value) is int:
        return value
    if isinstance(value, str) and value.isascii() and value.lstrip("-").isdigit():
        return int(value)
    return None
ShortText = Annotated[str, Field(min_length=1, max_length=200)]

_MODEL_CONFIG = ConfigDict(extra="ignore", frozen=True, ser_json_inf_nan="null")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Game(BaseModel):
    """One match and the hub's current odds for it (decimal odds)."""

    model_config = _MODEL_CONFIG

    game_id: ShortText
    team_a: ShortText
    team_b: ShortText
    sport: ShortText
    league: ShortText
    event_start_date: UtcDatetime
    active: bool = True
    outcome: Outcome = Outcome.UNFINISHED
    team_a_odds: FiniteFloat
    team_b_odds: FiniteFloat
    tie_odds: FiniteFloat | None = None
    can_tie: bool = False
    last_update_date: UtcDatetime = Field(default_factory=utc_now)

    def odds_for(self, outcome: int) -> float | None:
        """Decimal odds the hub currently offers for ``outcome`` (None: no such market)."""
        if outcome == Outcome.TEAM_A:
            return self.team_a_odds
        if outcome == Outcome.TEAM_B:
            return self.team_b_odds
        if outcome == Outcome.TIE:
            return self.tie_odds
        return None

    @property
    def settled(self) -> bool:
        return self.outcome != Outcome.UNFINISHED

    def same_state(self, other: Game) -> bool:
        """Equal ignoring ``last_update_date`` (a re-post of unchanged odds is no change)."""
        return self.model_dump(exclude={"last_update_date"}) == other.model_dump(
            exclude={"last_update_date"}
        )


def parse_outcome(value: Any, team_a: str | None, team_b: str | None) -> Any:
    """Map an outcome given as a team name, "tie"/"draw" or digit string to 0/1/2.

    Anything unrecognised is returned unchanged so the integer check reports it.
    """
    if isinstance(value, str):
        text = value.strip()
        lowered = text.casefold()
        # Team names come from untrusted input too: only strings can match.
        if isinstance(team_a, str) and lowered == team_a.strip().casefold():
            return int(Outcome.TEAM_A)
        if isinstance(team_b, str) and lowered == team_b.strip().casefold():
            return int(Outcome.TEAM_B)
        if lowered in ("tie", "draw"):
            return int(Outcome.TIE)
        if text in ("0", "1", "2"):
            return int(text)
    return value


class Prediction(BaseModel):
    """A miner's prediction for one game. ``prediction_id`` is the idempotency key."""

    model_config = _MODEL_CONFIG

    prediction_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    game_id: ShortText
    miner_uid: int | None = None
    prediction_date: UtcDatetime = Field(default_factory=utc_now)
    predicted_outcome: int
    predicted_odds: FiniteFloat
    team_a: ShortText
    team_b: ShortText
    wager: FiniteFloat
    team_a_odds: FiniteFloat
    team_b_odds: FiniteFloat
    tie_odds: FiniteFloat | None = None
    model_name: Annotated[str, Field(max_length=200)] | None = None
    confidence_score: FiniteFloat | None = None

    @model_validator(mode="before")
    @classmethod
    def _outcome_names(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("predicted_outcome"), str):
            data = dict(data)
            data["predicted_outcome"] = parse_outcome(
                data["predicted_outcome"], data.get("team_a"), data.get("team_b")
            )
        return data

    @field_validator("prediction_id")
    @classmethod
    def _uuid(cls, value: str) -> str:
        try:
            return str(uuid.UUID(value))
        except (ValueError, AttributeError, TypeError):
            raise ValueError("prediction_id must be a UUID") from None

    @field_validator("predicted_outcome", mode="before")
    @classmethod
    def _no_bool_outcome(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("predicted_outcome must be 0, 1, 2 or a team name / 'tie'")
        return value

    @classmethod
    def for_game(cls, game: Game, outcome: int | str, wager: float, **fields: Any) -> Prediction:
        """A prediction on ``game`` at the game's current odds.

        ``outcome`` may be 0/1/2, a team name or "tie"; remaining Prediction fields
        (``confidence_score``, ``model_name``, ``miner_uid``...) pass through.
        """
        code = parse_outcome(outcome, game.team_a, game.team_b)
        odds = game.odds_for(code) if isinstance(code, int) else None
        return cls(
            game_id=game.game_id,
            predicted_outcome=code,
            predicted_odds=odds if odds is not None else 0.0,
            team_a=game.team_a,
            team_b=game.team_b,
            wager=wager,
            team_a_odds=game.team_a_odds,
            team_b_odds=game.team_b_odds,
            tie_odds=game.tie_odds,
            **fields,
        )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict that is sent and signed (``model_dump(mode="json")``)."""
        return self.model_dump(mode="json")
