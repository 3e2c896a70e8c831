"""Finding agents: by built-in name (``favorite``, ``value``), by ``module:Class`` path,
or by name from the ``bettensor_ws.agents`` entry-point group, so a package can ship
agents that ``bt-miner run --agent NAME`` finds once installed::

    [project.entry-points."bettensor_ws.agents"]
    mine = "my_package.agents:MyAgent"
"""

from __future__ import annotations

import difflib
import importlib
import logging
from importlib import metadata
from typing import Any

from .base import Agent

__all__ = [
    "BUILTIN_AGENTS",
    "ENTRY_POINT_GROUP",
    "AgentLoadError",
    "available_agents",
    "load_agent",
    "load_agent_class",
]

log = logging.getLogger("agents.loader")

ENTRY_POINT_GROUP = "bettensor_ws.agents"

BUILTIN_AGENTS: dict[str, str] = {
    "favorite": "agents.builtin:FavoriteAgent",
    "value": "agents.builtin:ValueAgent",
}


class AgentLoadError(LookupError):
    """An agent could not be found or created; the message says why and what to try."""


def _entry_points() -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    try:
        points = metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception as exc:  # noqa: BLE001 - any installed distribution's metadata may be broken
        log.warning("cannot read the %s entry points: %s", ENTRY_POINT_GROUP, exc)
        return found
    for point in points:
        found.setdefault(point.name, point)
    return found


def _import_path(path: str) -> Any:
    """The object named by ``module:attr.attr``."""
    module_name, _, attr_path = path.partition(":")
    module_name, attr_path = module_name.strip(), attr_path.strip()
    if not module_name or not attr_path:
        raise AgentLoadError(f"agent path {path!r} must look like 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise AgentLoadError(
                f"cannot load agent {path!r}: module {module_name!r} not found "
                "(is it installed, or on PYTHONPATH?)") from exc
        raise AgentLoadError(f"cannot load agent {path!r}: importing {module_name!r} "
                             f"failed because module {missing!r} is missing") from exc
    except Exception as exc:  # importing user code may raise anything: say what and where
        raise AgentLoadError(f"cannot load agent {path!r}: importing {module_name!r} "
                             f"raised {type(exc).__name__}: {exc}") from exc
    target: Any = module
    walked = module_name
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            names = [n for n in dir(target) if not n.startswith("_")]
            hint = difflib.get_close_matches(part, names, n=1)
            raise AgentLoadError(
                f"cannot load agent {path!r}: {walked!r} has no attribute {part!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")) from None
        walked = f"{walked}:{part}" if walked == module_name else f"{walked}.{part}"
    return target


def _check_agent(obj: Any, where: str) -> type[Agent] | Agent:
    if isinstance(obj, Agent):
        return obj
    if not isinstance(obj, type) or not issubclass(obj, Agent):
        kind = type(obj).__name__ if not isinstance(obj, type) else f"class {obj.__name__}"
        raise AgentLoadError(f"{where} is a {kind}, not a subclass of agents.Agent")
    if getattr(obj, "__abstractmethods__", None):
        missing = ", ".join(sorted(obj.__abstractmethods__))
        raise AgentLoadError(f"{where} is abstract (it does not implement {missing})")
    return obj


def _resolve(spec: str) -> type[Agent] | Agent:
    text = spec.strip()
    if not text:
        raise AgentLoadError("no agent given: use a name (see available_agents()) "
                             "or 'package.module:ClassName'")
    if ":" in text:
        return _check_agent(_import_path(text), repr(text))
    if text in BUILTIN_AGENTS:
        return _check_agent(_import_path(BUILTIN_AGENTS[text]), f"built-in agent {text!r}")
    points = _entry_points()
    point = points.get(text)
    if point is None:
        names = sorted({*BUILTIN_AGENTS, *points})
        hint = difflib.get_close_matches(text, names, n=1)
        raise AgentLoadError(
            f"unknown agent {text!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; available: {', '.join(names)}; or give 'package.module:ClassName'")
    try:
        loaded = point.load()
    except Exception as exc:  # third-party code may raise anything: say what and where
        raise AgentLoadError(f"agent {text!r} (entry point {point.value!r} in group "
                             f"{ENTRY_POINT_GROUP!r}) failed to load: "
                             f"{type(exc).__name__}: {exc}") from exc
    return _check_agent(loaded, f"entry point {text!r} ({point.value!r})")


def load_agent_class(spec: str | type[Agent]) -> type[Agent]:
    """The agent class named by ``spec`` (built-in name, entry-point name or
    ``module:Class``). Raises :class:`AgentLoadError`."""
    if isinstance(spec, type):
        return _check_agent(spec, repr(spec.__name__))  # type: ignore[return-value]
    found = _resolve(spec)
    if isinstance(found, Agent):
        return type(found)
    return found


def load_agent(spec: str | type[Agent] | Agent, /, **options: Any) -> Agent:
    """An agent instance from a built-in name (``"favorite"``, ``"value"``), an
    entry-point name, a ``"package.module:ClassName"`` path (a module-level agent
    *instance* works too), a class or an instance. ``options`` go to the class's
    constructor. Raises :class:`AgentLoadError` with the reason."""
    if isinstance(spec, Agent):
        found: type[Agent] | Agent = spec
    elif isinstance(spec, type):
        found = _check_agent(spec, repr(spec.__name__))
    elif isinstance(spec, str):
        found = _resolve(spec)
    else:
        raise AgentLoadError(f"cannot load an agent from {type(spec).__name__} {spec!r}")
    if isinstance(found, Agent):
        if options:
            raise AgentLoadError(f"{spec!r} is an agent instance: options "
                                 f"{sorted(options)} cannot be applied to it")
        return found
    try:
        return found(**options)
    except (TypeError, ValueError) as exc:
        raise AgentLoadError(f"cannot create agent {found.name!r} "
                             f"({found.__module__}.{found.__qualname__}) with options "
                             f"{options!r}: {exc}") from exc


def available_agents() -> dict[str, str]:
    """Agent name -> one-line description: the built-ins, then every installed
    entry point of the ``bettensor_ws.agents`` group (one that fails to import is
    listed with the reason instead of its description)."""
    listing: dict[str, str] = {}
    for name, path in BUILTIN_AGENTS.items():
        cls = load_agent_class(path)
        listing[name] = cls.description
    for name, point in sorted(_entry_points().items()):
        if name in listing:
            if name in BUILTIN_AGENTS and point.value.replace(" ", "") != BUILTIN_AGENTS[name]:
                log.warning("entry point %r (%s) is shadowed by the built-in agent of that "
                            "name", name, point.value)
            continue
        try:
            loaded = _check_agent(point.load(), f"entry point {name!r}")
        except Exception as exc:  # noqa: BLE001 - third-party code: shown in the listing
            listing[name] = f"(cannot load {point.value}: {type(exc).__name__}: {exc})"
            continue
        listing[name] = loaded.description
    return listing
