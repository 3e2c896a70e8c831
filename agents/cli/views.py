"""Rich renderables of ``bt-miner``: the live game board, receipts, run summaries and
outbox status. Pure functions of their inputs (no I/O), so they are easy to test."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from sdk.models import Game, Outcome
from sdk.outbox import COUNTED_STATUSES

__all__ = [
    "GameBoard",
    "ReceiptRow",
    "describe_pick",
    "receipts_table",
    "short",
]

_MOVE_HIGHLIGHT_S = 3.0


def short(hotkey: str | None, keep: int = 6) -> str:
    if not hotkey:
        return "-"
    return hotkey if len(hotkey) <= 2 * keep + 1 else f"{hotkey[:keep]}…{hotkey[-4:]}"


def describe_pick(outcome: int | None, team_a: str | None, team_b: str | None) -> str:
    if outcome == Outcome.TEAM_A:
        return team_a or "team_a"
    if outcome == Outcome.TEAM_B:
        return team_b or "team_b"
    if outcome == Outcome.TIE:
        return "tie"
    return str(outcome)


def _until(start: datetime, now: datetime) -> str:
    seconds = int((start - now).total_seconds())
    if seconds <= 0:
        return "started"
    if seconds >= 3600:
        return f"in {seconds // 3600}h{seconds % 3600 // 60:02d}"
    return f"in {seconds // 60}:{seconds % 60:02d}"


def _result(game: Game) -> str:
    if game.outcome == Outcome.TIE:
        return "final: tie"
    return f"final: {describe_pick(int(game.outcome), game.team_a, game.team_b)} won"


class GameBoard:
    """The live table of games and odds; remembers the last odds of each game so a
    move shows as ▲/▼ for a few seconds."""

    def __init__(self) -> None:
        self._odds: dict[str, tuple[float, float, float | None]] = {}
        self._moves: dict[str, tuple[tuple[float, float, float | None], float]] = {}
        self.updates = 0

    def observe(self, games: Iterable[Game]) -> None:
        """Record the odds of ``games`` (call with every game update)."""
        now = time.monotonic()
        self.updates += 1
        for game in games:
            odds = (game.team_a_odds, game.team_b_odds, game.tie_odds)
            previous = self._odds.get(game.game_id)
            if previous is not None and previous != odds:
                self._moves[game.game_id] = (previous, now)
            self._odds[game.game_id] = odds

    def _cell(self, game_id: str, index: int, value: float | None) -> Text:
        if value is None:
            return Text("-", style="dim")
        text = f"{value:.2f}"
        move = self._moves.get(game_id)
        if move is not None and time.monotonic() - move[1] < _MOVE_HIGHLIGHT_S:
            before = move[0][index]
            if before is not None and value > before:
                return Text(f"{text} ▲", style="green")
            if before is not None and value < before:
                return Text(f"{text} ▼", style="red")
        return Text(f"{text}  ")

    def render(self, games: Mapping[str, Game], now: datetime, *,
               picks: Mapping[str, str] | None = None, limit: int = 12,
               title: str | None = None) -> Table:
        table = Table(title=title, title_justify="left", expand=False, pad_edge=False)
        table.add_column("game", no_wrap=True)
        table.add_column("league", no_wrap=True)
        table.add_column("match")
        table.add_column("kick-off", no_wrap=True)
        table.add_column("1", justify="right", no_wrap=True)
        table.add_column("X", justify="right", no_wrap=True)
        table.add_column("2", justify="right", no_wrap=True)
        table.add_column("state", no_wrap=True)
        if picks is not None:
            table.add_column("our pick")
        ordered = sorted(games.values(),
                         key=lambda g: (g.settled, g.event_start_date if not g.settled
                                        else datetime.max.replace(tzinfo=UTC), g.game_id))
        for game in ordered[:limit]:
            if game.settled:
                state = Text(_result(game), style="dim")
            elif not game.active:
                state = Text("inactive", style="dim")
            elif game.event_start_date <= now:
                state = Text("in play", style="yellow")
            else:
                state = Text("open", style="green")
            row: list[Any] = [
                game.game_id, game.league, f"{game.team_a} v {game.team_b}",
                _until(game.event_start_date, now) if not game.settled else "",
                self._cell(game.game_id, 0, game.team_a_odds),
                self._cell(game.game_id, 2, game.tie_odds if game.can_tie else None),
                self._cell(game.game_id, 1, game.team_b_odds), state]
            if picks is not None:
                row.append(picks.get(game.game_id, ""))
            table.add_row(*row)
        if len(ordered) > limit:
            table.caption = f"{len(ordered) - limit} more games not shown"
        return table


@dataclass(frozen=True, slots=True)
class ReceiptRow:
    """One prediction and the validator's signed answer."""

    at: datetime
    prediction_id: str
    game_id: str
    pick: str
    odds: float | None
    wager: float
    status: str
    code: str
    signature: str
    validator_hotkey: str


