"""bettensor-ws agents: the agent framework and the built-in prediction agents.

Strategy (an :class:`Agent`) is kept apart from I/O (the :class:`AgentRunner`, which
drives one agent over one or many :class:`~sdk.ValidatorConnection`)::

    from agents import AgentRunner, load_agent

    agent = load_agent("value", kelly=0.25, max_stake=50)
    async with ValidatorConnection(url, wallet, validator_hotkey) as conn:
        stats = await AgentRunner(agent, [conn]).run()

Pure pricing maths (de-vig, edge, Kelly) lives in :mod:`agents.pricing`; finding
validators on a subnet in :mod:`agents.discovery`; the ``bt-miner`` command line in
:mod:`agents.cli`.
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
from .stats import RunnerStats, ValidatorStats

__all__ = [
    "ENTRY_POINT_GROUP",
    "Agent",
    "AgentContext",
    "AgentLoadError",
    "AgentRunner",
    "DailySpend",
    "FavoriteAgent",
    "Pick",
    "RunnerStats",
    "ValidatorEndpoint",
    "ValidatorStats",
    "ValueAgent",
    "available_agents",
    "discover_validators",
    "fit_wager",
    "load_agent",
    "load_agent_class",
    "validators_from_metagraph",
]
