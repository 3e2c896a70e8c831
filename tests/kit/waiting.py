"""Bounded waits for a condition the test cannot await directly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0,
                     interval: float = 0.01) -> None:
    """Await until ``predicate()`` is truthy (bounded)."""

    async def poll() -> None:
        while True:
            if predicate():
                return
            await asyncio.sleep(interval)

    await asyncio.wait_for(poll(), timeout)
