"""``BettensorBook``: accepted predictions go into the validator's own ``predictions``
table (so its scoring scores them unchanged) and their signed receipts into the hub's
store.

Order of writes: the validator's row first (duplicate and daily-limit checks in the
same transaction), then the receipt; the miner is answered after both commits. If
the hub dies between the two, the row exists without a receipt, and the miner's
resend is answered ``duplicate`` with a receipt rebuilt from the row's
``prediction_date`` (microsecond precision). A ``prediction_id`` is the table's key,
so an id that is already there is a duplicate for the miner whose UID wrote it
(whichever path brought it) and a rejection for anyone else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from sdk.codes import ErrorCode
from sdk.validation import Rejection

from ..predictions import UidLookup
from ..store import PredictionRecord, PredictionStore, StoreClosed, StoreResult
from .database import Existing, Inserted, OverLimit, UnknownGame, ValidatorDatabase
from .schema import received_at_ns_of

__all__ = ["BettensorBook"]

T = TypeVar("T")


class BettensorBook:
    """A :class:`~server_stub.store.PredictionBook` over the validator's database
    (``db``) and the hub's own store (``receipts``)."""

    def __init__(self, db: ValidatorDatabase, receipts: PredictionStore, *,
                 uid_of: UidLookup, daily_limit: float) -> None:
        self.db = db
        self.receipts = receipts
        self.uid_of = uid_of
        self.daily_limit = daily_limit
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._closed = False

    def _spawn(self, work: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """Run ``work`` as a task the book keeps until it is done (close waits for it)."""
        task = asyncio.create_task(work, name=name)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    def record(self, record: PredictionRecord) -> asyncio.Future[StoreResult]:
        if self._closed:
            raise StoreClosed("the hub is shutting down")
        if record.parsed is None or record.miner_uid is None:
            raise ValueError("a Bettensor prediction needs its parsed form and miner UID")
        return self._spawn(self._record(record), f"record-{record.prediction_id}")

    async def _record(self, record: PredictionRecord) -> StoreResult:
        assert record.parsed is not None
        assert record.miner_uid is not None
        if not record.game_id.isdecimal():  # e.g. a game the hub's store kept from a feed
            return StoreResult(False, None, Rejection(
                ErrorCode.UNKNOWN_GAME,
                f"game {record.game_id!r} is not in the validator's game_data"))
        outcome = await self.db.insert(record.parsed, miner_uid=record.miner_uid,
                                       received_at_ns=record.received_at_ns,
                                       daily_limit=self.daily_limit)
        if isinstance(outcome, Inserted):
            return await self.receipts.record(record)
        if isinstance(outcome, UnknownGame):
            return StoreResult(False, None, Rejection(
                ErrorCode.UNKNOWN_GAME,
                f"game {record.game_id!r} is not in the validator's game_data"))
        if isinstance(outcome, OverLimit):
            return StoreResult(False, None, Rejection(
                ErrorCode.WAGER_LIMIT,
                f"UID {record.miner_uid} has {outcome.wagered:g} wagered today in the "
                f"validator's database; {record.wager:g} more would pass the daily "
                f"limit of {self.daily_limit:g}"))
        original = await self._original(record.miner_hotkey, record.prediction_id,
                                         record.miner_uid, outcome)
        if original is None:
            return StoreResult(False, None, Rejection(
                ErrorCode.INVALID_PREDICTION,
                "this prediction_id is already in the validator's database for another "
                "miner; use a fresh UUID"))
        return StoreResult(False, original)

    async def _original(self, miner_hotkey: str, prediction_id: str, miner_uid: int | None,
                        row: Existing) -> dict[str, Any] | None:
        """The original receipt of a row that is there already: the hub's, or one
        rebuilt from the row when the row is this miner's but has no hub receipt."""
        if row.miner_uid is None or row.miner_uid != miner_uid:
            return None
        stored = await self.receipts.receipt(miner_hotkey, prediction_id)
        if stored is not None:
            return stored
        try:
            received_at_ns = received_at_ns_of(row.prediction_date or "")
        except ValueError:
            received_at_ns = 0
        return {"prediction_id": prediction_id, "received_at_ns": received_at_ns}

    def receipt(self, miner_hotkey: str, prediction_id: str
                ) -> asyncio.Future[dict[str, Any] | None]:
        return self._spawn(self._receipt(miner_hotkey, prediction_id),
                                     f"receipt-{prediction_id}")

    async def _receipt(self, miner_hotkey: str, prediction_id: str) -> dict[str, Any] | None:
        stored = await self.receipts.receipt(miner_hotkey, prediction_id)
        if stored is not None:
            return stored
        row = await self.db.find(prediction_id)
        if row is None:
            return None
        return await self._original(miner_hotkey, prediction_id,
                                    self.uid_of(miner_hotkey), row)

    def wagered(self, miner_hotkey: str, day: str) -> asyncio.Future[float]:
        uid = self.uid_of(miner_hotkey)
        if uid is None:
            done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            done.set_result(0.0)
            return done
        return self._spawn(self.db.wagered(uid, day), f"wagered-{uid}")

    async def close(self) -> None:
        """Let every prediction in flight reach both databases, then close the
        validator's (the hub closes its own store after)."""
        self._closed = True
        if self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)
        await self.db.close()
