"""The ``bt-miner`` command line (typer): run, demo, watch, submit, record, backtest,
status, agents."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .common import (
    EXIT_CODES_HELP,
    EXIT_FAILURE,
    EXIT_USAGE,
    PERMANENT_REFUSALS,
    CliError,
    WalletOptions,
    connection_options,
    parse_agent_options,
    parse_validators,
    setup_logging,
)
from .options import (
    AppDirOpt,
    CaFileOpt,
    DevOpt,
    DevPortOpt,
    DurationOpt,
    JsonOpt,
    LogFormat,
    LogFormatOpt,
    LogLevel,
    LogLevelOpt,
    OutboxDirOpt,
    ValidatorHotkeyOpt,
    ValidatorOpt,
    WalletHotkeyOpt,
    WalletNameOpt,
    WalletPathOpt,
)

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False, no_args_is_help=True, rich_markup_mode=None,
    help="bt-miner: run prediction agents against bettensor-ws validator hubs.\n\n"
         "Start with 'bt-miner demo' (no keys, chain or network needed).",
    epilog=EXIT_CODES_HELP)


def _wallet(name: str | None, hotkey: str | None, path: str | None) -> WalletOptions:
    return WalletOptions(name=name, hotkey=hotkey, path=path)


def _console() -> Console:
    console = Console(soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=140, soft_wrap=False)
    return console


def _error(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)


def _execute(make: Callable[[], Awaitable[int]]) -> None:
    """Run a command's coroutine; map errors to one line on stderr and an exit code."""
    from agents.loader import AgentLoadError
    from sdk.errors import BettensorWSError, SigningError

    try:
        code = asyncio.run(_guarded(make))
    except CliError as exc:
        _error(exc.message)
        raise typer.Exit(exc.code) from None
    except AgentLoadError as exc:
        _error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except SigningError as exc:
        _error(str(exc))
        raise typer.Exit(EXIT_USAGE) from None
    except PERMANENT_REFUSALS as exc:
        _error(str(exc))
        raise typer.Exit(3) from None
    except BettensorWSError as exc:
        _error(str(exc))
        raise typer.Exit(EXIT_FAILURE) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        _error("interrupted")
        raise typer.Exit(EXIT_FAILURE) from None
    raise typer.Exit(code)


async def _guarded(make: Callable[[], Awaitable[int]]) -> int:
    try:
        return await make()
    except CliError:
        raise
    except Exception as exc:  # the last guard: a clear exit code, traceback at debug
        from agents.loader import AgentLoadError
        from sdk.errors import BettensorWSError

        if isinstance(exc, AgentLoadError | BettensorWSError):
            raise
        import logging

        logging.getLogger("agents.cli").debug("unexpected error", exc_info=True)
        raise CliError(f"unexpected {type(exc).__name__}: {exc} (run with --log-level debug "
                       "for the traceback)", EXIT_FAILURE) from exc


def _sources(dev: bool, validators: list[str], netuid: int | None) -> None:
    chosen = [name for name, on in (("--dev", dev), ("--validator", bool(validators)),
                                    ("--netuid", netuid is not None)) if on]
    if len(chosen) != 1:
        raise CliError("choose where the validators come from: --validator URL "
                       "--validator-hotkey SS58 (or HOTKEY@URL), --netuid N "
                       "--subtensor.network NET, or --dev "
                       f"(got: {', '.join(chosen) or 'none'})")


# -- run / demo ------------------------------------------------------------------------------


