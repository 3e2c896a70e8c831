"""``bt-miner run`` and ``bt-miner demo``: one agent against one or many validators.

Validators come from ``--validator`` (with their hotkeys), from the metagraph
(``--netuid``) or from an in-process dev hub (``--dev``). Each gets its own
:class:`~sdk.ValidatorConnection` with a durable outbox; one
:class:`~agents.AgentRunner` drives the agent over all of them. SIGINT/SIGTERM (or the
end of ``--duration``) stop it gracefully: no new predictions, in-flight ones get their
receipts (bounded), the outboxes are flushed and closed, a summary is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.text import Text

from agents.discovery import (
    DiscoveryError,
    MetagraphFetch,
    SubnetNotFound,
    ValidatorEndpoint,
    discover_validators,
)
from agents.loader import AgentLoadError, load_agent
from agents.runner import AgentRunner
from agents.stopping import until_stopped
from sdk.connection import ValidatorConnection
from sdk.errors import BettensorWSError
from sdk.frames import Confirmation
from sdk.signing import hotkey_signer
from sdk.validation import DEFAULT_DAILY_WAGER_LIMIT, wager_day

from .common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    WalletOptions,
    close_connections,
    connection_failure,
    connection_options,
    install_stop_signals,
    load_signer,
    outbox_path,
    put_app_dir_first,
)
from .devhub import dev_hub, dev_miner
from .live import end_live, live_display, refresh_until
from .views import GameBoard, ReceiptRow, counts_line, describe_pick, receipts_table, short
from .views import summary as summary_view

__all__ = ["RunConfig", "resolve_validators", "run_miner"]

log = logging.getLogger("agents.cli")


@dataclass
class RunConfig:
    agent: str = "value"
    agent_options: dict[str, Any] = field(default_factory=dict)
    app_dir: Path | None = None
    """Put first on the import path before loading ``agent`` (None: leave it as is)."""
    validators: list[ValidatorEndpoint] = field(default_factory=list)
    netuid: int | None = None
    network: str = "finney"
    min_stake: float = 0.0
    wallet: WalletOptions = field(default_factory=WalletOptions)
    outbox_dir: Path | None = None
    daily_budget: float | None = None
    dev: bool = False
    dev_port: int = 0
    duration: float | None = None
    live: bool = False
    stats_interval: float = 60.0
    discovery_timeout: float = 60.0
    metagraph_fetch: MetagraphFetch | None = None
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port (0: any free one; None: no metrics)."""
    metrics_host: str = "127.0.0.1"
    ca_file: Path | None = None
    """CA certificates for wss:// hubs with a private CA (None: the system's)."""


async def resolve_validators(cfg: RunConfig, miner_hotkey: str) -> list[ValidatorEndpoint]:
    if cfg.validators:
        return list(cfg.validators)
    assert cfg.netuid is not None
    try:
        async with asyncio.timeout(cfg.discovery_timeout):
            found = await discover_validators(cfg.netuid, cfg.network, min_stake=cfg.min_stake,
                                              exclude={miner_hotkey},
                                              fetch=cfg.metagraph_fetch)
    except TimeoutError:
        raise CliError(f"reading the metagraph of netuid {cfg.netuid} from {cfg.network!r} "
                       f"took more than {cfg.discovery_timeout:g}s", EXIT_FAILURE) from None
    except SubnetNotFound as exc:
        raise CliError(f"{exc} (check --netuid and --subtensor.network)", EXIT_USAGE) from None
    except DiscoveryError as exc:
        raise CliError(str(exc), EXIT_FAILURE) from None
    if not found:
        stake = f" and a total stake of at least {cfg.min_stake:g}" if cfg.min_stake else ""
        raise CliError(f"no validator on netuid {cfg.netuid} ({cfg.network}) has a validator "
                       f"permit and a hub address (a bt-ws= commitment or a served axon){stake}",
                       EXIT_FAILURE)
    log.info("discovered %d validator(s) on netuid %d: %s", len(found), cfg.netuid,
             ", ".join(f"{short(v.hotkey)} {v.url} stake {v.stake:g}" for v in found))
    return found


