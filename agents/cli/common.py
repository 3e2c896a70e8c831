"""What every ``bt-miner`` command shares: exit codes, the one-line error, wallets,
validator addresses, outbox locations, stop signals, connection failures and logging."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.discovery import ValidatorEndpoint
from sdk.errors import DeregisteredError, NotRegisteredError, ReplacedError
from sdk.options import ConnectionOptions
from sdk.wallets import WalletError, hotkey_file, load_wallet

if TYPE_CHECKING:
    from bittensor import Wallet

    from sdk.connection import ValidatorConnection

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "PERMANENT_REFUSALS",
    "CliError",
    "WalletOptions",
    "check_hotkey",
    "connection_failure",
    "default_outbox_dir",
    "install_stop_signals",
    "load_signer",
    "outbox_path",
    "parse_agent_options",
    "parse_validators",
    "put_app_dir_first",
    "setup_logging",
]

EXIT_OK = 0
"""Finished normally (including a stop by SIGINT/SIGTERM or the end of --duration)."""
EXIT_FAILURE = 1
"""Runtime failure: a validator unreachable within the timeout, a rejected manual
prediction, discovery failed, an unexpected error."""
EXIT_USAGE = 2
"""Usage or configuration error: bad flags, missing wallet, bad agent path."""
EXIT_REFUSED = 3
"""Permanent refusal by a validator: 403 (hotkey not registered / blacklisted), close
4001 (replaced by a newer connection of this hotkey) or 4003 (deregistered)."""

EXIT_CODES_HELP = (
    "Exit codes: 0 ok (also after SIGINT/SIGTERM or --duration); 1 runtime failure; "
    "2 usage or configuration error (bad flag, missing wallet, bad agent path); "
    "3 permanent refusal by a validator (403 not registered, 4001 replaced, "
    "4003 deregistered)."
)

PERMANENT_REFUSALS = (NotRegisteredError, ReplacedError, DeregisteredError)
"""The refusals that exit with :data:`EXIT_REFUSED`: retrying cannot help."""

log = logging.getLogger("agents.cli")


class CliError(Exception):
    """An error reported as one line on stderr, with the exit code to use."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# -- wallets -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WalletOptions:
    """``--wallet.name`` / ``--wallet.hotkey`` / ``--wallet.path`` as given (None: not given)."""

    name: str | None = None
    hotkey: str | None = None
    path: str | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.name, self.hotkey, self.path))

    def hotkey_file(self) -> Path:
        return hotkey_file(self.name, self.hotkey, self.path)


def load_signer(options: WalletOptions) -> Wallet:
    """The miner's hotkey signer from a bittensor wallet; :class:`CliError` (exit 2)
    naming the file that was looked at when it is missing or unusable."""
    try:
        return load_wallet(options.name, options.hotkey, options.path)
    except WalletError as exc:
        raise CliError(str(exc)) from None


# -- validators ----------------------------------------------------------------------------


def check_hotkey(hotkey: str, flag: str = "--validator-hotkey") -> str:
    """``hotkey`` if it is a valid SS58 address, else :class:`CliError`."""
    from bittensor.keyfiles import Keypair

    text = hotkey.strip()
    try:
        Keypair(ss58_address=text)
    except ValueError:
        raise CliError(f"{flag} {hotkey!r} is not a valid SS58 hotkey address") from None
    return text


