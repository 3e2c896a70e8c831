"""The live display of ``demo`` and ``watch``: one rich ``Live`` redrawn a few times a
second until a stop, a deadline or the end of what is watched."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live

from agents.stopping import until_stopped

__all__ = ["REFRESH_S", "end_live", "live_display", "refresh_until"]

REFRESH_S = 0.25
"""Seconds between two frames."""


def live_display(console: Console) -> Live:
    """A ``Live`` redrawn only when told (frames follow the data, not a timer), that
    keeps stray prints and log lines above the frame instead of tearing it."""
    return Live(console=console, auto_refresh=False, transient=False,
                redirect_stderr=True, redirect_stdout=True)


async def refresh_until(live: Live, render: Callable[[], RenderableType], *,
                        stop: asyncio.Event, deadline: float | None,
                        running: Callable[[], bool],
                        also: asyncio.Future[Any] | None = None) -> None:
    """Redraw ``render()`` every :data:`REFRESH_S` until ``stop`` is set, the
    ``time.monotonic()`` ``deadline`` passes, ``running()`` turns false or ``also``
    finishes (it is left running: the caller owns it)."""
    while not stop.is_set() and running():
        live.update(render(), refresh=True)
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            break
        wait = REFRESH_S if remaining is None else min(REFRESH_S, remaining)
        if also is None:
            await until_stopped(asyncio.sleep(wait), stop)
        else:
            await until_stopped(asyncio.shield(also), stop, timeout=wait)


def end_live(console: Console) -> None:
    """Off a terminal a live display ends its last frame without a newline: add it."""
    if not console.is_terminal:
        console.print()
