"""One way in for a prediction, whichever transport carried it.

:meth:`PredictionIntake.accept_prediction` takes what the transport parsed (a
prediction frame, or the :class:`~sdk.errors.ProtocolError` its parsing raised) and
returns an outcome; the WebSocket renders it as frames, ``POST /predictions`` as an
HTTP answer. Every prediction counter of :class:`~server_stub.stats.HubStats` is
counted here, once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from sdk.codes import ConfirmationStatus, ErrorCode
from sdk.errors import ProtocolError
from sdk.frames import PredictionFrame

from .admission import Admission
from .predictions import PredictionDesk
from .stats import HubStats
from .store import StoreClosed

__all__ = ["Confirmed", "Pending", "PredictionIntake", "PredictionOutcome", "RateLimited",
           "ShuttingDown", "Unidentified"]

log = logging.getLogger("server_stub.hub")  # one logger for every part of the hub


@dataclass(frozen=True, slots=True)
class Confirmed:
    """Answered at once with this signed confirmation (a rejection or a duplicate)."""

    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Pending:
    """Accepted for processing: ``confirmation`` resolves to the signed confirmation
    (after the commit when accepted), or fails when the store write failed."""

    prediction_id: str
    confirmation: asyncio.Future[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Unidentified:
    """Not a prediction the hub can confirm (no prediction id could be read, or not a
    prediction at all): answered with an error, nothing stored."""

    code: str
    message: str
    ref: str | None


@dataclass(frozen=True, slots=True)
class RateLimited:
    """Over the hotkey's message rate (only when :meth:`accept_prediction` took the
    token itself): nothing validated or stored."""


@dataclass(frozen=True, slots=True)
class ShuttingDown:
    """The store is closing: resend after reconnecting."""

    prediction_id: str


PredictionOutcome = Confirmed | Pending | Unidentified | RateLimited | ShuttingDown


class PredictionIntake:
    """Rate, parse errors, pipeline and counters of the hub's predictions."""

    def __init__(self, *, desk: PredictionDesk, admission: Admission, stats: HubStats) -> None:
        self._desk = desk
        self._admission = admission
        self._stats = stats

    async def accept_prediction(self, hotkey: str, parsed: PredictionFrame | ProtocolError,
                                *, rate_checked: bool) -> PredictionOutcome:
        """Take one prediction of ``hotkey`` through the pipeline (PROTOCOL.md §7.1).

        ``parsed`` is the frame, or the error parsing raised: one that names a
        prediction id is answered with a signed rejection (or the duplicate of a stored
        prediction), any other with :class:`Unidentified`. ``rate_checked``: the
        transport has already taken this message's token (the WebSocket counts every
        text message, before parsing); otherwise a prediction that parsed takes one
        here (``POST /predictions``).
        """
        if isinstance(parsed, ProtocolError):
            return await self._refuse_unparsed(hotkey, parsed)
        pid = parsed.prediction.prediction_id
        if not rate_checked and not self._admission.within_message_rate(hotkey):
            self._stats.errors[ErrorCode.RATE_LIMITED] += 1
            return RateLimited()
        try:
            confirmation = await self._desk.submit(hotkey, parsed)
        except StoreClosed:
            self._stats.errors[ErrorCode.SHUTTING_DOWN] += 1
            return ShuttingDown(pid)
        confirmation.add_done_callback(lambda done: self._count(hotkey, pid, done))
        return Pending(pid, confirmation)

    def reject_over_rate(self, hotkey: str, prediction_id: str,
                         messages_per_second: float) -> dict[str, Any]:
        """The signed rejection of a prediction frame over the WebSocket message rate
        (no stored-duplicate lookup: PROTOCOL.md §7.5)."""
        self._stats.predictions[ConfirmationStatus.REJECTED] += 1
        self._stats.activity.record(hotkey, ConfirmationStatus.REJECTED, ErrorCode.RATE_LIMITED)
        return self._desk.rejection(
            hotkey, prediction_id, ErrorCode.RATE_LIMITED,
            f"more than {messages_per_second:g} messages/s; resend later")

    async def _refuse_unparsed(self, hotkey: str, error: ProtocolError) -> PredictionOutcome:
        if (error.code not in (ErrorCode.MALFORMED_FRAME, ErrorCode.UNKNOWN_TYPE)
                and error.ref and error.ref != PredictionFrame.TYPE):
            # a prediction whose fields are wrong: answer it like a rule rejection so
            # the miner's pending submit resolves (only when its id could be read: ref
            # is the frame type otherwise, not a prediction id)
            try:
                # a stored prediction resent with a broken field is still a duplicate:
                # the lookup needs the store, which may be closing (PROTOCOL.md §7.3)
                data = await self._desk.reject(hotkey, error.ref, str(error.code),
                                               error.message)
            except StoreClosed:
                self._stats.errors[ErrorCode.SHUTTING_DOWN] += 1
                return ShuttingDown(error.ref)
            self._stats.predictions[ConfirmationStatus.REJECTED] += 1
            self._stats.activity.record(hotkey, data["status"], data["code"])
            return Confirmed(data)
        self._stats.errors[str(error.code)] += 1
        return Unidentified(str(error.code), error.message, error.ref)

    def _count(self, hotkey: str, pid: str, done: asyncio.Future[dict[str, Any]]) -> None:
        if done.cancelled() or done.exception() is not None:
            self._stats.errors[ErrorCode.INTERNAL_ERROR] += 1
            log.error("storing prediction %s of %s failed: %r", pid, hotkey,
                      None if done.cancelled() else done.exception())
            return
        data = done.result()
        self._stats.predictions[data["status"]] += 1
        self._stats.activity.record(hotkey, data["status"], data["code"])
