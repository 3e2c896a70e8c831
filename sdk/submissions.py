"""Submission bookkeeping: from ``submit()`` to the verified receipt that settles it.

A prediction is pre-checked, signed and stored in the outbox *before* it is sent,
so it survives any disconnect; whichever transport is up sends it, and the next
one resends it until a confirmation settles it. A confirmation counts only when
its validator signature verifies over the dict exactly as received. ``submit()``
callers wait on one future per prediction id; a caller that gives up waiting
leaves the prediction in the outbox, and a later ``duplicate`` answer resolves
with the original receipt. Once confirmed, a prediction is settled in the outbox when
its game's outcome arrives (:meth:`Submissions.record_outcomes`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .codes import ConfirmationStatus, ErrorCode
from .errors import PredictionRejected, ReceiptError
from .frames import Confirmation, ErrorFrame, Limits
from .models import Game, Prediction
from .outbox import Outbox, OutboxEntry
from .signing import Signer, sign_prediction, verify_receipt
from .sqlite import DatabaseClosed
from .tasks import TaskSet
from .validation import (
    DEFAULT_DAILY_WAGER_LIMIT,
    DEFAULT_ODDS_TOLERANCE,
    Rules,
    check_prediction,
    wager_day,
)

log = logging.getLogger("sdk.connection.submissions")

_RETRYABLE_REJECTIONS = frozenset({ErrorCode.RATE_LIMITED})
_RESEND_DELAY_S = 1.0


class Submissions:
    """The waiters of ``submit()`` and what confirmations do to them.

    ``dispatch`` sends an outbox entry on whatever transport is up (or drops it when
    none is: the next transport resends the outbox); ``publish`` hands every verified
    confirmation to the connection's ``confirmations()`` readers.
    """

    def __init__(self, validator_hotkey: str, *, dispatch: Callable[[OutboxEntry], None],
                 publish: Callable[[Confirmation], None]) -> None:
        self.validator_hotkey = validator_hotkey
        self.outbox: Outbox | None = None  # set when the connection starts
        self.miner_hotkey: str | None = None  # likewise (a shared outbox holds others' rows)
        self._dispatch = dispatch
        self._publish = publish
        self._waiters: dict[str, asyncio.Future[Confirmation]] = {}
        self._resends = TaskSet()

    async def submit(self, prediction: Prediction, *,
                     find_game: Callable[[str], Game | None],
                     now: datetime, limits: Limits | None, cutoff_margin: timedelta,
                     signer: Signer, miner_hotkey: str, timeout: float | None) -> Confirmation:
        """Pre-check at hub time ``now`` against the game ``find_game`` returns and the
        hub's ``limits`` (the defaults before the first welcome), sign, store, send, and
        wait for the verified receipt (see ``ValidatorConnection.submit``)."""
        outbox = self._outbox()
        rules = Rules(
            odds_tolerance=limits.odds_tolerance if limits else DEFAULT_ODDS_TOLERANCE,
            daily_wager_limit=limits.daily_wager_limit if limits else DEFAULT_DAILY_WAGER_LIMIT,
            cutoff_margin=cutoff_margin)
        day = wager_day(now).isoformat()
        pid = prediction.prediction_id
        existing = await outbox.get(pid, self.validator_hotkey, miner_hotkey)
        if existing is None:
            wagered = await outbox.wagered(self.validator_hotkey, day, miner_hotkey)
            rejection = check_prediction(prediction, find_game(prediction.game_id),
                                         now=now, wagered_today=wagered, rules=rules)
            if rejection is not None:
                raise PredictionRejected(f"{rejection.message} (local pre-check)",
                                         code=rejection.code, prediction_id=pid)
        future = self._waiter(pid)
        if existing is None:
            wire = prediction.wire()
            signature = sign_prediction(signer, wire)
            await outbox.add(validator_hotkey=self.validator_hotkey,
                             miner_hotkey=miner_hotkey, prediction=wire,
                             signature=signature, wager_day=day)
            entry = await outbox.get(pid, self.validator_hotkey, miner_hotkey)
        else:
            entry = existing
        assert entry is not None
        if entry.status != "pending":
            self._waiters.pop(pid, None)
            return settled_result(entry)
        self._dispatch(entry)
        if timeout is None:
            return await future
        return await asyncio.wait_for(asyncio.shield(future), timeout)

    def on_confirmation(self, data: dict[str, Any]) -> None:
        """A confirmation's ``data`` as received (from either transport)."""
        pid = str(data.get("prediction_id"))
        if not verify_receipt(data, self.validator_hotkey):
            error = ReceiptError(f"confirmation for {pid} is not signed by the validator "
                                 f"{self.validator_hotkey}; ignored")
            log.error("%s", error)
            future = self._waiters.pop(pid, None)
            if future is not None and not future.done():
                _fail_future(future, error)
            return
        confirmation = Confirmation.model_validate(data)
        if (confirmation.status is ConfirmationStatus.REJECTED
                and confirmation.code in _RETRYABLE_REJECTIONS):
            self.resend_later(pid, _RESEND_DELAY_S)
            return
        stored = self._outbox().settle(pid, confirmation.status, code=confirmation.code,
                                       message=confirmation.message, receipt=data,
                                       validator_hotkey=self.validator_hotkey,
                                       miner_hotkey=self.miner_hotkey)
        stored.add_done_callback(lambda done: self._confirmed(confirmation, done))

    def on_error_frame(self, frame: ErrorFrame) -> None:
        log.warning("hub error %s: %s (ref %s)", frame.code, frame.message, frame.ref)
        if frame.ref and frame.ref in self._waiters:
            # the hub could not take it now (shutting down, store failure): try again
            self.resend_later(frame.ref, _RESEND_DELAY_S)

    def record_outcomes(self, outcomes: dict[str, int], prediction_id: str | None = None
                        ) -> None:
        """Settle the confirmed predictions on these finished games (only
        ``prediction_id`` when given), through the outbox's writer (queued, never
        awaited here: this runs on the socket's reader)."""
        outbox = self.outbox
        if outbox is None or outbox.closed:
            return
        try:
            recorded = outbox.record_outcomes(self.validator_hotkey, outcomes,
                                              prediction_id=prediction_id)
        except DatabaseClosed:
            return
        recorded.add_done_callback(_log_settlement_failure)

    def resend_later(self, prediction_id: str, delay: float) -> None:
        """Send the prediction again after ``delay`` seconds if it is still pending."""
        self._resends.spawn(self._resend_later(prediction_id, delay),
                            f"resend-{prediction_id}")

    async def cancel_resends(self) -> None:
        """Drop the scheduled resends (the transport they were for is gone; the next one
        resends the whole outbox)."""
        await self._resends.cancel()

    def fail_all(self, error: BaseException) -> None:
        """Fail every waiting ``submit()`` with ``error`` (the outbox keeps the
        predictions)."""
        for future in self._waiters.values():
            if not future.done():
                _fail_future(future, error)
        self._waiters.clear()

    def _outbox(self) -> Outbox:
        assert self.outbox is not None, "the connection is not started"
        return self.outbox

    def _waiter(self, prediction_id: str) -> asyncio.Future[Confirmation]:
        future = self._waiters.get(prediction_id)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._waiters[prediction_id] = future
        return future

    def _confirmed(self, confirmation: Confirmation, stored: asyncio.Future[None]) -> None:
        if not stored.cancelled() and stored.exception() is not None:
            log.error("could not record confirmation %s in the outbox: %r",
                      confirmation.prediction_id, stored.exception())
        self._publish(confirmation)
        future = self._waiters.pop(confirmation.prediction_id, None)
        if future is None or future.done():
            return
        if confirmation.status is ConfirmationStatus.REJECTED:
            _fail_future(future, PredictionRejected(
                confirmation.message, code=confirmation.code,
                prediction_id=confirmation.prediction_id, confirmation=confirmation))
        else:
            future.set_result(confirmation)

    async def _resend_later(self, prediction_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        entry = await self._outbox().get(prediction_id, self.validator_hotkey,
                                         self.miner_hotkey)
        if entry is not None and entry.status == "pending":
            self._dispatch(entry)


def settled_result(entry: OutboxEntry) -> Confirmation:
    """The outcome of an entry already settled: its receipt, or the rejection raised."""
    if entry.status in (ConfirmationStatus.ACCEPTED, ConfirmationStatus.DUPLICATE):
        assert entry.receipt is not None
        return Confirmation.model_validate(entry.receipt)
    confirmation = Confirmation.model_validate(entry.receipt) if entry.receipt else None
    raise PredictionRejected(entry.message or "rejected", code=entry.code or "rejected",
                             prediction_id=entry.prediction_id, confirmation=confirmation)


def _log_settlement_failure(recorded: asyncio.Future[int]) -> None:
    if not recorded.cancelled() and recorded.exception() is not None:
        log.error("could not record game outcomes in the outbox: %r", recorded.exception())


def _fail_future(future: asyncio.Future[Any], error: BaseException) -> None:
    """Fail a submit() waiter. A caller that gave up waiting (its timeout passed) leaves
    the future unobserved: mark the error retrieved so asyncio does not log it as lost
    (the outbox keeps the prediction; awaiting the future still raises)."""
    future.set_exception(error)
    future.exception()