class _LiveView:
    """What the live view of ``demo`` shows, kept up to date from the connections:
    receipts as they arrive (with the prediction from the outbox), the game board and
    the picks per game."""

    def __init__(self) -> None:
        self.board = GameBoard()
        self.receipts: list[ReceiptRow] = []
        self.picks: dict[str, str] = {}

    async def follow_updates(self, conn: ValidatorConnection) -> None:
        with contextlib.suppress(BettensorWSError):  # ends with the connection's error
            self.board.observe(conn.games.values())
            async for update in conn.game_updates():
                self.board.observe(update.games)

    async def follow_receipts(self, conn: ValidatorConnection) -> None:
        with contextlib.suppress(BettensorWSError):  # ends with the connection's error
            async for confirmation in conn.confirmations():
                await self._add(conn, confirmation)

    async def _add(self, conn: ValidatorConnection, confirmation: Confirmation) -> None:
        entry = None
        if conn.outbox is not None and not conn.outbox.closed:
            entry = await conn.outbox.get(confirmation.prediction_id, conn.validator_hotkey,
                                          conn.miner_hotkey)
        prediction = entry.prediction if entry is not None else {}
        pick = describe_pick(prediction.get("predicted_outcome"), prediction.get("team_a"),
                             prediction.get("team_b"))
        wager = float(prediction.get("wager", 0.0))
        game_id = str(prediction.get("game_id", "?"))
        self.receipts.append(ReceiptRow(
            at=conn.server_now(), prediction_id=confirmation.prediction_id, game_id=game_id,
            pick=pick, odds=prediction.get("predicted_odds"), wager=wager,
            status=str(confirmation.status), code=confirmation.code,
            signature=confirmation.signature, validator_hotkey=confirmation.validator_hotkey))
        if str(confirmation.status) in ("accepted", "duplicate"):
            self.picks[game_id] = f"{pick} {wager:.2f} ✓"
        elif game_id not in self.picks:
            self.picks[game_id] = f"✗ {confirmation.code}"


def _render(view: _LiveView, runner: AgentRunner, conns: list[ValidatorConnection],
            started: float, duration: float | None) -> Group:
    conn = conns[0]
    rtt = f"{conn.rtt * 1000:.1f} ms" if conn.rtt is not None else "-"
    left = (f", {max(duration - (time.monotonic() - started), 0):.0f} s left"
            if duration else "")
    header = Text.assemble(
        ("bt-miner demo", "bold"),
        f"  agent {runner.agent.name} · validator {short(conn.validator_hotkey)} "
        f"· {conn.state} · rtt {rtt} · seq {conn.seq}{left}")
    stats = Text(f"predictions: {counts_line(runner.stats)}")
    return Group(header, stats,
                 view.board.render(conn.games, conn.server_now(), picks=view.picks, limit=10,
                                   title="games and odds (1 = team_a, X = tie, 2 = team_b)"),
                 receipts_table(view.receipts, limit=8,
                                title="validator-signed receipts (newest first)"))


async def _budgets(conns: list[ValidatorConnection],
                   daily_budget: float | None) -> dict[str, tuple[str, float, float]]:
    budgets: dict[str, tuple[str, float, float]] = {}
    for conn in conns:
        if conn.outbox is None or conn.outbox.closed:
            continue
        day = wager_day(conn.server_now()).isoformat()
        limit = conn.limits.daily_wager_limit if conn.limits else DEFAULT_DAILY_WAGER_LIMIT
        if daily_budget is not None:
            limit = min(limit, daily_budget)
        wagered = await conn.outbox.wagered(conn.validator_hotkey, day, conn.miner_hotkey)
        budgets[conn.validator_hotkey] = (day, wagered, limit)
    return budgets


async def run_miner(cfg: RunConfig, console: Console) -> int:
    """Run until stopped; return the exit code. Raises :class:`CliError` for
    usage/configuration problems found before anything connects."""
    if cfg.app_dir is not None:
        put_app_dir_first(cfg.app_dir)
    try:
        agent = load_agent(cfg.agent, **cfg.agent_options)
    except AgentLoadError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if cfg.dev:
        signer = load_signer(cfg.wallet) if cfg.wallet.given else dev_miner()
    else:
        signer = load_signer(cfg.wallet)
    miner_hotkey = hotkey_signer(signer).ss58_address

    async with contextlib.AsyncExitStack() as stack:
        outbox_dir = cfg.outbox_dir
        if cfg.dev:
            hub = await stack.enter_async_context(dev_hub(port=cfg.dev_port))
            endpoints = [ValidatorEndpoint(hub.validator_hotkey, hub.url)]
            if outbox_dir is None:  # a throwaway hub: a throwaway outbox
                outbox_dir = Path(stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="bt-miner-outbox-")))
        else:
            endpoints = await resolve_validators(cfg, miner_hotkey)
        options = connection_options(cfg.ca_file)
        conns = [ValidatorConnection(e.url, signer, e.hotkey, options=options,
                                     outbox=outbox_path(outbox_dir, miner_hotkey))
                 for e in endpoints]
        log.info("bt-miner: agent %r, miner hotkey %s, %d validator(s): %s", agent.name,
                 miner_hotkey, len(conns), ", ".join(f"{short(e.hotkey)}@{e.url}"
                                                     for e in endpoints))
        try:
            return await _serve(cfg, console, agent, conns, outbox_dir)
        finally:
            await close_connections(conns)
    return EXIT_OK  # pragma: no cover - the context manager does not swallow


