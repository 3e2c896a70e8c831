"""``TaskSet``: background tasks that are stopped together.

Each part of a connection (a transport, the submission bookkeeping) owns the tasks
it starts and cancels them when it stops, so nothing it started outlives it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class TaskSet:
    """Tasks started with :meth:`spawn`, cancelled (and awaited) by :meth:`cancel`.

    With ``log``, a task that ends with an exception is logged there as an error
    (``"<owner> task <name> died"``): for long-lived loops whose death nobody awaits."""

    def __init__(self, log: logging.Logger | None = None, owner: str = "") -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._log = log
        self._owner = owner

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if self._log is not None and not task.cancelled() and task.exception() is not None:
            self._log.error("%s task %s died", self._owner, task.get_name(),
                            exc_info=task.exception())

    async def cancel(self) -> None:
        """Cancel every task (but the calling one, which may be one of them) and wait
        until they have finished."""
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
