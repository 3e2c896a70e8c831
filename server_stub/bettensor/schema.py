"""The Bettensor validator's database as the hub sees it: its tables, the window of
games it offers, and the mapping of its rows to and from bt-ws/1 (pure: no I/O).

Facts this module encodes (Nickel5-Inc/bettensor, ``main``):

- ``game_data`` is upserted by the validator from its sports API every few minutes;
  ``external_id`` (INTEGER) is the id miners know a game by, as a string. Dates are
  text in two forms: ``2025-01-05 18:00:00+00:00`` (Python's sqlite adapter, current
  ``main``, sometimes with ``.123456``) and ``2025-01-05T18:00:00+00:00`` (older rows).
- The validator offers the games whose start is within [now - 4 days, now + 8 days].
- Its own intake inserts a prediction with ``prediction_date`` = its receive time as
  ``datetime.now(timezone.utc).isoformat()``, ``predicted_outcome`` 0/1/2, ``game_id``
  = the external id, ``outcome`` 3 and ``payout`` NULL (scoring settles rows whose
  payout is NULL), and caps each miner UID at 1000 wagered per UTC day of
  ``prediction_date`` over every row of that UID.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sdk.models import Game, Outcome, Prediction, as_utc

__all__ = [
    "DAILY_TOTAL_SQL",
    "GAME_COLUMNS",
    "HUB_INDEXES",
    "INSERT_PREDICTION_SQL",
    "OFFERED_AFTER",
    "OFFERED_BEFORE",
    "OFFERED_GAMES_SQL",
    "VALIDATOR_SCHEMA",
    "game_from_row",
    "offered_window",
    "parse_db_time",
    "prediction_date",
    "prediction_row",
    "received_at_ns_of",
]

VALIDATOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    prediction_id TEXT PRIMARY KEY, game_id INTEGER, miner_uid INTEGER, prediction_date TEXT,
    predicted_outcome INTEGER, predicted_odds REAL, team_a TEXT, team_b TEXT, wager REAL,
    team_a_odds REAL, team_b_odds REAL, tie_odds REAL, model_name TEXT,
    confidence_score REAL, outcome INTEGER, payout REAL, sent_to_site INTEGER DEFAULT 0,
    validators_sent_to INTEGER DEFAULT 0, validators_confirmed INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS game_data (
    game_id TEXT PRIMARY KEY UNIQUE, external_id INTEGER UNIQUE, team_a TEXT, team_b TEXT,
    team_a_odds REAL, team_b_odds REAL, tie_odds REAL, can_tie BOOLEAN,
    event_start_date TEXT, create_date TEXT, last_update_date TEXT, sport TEXT,
    league TEXT, outcome INTEGER DEFAULT 3, active INTEGER);
"""
"""The two tables as the validator creates them (``database_init.py``): for tests and
for a hub started before its validator ever ran. The hub itself never creates them."""

OFFERED_AFTER = timedelta(days=4)
OFFERED_BEFORE = timedelta(days=8)

GAME_COLUMNS = ("external_id", "team_a", "team_b", "team_a_odds", "team_b_odds", "tie_odds",
                "can_tie", "event_start_date", "last_update_date", "create_date", "sport",
                "league", "outcome", "active")

# julianday() reads both date forms (and any offset), so the window is exact whatever
# form a row was written in; a plain text comparison would not be.
OFFERED_GAMES_SQL = (
    f"SELECT {', '.join(GAME_COLUMNS)} FROM game_data "
    "WHERE julianday(event_start_date) BETWEEN julianday(?) AND julianday(?) "
    "ORDER BY event_start_date, external_id")

