"""bettensor-ws agents: the agent framework and the built-in prediction agents.

Strategy (an :class:`Agent`) is kept apart from I/O (the :class:`AgentRunner`, which
drives one agent over one or many :class:`~sdk.ValidatorConnection`)::

    from agents import AgentRunner, load_agent

    agent = load_agent("value", kelly=0.25, max_stake=50)
    async with ValidatorConnection(url, wallet, validator_hotkey) as conn:
        stats = await AgentRunner(agent, [conn]).run()

Pure pricing maths (de-vig, edge, Kelly) lives in :mod:`agents.pricing`; the
validator's scoring (CLV, ROI, risk score, entropy, composite, tiers) in
:mod:`agents.scoring`; finding validators on a subnet in :mod:`agents.discovery`;
the ``bt-miner`` command line in :mod:`agents.cli`.
"""

from .base import Agent, AgentContext, Pick
from .budget import DailySpend, fit_wager
from .builtin import FavoriteAgent, ValueAgent
from .discovery import ValidatorEndpoint, discover_validators, validators_from_metagraph
from .loader import (
    ENTRY_POINT_GROUP,
    AgentLoadError,
    available_agents,
    load_agent,
    load_agent_class,
)
from .runner import AgentRunner
from .scoring import (
    CLV_WEIGHT,
    DAILY_WAGER_LIMIT,
    ENTROPY_WEIGHT,
    RISK_WEIGHT,
    ROI_WEIGHT,
    TIER_MIN_WAGERS,
    TIER_WINDOWS,
    ClosingOdds,
    DailyScore,
    ScoredPrediction,
    clv,
    clv_upstream,
    composite,
    contrarian_component,
    daily_entropy,
    entropy_contributions,
    fits_daily_limit,
    prediction_similarity,
    rescale_contribution,
    risk_score,
    roi,
    score_day,
    tier_requirements_met,
    tier_scores,
    upstream_scoring_window,
)
from .stats import RunnerStats, ValidatorStats
from .worker import RunnerConnection

__all__ = [
    "CLV_WEIGHT",
    "DAILY_WAGER_LIMIT",
    "ENTROPY_WEIGHT",
    "ENTRY_POINT_GROUP",
    "RISK_WEIGHT",
    "ROI_WEIGHT",
    "TIER_MIN_WAGERS",
    "TIER_WINDOWS",
    "Agent",
    "AgentContext",
    "AgentLoadError",
    "AgentRunner",
    "ClosingOdds",
    "DailyScore",
    "DailySpend",
    "FavoriteAgent",
    "Pick",
    "RunnerConnection",
    "RunnerStats",
    "ScoredPrediction",
    "ValidatorEndpoint",
    "ValidatorStats",
    "ValueAgent",
    "available_agents",
    "clv",
    "clv_upstream",
    "composite",
    "contrarian_component",
    "daily_entropy",
    "discover_validators",
    "entropy_contributions",
    "fit_wager",
    "fits_daily_limit",
    "load_agent",
    "load_agent_class",
    "prediction_similarity",
    "rescale_contribution",
    "risk_score",
    "roi",
    "score_day",
    "tier_requirements_met",
    "tier_scores",
    "upstream_scoring_window",
    "validators_from_metagraph",
]
