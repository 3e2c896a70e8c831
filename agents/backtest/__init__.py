"""Backtesting agents on recorded streams and historical odds.

:mod:`.recording` (what ``bt-miner record`` writes), :mod:`.footballdata` (the
football-data.co.uk CSV as a stream), :mod:`.replay` (the real
:class:`~agents.AgentRunner` on a virtual clock against the hub's rules),
:mod:`.results` (settlement and the validator's scores, from :mod:`agents.scoring`),
:mod:`.backtester` (all of it for several agents) and :mod:`.plot` (matplotlib,
optional)::

    from agents import FavoriteAgent, ValueAgent
    from agents.backtest import backtest, load_data

    result = await backtest([FavoriteAgent(), ValueAgent()], load_data("E0.csv"))
    result.reports[0].profit, result.to_json()
"""

from .backtester import BACKTEST_FORMAT, Backtest, ReplayData, backtest, load_data
from .footballdata import CsvMatches, Match, match_events, parse_matches
from .plot import MatplotlibMissing, plot_reports
from .recording import (
    RECORDING_FORMAT,
    RecordedUpdate,
    RecordingError,
    RecordingWriter,
    read_recording,
)
from .replay import (
    AcceptedPrediction,
    ReplayConnection,
    ReplayRun,
    VirtualClock,
    replay_agent,
    seeded_ids,
)
from .results import (
    AgentReport,
    DayRow,
    GameFacts,
    PredictionRow,
    game_facts,
    max_drawdown,
    report_agents,
)

__all__ = [
    "BACKTEST_FORMAT",
    "RECORDING_FORMAT",
    "AcceptedPrediction",
    "AgentReport",
    "Backtest",
    "CsvMatches",
    "DayRow",
    "GameFacts",
    "Match",
    "MatplotlibMissing",
    "PredictionRow",
    "RecordedUpdate",
    "RecordingError",
    "RecordingWriter",
    "ReplayConnection",
    "ReplayData",
    "ReplayRun",
    "VirtualClock",
    "backtest",
    "game_facts",
    "load_data",
    "match_events",
    "max_drawdown",
    "parse_matches",
    "plot_reports",
    "read_recording",
    "replay_agent",
    "report_agents",
    "seeded_ids",
]