INSERT_PREDICTION_SQL = (
    "INSERT INTO predictions (prediction_id, game_id, miner_uid, prediction_date, "
    "predicted_outcome, predicted_odds, team_a, team_b, wager, team_a_odds, team_b_odds, "
    "tie_odds, outcome, model_name, confidence_score) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
"""The validator's own INSERT (``miner_data.insert_predictions``): ``payout`` stays
NULL and the ``sent_to_site``/``validators_*`` columns take their defaults."""

HUB_INDEXES = """
CREATE INDEX IF NOT EXISTS bt_ws_predictions_by_uid ON predictions (miner_uid);
CREATE INDEX IF NOT EXISTS bt_ws_predictions_by_date ON predictions (prediction_date);
"""
"""Indexes the hub may add (``--bettensor-indexes``): the validator's tables have none,
so its ``delete_old_predictions`` trigger (after every insert) and the daily-limit sum
(before every insert, the validator's and the hub's) each scan the whole
``predictions`` table; with these, both read only the rows they need. Additive: they
change no row and no query's result."""

DAILY_TOTAL_SQL = ("SELECT COALESCE(SUM(wager), 0) FROM predictions "
                   "WHERE miner_uid = ? AND DATE(prediction_date) = ?")
"""What the miner UID has wagered on a UTC day (``YYYY-MM-DD``), every path counted."""

_OUTCOME_NAMES = {"teamawin": Outcome.TEAM_A, "teambwin": Outcome.TEAM_B,
                  "draw": Outcome.TIE, "tie": Outcome.TIE}


def offered_window(now: datetime) -> tuple[str, str]:
    """The bounds of the offered games (``now`` - 4 days, ``now`` + 8 days) as
    parameters of :data:`OFFERED_GAMES_SQL`."""
    return ((now - OFFERED_AFTER).isoformat(), (now + OFFERED_BEFORE).isoformat())


def parse_db_time(value: object) -> datetime | None:
    """A date as the validator stores it (either form, ``Z`` too; no offset = UTC);
    None for NULL. Raises ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_utc(value)
    if not isinstance(value, str):
        raise ValueError(f"not a date: {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return as_utc(datetime.fromisoformat(text))


def _outcome(value: object) -> Outcome:
    if value is None:
        return Outcome.UNFINISHED
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, 2, 3):
        return Outcome(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and int(text) in (0, 1, 2, 3):
            return Outcome(int(text))
        return _OUTCOME_NAMES.get(text.lower(), Outcome.UNFINISHED)
    raise ValueError(f"outcome {value!r} is not 0, 1, 2, 3 or a known name")


def game_from_row(row: Mapping[str, Any]) -> Game:
    """The bt-ws/1 game of one ``game_data`` row (``game_id`` = ``str(external_id)``).
    Raises ValueError (a pydantic ValidationError among them) for a row that is not a
    usable game."""
    if row["external_id"] is None:
        raise ValueError("external_id is NULL")
    start = parse_db_time(row["event_start_date"])
    if start is None:
        raise ValueError("event_start_date is NULL")
    updated = parse_db_time(row["last_update_date"]) or parse_db_time(row["create_date"])
    tie_odds = row["tie_odds"]
    can_tie = row["can_tie"]
    fields: dict[str, Any] = {
        "game_id": str(int(row["external_id"])),
        "team_a": row["team_a"], "team_b": row["team_b"],
        "sport": row["sport"], "league": row["league"],
        "event_start_date": start,
        "active": True if row["active"] is None else bool(row["active"]),
        "outcome": _outcome(row["outcome"]),
        "team_a_odds": row["team_a_odds"], "team_b_odds": row["team_b_odds"],
        "tie_odds": tie_odds,
        "can_tie": tie_odds is not None if can_tie is None else bool(can_tie),
    }
    if updated is not None:
        fields["last_update_date"] = updated
    return Game.model_validate(fields)


def prediction_date(received_at_ns: int) -> str:
    """The hub's receive time in the validator's form:
    ``datetime.now(timezone.utc).isoformat()`` (microseconds, omitted when zero)."""
    return (datetime(1970, 1, 1, tzinfo=UTC)
            + timedelta(microseconds=received_at_ns // 1000)).isoformat()


def received_at_ns_of(prediction_date_text: str) -> int:
    """The receive time of a stored row, in ns (microsecond precision)."""
    moment = parse_db_time(prediction_date_text)
    if moment is None:
        raise ValueError("prediction_date is NULL")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def prediction_row(prediction: Prediction, *, miner_uid: int,
                   received_at_ns: int) -> tuple[object, ...]:
    """The parameters of :data:`INSERT_PREDICTION_SQL` for an accepted prediction:
    what the validator's own intake writes for it."""
    return (prediction.prediction_id, int(prediction.game_id), miner_uid,
            prediction_date(received_at_ns), int(prediction.predicted_outcome),
            prediction.predicted_odds, prediction.team_a, prediction.team_b, prediction.wager,
            prediction.team_a_odds, prediction.team_b_odds, prediction.tie_odds,
            int(Outcome.UNFINISHED), prediction.model_name, prediction.confidence_score)
