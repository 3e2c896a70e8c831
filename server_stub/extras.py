"""Optional dependencies, imported only by the parts that need them.

The default hub (SQLite store, in-process stream) needs neither asyncpg nor redis: they
come with the ``ha`` extra. A hub told to use PostgreSQL or Redis without them fails
at start with an error that says what to install, not with a bare ImportError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from sdk.errors import MissingExtraError

__all__ = ["HA_INSTALL", "MissingExtraError", "import_extra"]

HA_INSTALL = "pip install 'bettensor-ws[ha]'"


def import_extra(module: str, feature: str) -> ModuleType:
    """``import module``, or :class:`MissingExtraError` naming ``feature`` and the
    install command of the ``ha`` extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{feature} needs the Python package {module.split('.')[0]!r}, which is not "
            f"installed: {HA_INSTALL}") from exc