@app.command(epilog=EXIT_CODES_HELP)
def run(
    agent: Annotated[str, typer.Option(
        "--agent", metavar="NAME|module:Class",
        help="The agent: a built-in or installed name (see 'bt-miner agents') or "
             "package.module:ClassName.")] = "value",
    agent_opt: Annotated[list[str] | None, typer.Option(
        "--agent-opt", metavar="KEY=VALUE",
        help="Option for the agent's constructor (repeatable; VALUE read as JSON when it "
             "parses), e.g. --agent-opt kelly=0.5.")] = None,
    app_dir: AppDirOpt = Path("."),
    validator: ValidatorOpt = None,
    validator_hotkey: ValidatorHotkeyOpt = None,
    netuid: Annotated[int | None, typer.Option(
        "--netuid", min=0, metavar="N",
        help="Discover validators on this subnet: a validator permit and a served axon.")]
    = None,
    network: Annotated[str, typer.Option(
        "--subtensor.network", metavar="NET",
        help="Chain network for --netuid (finney, test, local or ws://...).")] = "finney",
    min_stake: Annotated[float, typer.Option(
        "--validator-min-stake", min=0, metavar="STAKE",
        help="With --netuid: only validators with at least this total stake.")] = 0.0,
    wallet_name: WalletNameOpt = None,
    wallet_hotkey: WalletHotkeyOpt = None,
    wallet_path: WalletPathOpt = None,
    outbox_dir: OutboxDirOpt = None,
    daily_budget: Annotated[float | None, typer.Option(
        "--daily-budget", min=0, metavar="AMOUNT",
        help="Most to wager per validator and hub UTC day [default: each validator's "
             "announced limit, 1000].")] = None,
    log_format: LogFormatOpt = LogFormat.text,
    log_level: LogLevelOpt = None,
    dev: DevOpt = False,
    dev_port: DevPortOpt = 0,
    duration: DurationOpt = None,
    stats_interval: Annotated[float, typer.Option(
        "--stats-interval", metavar="SECONDS", min=0,
        help="Log the prediction counters this often (0: never).")] = 60.0,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", min=0, max=65535, metavar="PORT",
        help="Serve Prometheus metrics at http://HOST:PORT/metrics (0: any free port, "
             "logged) [default: no metrics].")] = None,
    metrics_host: Annotated[str, typer.Option(
        "--metrics-host", metavar="HOST",
        help="Address for --metrics-port (0.0.0.0: every interface).")] = "127.0.0.1",
    ca_file: CaFileOpt = None,
) -> None:
    """Run an agent against one or many validators until SIGINT/SIGTERM (or --duration).

    Stopping is graceful: no new predictions, in-flight ones get their receipts, the
    outbox is flushed; unconfirmed predictions are resent at the next start. A summary
    is printed at the end.
    """
    from .run import RunConfig, run_miner

    setup_logging(log_format.value, (log_level or LogLevel.info).value)

    async def go() -> int:
        _sources(dev, validator or [], netuid)
        endpoints = parse_validators(validator or [], validator_hotkey or [])
        cfg = RunConfig(agent=agent, agent_options=parse_agent_options(agent_opt or []),
                        app_dir=app_dir, validators=endpoints, netuid=netuid, network=network,
                        min_stake=min_stake,
                        wallet=_wallet(wallet_name, wallet_hotkey, wallet_path),
                        outbox_dir=outbox_dir, daily_budget=daily_budget, dev=dev,
                        dev_port=dev_port, duration=duration, stats_interval=stats_interval,
                        metrics_port=metrics_port, metrics_host=metrics_host,
                        ca_file=ca_file)
        return await run_miner(cfg, _console())

    _execute(go)


@app.command(epilog=EXIT_CODES_HELP)
def demo(
    duration: Annotated[float, typer.Option(
        "--duration", metavar="SECONDS", min=1, help="How long to run before the summary.")]
    = 20.0,
    agent: Annotated[str, typer.Option(
        "--agent", metavar="NAME|module:Class", help="The agent to demonstrate.")] = "value",
    agent_opt: Annotated[list[str] | None, typer.Option(
        "--agent-opt", metavar="KEY=VALUE", help="Option for the agent's constructor "
                                                 "(repeatable).")] = None,
    app_dir: AppDirOpt = Path("."),
    daily_budget: Annotated[float | None, typer.Option(
        "--daily-budget", min=0, metavar="AMOUNT",
        help="Most to wager today [default: the hub's 1000].")]
    = None,
    dev_port: DevPortOpt = 0,
    log_format: LogFormatOpt = LogFormat.text,
    log_level: LogLevelOpt = None,
) -> None:
    """The whole system in one command: 'run --dev' with a live table of games, odds,
    predictions and validator-signed receipts, then a summary (accepted/rejected by
    code, wagered today, per game). Needs no keys, chain or network."""
    from .run import RunConfig, run_miner

    setup_logging(log_format.value, (log_level or LogLevel.error).value)

    async def go() -> int:
        cfg = RunConfig(agent=agent, agent_options=parse_agent_options(agent_opt or []),
                        app_dir=app_dir, dev=True, dev_port=dev_port, duration=duration, live=True,
                        daily_budget=daily_budget)
        return await run_miner(cfg, _console())

    _execute(go)


# -- watch / submit ------------------------------------------------------------------------


