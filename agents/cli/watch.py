"""``bt-miner watch``: a live table of one validator's games and odds."""

from __future__ import annotations

import asyncio
import time

from rich.console import Console, Group
from rich.text import Text

from agents.discovery import ValidatorEndpoint
from sdk.connection import ValidatorConnection
from sdk.options import ConnectionOptions

from .common import (
    EXIT_OK,
    CliError,
    WalletOptions,
    close_connections,
    connection_failure,
    install_stop_signals,
)
from .live import end_live, live_display, refresh_until
from .target import one_validator
from .views import GameBoard, short

__all__ = ["watch_games"]


def _view(board: GameBoard, conn: ValidatorConnection, limit: int, left: float | None
          ) -> Group:
    """The header (the hub in use: with several, the one failed over to) and the board."""
    rtt = f"{conn.rtt * 1000:.1f} ms" if conn.rtt is not None else "-"
    header = Text.assemble(
        ("bt-miner watch", "bold"),
        f"  validator {short(conn.validator_hotkey)} at {conn.url} · {conn.state} · rtt {rtt} "
        f"· clock offset {conn.clock_offset:+.3f} s · epoch {conn.epoch or '-'} "
        f"· seq {conn.seq if conn.seq is not None else '-'} · {len(conn.games)} games "
        f"· {board.updates} updates"
        + (f" · {left:.0f} s left" if left is not None else ""))
    return Group(header, board.render(conn.games, conn.server_now(), limit=limit,
                                      title="games and odds (1 = team_a, X = tie, 2 = team_b)"))


async def watch_games(*, dev: bool, validators: list[ValidatorEndpoint], wallet: WalletOptions,
                      duration: float | None, limit: int, console: Console,
                      dev_port: int = 0, options: ConnectionOptions | None = None) -> int:
    async with one_validator(dev=dev, validators=validators, wallet=wallet,
                             dev_port=dev_port, command="watch") as target:
        endpoint = target.endpoint
        conn = ValidatorConnection(endpoint.url, target.signer, endpoint.hotkey,
                                   outbox=":memory:", options=options)
        board = GameBoard()
        stop = asyncio.Event()
        remove_signals = install_stop_signals(stop)
        started = time.monotonic()
        reader: asyncio.Task[None] | None = None
        try:
            await conn.start()
            updates = conn.game_updates()

            async def follow() -> None:
                async for update in updates:
                    board.observe(update.games)

            reader = asyncio.create_task(follow())
            deadline = None if duration is None else started + duration

            def render() -> Group:
                left = None if deadline is None else deadline - time.monotonic()
                return _view(board, conn, limit, left)

            with live_display(console) as live:
                await refresh_until(live, render, stop=stop, deadline=deadline,
                                    running=lambda: conn.error is None)
                live.update(_view(board, conn, limit, None), refresh=True)
            end_live(console)
        finally:
            remove_signals()
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            await close_connections([conn])
        failure = connection_failure([conn])
        if failure is not None:
            code, lines = failure
            raise CliError(lines[-1], code)
        return EXIT_OK
