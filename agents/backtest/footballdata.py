"""Historical results and odds in the football-data.co.uk CSV format, as a replay.

The columns used: ``Div`` (league code), ``Date`` (``dd/mm/yy`` or ``dd/mm/yyyy``),
``Time`` (``HH:MM``, taken as UTC; 15:00 when absent), ``HomeTeam``, ``AwayTeam``,
``FTR`` (``H``/``D``/``A``; empty for a match not played yet). Opening odds come from
``B365H/B365D/B365A``, else ``PSH/PSD/PSA``, else ``AvgH/AvgD/AvgA``; closing odds from
``B365CH/B365CD/B365CA``, else ``PSCH/PSCD/PSCA``, else ``AvgCH/AvgCD/AvgCA`` (the
opening odds when no closing set is present). A row without any complete set of
opening or closing odds (three prices above 1) is skipped and counted.

Each match becomes a soccer :class:`~sdk.models.Game` (``team_a`` home, ``team_b``
away, ties allowed) that the replay publishes with its opening odds
:data:`PUBLISH_BEFORE` before kick-off, moves to its closing odds
:data:`CLOSE_BEFORE` before kick-off and settles (outcome known, inactive)
:data:`SETTLE_AFTER` kick-off. Pure: text in, values out.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sdk.frames import GameUpdate
from sdk.models import Game, Outcome

from .recording import RecordedUpdate

__all__ = ["CLOSE_BEFORE", "PUBLISH_BEFORE", "SETTLE_AFTER", "CsvMatches", "Match",
           "match_events", "parse_matches"]

PUBLISH_BEFORE = timedelta(hours=48)
CLOSE_BEFORE = timedelta(minutes=10)
SETTLE_AFTER = timedelta(hours=2)
CSV_EPOCH = "football-data"

_OPENING = (("B365H", "B365D", "B365A"), ("PSH", "PSD", "PSA"), ("AvgH", "AvgD", "AvgA"))
_CLOSING = (("B365CH", "B365CD", "B365CA"), ("PSCH", "PSCD", "PSCA"),
            ("AvgCH", "AvgCD", "AvgCA"))
_RESULTS = {"H": Outcome.TEAM_A, "A": Outcome.TEAM_B, "D": Outcome.TIE}
Odds = tuple[float, float, float]  # home, draw, away


@dataclass(frozen=True, slots=True)
class Match:
    """One CSV row: who, when, the odds and the result (UNFINISHED when not played)."""

    league: str
    kickoff: datetime
    home: str
    away: str
    opening: Odds
    closing: Odds
    result: Outcome

    @property
    def game_id(self) -> str:
        return f"{self.league}-{self.kickoff:%Y%m%d%H%M}-{self.home}-{self.away}"[:200]

    def game(self, odds: Odds, at: datetime, *, settled: bool = False) -> Game:
        home, draw, away = odds
        outcome = self.result if settled else Outcome.UNFINISHED
        return Game(game_id=self.game_id, team_a=self.home, team_b=self.away, sport="soccer",
                    league=self.league, event_start_date=self.kickoff,
                    active=outcome == Outcome.UNFINISHED, outcome=outcome,
                    team_a_odds=home, team_b_odds=away, tie_odds=draw, can_tie=True,
                    last_update_date=at)


@dataclass(frozen=True, slots=True)
class CsvMatches:
    matches: list[Match]
    skipped: int
    """Rows without odds (or without a readable date or teams)."""


def _odds(row: dict[str, str], columns: tuple[tuple[str, str, str], ...]) -> Odds | None:
    for names in columns:
        try:
            prices = tuple(float((row.get(name) or "").strip()) for name in names)
        except ValueError:
            continue
        if all(price > 1.0 for price in prices):
            return prices[0], prices[1], prices[2]
    return None


def _kickoff(date_text: str, time_text: str) -> datetime | None:
    date_text = date_text.strip()
    time_text = time_text.strip() or "15:00"
    for pattern in ("%d/%m/%Y %H:%M", "%d/%m/%y %H:%M"):
        try:
            return datetime.strptime(f"{date_text} {time_text}", pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def decode_csv(raw: bytes) -> str:
    """The text of a CSV file (UTF-8 with or without BOM; older files are Windows-1252)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252")


def parse_matches(text: str) -> CsvMatches:
    """The matches of a football-data.co.uk CSV, in file order, and the rows skipped."""
    matches: list[Match] = []
    skipped = 0
    for row in csv.DictReader(io.StringIO(text)):
        if not any((value or "").strip() for value in row.values() if isinstance(value, str)):
            continue  # the blank lines some files end with
        kickoff = _kickoff(row.get("Date") or "", row.get("Time") or "")
        home, away = (row.get("HomeTeam") or "").strip(), (row.get("AwayTeam") or "").strip()
        opening = _odds(row, _OPENING)
        closing = _odds(row, _CLOSING)
        if kickoff is None or not home or not away or (opening or closing) is None:
            skipped += 1
            continue
        opening = opening or closing
        assert opening is not None
        result = _RESULTS.get((row.get("FTR") or "").strip().upper(), Outcome.UNFINISHED)
        matches.append(Match(league=(row.get("Div") or "").strip() or "football-data",
                             kickoff=kickoff, home=home, away=away, opening=opening,
                             closing=closing or opening, result=result))
    return CsvMatches(matches, skipped)


def match_events(matches: list[Match]) -> list[RecordedUpdate]:
    """The stream a hub would have sent for ``matches``: one ``game_update`` per instant
    at which something changes (publication, closing odds, settlement), in time order;
    the first is a snapshot."""
    changes: dict[datetime, dict[str, Game]] = defaultdict(dict)
    for match in sorted(matches, key=lambda m: (m.kickoff, m.game_id)):
        published = match.kickoff - PUBLISH_BEFORE
        closing_at = match.kickoff - CLOSE_BEFORE
        settled_at = match.kickoff + SETTLE_AFTER
        changes[published][match.game_id] = match.game(match.opening, published)
        changes[closing_at][match.game_id] = match.game(match.closing, closing_at)
        if match.result != Outcome.UNFINISHED:
            changes[settled_at][match.game_id] = match.game(match.closing, settled_at,
                                                            settled=True)
    events: list[RecordedUpdate] = []
    for seq, at in enumerate(sorted(changes), 1):
        games = [changes[at][game_id] for game_id in sorted(changes[at])]
        events.append(RecordedUpdate(at, GameUpdate(epoch=CSV_EPOCH, seq=seq, prev_seq=seq - 1,
                                                    games=games, snapshot=seq == 1)))
    return events
