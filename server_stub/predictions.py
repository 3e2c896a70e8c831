"""The prediction pipeline: signature, rules, daily ledger, durable store, receipts.

Shared by the WebSocket path and the HTTP fallback. :meth:`PredictionDesk.submit`
returns a future of the signed confirmation: already resolved for a rejection,
resolved after the commit for an accepted prediction. The WebSocket path attaches
a callback (so one miner can have many predictions in one group commit); the HTTP
path awaits it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sdk.codes import OK_CODE, ConfirmationStatus, ErrorCode
from sdk.frames import Confirmation, PredictionFrame, encode_frame_data
from sdk.jsontext import compact_json
from sdk.signing import Signer, sign_object, verify_prediction
from sdk.validation import Rejection, Rules, check_prediction, wager_day

from .clock import HubClock
from .store import PredictionBook, PredictionRecord, StoreResult
from .stream import GameStream

UidLookup = Callable[[str], "int | None"]
"""A miner's UID on the subnet by hotkey (None: it has none)."""

log = logging.getLogger("server_stub.predictions")


class DailyWagerTotals:
    """Per (miner, UTC day) wager totals: loaded from the store once, then kept in
    memory including predictions still in flight, so two quick predictions cannot
    both squeeze under the limit."""

    def __init__(self, store: PredictionBook) -> None:
        self._store = store
        self._totals: dict[tuple[str, str], float] = {}
        self._day: str | None = None

    async def total(self, hotkey: str, day: str) -> float:
        if day != self._day:  # a new UTC day: yesterday's totals are no longer needed
            self._totals = {key: v for key, v in self._totals.items() if key[1] >= day}
            self._day = day
        key = (hotkey, day)
        if key not in self._totals:
            stored = await self._store.wagered(hotkey, day)
            self._totals.setdefault(key, stored)
        return self._totals[key]

    def add(self, hotkey: str, day: str, amount: float) -> None:
        key = (hotkey, day)
        self._totals[key] = self._totals.get(key, 0.0) + amount


