"""What a replay's predictions earned and how the validator would have scored them.

Pure functions over the replay's output (:class:`~agents.backtest.replay.ReplayRun`)
and the stream that was replayed: settlement (Bettensor's rule: ``payout = wager x
predicted_odds`` when the predicted outcome is the game's outcome, else 0), the money
figures, and the validator's daily scores computed with :mod:`agents.scoring` (never
re-implemented here).

How the scoring is applied: the agents of one backtest are scored together as the
miners of one validator (uid = their position on the command line), so the entropy
score is relative to the other agents of the run (an agent alone scores 0 entropy).
Day D scores the games that kicked off in upstream's window (the 48 h up to D
23:59:59 UTC, :func:`~agents.scoring.upstream_scoring_window`) and had an outcome by
its end; a game's closing odds are its last odds published before kick-off. Tier
scores and tier requirements are those of the last day of the replay, over daily
composites and daily wagers (by acceptance day) of the replay's days.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sdk.models import Outcome

from .. import scoring
from .recording import RecordedUpdate
from .replay import ReplayRun

__all__ = ["AgentReport", "DayRow", "GameFacts", "PredictionRow", "game_facts",
           "max_drawdown", "report_agents"]


@dataclass(frozen=True, slots=True)
class GameFacts:
    """What the whole stream says about one game (known only after the replay)."""

    game_id: str
    kickoff: datetime
    outcome: int | None = None
    settled_at: datetime | None = None
    closing: tuple[float, float, float] | None = None
    """team_a, team_b, tie (0 without a tie market): the last odds before kick-off."""

    def closing_for(self, outcome: int) -> float | None:
        if self.closing is None or outcome not in (0, 1, 2):
            return None
        value = self.closing[outcome]
        return value if value > 0 else None


def game_facts(events: Sequence[RecordedUpdate]) -> dict[str, GameFacts]:
    """Kick-off, closing odds and outcome of every game in ``events``."""
    facts: dict[str, GameFacts] = {}
    for event in events:
        for game in event.update.games:
            known = facts.get(game.game_id)
            closing = known.closing if known is not None else None
            if event.hub_time < game.event_start_date or closing is None:
                closing = (game.team_a_odds, game.team_b_odds, game.tie_odds or 0.0)
            outcome, settled_at = (known.outcome, known.settled_at) if known else (None, None)
            if settled_at is None and game.outcome != Outcome.UNFINISHED:
                outcome, settled_at = int(game.outcome), event.hub_time
            facts[game.game_id] = GameFacts(game.game_id, game.event_start_date, outcome,
                                            settled_at, closing)
    return facts


@dataclass(frozen=True, slots=True)
class PredictionRow:
    """One accepted prediction and what it returned (``payout`` None while unsettled)."""

    prediction_id: str
    game_id: str
    kickoff: str
    predicted_outcome: int
    predicted_odds: float
    closing_odds: float | None
    wager: float
    outcome: int | None
    payout: float | None
    accepted_at: str


@dataclass(frozen=True, slots=True)
class DayRow:
    """One UTC day: what was placed and settled, and the validator's scores."""

    day: str
    predictions: int
    wagered: float
    settled: int
    payout: float
    profit: float
    cumulative_profit: float
    scored_predictions: int
    clv: float
    roi: float
    risk_score: float
    entropy: float
    composite: float