def _status_text(status: str, code: str) -> Text:
    if status == "accepted":
        return Text("accepted", style="green")
    if status == "duplicate":
        return Text("duplicate", style="yellow")
    if status == "pending":
        return Text("pending", style="cyan")
    return Text(f"rejected: {code}", style="red")


def receipts_table(rows: Sequence[ReceiptRow], *, limit: int = 10,
                   title: str | None = None) -> Table:
    """The latest ``limit`` receipts, newest first."""
    table = Table(title=title, title_justify="left", pad_edge=False)
    for name, justify in (("time", "left"), ("game", "left"), ("pick", "left"),
                          ("odds", "right"), ("wager", "right"), ("status", "left"),
                          ("validator signature", "left")):
        table.add_column(name, justify=justify, no_wrap=name != "pick")  # type: ignore[arg-type]
    for row in list(rows)[-limit:][::-1]:
        signature = (f"✓ {row.signature[:10]}…{row.signature[-6:]}" if row.signature
                     else "-")
        table.add_row(row.at.strftime("%H:%M:%S"), row.game_id, row.pick,
                      f"{row.odds:.2f}" if row.odds is not None else "-",
                      f"{row.wager:.2f}", _status_text(row.status, row.code), signature)
    return table


def counts_line(stats: Any) -> str:
    """``N submitted, N accepted, N duplicate, N rejected (code=n, ...), N unconfirmed``."""
    rejected: Counter[str] = stats.rejected
    by_code = ", ".join(f"{code}={n}" for code, n in sorted(rejected.items()))
    return (f"{stats.submitted} submitted, {stats.accepted} accepted, "
            f"{stats.duplicate} duplicate, {sum(rejected.values())} rejected"
            + (f" ({by_code})" if by_code else "")
            + f", {stats.unconfirmed} unconfirmed")


def per_game_table(entries: Sequence[Any], games: Mapping[str, Game]) -> Table:
    """One row per game from outbox entries: pick, odds, wager accepted, statuses."""
    table = Table(title="per game", title_justify="left", pad_edge=False)
    for name, justify in (("game", "left"), ("match", "left"), ("pick", "left"),
                          ("odds", "right"), ("wagered", "right"), ("predictions", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    by_game: dict[str, list[Any]] = {}
    for entry in entries:
        by_game.setdefault(entry.game_id, []).append(entry)
    for game_id, items in by_game.items():
        last = items[-1]
        prediction = last.prediction
        outcome = prediction.get("predicted_outcome")
        team_a, team_b = prediction.get("team_a"), prediction.get("team_b")
        wagered = sum(e.wager for e in items if e.status in COUNTED_STATUSES)
        statuses = Counter(e.status if e.status != "rejected" else f"rejected:{e.code}"
                           for e in items)
        game = games.get(game_id)
        match = f"{team_a} v {team_b}"
        if game is not None and game.settled:
            match += f" ({_result(game)})"
        table.add_row(game_id, match, describe_pick(outcome, team_a, team_b),
                      f"{prediction.get('predicted_odds', 0):.2f}", f"{wagered:.2f}",
                      ", ".join(f"{s}" + (f" x{n}" if n > 1 else "")
                                for s, n in statuses.items()))
    return table


def summary(stats: Any, *, elapsed_s: float, entries: Sequence[Any],
            games: Mapping[str, Game], budgets: Mapping[str, tuple[str, float, float]],
            pending: int) -> Group:
    """The end-of-run summary: counts, rejections by code, wagered today per validator
    (``budgets``: validator -> (hub UTC day, wagered, daily limit)), per game."""
    lines: list[Any] = [
        Text(f"summary: agent {stats.agent}, {elapsed_s:.1f} s, "
             f"{len(stats.validators)} validator(s)", style="bold"),
        Text(f"predictions: {counts_line(stats)}"),
    ]
    skipped = stats.skipped
    if skipped:
        lines.append(Text("skipped picks: " + ", ".join(
            f"{reason}={n}" for reason, n in sorted(skipped.items()))))
    for hotkey, (day, wagered, limit) in sorted(budgets.items()):
        lines.append(Text(f"wagered today ({day}, hub UTC day) with {short(hotkey)}: "
                          f"{wagered:.2f} of {limit:g}"))
    if pending:
        lines.append(Text(f"{pending} prediction(s) still pending in the outbox: resent "
                          "at the next start", style="yellow"))
    if entries:
        lines.append(per_game_table(entries, games))
    return Group(*lines)
