"""The built-in game simulator: realistic fixtures for development, demos and tests.

Pure logic: no sockets, no asyncio, no clock reads. The hub owns the clock and calls
:meth:`GameSimulator.step` with its own ``now``.

Simulator model
---------------
Every fixture has an underlying two-way strength probability ``p`` (team_a beats
team_b, ignoring draws), derived from seeded team ratings plus home advantage.
Soccer leagues turn ``p`` into home / draw / away probabilities with a draw rate
that shrinks as the match becomes lopsided; baseball and American football have
no tie market. Decimal odds are ``1 / (probability * (1 + margin))`` with a
per-fixture bookmaker margin of 4.5-7.5 %, rounded to 2 decimals.

Before kick-off ``p`` takes a Gaussian random walk with standard deviation
``drift * sqrt(minutes elapsed)`` (about ``drift`` per simulated minute). From
kick-off the odds freeze (the hub rejects predictions from ``event_start_date``
on); ``match_duration`` after kick-off the result is drawn from the frozen
probabilities, the game becomes ``active=False`` and a replacement fixture is
scheduled, so the number of unsettled fixtures stays at ``games``. Settled games
stay in the table for :data:`sdk.tracker.SETTLED_RETENTION` (the retention hub and
client apply) and are then dropped.

Each fixture has its own ``random.Random`` seeded from ``(seed, fixture number)``,
so identical ``seed`` and identical ``step`` times give identical output.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sdk.models import Game, Outcome, as_utc
from sdk.tracker import SETTLED_RETENTION

__all__ = ["LEAGUES", "GameSimulator", "League"]

_MARGIN_RANGE = (0.045, 0.075)


@dataclass(frozen=True, slots=True)
class League:
    """A league the simulator draws fixtures from."""

    sport: str
    name: str
    #: team names, roughly strongest first (the order sets a prior on the seeded ratings)
    teams: tuple[str, ...]
    can_tie: bool
    #: logistic scale applied to the rating difference (bigger: more lopsided odds)
    spread: float
    #: logit bonus of the home side (team_a)
    home_advantage: float
    #: bounds of the two-way strength probability (keeps odds sane while drifting)
    p_min: float
    p_max: float
    #: relative frequency of this league among generated fixtures
    weight: float = 1.0


LEAGUES: tuple[League, ...] = (
    League(
        sport="soccer",
        name="EPL",
        teams=(
            "Manchester City",
            "Arsenal",
            "Liverpool",
            "Chelsea",
            "Newcastle United",
            "Tottenham Hotspur",
            "Aston Villa",
            "Manchester United",
            "Brighton & Hove Albion",
            "West Ham United",
            "Nottingham Forest",
            "Brentford",
            "Fulham",
            "Crystal Palace",
            "Bournemouth",
            "Wolverhampton Wanderers",
            "Everton",
        ),
        can_tie=True,
        spread=0.9,
        home_advantage=0.25,
        p_min=0.10,
        p_max=0.90,
    ),
    League(
        sport="soccer",
        name="La Liga",
        teams=(
            "Real Madrid",
            "Barcelona",
            "Atlético Madrid",
            "Athletic Club",
            "Real Sociedad",
            "Villarreal",
            "Girona",
            "Real Betis",
            "Sevilla",
            "Valencia",
            "Osasuna",
            "Celta Vigo",
            "Rayo Vallecano",
            "Mallorca",
            "Getafe",
        ),
        can_tie=True,
        spread=0.9,
        home_advantage=0.25,
        p_min=0.10,
        p_max=0.90,
    ),
    League(
        sport="baseball",
        name="MLB",
        teams=(
            "Los Angeles Dodgers",
            "Philadelphia Phillies",
            "New York Yankees",
            "Atlanta Braves",
            "Houston Astros",
            "Baltimore Orioles",
            "Milwaukee Brewers",
            "Seattle Mariners",
            "San Diego Padres",
            "New York Mets",
            "Cleveland Guardians",
            "Texas Rangers",
            "Boston Red Sox",
            "Toronto Blue Jays",
            "St. Louis Cardinals",
            "Chicago Cubs",
        ),
        can_tie=False,
        spread=0.35,
        home_advantage=0.08,
        p_min=0.25,
        p_max=0.75,
    ),
    League(
        sport="football",
        name="NFL",
        teams=(
            "Kansas City Chiefs",
            "San Francisco 49ers",
            "Baltimore Ravens",
            "Philadelphia Eagles",
            "Detroit Lions",
            "Buffalo Bills",
            "Cincinnati Bengals",
            "Dallas Cowboys",
            "Green Bay Packers",
            "Miami Dolphins",
            "Los Angeles Rams",
            "Pittsburgh Steelers",
            "Minnesota Vikings",
            "Seattle Seahawks",
            "Tampa Bay Buccaneers",
            "New York Giants",
        ),
        can_tie=False,
        spread=0.8,
        home_advantage=0.15,
        p_min=0.10,
        p_max=0.90,
    ),
)




def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _draw_probability(p: float) -> float:
    """Soccer draw rate: ~28 % for an even match, ~18 % for a 90/10 one."""
    return 0.28 - 0.6 * (p - 0.5) ** 2


def _reflect(p: float, low: float, high: float) -> float:
    """Keep a random walk inside [low, high] by reflecting at the bounds."""
    width = high - low
    x = (p - low) % (2 * width)
    return low + (x if x <= width else 2 * width - x)


@dataclass(slots=True)
class _Fixture:
    number: int
    game_id: str
    league: League
    team_a: str
    team_b: str
    kickoff: datetime
    settle_at: datetime
    margin: float
    rng: random.Random
    p: float  # two-way strength probability of team_a
    odds: tuple[float, float, float | None]
    clock: datetime  # simulated time up to which p has drifted
    last_update: datetime
    outcome: Outcome = Outcome.UNFINISHED
    game: Game | None = None  # cached model of the current state

    def probabilities(self) -> tuple[float, float, float]:
        if self.league.can_tie:
            tie = _draw_probability(self.p)
            return (1.0 - tie) * self.p, (1.0 - tie) * (1.0 - self.p), tie
        return self.p, 1.0 - self.p, 0.0

    def quote(self) -> tuple[float, float, float | None]:
        pa, pb, pt = self.probabilities()
        scale = 1.0 + self.margin
        tie = round(1.0 / (pt * scale), 2) if self.league.can_tie else None
        return round(1.0 / (pa * scale), 2), round(1.0 / (pb * scale), 2), tie

    def to_game(self) -> Game:
        if self.game is None:
            self.game = Game(
                game_id=self.game_id,
                team_a=self.team_a,
                team_b=self.team_b,
                sport=self.league.sport,
                league=self.league.name,
                event_start_date=self.kickoff,
                active=self.outcome == Outcome.UNFINISHED,
                outcome=self.outcome,
                team_a_odds=self.odds[0],
                team_b_odds=self.odds[1],
                tie_odds=self.odds[2],
                can_tie=self.league.can_tie,
                last_update_date=self.last_update,
            )
        return self.game


def _require_datetime(value: datetime, name: str) -> datetime:
    """``value`` itself; a TypeError naming the argument when it is not a datetime
    (a date or a timestamp here would fail far from the mistake)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    return value


