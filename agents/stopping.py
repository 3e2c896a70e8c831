"""Racing a piece of work against a stop event: the one way the runner and the CLI
wait for something that a stop (SIGINT, ``AgentRunner.stop``) must interrupt."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["until_stopped"]

T = TypeVar("T")


async def until_stopped(work: Awaitable[T], stop: asyncio.Event, *,
                        timeout: float | None = None) -> asyncio.Future[T] | None:
    """Await ``work`` unless ``stop`` is set first or ``timeout`` seconds pass.

    Returns the finished future of ``work`` (read its result or exception from it)
    when the work ended first, else None (also when the work was cancelled); a work
    that lost the race is cancelled and awaited, so nothing is left running. A task
    that must outlive the race is passed wrapped in :func:`asyncio.shield`. If both
    end together the work wins: a result that is ready is never thrown away.
    """
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
        stopping.cancel()
        # also marks an exception of the work as retrieved: the caller reads it or not
        await asyncio.gather(task, stopping, return_exceptions=True)
    return None if task.cancelled() else task
