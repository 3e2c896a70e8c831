"""Options shared by several ``bt-miner`` commands (typer ``Annotated`` aliases), so
each command names its flags once and every command spells a flag the same way."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


ValidatorOpt = Annotated[list[str] | None, typer.Option(
    "--validator", metavar="URL",
    help="Validator hub address, ws://host:port (repeatable), paired in order with "
         "--validator-hotkey; or HOTKEY@ws://host:port. A validator served by several "
         "hubs: their addresses separated by commas, HOTKEY@ws://a:8091,ws://b:8091 "
         "(uses the first that works, fails over to the next).")]
ValidatorHotkeyOpt = Annotated[list[str] | None, typer.Option(
    "--validator-hotkey", metavar="SS58",
    help="The validator's hotkey for each plain --validator URL, in the same order "
         "(the upgrade is signed for it and receipts must be signed by it).")]
WalletNameOpt = Annotated[str | None, typer.Option(
    "--wallet.name", metavar="NAME", help="Miner wallet name [default: default].")]
WalletHotkeyOpt = Annotated[str | None, typer.Option(
    "--wallet.hotkey", metavar="NAME", help="Miner hotkey name [default: default].")]
WalletPathOpt = Annotated[str | None, typer.Option(
    "--wallet.path", metavar="DIR",
    help="Wallets directory [default: ~/.bittensor/wallets].")]
OutboxDirOpt = Annotated[Path | None, typer.Option(
    "--outbox-dir", metavar="DIR",
    help="Directory of the durable outboxes (one SQLite file per miner hotkey, shared "
         "by its connections to every validator; older per-validator files are read) "
         "[default: the user data dir; a temp dir with --dev].")]
CaFileOpt = Annotated[Path | None, typer.Option(
    "--ca-file", metavar="PEM",
    help="CA certificate(s) to verify wss:// hubs with, e.g. a validator's private "
         "CA [default: the system's CAs].")]
DevOpt = Annotated[bool, typer.Option(
    "--dev", help="Start a local validator hub in this process: throwaway keys (//Alice "
                  "validator, //Bob miner unless --wallet.* is given), open registry, "
                  "game simulator, temp store.")]
DevPortOpt = Annotated[int, typer.Option(
    "--dev-port", min=0, max=65535, metavar="PORT",
    help="Port of the --dev hub on 127.0.0.1 (0: a free one).")]
DurationOpt = Annotated[float | None, typer.Option(
    "--duration", metavar="SECONDS", min=0,
    help="Stop after this many seconds [default: run until SIGINT/SIGTERM].")]
LogFormatOpt = Annotated[LogFormat, typer.Option(
    "--log-format", help="Log lines on stderr as text or one JSON object per line.")]
LogLevelOpt = Annotated[LogLevel | None, typer.Option(
    "--log-level", help="Least severe log level shown [default: info; error for live views].")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
AppDirOpt = Annotated[Path, typer.Option(
    "--app-dir", metavar="DIR",
    help="Look for the module of --agent module:Class in this directory first (put at "
         "the front of the import path).")]