@app.command(epilog=EXIT_CODES_HELP)
def watch(
    validator: ValidatorOpt = None,
    validator_hotkey: ValidatorHotkeyOpt = None,
    wallet_name: WalletNameOpt = None,
    wallet_hotkey: WalletHotkeyOpt = None,
    wallet_path: WalletPathOpt = None,
    dev: DevOpt = False,
    dev_port: DevPortOpt = 0,
    duration: DurationOpt = None,
    rows: Annotated[int, typer.Option(
        "--rows", min=1, metavar="N", help="Games shown at most.")] = 20,
    ca_file: CaFileOpt = None,
    log_format: LogFormatOpt = LogFormat.text,
    log_level: LogLevelOpt = None,
) -> None:
    """Live table of one validator's games and odds (moves marked ▲/▼), with the
    connection state, RTT and clock offset."""
    from .watch import watch_games

    setup_logging(log_format.value, (log_level or LogLevel.error).value)

    async def go() -> int:
        endpoints = parse_validators(validator or [], validator_hotkey or [])
        return await watch_games(dev=dev, validators=endpoints,
                                 wallet=_wallet(wallet_name, wallet_hotkey, wallet_path),
                                 duration=duration, limit=rows, console=_console(),
                                 dev_port=dev_port, options=connection_options(ca_file))

    _execute(go)


@app.command(epilog=EXIT_CODES_HELP)
def submit(
    game_id: Annotated[str, typer.Option(
        "--game-id", help="The game to predict (see 'bt-miner watch'; the --dev hub's games "
                          "are sim-0-0, sim-0-1, ...).")],
    outcome: Annotated[str, typer.Option(
        "--outcome", help="0 (team_a), 1 (team_b), 2 (tie), a team name or 'tie'.")],
    wager: Annotated[float, typer.Option("--wager", help="Amount to stake (> 0).")],
    odds: Annotated[float | None, typer.Option(
        "--odds", help="Decimal odds you accept [default: the validator's current odds for "
                       "the outcome].")] = None,
    confidence: Annotated[float | None, typer.Option(
        "--confidence", min=0, max=1, help="Confidence score in [0, 1].")] = None,
    model_name: Annotated[str | None, typer.Option(
        "--model-name", help="Model name recorded with the prediction [default: manual].")]
    = None,
    miner_uid: Annotated[int | None, typer.Option(
        "--miner-uid", min=0, help="Your uid on the subnet, recorded with the prediction.")]
    = None,
    validator: ValidatorOpt = None,
    validator_hotkey: ValidatorHotkeyOpt = None,
    wallet_name: WalletNameOpt = None,
    wallet_hotkey: WalletHotkeyOpt = None,
    wallet_path: WalletPathOpt = None,
    outbox_dir: OutboxDirOpt = None,
    dev: DevOpt = False,
    dev_port: DevPortOpt = 0,
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="SECONDS", min=0.1,
        help="How long to wait for the connection and for the receipt.")] = 30.0,
    ca_file: CaFileOpt = None,
    as_json: JsonOpt = False,
    log_format: LogFormatOpt = LogFormat.text,
    log_level: LogLevelOpt = None,
) -> None:
    """Submit one prediction by hand and print the validator-signed receipt (exit 0) or
    the rejection code (exit 1). It goes through the durable outbox like the runner's:
    without a receipt it stays pending and is resent by the next 'bt-miner run'."""
    from .submit import submit_prediction

    setup_logging(log_format.value, (log_level or LogLevel.warning).value)

    async def go() -> int:
        endpoints = parse_validators(validator or [], validator_hotkey or [])
        return await submit_prediction(
            dev=dev, validators=endpoints,
            wallet=_wallet(wallet_name, wallet_hotkey, wallet_path), outbox_dir=outbox_dir,
            game_id=game_id, outcome=outcome, wager=wager, odds=odds, confidence=confidence,
            model_name=model_name, miner_uid=miner_uid, timeout=timeout, as_json=as_json,
            console=_console(), dev_port=dev_port, options=connection_options(ca_file))

    _execute(go)


# -- record / backtest ---------------------------------------------------------------------


@app.command(epilog=EXIT_CODES_HELP)
def record(
    out: Annotated[Path, typer.Option(
        "--out", metavar="FILE.jsonl",
        help="The recording to write (appended to when it exists: updates it already "
             "holds are skipped, so a recording can be continued).")],
    validator: ValidatorOpt = None,
    validator_hotkey: ValidatorHotkeyOpt = None,
    wallet_name: WalletNameOpt = None,
    wallet_hotkey: WalletHotkeyOpt = None,
    wallet_path: WalletPathOpt = None,
    dev: DevOpt = False,
    dev_port: DevPortOpt = 0,
    duration: DurationOpt = None,
    ca_file: CaFileOpt = None,
    log_format: LogFormatOpt = LogFormat.text,
    log_level: LogLevelOpt = None,
) -> None:
    """Record one validator's game stream (every game_update with its hub time, one JSON
    object a line) for 'bt-miner backtest'. Reconnects resume the stream; runs append."""
    from .record import record_stream

    setup_logging(log_format.value, (log_level or LogLevel.warning).value)

    async def go() -> int:
        endpoints = parse_validators(validator or [], validator_hotkey or [])
        return await record_stream(dev=dev, validators=endpoints,
                                   wallet=_wallet(wallet_name, wallet_hotkey, wallet_path),
                                   out=out, duration=duration, console=_console(),
                                   dev_port=dev_port, options=connection_options(ca_file))

    _execute(go)


