"""``until_stopped``: the race between a piece of work and a stop event."""

from __future__ import annotations

import asyncio

import pytest

from agents.stopping import until_stopped


async def test_work_that_ends_first_gives_its_future() -> None:
    async def work() -> int:
        return 42

    done = await until_stopped(work(), asyncio.Event())
    assert done is not None
    assert done.result() == 42


async def test_stop_cancels_the_work_and_gives_none() -> None:
    stop = asyncio.Event()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def work() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def stop_once_started() -> None:
        await started.wait()
        stop.set()

    stopper = asyncio.create_task(stop_once_started())
    assert await until_stopped(work(), stop) is None
    await stopper
    assert cancelled.is_set()


async def test_timeout_gives_none_without_a_stop() -> None:
    stop = asyncio.Event()
    pending: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    assert await until_stopped(pending, stop, timeout=0.01) is None
    assert pending.cancelled()
    assert not stop.is_set()


async def test_the_work_wins_a_tie() -> None:
    stop = asyncio.Event()
    stop.set()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    ready.set_result("kept")
    done = await until_stopped(ready, stop)
    assert done is not None
    assert done.result() == "kept"


async def test_an_exception_of_the_work_is_handed_back_not_raised() -> None:
    async def work() -> None:
        raise ValueError("boom")

    done = await until_stopped(work(), asyncio.Event())
    assert done is not None
    with pytest.raises(ValueError, match="boom"):
        done.result()


async def test_a_shielded_task_outlives_the_race() -> None:
    stop = asyncio.Event()
    release = asyncio.Event()

    async def long_job() -> str:
        await release.wait()
        return "finished"

    job = asyncio.create_task(long_job())
    assert await until_stopped(asyncio.shield(job), stop, timeout=0.01) is None
    assert not job.done()
    release.set()
    assert await job == "finished"
