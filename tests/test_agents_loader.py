"""Loading agents by name, module:Class path and entry point, with clear errors."""

from __future__ import annotations

import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from agents import (
    ENTRY_POINT_GROUP,
    AgentLoadError,
    FavoriteAgent,
    ValueAgent,
    available_agents,
    load_agent,
    load_agent_class,
)
from agents.loader import BUILTIN_AGENTS

ROOT = Path(__file__).resolve().parent.parent

AGENT_MODULE = '''
from agents import Agent, Pick


class ShoutyAgent(Agent):
    """Bets loudly on team_a."""

    name = "shouty"

    def __init__(self, stake=1.0):
        self.stake = stake

    async def on_games(self, games, ctx):
        return [Pick(g.game_id, 0, self.stake) for g in games]


class NotAnAgent:
    pass


class Half(Agent):
    pass


INSTANCE = ShoutyAgent(stake=3.0)
'''


@pytest.fixture
def agent_module(tmp_path, monkeypatch):
    """A module ``<name>`` on sys.path defining agents; removed from sys.modules after."""

    def make(name: str, source: str = AGENT_MODULE) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(sys.modules, name, raising=False)
        return name

    return make


def test_builtins_by_name_with_options():
    agent = load_agent("favorite", stake=3.0)
    assert isinstance(agent, FavoriteAgent)
    assert agent.stake == 3.0
    value = load_agent(" value ", kelly=0.5, max_stake=20.0)
    assert isinstance(value, ValueAgent)
    assert (value.kelly, value.max_stake) == (0.5, 20.0)
    assert load_agent_class("value") is ValueAgent
    assert isinstance(load_agent(FavoriteAgent), FavoriteAgent)
    instance = FavoriteAgent()
    assert load_agent(instance) is instance


def test_available_agents_lists_the_builtins_with_descriptions():
    listing = available_agents()
    assert set(BUILTIN_AGENTS) <= set(listing)
    assert "favourite" in listing["favorite"].lower()
    assert "kelly" in listing["value"].lower()


def test_module_class_path(agent_module):
    name = agent_module("mod_agents_path")
    agent = load_agent(f"{name}:ShoutyAgent", stake=2.0)
    assert type(agent).__name__ == "ShoutyAgent"
    assert agent.stake == 2.0
    instance = load_agent(f"{name}:INSTANCE")
    assert instance.stake == 3.0
    with pytest.raises(AgentLoadError, match="agent instance"):
        load_agent(f"{name}:INSTANCE", stake=1.0)
    assert load_agent_class(f"{name}:INSTANCE").__name__ == "ShoutyAgent"


@pytest.mark.parametrize(("spec", "message"), [
    ("no_such_module_xyz:Agent", "module 'no_such_module_xyz' not found"),
    ("agents.no_such_sub:Agent", "module 'agents.no_such_sub' not found"),
    ("agents.builtin:FavouriteAgent", "has no attribute 'FavouriteAgent'.*FavoriteAgent"),
    ("collections:OrderedDict", "not a subclass of agents.Agent"),
    ("math:pi", "is a float, not a subclass of agents.Agent"),
    ("agents.base:Agent", "abstract"),
    (":FavoriteAgent", "must look like"),
    ("agents.builtin:", "must look like"),
    ("", "no agent given"),
    ("favourite", "unknown agent 'favourite' \\(did you mean 'favorite'\\?\\)"),
    ("nothing-like-it", "unknown agent.*available: .*favorite.*value"),
])
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(AgentLoadError, match=message):
        load_agent(spec)


def test_errors_inside_the_module_are_reported(agent_module):
    name = agent_module("mod_agents_broken_dep", "import not_installed_dependency_q\n")
    with pytest.raises(AgentLoadError, match="'not_installed_dependency_q' is missing"):
        load_agent(f"{name}:X")
    name = agent_module("mod_agents_raises", "raise RuntimeError('boom at import')\n")
    with pytest.raises(AgentLoadError, match="RuntimeError: boom at import"):
        load_agent(f"{name}:X")


def test_classes_that_are_not_agents(agent_module):
    name = agent_module("mod_agents_kinds")
    with pytest.raises(AgentLoadError, match="class NotAnAgent, not a subclass"):
        load_agent(f"{name}:NotAnAgent")
    with pytest.raises(AgentLoadError, match=r"abstract .*on_games"):
        load_agent(f"{name}:Half")
    with pytest.raises(AgentLoadError, match="cannot load an agent"):
        load_agent(42)  # type: ignore[arg-type]


def test_bad_options_are_a_load_error():
    with pytest.raises(AgentLoadError, match=r"cannot create agent 'favorite'.*stakes"):
        load_agent("favorite", stakes=3.0)
    with pytest.raises(AgentLoadError, match=r"cannot create agent 'value'.*kelly"):
        load_agent("value", kelly=7.0)


def test_entry_points_of_installed_packages(tmp_path, monkeypatch, agent_module):
    name = agent_module("mod_agents_plugin")
    dist = tmp_path / "bettensor_ws_plugin_test-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: bettensor-ws-plugin-test\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(f"""\
        [{ENTRY_POINT_GROUP}]
        shouty = {name}:ShoutyAgent
        broken = missing_plugin_module_q:Agent
        notagent = {name}:NotAnAgent
        """))
    agent = load_agent("shouty", stake=4.0)
    assert type(agent).__name__ == "ShoutyAgent"
    assert agent.stake == 4.0
    listing = available_agents()
    assert listing["shouty"] == "Bets loudly on team_a."
    assert listing["broken"].startswith("(cannot load missing_plugin_module_q:Agent")
    assert "not a subclass" in listing["notagent"]
    assert {"favorite", "value"} <= set(listing)
    with pytest.raises(AgentLoadError, match=r"'broken'.*failed to load.*ModuleNotFoundError"):
        load_agent("broken")
    with pytest.raises(AgentLoadError, match="not a subclass"):
        load_agent("notagent")


def test_pyproject_declares_the_builtin_entry_points():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"][ENTRY_POINT_GROUP]
    assert declared == BUILTIN_AGENTS
    for spec in declared.values():
        load_agent_class(spec)
