"""``bt-miner submit``: one prediction by hand, through the same durable outbox and
checks as the runner; prints the validator-signed receipt or the rejection code."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from agents.discovery import ValidatorEndpoint
from sdk.codes import ErrorCode
from sdk.connection import ValidatorConnection
from sdk.errors import LinkError, PredictionRejected, ReceiptError
from sdk.models import Prediction
from sdk.options import ConnectionOptions
from sdk.signing import hotkey_signer

from .common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    WalletOptions,
    close_connections,
    connection_failure,
    outbox_path,
)
from .target import one_validator
from .views import describe_pick

__all__ = ["submit_prediction"]

log = logging.getLogger("agents.cli")

_REPRICE_ATTEMPTS = 3


async def _next_update(conn: ValidatorConnection, game_id: str, sent: Prediction,
                       wait_s: float = 2.0) -> None:
    """Wait (bounded) until the table shows odds for ``game_id`` other than ``sent``'s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while loop.time() < deadline:
        game = conn.games.get(game_id)
        if game is None or (game.team_a_odds, game.team_b_odds, game.tie_odds) != (
                sent.team_a_odds, sent.team_b_odds, sent.tie_odds):
            return
        await asyncio.sleep(0.05)


async def submit_prediction(*, dev: bool, validators: list[ValidatorEndpoint],
                            wallet: WalletOptions, outbox_dir: Path | None, game_id: str,
                            outcome: str, wager: float, odds: float | None,
                            confidence: float | None, model_name: str | None,
                            miner_uid: int | None, timeout: float, as_json: bool,
                            console: Console, dev_port: int = 0,
                            options: ConnectionOptions | None = None) -> int:
    async with contextlib.AsyncExitStack() as stack:
        target = await stack.enter_async_context(one_validator(
            dev=dev, validators=validators, wallet=wallet, dev_port=dev_port,
            command="submit"))
        if dev and outbox_dir is None:
            outbox_dir = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="bt-miner-outbox-")))
        endpoint = target.endpoint
        miner_hotkey = hotkey_signer(target.signer).ss58_address
        path = outbox_path(outbox_dir, miner_hotkey)
        conn = ValidatorConnection(endpoint.url, target.signer, endpoint.hotkey, outbox=path,
                                   options=options)
        try:
            await conn.start()
            try:
                await conn.wait_ready(timeout)
            except TimeoutError:
                raise CliError(f"validator {endpoint.hotkey} at {endpoint.url} was not ready "
                               f"within {timeout:g}s (state: {conn.state})",
                               EXIT_FAILURE) from None
            except LinkError:
                failure = connection_failure([conn])
                assert failure is not None
                raise CliError(failure[1][-1], failure[0]) from None
            return await _submit(conn, path, game_id=game_id, outcome=outcome, wager=wager,
                                 odds=odds, confidence=confidence, model_name=model_name,
                                 miner_uid=miner_uid, timeout=timeout, as_json=as_json,
                                 console=console)
        finally:
            await close_connections([conn])
    return EXIT_OK  # pragma: no cover


def _rejected(console: Console, as_json: bool, prediction_id: str | None, code: str,
              message: str, receipt: dict[str, Any] | None = None) -> int:
    if as_json:
        console.print_json(json.dumps({"status": "rejected", "code": code, "message": message,
                                       "prediction_id": prediction_id, "receipt": receipt}))
    else:
        where = " (validator's signed answer)" if receipt is not None else ""
        console.print(f"rejected [{code}] {message}{where}", markup=False, highlight=False,
                      soft_wrap=True)
    return EXIT_FAILURE


async def _submit(conn: ValidatorConnection, path: Path, *, game_id: str, outcome: str,
                  wager: float, odds: float | None, confidence: float | None,
                  model_name: str | None, miner_uid: int | None, timeout: float,
                  as_json: bool, console: Console) -> int:
    game = conn.games.get(game_id)
    if game is None:
        known = ", ".join(sorted(conn.games)[:8]) or "none"
        return _rejected(console, as_json, None, "unknown_game",
                         f"game {game_id!r} is not in this validator's table "
                         f"(games: {known}{', ...' if len(conn.games) > 8 else ''}; "
                         "see bt-miner watch)")
    fields: dict[str, Any] = {"model_name": model_name or "manual", "miner_uid": miner_uid}
    if confidence is not None:
        fields["confidence_score"] = confidence
    # Without --odds the user takes the current odds: when they move between reading and
    # the hub's check (odds_mismatch), price again at the new odds, a few times at most.
    attempts = 1 if odds is not None else _REPRICE_ATTEMPTS
    for attempt in range(1, attempts + 1):
        game = conn.games.get(game_id, game)
        try:
            prediction = Prediction.for_game(game, outcome, wager, **fields)
        except ValidationError:
            raise CliError(f"--outcome {outcome!r} is not 0, 1, 2, 'tie' or a team name of "
                           f"game {game_id} ({game.team_a} / {game.team_b})",
                           EXIT_USAGE) from None
        if odds is not None:
            prediction = prediction.model_copy(update={"predicted_odds": odds})
        try:
            receipt = await conn.submit(prediction, timeout=timeout)
            break
        except PredictionRejected as exc:
            if exc.code == ErrorCode.ODDS_MISMATCH and attempt < attempts:
                log.warning("odds moved before the validator checked them (%s); submitting "
                            "again at the new odds", exc.message)
                await _next_update(conn, game_id, prediction)
                continue
            signed = exc.confirmation.model_dump(mode="json") if exc.confirmation else None
            return _rejected(console, as_json, prediction.prediction_id, str(exc.code),
                             exc.message, signed)
        except ReceiptError as exc:
            raise CliError(str(exc), EXIT_FAILURE) from None
        except TimeoutError:
            raise CliError(f"no receipt within {timeout:g}s: prediction "
                           f"{prediction.prediction_id} stays pending in the outbox {path} "
                           "and is resent by the next bt-miner run", EXIT_FAILURE) from None
        except LinkError as exc:
            raise CliError(f"connection lost before the receipt ({exc}); prediction "
                           f"{prediction.prediction_id} stays pending in the outbox {path}",
                           EXIT_FAILURE) from None
    pick = describe_pick(prediction.predicted_outcome, game.team_a, game.team_b)
    data = receipt.model_dump(mode="json")
    if as_json:
        console.print_json(json.dumps({"prediction": prediction.wire(), "receipt": data,
                                       "outbox": str(path)}))
        return EXIT_OK
    received = datetime.fromtimestamp(receipt.received_at_ns / 1e9, UTC)
    lines = [
        f"{receipt.status}: prediction {prediction.prediction_id} on {game.game_id} "
        f"({game.team_a} v {game.team_b}): {pick} @ {prediction.predicted_odds:.2f}, "
        f"wager {prediction.wager:g}",
        f"receipt: received {received.isoformat(timespec='milliseconds')} by validator "
        f"{receipt.validator_hotkey}",
        f"signature: {receipt.signature} (verified)",
        f"outbox: {path}",
    ]
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK
