"""Frames over an aiohttp WebSocket, as a miner sends and reads them (every read bounded)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from bittensor.keyfiles import Keypair

from sdk.models import Prediction
from sdk.signing import sign_prediction


def prediction_data(key: Keypair | None, prediction: Prediction | dict[str, Any],
                    ) -> dict[str, Any]:
    """The ``data`` of a prediction frame, signed by ``key`` (unsigned when None)."""
    wire = prediction.wire() if isinstance(prediction, Prediction) else prediction
    data: dict[str, Any] = {"prediction": wire}
    if key is not None:
        data["signature"] = sign_prediction(key, wire)
    return data


async def send_frame(ws: aiohttp.ClientWebSocketResponse, frame_type: str,
                     data: dict[str, Any]) -> None:
    await ws.send_str(json.dumps({"type": frame_type, "data": data}))


async def send_prediction(ws: aiohttp.ClientWebSocketResponse, key: Keypair | None,
                          prediction: Prediction | dict[str, Any]) -> None:
    await send_frame(ws, "prediction", prediction_data(key, prediction))


async def receive_close(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0,
                        limit: int = 100_000) -> tuple[int | None, list[dict]]:
    """Read until the hub closes the socket (bounded); returns (close code, frames
    read before the close)."""
    frames: list[dict] = []

    async def read() -> int | None:
        for _ in range(limit):
            message = await ws.receive()
            if message.type is aiohttp.WSMsgType.TEXT:
                frames.append(json.loads(message.data))
                continue
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return ws.close_code
        raise AssertionError(f"socket still open after {limit} frames")

    return await asyncio.wait_for(read(), timeout), frames


async def receive_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict:
    message = await asyncio.wait_for(ws.receive(), timeout)
    assert message.type is aiohttp.WSMsgType.TEXT, f"expected text, got {message!r}"
    return json.loads(message.data)


async def receive_type(ws: aiohttp.ClientWebSocketResponse, frame_type: str,
                       timeout: float = 5.0, limit: int = 200) -> dict:
    """Next frame of ``frame_type``, skipping heartbeats and others (bounded)."""
    for _ in range(limit):
        frame = await receive_json(ws, timeout)
        if frame["type"] == frame_type:
            return frame
    raise AssertionError(f"no {frame_type} frame within {limit} frames")


async def welcome_and_snapshot(ws: aiohttp.ClientWebSocketResponse) -> tuple[dict, dict]:
    welcome = await receive_json(ws)
    assert welcome["type"] == "welcome"
    snapshot = await receive_json(ws)
    assert snapshot["type"] == "game_update"
    return welcome["data"], snapshot["data"]