class PredictionDesk:
    """Validates, stores and confirms predictions for one validator identity.

    ``uid_of`` (given when the book needs miner UIDs, as the Bettensor database does):
    a prediction of a hotkey without a UID is rejected ``not_registered``, and one
    whose ``miner_uid`` names another UID ``invalid_prediction``."""

    def __init__(self, *, signer: Signer, store: PredictionBook, stream: GameStream,
                 clock: HubClock, rules: Rules, uid_of: UidLookup | None = None) -> None:
        self.signer = signer
        self.validator_hotkey: str = signer.ss58_address
        self.store = store
        self.stream = stream
        self.clock = clock
        self.rules = rules
        self.uid_of = uid_of
        self.ledger = DailyWagerTotals(store)

    def confirmation(self, *, prediction_id: str, miner_hotkey: str, status: ConfirmationStatus,
                     code: str, message: str, received_at_ns: int) -> dict[str, Any]:
        """A signed confirmation dict (the ``data`` of a confirmation frame)."""
        content = {
            "prediction_id": prediction_id,
            "status": str(status),
            "code": str(code),
            "message": message,
            "received_at_ns": str(received_at_ns),  # a string: PROTOCOL.md §3.5
            "miner_hotkey": miner_hotkey,
            "validator_hotkey": self.validator_hotkey,
        }
        # sign_receipt without its copy of the dict minus "signature": there is none yet
        content["signature"] = sign_object(self.signer, content)
        return content

    def rejection(self, miner_hotkey: str, prediction_id: str, code: str,
                  message: str) -> dict[str, Any]:
        return self.confirmation(prediction_id=prediction_id, miner_hotkey=miner_hotkey,
                                 status=ConfirmationStatus.REJECTED, code=code, message=message,
                                 received_at_ns=self.clock.now_ns())

    def duplicate(self, miner_hotkey: str, original: dict[str, Any]) -> dict[str, Any]:
        return self.confirmation(
            prediction_id=original["prediction_id"], miner_hotkey=miner_hotkey,
            status=ConfirmationStatus.DUPLICATE, code=OK_CODE,
            message="already received; received_at_ns is the original receipt's",
            received_at_ns=int(original["received_at_ns"]),
        )

    async def reject(self, miner_hotkey: str, prediction_id: str, code: str,
                     message: str) -> dict[str, Any]:
        """Reject, unless this prediction was stored before: then it is a duplicate
        (a resend after kick-off must still get its original receipt)."""
        original = await self.store.receipt(miner_hotkey, prediction_id)
        if original is not None:
            return self.duplicate(miner_hotkey, original)
        return self.rejection(miner_hotkey, prediction_id, code, message)

    async def submit(self, miner_hotkey: str,
                     frame: PredictionFrame) -> asyncio.Future[dict[str, Any]]:
        """Run the pipeline; the future resolves to the signed confirmation dict."""
        loop = asyncio.get_running_loop()
        prediction = frame.prediction
        pid = prediction.prediction_id
        done: asyncio.Future[dict[str, Any]] = loop.create_future()
        if frame.signature is not None and not _signature_verifies(miner_hotkey, frame):
            done.set_result(await self.reject(miner_hotkey, pid, ErrorCode.BAD_SIGNATURE,
                                              "signature does not verify against your hotkey"))
            return done
        received_at_ns = self.clock.now_ns()
        now = self.clock.now()
        day = wager_day(now).isoformat()
        miner_uid: int | None = None
        rejection: Rejection | None = None
        if self.uid_of is not None:
            miner_uid = self.uid_of(miner_hotkey)
            rejection = _uid_rejection(prediction.miner_uid, miner_uid)
        if rejection is None:
            wagered = await self.ledger.total(miner_hotkey, day)
            game = self.stream.games.get(prediction.game_id)
            rejection = check_prediction(prediction, game, now=now, wagered_today=wagered,
                                         rules=self.rules)
        if rejection is not None:
            done.set_result(await self.reject(miner_hotkey, pid, rejection.code,
                                              rejection.message))
            return done
        self.ledger.add(miner_hotkey, day, prediction.wager)
        receipt = self.confirmation(prediction_id=pid, miner_hotkey=miner_hotkey,
                                    status=ConfirmationStatus.ACCEPTED, code=OK_CODE,
                                    message="accepted", received_at_ns=received_at_ns)
        record = PredictionRecord(
            miner_hotkey=miner_hotkey, prediction_id=pid, game_id=prediction.game_id,
            wager=prediction.wager, wager_day=day, received_at_ns=received_at_ns,
            prediction=frame.raw_prediction, signature=frame.signature, receipt=receipt,
            parsed=prediction, miner_uid=miner_uid,
        )

        def committed(result: asyncio.Future[StoreResult]) -> None:
            if done.done():
                return
            if result.cancelled() or result.exception() is not None:
                self.ledger.add(miner_hotkey, day, -prediction.wager)
                done.set_exception(result.exception() or asyncio.CancelledError())
                return
            outcome = result.result()
            if outcome.stored and outcome.receipt is not None:
                done.set_result(outcome.receipt)
                return
            self.ledger.add(miner_hotkey, day, -prediction.wager)
            if outcome.rejection is not None or outcome.receipt is None:
                refused = outcome.rejection or Rejection(ErrorCode.INTERNAL_ERROR,
                                                         "the store kept no receipt")
                done.set_result(self.rejection(miner_hotkey, pid, refused.code,
                                               refused.message))
            else:
                done.set_result(self.duplicate(miner_hotkey, outcome.receipt))

        self.store.record(record).add_done_callback(committed)
        return done


def _uid_rejection(claimed: int | None, actual: int | None) -> Rejection | None:
    if actual is None:
        return Rejection(ErrorCode.NOT_REGISTERED,
                         "this hotkey has no UID on the subnet: predictions need one")
    if claimed is not None and claimed != actual:
        return Rejection(ErrorCode.INVALID_PREDICTION,
                         f"miner_uid {claimed} is not this hotkey's UID ({actual})")
    return None


def _signature_verifies(miner_hotkey: str, frame: PredictionFrame) -> bool:
    try:
        return verify_prediction(miner_hotkey, frame.raw_prediction, frame.signature)
    except RecursionError:
        # The signature covers the canonical re-encoding of the prediction. A prediction
        # nested right up to the JSON decoder's limit decodes, a few stack frames up,
        # but may not re-encode down here: unverifiable is not verified.
        return False


def confirmation_frame(data: dict[str, Any]) -> str:
    """Wire text of a confirmation from its signed data dict, byte-faithful to what
    was signed (no round trip through a model)."""
    return encode_frame_data(Confirmation.TYPE, compact_json(data))

