"""Bounded waits for a condition the test cannot await directly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0,
                     interval: float = 0.01) -> None:
    """Await until ``predicate()`` is truthy (bounded)."""

    async def poll() -> None:
        while True:
            if predicate():
                return
            await asyncio.sleep(interval)

    await asyncio.wait_for(poll(), timeout)


async def within(awaitable: Awaitable[T], timeout: float, what: str) -> T:
    """Await ``awaitable``; fail the test saying ``what`` did not happen if it takes more
    than ``timeout`` seconds. For events that should come at once or soon: the bound is
    generous (a loaded machine is slow), and only a broken behaviour reaches it."""
    try:
        async with asyncio.timeout(timeout):
            return await awaitable
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout:g} s") from None