def check_url(url: str) -> str:
    from yarl import URL

    text = url.strip()
    try:
        parsed = URL(text)
    except (TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in ("ws", "wss", "http", "https") or not parsed.host:
        raise CliError(f"--validator {url!r} is not a ws://, wss://, http:// or https:// "
                       "address with a host (e.g. ws://203.0.113.7:8091)")
    return text


def check_urls(urls: str) -> str:
    """A validator's hub address, or the addresses of its several hubs separated by
    commas (``ws://a:8091,ws://b:8091``: the connection fails over between them), each
    checked; returned as one comma-separated string, which the SDK reads as such."""
    parts = [part.strip() for part in urls.split(",")]
    if not all(parts):
        raise CliError(f"--validator {urls!r} has an empty address: separate the hubs of "
                       "one validator with single commas (ws://a:8091,ws://b:8091)")
    checked = [check_url(part) for part in parts]
    if len(set(checked)) != len(checked):
        raise CliError(f"--validator {urls!r} names the same hub twice")
    return ",".join(checked)


def split_validator(spec: str) -> tuple[str | None, str]:
    """``HOTKEY@URL`` -> (hotkey, url); a plain URL -> (None, url)."""
    text = spec.strip()
    head, at, tail = text.partition("@")
    if at and "://" not in head and "/" not in head:
        return head, tail
    return None, text


def parse_validators(urls: list[str], hotkeys: list[str]) -> list[ValidatorEndpoint]:
    """Pair ``--validator`` values with ``--validator-hotkey`` values (same order; a
    ``HOTKEY@URL`` value carries its own hotkey). A value may list several hubs of one
    validator, ``HOTKEY@ws://a:8091,ws://b:8091``: one endpoint whose ``url`` keeps the
    commas (:class:`~sdk.ValidatorConnection` fails over between them)."""
    found: list[ValidatorEndpoint] = []
    order = [split_validator(u) for u in urls]
    plain = [url for hotkey, url in order if hotkey is None]
    if len(plain) != len(hotkeys):
        raise CliError(f"each --validator URL needs a --validator-hotkey, in the same order "
                       f"(got {len(plain)} URL(s) without a hotkey and {len(hotkeys)} "
                       "--validator-hotkey); or write --validator HOTKEY@ws://host:port")
    given = iter(hotkeys)
    for hotkey, url in order:
        if hotkey is None:
            hotkey = next(given)
            flag = "--validator-hotkey"
        else:
            flag = f"--validator {hotkey}@..."
        found.append(ValidatorEndpoint(check_hotkey(hotkey, flag), check_urls(url)))
    seen: set[str] = set()
    for endpoint in found:
        if endpoint.hotkey in seen:
            raise CliError(f"validator {endpoint.hotkey} is given more than once (a "
                           "validator with several hubs: list them in one value, "
                           f"--validator {endpoint.hotkey}@ws://a:8091,ws://b:8091)")
        seen.add(endpoint.hotkey)
    return found


# -- outbox --------------------------------------------------------------------------------


def default_outbox_dir() -> Path:
    """Where ``ValidatorConnection`` keeps outboxes by default (the user data dir)."""
    from sdk.outbox_files import default_outbox_dir as sdk_default

    return sdk_default()


def outbox_path(directory: Path | None, miner_hotkey: str) -> Path:
    """The miner's outbox file, named as the SDK names it: one for all its validators,
    so the connections of one process share one file and one writer thread."""
    from sdk.outbox_files import outbox_file_name

    name = outbox_file_name(miner_hotkey)
    return (directory.expanduser() if directory is not None else default_outbox_dir()) / name


# -- stopping and failing ------------------------------------------------------------------


def install_stop_signals(stop: asyncio.Event) -> Callable[[], None]:
    """SIGINT/SIGTERM set ``stop`` (a second one cancels the current task); returns
    the function that removes the handlers. A no-op where signals cannot be
    handled (not the main thread, Windows)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    installed: list[int] = []

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second %s: stopping now", signal.Signals(signum).name)
            if task is not None:
                task.cancel()
            return
        log.info("%s: stopping (in-flight predictions get their receipts, outbox flushed)",
                 signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError, ValueError):
            continue
        installed.append(signum)

    def remove() -> None:
        for signum in installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)

    return remove


async def close_connections(conns: list[ValidatorConnection], timeout: float = 10.0) -> None:
    """Close every connection, each within ``timeout`` seconds, when a command ends.

    Broad on purpose: this runs in ``finally`` blocks, and a close that fails (a stuck
    outbox writer, a timeout) must not replace the command's own result; it is logged.
    Unconfirmed predictions stay in the outbox either way."""
    for conn in conns:
        try:
            await asyncio.wait_for(conn.close(), timeout)
        except Exception:  # see the docstring
            log.warning("closing the connection to validator %s failed", conn.validator_hotkey,
                        exc_info=True)


def connection_failure(conns: list[ValidatorConnection]) -> tuple[int, list[str]] | None:
    """(exit code, one line per failed validator) when a connection stopped for good."""
    refused = [c for c in conns if isinstance(c.error, PERMANENT_REFUSALS)]
    failed = [c for c in conns if c.error is not None and c not in refused]
    if not refused and not failed:
        return None
    lines = [str(c.error) for c in refused]
    lines += [f"validator {c.validator_hotkey}: connection stopped: {c.error}" for c in failed]
    return (EXIT_REFUSED if refused else EXIT_FAILURE), lines


# -- agents --------------------------------------------------------------------------------


def put_app_dir_first(directory: Path) -> None:
    """Put ``directory`` at the front of ``sys.path`` so ``--agent module:Class`` finds
    the user's own modules there (as uvicorn's ``--app-dir``): a console script's
    import path starts at its own bin directory, not at the working directory."""
    if not directory.is_dir():
        raise CliError(f"--app-dir {str(directory)!r} is not a directory")
    entry = str(directory.resolve())
    if sys.path[:1] != [entry]:
        sys.path.insert(0, entry)


def parse_agent_options(values: list[str]) -> dict[str, Any]:
    """``--agent-opt KEY=VALUE`` values (VALUE read as JSON when it parses: numbers,
    true/false, lists; otherwise as text)."""
    options: dict[str, Any] = {}
    for item in values:
        key, eq, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not key.isidentifier():
            raise CliError(f"--agent-opt {item!r} must look like KEY=VALUE (e.g. stake=5)")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


# -- logging -------------------------------------------------------------------------------

_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the record's extras
    (e.g. ``agent``, ``validator``) and ``exc`` when there is a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _RECORD_FIELDS or key.startswith("_") or key in data:
                continue
            data[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (a live display or a test
    runner may swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup_logging(fmt: str, level: str) -> None:
    """Log to stderr as ``text`` or ``json`` lines at ``level``."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
    handler = _StderrHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def connection_options(ca_file: Path | None) -> ConnectionOptions | None:
    """The SDK options of ``--ca-file``; an unreadable CA file is a usage error now,
    not a failure of every connection later."""
    if ca_file is None:
        return None
    try:
        ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise CliError(f"--ca-file {ca_file}: {exc}") from None
    return ConnectionOptions(ca_file=str(ca_file))