@app.command(epilog=EXIT_CODES_HELP)
def backtest(
    agent: Annotated[list[str], typer.Option(
        "--agent", metavar="NAME|module:Class",
        help="An agent to replay (repeatable: agents are compared, and scored together "
             "as the miners of one validator).")],
    data: Annotated[Path, typer.Option(
        "--data", metavar="FILE",
        help="A recording ('bt-miner record') or a football-data.co.uk CSV.")],
    json_out: Annotated[Path | None, typer.Option(
        "--json", metavar="OUT.json",
        help="Write the figures, one row per prediction and one per day, as JSON.")] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", metavar="OUT.png",
        help="Plot cumulative profit and the daily composite per agent (needs "
             "matplotlib: the 'notebook' extra).")] = None,
    agent_opt: Annotated[list[str] | None, typer.Option(
        "--agent-opt", metavar="[AGENT.]KEY=VALUE",
        help="Option for the agents' constructors (repeatable; VALUE read as JSON when "
             "it parses); AGENT.KEY=VALUE gives it to that --agent only.")] = None,
    daily_budget: Annotated[float | None, typer.Option(
        "--daily-budget", min=0, metavar="AMOUNT",
        help="Most to wager per replay UTC day [default: the hub's limit, 1000].")] = None,
    seed: Annotated[int, typer.Option(
        "--seed", help="Seed of the prediction ids (same input and seed, same JSON).")] = 0,
    app_dir: AppDirOpt = Path("."),
    log_format: LogFormatOpt = LogFormat.text,
    log_level: LogLevelOpt = None,
) -> None:
    """Replay a recording or a football-data.co.uk CSV to agents through the real runner
    on a virtual clock (hub rules: cutoff, odds tolerance, daily limit per replay UTC
    day) and report profit, ROI, CLV, risk score, hit rate, max drawdown, daily
    composite and tier scores."""
    from .backtest import run_backtest

    setup_logging(log_format.value, (log_level or LogLevel.error).value)

    async def go() -> int:
        return await run_backtest(agents=agent, data=data, agent_options=agent_opt or [],
                                  json_out=json_out, plot_out=plot, seed=seed,
                                  daily_budget=daily_budget, app_dir=app_dir,
                                  console=_console())

    _execute(go)


# -- status / agents -----------------------------------------------------------------------


@app.command(epilog=EXIT_CODES_HELP)
def status(
    outbox_dir: OutboxDirOpt = None,
    last: Annotated[int, typer.Option(
        "--last", min=1, metavar="N",
        help="How many of the latest predictions to list per outbox.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """What the outboxes hold: pending, accepted, duplicate, rejected by code, wagered
    today, and the latest predictions with their receipts (signatures re-verified)."""
    from .status import show_status

    _execute(lambda: show_status(outbox_dir=outbox_dir, limit=last, as_json=as_json,
                                 console=_console()))


@app.command("agents", epilog=EXIT_CODES_HELP)
def list_agents(as_json: JsonOpt = False) -> None:
    """List the available agents: built-ins and those installed through the
    'bettensor_ws.agents' entry-point group (use the name with 'run --agent')."""
    from rich.table import Table

    from agents.loader import available_agents

    listing = available_agents()
    console = _console()
    if as_json:
        import json

        console.print_json(json.dumps(
            [{"name": name, "description": text} for name, text in listing.items()]))
        return
    table = Table(title="agents (bt-miner run --agent NAME; or --agent package.module:Class)",
                  title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("description")
    for name, text in listing.items():
        table.add_row(name, text)
    console.print(table)


@app.callback()
def _root() -> None:
    """bt-miner: run prediction agents against bettensor-ws validator hubs."""


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: usage errors become one line on stderr (exit 2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        args = ["--help"]
    try:
        code = app(args=args, prog_name="bt-miner", standalone_mode=False)
    except typer.TyperException as exc:  # usage errors: bad flags, missing values
        context = getattr(exc, "ctx", None)
        where = f" (see '{context.command_path} --help')" if context is not None else ""
        _error(f"{exc.format_message()}{where}")
        sys.exit(getattr(exc, "exit_code", EXIT_USAGE) or EXIT_USAGE)
    except typer.Abort:
        _error("aborted")
        sys.exit(EXIT_FAILURE)
    sys.exit(code if isinstance(code, int) else 0)