class GameSimulator:
    """Deterministic-with-seed simulator of realistic fixtures.

    ``initial_games()`` gives the ``games`` fixtures as of ``start``, all in the
    future, kicking off roughly every ``kickoff_spacing``. ``step(now)`` advances the
    simulation and returns only the games whose state changed: odds that moved (at
    2-decimal precision), settlements and the replacement fixtures they trigger.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        start: datetime,
        games: int = 12,
        kickoff_spacing: timedelta = timedelta(minutes=3),
        match_duration: timedelta = timedelta(minutes=5),
        drift: float = 0.03,
        leagues: Sequence[League] = LEAGUES,
        id_prefix: str | None = None,
    ) -> None:
        if games < 1:
            raise ValueError("games must be at least 1")
        if kickoff_spacing <= timedelta(0):
            raise ValueError("kickoff_spacing must be positive")
        if match_duration < timedelta(0):
            raise ValueError("match_duration must not be negative")
        if not (math.isfinite(drift) and drift >= 0):
            raise ValueError("drift must be a finite number >= 0")
        if not leagues:
            raise ValueError("leagues must not be empty")
        for league in leagues:
            if len(league.teams) < 2:
                raise ValueError(f"league {league.name!r} needs at least 2 teams")
        self.seed = seed
        self.id_prefix = id_prefix or f"sim-{seed}"
        self.start = as_utc(_require_datetime(start, "start"))
        self.target = games
        self.kickoff_spacing = kickoff_spacing
        self.match_duration = match_duration
        self.drift = drift
        self.leagues = tuple(leagues)
        self._now = self.start
        self._next_number = 0
        self._last_base: datetime | None = None
        # Seeded team ratings, stable for the lifetime of the simulator.
        # A prior from the team's position in the list (+1 strongest .. -1 weakest)
        # plus seeded noise, so favourites look plausible but each seed differs.
        rating_rng = random.Random(f"bettensor-sim:{seed}:ratings")
        self._ratings: dict[tuple[str, str], float] = {}
        for league in self.leagues:
            last = len(league.teams) - 1
            for rank, team in enumerate(league.teams):
                prior = 1.0 - 2.0 * rank / last
                self._ratings[(league.name, team)] = prior + rating_rng.gauss(0.0, 0.5)
        self._fixtures: dict[str, _Fixture] = {}
        for _ in range(games):
            self._add_fixture(self.start)
        self._initial = [f.to_game() for f in self._fixtures.values()]

    # ------------------------------------------------------------------ public API

    def initial_games(self) -> list[Game]:
        """The fixtures as they were at ``start`` (all kick off after ``start``)."""
        return list(self._initial)

    def games(self) -> list[Game]:
        """Every game currently held: unsettled fixtures and recently settled games."""
        return [f.to_game() for f in self._fixtures.values()]

    @property
    def now(self) -> datetime:
        """The simulated time of the latest ``step`` (``start`` before any)."""
        return self._now

    def step(self, now: datetime) -> list[Game]:
        """Advance to ``now``; return only the games whose state changed.

        A ``now`` earlier than the previous one returns ``[]`` and changes nothing.
        """
        now = as_utc(_require_datetime(now, "now"))
        if now < self._now:
            return []
        self._now = now
        changed: dict[str, _Fixture] = {}
        settled = 0
        for fixture in list(self._fixtures.values()):
            if fixture.outcome != Outcome.UNFINISHED:
                if now - fixture.settle_at > SETTLED_RETENTION:
                    del self._fixtures[fixture.game_id]
                continue
            if self._drift(fixture, now):
                changed[fixture.game_id] = fixture
            if now >= fixture.settle_at:
                self._settle(fixture)
                changed[fixture.game_id] = fixture
                settled += 1
        for _ in range(settled):
            fresh = self._add_fixture(now)
            changed[fresh.game_id] = fresh
        out: list[Game] = []
        for fixture in changed.values():
            fixture.last_update = now
            fixture.game = None
            out.append(fixture.to_game())
        return out

    # ------------------------------------------------------------------ internals

    def _drift(self, fixture: _Fixture, now: datetime) -> bool:
        """Random-walk ``p`` up to min(now, kick-off); True when the rounded odds moved."""
        until = min(now, fixture.kickoff)
        if until <= fixture.clock:
            return False
        minutes = (until - fixture.clock).total_seconds() / 60.0
        fixture.clock = until
        if self.drift == 0:
            return False
        step = fixture.rng.gauss(0.0, self.drift * math.sqrt(minutes))
        league = fixture.league
        fixture.p = _reflect(fixture.p + step, league.p_min, league.p_max)
        odds = fixture.quote()
        if odds == fixture.odds:
            return False
        fixture.odds = odds
        return True

    def _settle(self, fixture: _Fixture) -> None:
        pa, pb, _pt = fixture.probabilities()
        u = fixture.rng.random()
        if u < pa:
            fixture.outcome = Outcome.TEAM_A
        elif u < pa + pb or not fixture.league.can_tie:
            fixture.outcome = Outcome.TEAM_B
        else:
            fixture.outcome = Outcome.TIE

    def _busy_teams(self) -> set[tuple[str, str]]:
        return {
            (f.league.name, team)
            for f in self._fixtures.values()
            if f.outcome == Outcome.UNFINISHED
            for team in (f.team_a, f.team_b)
        }

    def _add_fixture(self, now: datetime) -> _Fixture:
        n = self._next_number
        self._next_number += 1
        rng = random.Random(f"bettensor-sim:{self.seed}:{n}")
        league = rng.choices(self.leagues, weights=[lg.weight for lg in self.leagues])[0]
        busy = self._busy_teams()
        free = [t for t in league.teams if (league.name, t) not in busy]
        pool = free if len(free) >= 2 else list(league.teams)
        team_a, team_b = rng.sample(pool, 2)

        # Kick-off: on the regular schedule, never in the past, strictly after the
        # previous fixture; jitter below one spacing keeps the order intact.
        base = max(self.start + (n + 1) * self.kickoff_spacing, now + self.kickoff_spacing)
        if self._last_base is not None:
            base = max(base, self._last_base + self.kickoff_spacing)
        self._last_base = base
        jitter_s = rng.uniform(0.0, 0.2 * self.kickoff_spacing.total_seconds())
        kickoff = base + timedelta(seconds=math.floor(jitter_s))

        diff = self._ratings[(league.name, team_a)] - self._ratings[(league.name, team_b)]
        p = _sigmoid(league.spread * diff + league.home_advantage + rng.gauss(0.0, 0.15))
        p = min(max(p, league.p_min), league.p_max)
        fixture = _Fixture(
            number=n,
            game_id=f"{self.id_prefix}-{n}",
            league=league,
            team_a=team_a,
            team_b=team_b,
            kickoff=kickoff,
            settle_at=kickoff + self.match_duration,
            margin=rng.uniform(*_MARGIN_RANGE),
            rng=rng,
            p=p,
            odds=(0.0, 0.0, None),
            clock=now,
            last_update=now,
        )
        fixture.odds = fixture.quote()
        self._fixtures[fixture.game_id] = fixture
        return fixture


# --------------------------------------------------------------------------- file feed