@dataclass
class AgentReport:
    """Everything ``bt-miner backtest`` shows for one agent."""

    agent: str
    uid: int
    predictions: int
    wagered: float
    settled: int
    payout: float
    profit: float
    open_wager: float
    roi: float
    clv: float
    risk_score: float
    hit_rate: float | None
    max_drawdown: float
    tier_scores: list[float]
    tiers_met: list[int]
    rejected: dict[str, int]
    skipped: dict[str, int]
    agent_errors: int
    rows: list[PredictionRow] = field(default_factory=list)
    days: list[DayRow] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The figures without the per-prediction and per-day rows."""
        data = asdict(self)
        del data["rows"], data["days"]
        return data

    def to_json(self) -> dict[str, Any]:
        data = self.summary()
        data["predictions_rows"] = [asdict(row) for row in self.rows]
        data["days"] = [asdict(row) for row in self.days]
        finite: dict[str, Any] = _finite(data)
        return finite


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: those become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def max_drawdown(profits: Sequence[float]) -> float:
    """The largest fall of the cumulative sum of ``profits`` from an earlier peak
    (the start, 0, counts as a peak); 0 when it never falls."""
    peak = total = worst = 0.0
    for profit in profits:
        total += profit
        peak = max(peak, total)
        worst = max(worst, peak - total)
    return worst


def _payout(row_outcome: int, predicted: int, odds: float, wager: float) -> float:
    return wager * odds if row_outcome == predicted else 0.0


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def report_agents(runs: Sequence[ReplayRun], facts: Mapping[str, GameFacts]
                  ) -> list[AgentReport]:
    """One :class:`AgentReport` per run (uid = position), scored together."""
    order = sorted(facts.values(), key=lambda f: (f.kickoff, f.game_id))
    game_number = {f.game_id: n for n, f in enumerate(order)}
    rows_by_uid: list[list[PredictionRow]] = []
    scored: list[tuple[datetime, int, int, scoring.ScoredPrediction, datetime | None]] = []
    for uid, run in enumerate(runs):
        rows: list[PredictionRow] = []
        for index, accepted in enumerate(run.accepted):
            p = accepted.prediction
            fact = facts.get(p.game_id)
            outcome = fact.outcome if fact is not None else None
            payout = (None if outcome is None
                      else _payout(outcome, p.predicted_outcome, p.predicted_odds, p.wager))
            rows.append(PredictionRow(
                prediction_id=p.prediction_id, game_id=p.game_id,
                kickoff=fact.kickoff.isoformat() if fact else "",
                predicted_outcome=p.predicted_outcome, predicted_odds=p.predicted_odds,
                closing_odds=fact.closing_for(p.predicted_outcome) if fact else None,
                wager=p.wager, outcome=outcome, payout=payout,
                accepted_at=accepted.accepted_at.isoformat()))
            if fact is not None:
                scored.append((accepted.accepted_at, uid, index, scoring.ScoredPrediction(
                    uid=uid, game=game_number[p.game_id], predicted_outcome=p.predicted_outcome,
                    predicted_odds=p.predicted_odds, wager=p.wager, time=accepted.accepted_at,
                    payout=payout or 0.0, settled=outcome is not None), fact.settled_at))
        rows_by_uid.append(rows)
    scored.sort(key=lambda item: item[:3])
    daily = _daily_scores(scored, order, len(runs))
    reports = []
    for uid, run in enumerate(runs):
        reports.append(_report(uid, run, rows_by_uid[uid],
                               [s for _, u, _, s, _ in scored if u == uid], facts,
                               game_number, daily))
    return reports


@dataclass
class _Daily:
    days: list[date]
    scores: dict[int, list[scoring.DailyScore | None]]
    counts: dict[int, list[int]]


def _daily_scores(scored: list[tuple[datetime, int, int, scoring.ScoredPrediction,
                                     datetime | None]],
                  order: list[GameFacts], agents: int) -> _Daily:
    if not scored:
        return _Daily([], {}, {})
    everything = [item[3] for item in scored]
    contributions = scoring.entropy_contributions(everything)
    settled_at = {item[3].game: item[4] for item in scored}
    first = min(item[0] for item in scored).date()
    last = max([item[0] for item in scored]
               + [s for s in settled_at.values() if s is not None]).date()
    days = _days(first, last)
    scores: dict[int, list[scoring.DailyScore | None]] = {uid: [] for uid in range(agents)}
    counts: dict[int, list[int]] = {uid: [] for uid in range(agents)}
    closing_rows = {
        n: scoring.ClosingOdds(n, *(f.closing or (0.0, 0.0, 0.0))) for n, f in enumerate(order)}
    kickoffs = {n: f.kickoff for n, f in enumerate(order)}
    for day in days:
        start, end = scoring.upstream_scoring_window(day)
        closed = {game for game, when in settled_at.items()
                  if when is not None and when <= end and start <= kickoffs[game] <= end}
        day_predictions = [p for p in everything if p.game in closed]
        closed_games = [closing_rows[n] for n in sorted(closed)]
        entropy = scoring.daily_entropy(everything, contributions, closed)
        result = scoring.score_day(day_predictions, closed_games, entropy) if closed else {}
        for uid in range(agents):
            scores[uid].append(result.get(uid))
            counts[uid].append(sum(1 for p in day_predictions if p.uid == uid))
    return _Daily(days, scores, counts)


def _report(uid: int, run: ReplayRun, rows: list[PredictionRow],
            mine: list[scoring.ScoredPrediction], facts: Mapping[str, GameFacts],
            game_number: Mapping[str, int], daily: _Daily) -> AgentReport:
    settled_rows = [r for r in rows if r.payout is not None]
    wagered = sum((r.wager for r in rows), 0.0)
    payout = sum((r.payout or 0.0 for r in settled_rows), 0.0)
    profit = sum(((r.payout or 0.0) - r.wager for r in settled_rows), 0.0)

    def settle_key(row: PredictionRow) -> tuple[datetime, str, str]:
        fact = facts[row.game_id]
        assert fact.settled_at is not None
        return fact.settled_at, row.game_id, row.prediction_id

    in_settle_order = sorted(settled_rows, key=settle_key)
    closing = {game_number[gid]: scoring.ClosingOdds(game_number[gid],
                                                     *(f.closing or (0.0, 0.0, 0.0)))
               for gid, f in facts.items()}
    won = sum(1 for r in settled_rows if (r.payout or 0.0) > 0)

    placed: dict[date, list[PredictionRow]] = defaultdict(list)
    for row in rows:
        placed[datetime.fromisoformat(row.accepted_at).date()].append(row)
    settled_on: dict[date, list[PredictionRow]] = defaultdict(list)
    for row in settled_rows:
        when = facts[row.game_id].settled_at
        assert when is not None
        settled_on[when.date()].append(row)
    day_rows: list[DayRow] = []
    composites: list[float] = []
    day_wagers: list[float] = []
    cumulative = 0.0
    for index, day in enumerate(daily.days):
        score = daily.scores[uid][index]
        day_profit = sum(((r.payout or 0.0) - r.wager for r in settled_on[day]), 0.0)
        cumulative += day_profit
        composite = score.composite if score is not None else 0.0
        composites.append(composite)
        day_wagers.append(sum((r.wager for r in placed[day]), 0.0))
        day_rows.append(DayRow(
            day=day.isoformat(), predictions=len(placed[day]), wagered=day_wagers[-1],
            settled=len(settled_on[day]),
            payout=sum((r.payout or 0.0 for r in settled_on[day]), 0.0),
            profit=day_profit, cumulative_profit=cumulative,
            scored_predictions=daily.counts[uid][index],
            clv=score.clv if score else 0.0, roi=score.roi if score else 0.0,
            risk_score=score.risk if score else 0.0, entropy=score.entropy if score else 0.0,
            composite=composite))
    met = scoring.tier_requirements_met(day_wagers) if day_wagers else (True,) + (False,) * 4
    stats = run.stats.validators.get(next(iter(run.stats.validators), ""), None)
    return AgentReport(
        agent=run.agent, uid=uid, predictions=len(rows), wagered=wagered,
        settled=len(settled_rows), payout=payout, profit=profit,
        open_wager=sum((r.wager for r in rows if r.payout is None), 0.0),
        roi=scoring.roi(mine), clv=scoring.clv(mine, closing),
        risk_score=scoring.risk_score(mine),
        hit_rate=won / len(settled_rows) if settled_rows else None,
        max_drawdown=max_drawdown([(r.payout or 0.0) - r.wager for r in in_settle_order]),
        tier_scores=list(scoring.tier_scores(composites)) if composites else [0.0] * 5,
        tiers_met=[n + 1 for n, ok in enumerate(met) if ok],
        rejected=dict(sorted(run.rejected.items())),
        skipped=dict(sorted(stats.skipped.items())) if stats is not None else {},
        agent_errors=stats.agent_errors if stats is not None else 0,
        rows=rows, days=day_rows)
