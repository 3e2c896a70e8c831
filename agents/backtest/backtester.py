"""``backtest``: load a recording or a football-data.co.uk CSV, replay it to each agent
through the real runner, and report (:mod:`.results`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base import Agent
from .footballdata import decode_csv, match_events, parse_matches
from .recording import RecordedUpdate, RecordingError, parse_lines
from .replay import replay_agent
from .results import AgentReport, game_facts, report_agents

__all__ = ["BACKTEST_FORMAT", "Backtest", "ReplayData", "backtest", "load_data"]

BACKTEST_FORMAT = "bt-miner-backtest/1"


@dataclass(frozen=True, slots=True)
class ReplayData:
    """A stream to replay: its updates in time order and where they came from."""

    kind: str  # "recording" or "csv"
    source: str
    events: list[RecordedUpdate]
    skipped_rows: int = 0

    @property
    def games(self) -> int:
        return len({g.game_id for e in self.events for g in e.update.games})


def load_data(path: str | Path) -> ReplayData:
    """A recording (JSON lines) or a football-data.co.uk CSV, told apart by content.
    Raises :class:`RecordingError` (a ValueError) for a file that is neither."""
    path = Path(path)
    raw = path.read_bytes()
    text = decode_csv(raw)
    if text.lstrip().startswith("{"):
        end = raw.rfind(b"\n") + 1
        events = list(parse_lines(raw[:end].decode("utf-8").splitlines(), source=str(path)))
        events.sort(key=lambda e: e.hub_time)  # stable: file order within one instant
        return ReplayData("recording", str(path), events)
    header = text.splitlines()[0] if text.strip() else ""
    if not {"Date", "HomeTeam", "AwayTeam"} <= set(header.replace('"', "").split(",")):
        raise RecordingError(f"{path}: neither a recording (JSON lines) nor a "
                             "football-data.co.uk CSV (Div, Date, Time, HomeTeam, ...)")
    found = parse_matches(text)
    return ReplayData("csv", str(path), match_events(found.matches), found.skipped)


@dataclass
class Backtest:
    data: ReplayData
    reports: list[AgentReport] = field(default_factory=list)
    options: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Everything, deterministic for the same input (no wall-clock values)."""
        events = self.data.events
        return {
            "format": BACKTEST_FORMAT,
            "data": {"kind": self.data.kind, "source": self.data.source,
                     "games": self.data.games, "updates": len(events),
                     "skipped_rows": self.data.skipped_rows,
                     "start": events[0].hub_time.isoformat() if events else None,
                     "end": events[-1].hub_time.isoformat() if events else None},
            "agents": [{**report.to_json(), "options": options}
                       for report, options in zip(self.reports, self.options, strict=True)],
        }


async def backtest(agents: Sequence[Agent], data: ReplayData, *, seed: int = 0,
                   daily_budget: float | None = None,
                   options: Sequence[dict[str, Any]] | None = None) -> Backtest:
    """Replay ``data`` to each agent in turn (each with its own replay hub and a seeded
    id source) and score them together."""
    runs = [await replay_agent(agent, data.events, seed=f"{seed}/{uid}/{agent.name}",
                               daily_budget=daily_budget)
            for uid, agent in enumerate(agents)]
    reports = report_agents(runs, game_facts(data.events))
    return Backtest(data, reports, [dict(o) for o in (options or [{} for _ in agents])])
