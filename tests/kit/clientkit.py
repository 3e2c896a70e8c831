"""Helpers for the ValidatorConnection tests: options that keep them fast, watching a
connection's updates and states from background tasks (bounded waits only) and reading the
hub's SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from sdk.connection import ConnectionState, ValidatorConnection
from sdk.errors import BettensorWSError
from sdk.frames import Confirmation, GameUpdate
from sdk.options import ConnectionOptions
from sdk.signing import verify_receipt

from .hubkit import RunningHub
from .keys import VALIDATOR
from .waiting import eventually

T = TypeVar("T")

FAST_CLIENT = ConnectionOptions(
    backoff_base=0.02, backoff_cap=0.25, handshake_timeout=2.0,
    heartbeat_interval_s=0.5, fallback_after=3, ws_probe_interval=0.3,
    long_poll_timeout=1.0, cutoff_margin_s=0.0, ready_timeout=10.0)
"""ValidatorConnection options that keep client tests fast."""


class _Watcher:
    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    def _notify(self) -> None:
        self._changed.set()

    async def _follow(self, iterator: AsyncIterator[T], record: Callable[[T], object]) -> None:
        """Record every item until the iterator ends (with the connection's error)."""
        try:
            async for item in iterator:
                record(item)
                self._notify()
        except BettensorWSError as exc:
            self.error = exc
        finally:
            self._notify()

    async def wait_until(self, predicate: Callable[[], Any], timeout: float) -> None:
        """Await until ``predicate()`` holds (re-checked on every new item), bounded."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                if self.task is not None and self.task.done() and not predicate():
                    raise AssertionError(f"watcher ended ({self.error!r}) before the condition")
                await self._changed.wait()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class UpdateLog(_Watcher):
    """Everything ``conn.game_updates()`` yields, in order."""

    def __init__(self, conn: ValidatorConnection, buffer: int | None = None) -> None:
        super().__init__()
        self.updates: list[GameUpdate] = []
        iterator = conn.game_updates(buffer)  # registered now: nothing after this is missed
        self.task = asyncio.create_task(self._follow(iterator, self.updates.append),
                                        name="update-log")


    @property
    def incremental_seqs(self) -> list[int]:
        return [u.seq for u in self.updates if not u.snapshot]

    @property
    def snapshots(self) -> list[GameUpdate]:
        return [u for u in self.updates if u.snapshot]

    def seen_seq(self, seq: int) -> bool:
        return any(u.seq >= seq for u in self.updates)


class StateLog(_Watcher):
    """Every state change as (monotonic time, state); subscribe before ``start()``."""

    def __init__(self, conn: ValidatorConnection) -> None:
        super().__init__()
        self.changes: list[tuple[float, ConnectionState]] = []
        self.task = asyncio.create_task(
            self._follow(conn.state_changes(),
                         lambda state: self.changes.append((time.monotonic(), state))),
            name="state-log")


    @property
    def states(self) -> list[ConnectionState]:
        return [state for _, state in self.changes]

    def count(self, state: ConnectionState) -> int:
        return self.states.count(state)

    async def wait_for(self, state: ConnectionState, *, after: int = 0,
                       timeout: float = 10.0) -> tuple[int, float]:
        """Wait for ``state`` at index >= ``after``; returns (index, time)."""

        def found() -> bool:
            return state in self.states[after:]

        await self.wait_until(found, timeout)
        index = self.states.index(state, after)
        return index, self.changes[index][0]


def hub_rows(store_path: Path) -> dict[str, dict[str, Any]]:
    """prediction_id -> {miner_hotkey, receipt} straight from the hub's SQLite file."""
    with contextlib.closing(sqlite3.connect(str(store_path))) as db:
        rows = db.execute("SELECT prediction_id, miner_hotkey, receipt FROM predictions"
                          ).fetchall()
    result: dict[str, dict[str, Any]] = {}
    for pid, hotkey, receipt in rows:
        assert pid not in result, f"prediction {pid} stored twice"
        result[pid] = {"miner_hotkey": hotkey, "receipt": json.loads(receipt)}
    return result


async def hub_rows_by_id(store_path: Path) -> dict[str, dict[str, Any]]:
    return await asyncio.to_thread(hub_rows, store_path)


def assert_verified_receipt(confirmation: Confirmation, miner_hotkey: str) -> None:
    data = confirmation.model_dump(mode="json")
    assert verify_receipt(data, VALIDATOR.ss58_address), data
    assert confirmation.miner_hotkey == miner_hotkey
    assert confirmation.status in ("accepted", "duplicate"), data


async def heartbeats_reach(running: RunningHub, count: int, timeout: float = 5.0) -> None:
    """Await ``count`` more miner heartbeats at the hub (bounded): the positive signal that
    a live link saw time pass, before a test asserts that something did *not* happen in
    that time (a retry, a reconnect)."""
    seen = running.hub.stats.messages_in["heartbeat"]
    await eventually(lambda: running.hub.stats.messages_in["heartbeat"] >= seen + count,
                     timeout)