async def _serve(cfg: RunConfig, console: Console, agent: Any,
                 conns: list[ValidatorConnection], outbox_dir: Path | None) -> int:
    for conn in conns:
        try:
            await conn.start()
        except BettensorWSError as exc:
            raise CliError(f"cannot start the connection to {conn.validator_hotkey}: {exc}",
                           EXIT_USAGE) from None
        except OSError as exc:
            raise CliError(f"cannot open the outbox under {outbox_dir}: "
                           f"{exc.strerror or exc}", EXIT_USAGE) from None
    try:
        runner = AgentRunner(agent, conns, daily_budget=cfg.daily_budget,
                             drain_timeout_s=10.0)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    started_ns = time.time_ns()
    started = time.monotonic()
    metrics = await _open_metrics(cfg, conns, runner, started)
    view = _LiveView()
    helpers: list[asyncio.Task[Any]] = []
    if cfg.live:
        for conn in conns:
            helpers.append(asyncio.create_task(view.follow_updates(conn)))
            helpers.append(asyncio.create_task(view.follow_receipts(conn)))
    stop = asyncio.Event()
    remove_signals = install_stop_signals(stop)
    run_task = asyncio.create_task(runner.run(), name="agent-runner")

    def render() -> Group:
        return _render(view, runner, conns, started, cfg.duration)

    try:
        if cfg.live:
            with live_display(console) as live:
                await refresh_until(
                    live, render, stop=stop,
                    deadline=None if cfg.duration is None else started + cfg.duration,
                    running=lambda: not run_task.done(), also=run_task)
                await _stop_runner(runner, run_task)
                live.update(render(), refresh=True)
        else:
            helpers.append(asyncio.create_task(_log_stats(runner, cfg.stats_interval)))
            await until_stopped(asyncio.shield(run_task), stop, timeout=cfg.duration)
            await _stop_runner(runner, run_task)
    finally:
        if metrics is not None:
            await metrics.aclose()
        remove_signals()
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        if not run_task.done():
            run_task.cancel()
            await asyncio.gather(run_task, return_exceptions=True)

    entries = []
    pending = 0
    games: dict[str, Any] = {}
    for conn in conns:
        games.update(conn.games)
        if conn.outbox is not None and not conn.outbox.closed:
            entries += [e for e in await conn.outbox.entries(conn.validator_hotkey,
                                                             conn.miner_hotkey)
                        if e.created_ns >= started_ns]
            pending += len(await conn.outbox.pending(conn.validator_hotkey, conn.miner_hotkey))
    budgets = await _budgets(conns, cfg.daily_budget)
    failure = connection_failure(conns)
    if cfg.live:
        end_live(console)
    if failure is None or runner.stats.submitted or pending:
        console.print(summary_view(runner.stats, elapsed_s=time.monotonic() - started,
                                   entries=entries, games=games, budgets=budgets,
                                   pending=pending))
    error = None if run_task.cancelled() else run_task.exception()
    if error is not None:
        raise CliError(f"the agent runner failed: {type(error).__name__}: {error}",
                       EXIT_FAILURE)
    if failure is not None:
        code, lines = failure
        for line in lines[:-1]:
            log.error("%s", line)
        raise CliError(lines[-1], code)
    return EXIT_OK


async def _open_metrics(cfg: RunConfig, conns: list[ValidatorConnection],
                        runner: AgentRunner, started: float) -> contextlib.AsyncExitStack | None:
    """Start serving ``/metrics`` when asked (closed by the caller); a port that cannot
    be bound is a configuration error, reported before anything is predicted."""
    if cfg.metrics_port is None:
        return None
    from agents.metrics import MinerReading, read_miner, serve_metrics

    def read() -> Awaitable[MinerReading]:
        return read_miner(conns, runner, daily_budget=cfg.daily_budget, started=started)

    stack = contextlib.AsyncExitStack()
    try:
        url = await stack.enter_async_context(
            serve_metrics(read, cfg.metrics_host, cfg.metrics_port))
    except OSError as exc:
        raise CliError(f"cannot serve metrics on {cfg.metrics_host}:{cfg.metrics_port}: "
                       f"{exc.strerror or exc}", EXIT_USAGE) from None
    log.info("metrics: %s", url)
    return stack


async def _stop_runner(runner: AgentRunner, run_task: asyncio.Task[Any]) -> None:
    await runner.stop()
    await asyncio.gather(run_task, return_exceptions=True)


async def _log_stats(runner: AgentRunner, interval: float) -> None:
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        log.info("stats: %s", counts_line(runner.stats))
