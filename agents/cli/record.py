"""``bt-miner record``: append one validator's game stream to a recording file.

Every ``game_update`` the connection applies is written with the hub time it arrived
at (format: :mod:`agents.backtest.recording`). The connection resumes the stream
across reconnects; the file skips what it already holds, so a recording can be
continued by running the command again with the same ``--out``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from rich.console import Console

from agents.backtest.recording import RecordingError, RecordingWriter
from agents.discovery import ValidatorEndpoint
from agents.stopping import until_stopped
from sdk.connection import ValidatorConnection
from sdk.errors import BettensorWSError
from sdk.options import ConnectionOptions
from sdk.signing import WalletLike

from .common import (
    EXIT_OK,
    CliError,
    WalletOptions,
    close_connections,
    connection_failure,
    install_stop_signals,
)
from .target import one_validator

__all__ = ["record_stream", "record_updates"]

log = logging.getLogger("agents.cli")


async def _follow(conn: ValidatorConnection, writer: RecordingWriter) -> None:
    updates = conn.game_updates(buffer=100_000)
    try:
        async for update in updates:
            writer.write(conn.server_now(), update)
    except BettensorWSError:  # the connection's permanent error: reported by the caller
        return


async def record_updates(url: str, signer: WalletLike, validator_hotkey: str,
                         writer: RecordingWriter, *, stop: asyncio.Event,
                         duration: float | None = None,
                         options: ConnectionOptions | None = None) -> ValidatorConnection:
    """Append the stream of the validator at ``url`` to ``writer`` until ``stop`` is set
    or ``duration`` seconds pass; return the (closed) connection, whose ``error`` says
    why it stopped if it did on its own."""
    conn = ValidatorConnection(url, signer, validator_hotkey, outbox=":memory:",
                               options=options)
    try:
        await conn.start()
        follower = asyncio.create_task(_follow(conn, writer))
        await until_stopped(asyncio.shield(follower), stop, timeout=duration)
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
    finally:
        await close_connections([conn])
    return conn


async def record_stream(*, dev: bool, validators: list[ValidatorEndpoint],
                        wallet: WalletOptions, out: Path, duration: float | None,
                        console: Console, dev_port: int = 0,
                        options: ConnectionOptions | None = None) -> int:
    """``bt-miner record``: until SIGINT/SIGTERM or ``duration`` seconds; the exit code."""
    try:
        writer = RecordingWriter(out).open()
    except (OSError, RecordingError, UnicodeDecodeError) as exc:
        raise CliError(f"--out {str(out)!r}: cannot append to it: {exc}") from None
    try:
        async with one_validator(dev=dev, validators=validators, wallet=wallet,
                                 dev_port=dev_port, command="record") as target:
            stop = asyncio.Event()
            remove_signals = install_stop_signals(stop)
            try:
                conn = await record_updates(target.endpoint.url, target.signer,
                                            target.endpoint.hotkey, writer, stop=stop,
                                            duration=duration, options=options)
            finally:
                remove_signals()
            failure = connection_failure([conn])
    finally:
        writer.close()
    console.print(f"recorded {writer.written} update(s) to {out}; {writer.skipped} already "
                  f"held skipped; {writer.held + writer.written} in the file")
    if failure is not None:
        code, lines = failure
        raise CliError(lines[-1], code)
    return EXIT_OK
