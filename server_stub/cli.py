"""``bt-validator-stub`` (and ``python -m server_stub``): run the validator hub."""

from __future__ import annotations

import logging
import shutil
import ssl
import sys
import tempfile
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .config import DashboardAccess, HubConfig

if TYPE_CHECKING:
    from bittensor.keyfiles import Keypair

    from .feed import GameFeed
    from .registry import MinerRegistry

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="bettensor-ws validator hub: miners connect over WebSocket (bt-ws/1).")


class SyncMode(StrEnum):
    full = "full"
    normal = "normal"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def load_identity(uri: str | None, wallet_name: str | None, wallet_hotkey: str,
                  wallet_path: str) -> Keypair:
    """The validator's signing key: a throwaway URI key, or the wallet's hotkey."""
    from sdk.wallets import WalletError, key_from_uri, load_wallet

    try:
        if uri is not None:
            return key_from_uri(uri)
        if wallet_name is None:
            raise _fail("give the validator identity: --wallet.name/--wallet.hotkey "
                        "(and --wallet.path), or --validator-uri //Name for a throwaway key, "
                        "or --dev")
        return load_wallet(wallet_name, wallet_hotkey, wallet_path).hotkey
    except WalletError as exc:
        raise _fail(f"--validator-uri {exc}" if uri is not None else str(exc)) from None


def build_registry(*, open_: bool, allow: list[str], allowlist: Path | None, deny: list[str],
                   netuid: int | None, network: str, refresh: float) -> MinerRegistry:
    from .registry import (
        AllowListRegistry,
        MetagraphRegistry,
        OpenRegistry,
        metagraph_fetch,
        read_allowlist,
    )

    chosen = [name for name, on in (("--open", open_), ("--allow/--allowlist",
                                     bool(allow) or allowlist is not None),
                                    ("--netuid", netuid is not None)) if on]
    if len(chosen) != 1:
        raise _fail("choose exactly one miner registry: --open, --allow HOTKEY / --allowlist "
                    f"FILE, or --netuid N (got: {', '.join(chosen) or 'none'})")
    if open_:
        return OpenRegistry(deny)
    if netuid is not None:
        return MetagraphRegistry(metagraph_fetch(netuid, network), refresh_interval=refresh,
                                 denied=deny)
    entries: dict[str, int | None] = dict.fromkeys(allow)
    if allowlist is not None:
        try:
            entries.update(read_allowlist(allowlist))
        except ValueError as exc:
            raise _fail(str(exc)) from None
    return AllowListRegistry(entries, deny)


def build_feed(feed: str, seed: int) -> GameFeed | None:
    from .feed import FeedError, StaticFeed, load_games_file
    from .simulator import GameSimulator

    if feed == "none":
        return None
    if feed == "simulate":
        start = datetime.now(UTC)
        # ids unique per run: a restarted hub keeps the old run's games in its store,
        # and a miner must never see a new fixture under an id it already bet on
        return GameSimulator(seed=seed, start=start,
                             id_prefix=f"sim-{seed}-{start:%Y%m%dT%H%M%S}")
    try:
        games = load_games_file(feed)
    except FeedError as exc:
        raise _fail(str(exc)) from None
    return StaticFeed(games)


def check_bettensor_db(path: Path, *, feed: str | None, open_: bool, netuid: int | None,
                       registry: MinerRegistry) -> None:
    """Refuse, before serving, what cannot work beside a Bettensor validator."""
    import sqlite3

    if feed not in (None, "none"):
        raise _fail("--bettensor-db takes the games from the validator's game_data: "
                    "drop --feed")
    if open_:
        raise _fail("--bettensor-db stores predictions by miner UID: use --netuid N, or "
                    "--allowlist FILE with lines 'HOTKEY UID', not --open")
    from .registry import AllowListRegistry

    if isinstance(registry, AllowListRegistry) and registry.known_uids == 0:
        raise _fail("--bettensor-db stores predictions by miner UID: give the allowlist "
                    "lines as 'HOTKEY UID' (or use --netuid N)")
    if not path.is_file():
        raise _fail(f"--bettensor-db {path}: no such file (the validator's "
                    "bettensor/validator/state/validator.db)")
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
            tables = {row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        raise _fail(f"--bettensor-db {path}: {exc}") from None
    missing = {"game_data", "predictions"} - tables
    if missing:
        raise _fail(f"--bettensor-db {path} is not a Bettensor validator database: no "
                    f"{' or '.join(sorted(missing))} table")


def admission_limits(connects_per_minute: float, connect_burst: float,
                     upgrades_per_second: float | None, upgrade_burst: float | None,
                     trusted_proxies: list[str]) -> dict[str, Any]:
    """The HubConfig fields of the admission flags; a bad CIDR is a clear error."""
    import ipaddress

    networks = []
    for cidr in trusted_proxies:
        try:
            networks.append(ipaddress.ip_network(cidr))
        except ValueError as exc:
            raise _fail(f"--trusted-proxy {cidr}: {exc}") from None
    return {"connects_per_minute": connects_per_minute, "connect_burst": connect_burst,
            "upgrades_per_second": upgrades_per_second, "upgrade_burst": upgrade_burst,
            "trusted_proxies": tuple(networks)}


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The server context for ``--tls-cert/--tls-key`` (None: plain ws://); a missing,
    unreadable or mismatched pair is a clear error before serving."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise _fail("--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise _fail(f"--tls-cert {cert} / --tls-key {key}: {exc}") from None
    return context


def default_store(validator_hotkey: str, dev: bool) -> Path:
    if dev:
        return Path(tempfile.mkdtemp(prefix="bt-hub-")) / "hub.sqlite3"
    import platformdirs

    return Path(platformdirs.user_data_dir("bettensor-ws")) / f"hub-{validator_hotkey}.sqlite3"


# The validator identity's options, shared by serve and announce.
WalletNameOpt = Annotated[str | None, typer.Option(
    "--wallet.name", help="Validator wallet name.")]
WalletHotkeyOpt = Annotated[str, typer.Option(
    "--wallet.hotkey", help="Validator hotkey name.")]
WalletPathOpt = Annotated[str, typer.Option("--wallet.path", help="Wallets directory.")]
ValidatorUriOpt = Annotated[str | None, typer.Option(
    "--validator-uri", help="Throwaway validator key from a URI such as //Alice "
                            "(development and tests).")]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 to expose).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP/WebSocket port.")] = 8091,
    dev: Annotated[bool, typer.Option(
        "--dev", help="Development: throwaway key //Alice, open registry, simulator feed, "
                      "store in a temp dir.")] = False,
    wallet_name: WalletNameOpt = None,
    wallet_hotkey: WalletHotkeyOpt = "default",
    wallet_path: WalletPathOpt = "~/.bittensor/wallets",
    validator_uri: ValidatorUriOpt = None,
    allow: Annotated[list[str] | None, typer.Option(
        "--allow", help="Miner hotkey allowed to connect (repeatable).")] = None,
    allowlist: Annotated[Path | None, typer.Option(
        "--allowlist", help="File of allowed miner hotkeys, one per line.")] = None,
    deny: Annotated[list[str] | None, typer.Option(
        "--deny", help="Blacklisted miner hotkey (repeatable; 403).")] = None,
    open_: Annotated[bool, typer.Option(
        "--open", help="Any valid signature may connect (development).")] = False,
    netuid: Annotated[int | None, typer.Option(
        "--netuid", help="Admit the hotkeys registered on this subnet (metagraph).")] = None,
    network: Annotated[str, typer.Option(
        "--subtensor.network", help="Chain network for --netuid (finney, test, ws://...).")]
    = "finney",
    metagraph_refresh: Annotated[float, typer.Option(
        help="Seconds between metagraph refreshes.")] = 300.0,
    store: Annotated[str | None, typer.Option(
        help="Where predictions and games are kept: a SQLite file path (default: the user "
             "data dir; a temp dir with --dev), or a postgresql://user@host/db URL that "
             "several hubs of this validator share (needs pip install "
             "'bettensor-ws[ha]').")] = None,
    store_pool: Annotated[int, typer.Option(
        "--store-pool", help="Connections to PostgreSQL (with --store postgresql://).")]
    = 8,
    store_sync: Annotated[SyncMode, typer.Option(
        help="SQLite synchronous mode: full survives power loss, normal only crashes.")]
    = SyncMode.full,
    backplane: Annotated[str | None, typer.Option(
        "--backplane", help="redis://HOST:PORT/DB: share the game stream (epoch, seq, "
        "history, table), the feed lease, replay protection and presence with this "
        "validator's other hubs (needs pip install 'bettensor-ws\\[ha]').")] = None,
    redis_prefix: Annotated[str | None, typer.Option(
        "--redis-prefix", help="Key prefix in --backplane's Redis (default: "
        "bt-ws:<validator ss58>); every hub of one validator uses the same.")] = None,
    feed_lease: Annotated[float, typer.Option(
        "--feed-lease", help="With --backplane: seconds the feed lease lasts; when the hub "
        "running the feed dies, another takes over within about 4/3 of it.")] = 5.0,
    feed: Annotated[str | None, typer.Option(
        help="simulate | none | FILE.json (default: simulate with --dev, else none).")] = None,
    bettensor_db: Annotated[Path | None, typer.Option(
        "--bettensor-db", help="A Bettensor validator's SQLite database: games from its "
        "game_data, accepted predictions into its predictions table (needs --netuid, or "
        "--allowlist lines 'HOTKEY UID').")] = None,
    bettensor_poll: Annotated[float, typer.Option(
        "--bettensor-poll", help="Seconds between reads of game_data for changes.")] = 5.0,
    bettensor_indexes: Annotated[bool, typer.Option(
        "--bettensor-indexes", help="Add two indexes to the validator's predictions table "
        "(miner_uid, prediction_date): inserts then stop scanning the whole table.")]
    = False,
    seed: Annotated[int, typer.Option(help="Simulator seed.")] = 0,
    heartbeat: Annotated[float, typer.Option(help="Heartbeat interval in seconds.")] = 20.0,
    max_connections: Annotated[int, typer.Option(help="Open connections at most.")] = 10_000,
    max_frame_bytes: Annotated[int, typer.Option(help="Largest accepted frame (1009 above).")]
    = 64 * 1024,
    rate: Annotated[float, typer.Option(help="Messages per second per miner.")] = 50.0,
    connects_per_minute: Annotated[float, typer.Option(
        help="WebSocket connects per minute per hotkey.")] = 30.0,
    connect_burst: Annotated[float, typer.Option(help="Burst of --connects-per-minute.")]
    = 10.0,
    upgrades_per_second: Annotated[float | None, typer.Option(
        help="GET /ws upgrade requests per second per client address "
             "(default: --connects-per-minute / 6, i.e. 5).")] = None,
    upgrade_burst: Annotated[float | None, typer.Option(
        help="Burst of --upgrades-per-second (default: 10 x --connect-burst, i.e. 100).")]
    = None,
    trusted_proxy: Annotated[list[str] | None, typer.Option(
        "--trusted-proxy", help="CIDR of a reverse proxy (repeatable): from a peer inside it "
        "the client address comes from Forwarded / X-Forwarded-For.")] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", help="PEM certificate (chain) to serve wss:// directly; needs "
        "--tls-key.")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        "--tls-key", help="PEM private key of --tls-cert.")] = None,
    admin_hotkey: Annotated[list[str] | None, typer.Option(
        "--admin-hotkey", help="Extra hotkey allowed to POST /admin/games (repeatable).")]
    = None,
    dashboard: Annotated[DashboardAccess, typer.Option(
        "--dashboard", help="Live operator page at GET /: local (loopback and "
        "--trusted-proxy peers only), public (anyone), or off.")] = DashboardAccess.LOCAL,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the hub until SIGINT/SIGTERM (then 1001 to every miner and a store flush)."""
    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from aiohttp import web

    from .app import create_app
    from .pgstore import is_postgres_url, redact

    if dev:
        validator_uri = validator_uri or (None if wallet_name else "//Alice")
        open_ = open_ or not (allow or allowlist or netuid is not None)
        feed = feed or "simulate"
    signer = load_identity(validator_uri, wallet_name, wallet_hotkey, wallet_path)
    registry = build_registry(open_=open_, allow=allow or [], allowlist=allowlist,
                              deny=deny or [], netuid=netuid, network=network,
                              refresh=metagraph_refresh)
    if bettensor_db is not None:
        check_bettensor_db(bettensor_db, feed=feed, open_=open_, netuid=netuid,
                           registry=registry)
        feed = f"bettensor game_data ({bettensor_db})"
        game_feed = None
    else:
        game_feed = build_feed(feed or "none", seed)
    store_url = store if store is not None and is_postgres_url(store) else None
    if store_url is not None and bettensor_db is not None:
        raise _fail("--bettensor-db keeps predictions in the validator's SQLite database, "
                    "beside one hub: not with --store postgresql://")
    store_path = (default_store(signer.ss58_address, dev) if store is None
                  else Path(store) if store_url is None else None)
    try:
        config = HubConfig(heartbeat_interval_s=heartbeat, max_connections=max_connections,
                           max_frame_bytes=max_frame_bytes, messages_per_second=rate,
                           store_synchronous=store_sync.value.upper(), freeze_gc=True,
                           store_url=store_url, store_pool_size=store_pool,
                           admin_hotkeys=frozenset(admin_hotkey or []),
                           bettensor_db=bettensor_db, bettensor_poll_s=bettensor_poll,
                           bettensor_indexes=bettensor_indexes, dashboard=dashboard,
                           backplane_url=check_backplane(backplane),
                           redis_prefix=redis_prefix, feed_lease_s=feed_lease,
                           **admission_limits(connects_per_minute, connect_burst,
                                              upgrades_per_second, upgrade_burst,
                                              trusted_proxy or []))
    except ValueError as exc:
        raise _fail(f"invalid option: {exc}") from None
    ssl_context = tls_context(tls_cert, tls_key)
    application = create_app(config, signer=signer, store_path=store_path, registry=registry,
                             feed=game_feed)
    typer.echo(f"bettensor-ws hub: validator hotkey {signer.ss58_address}")
    ws, http = ("wss", "https") if ssl_context else ("ws", "http")
    typer.echo(f"  miners connect to {ws}://{host}:{port}/ws   "
               f"health: {http}://{host}:{port}/ws/health")
    if dashboard is not DashboardAccess.OFF:
        typer.echo(f"  dashboard ({dashboard.value}): {http}://{host}:{port}/")
    where = redact(store_url) if store_url else store_path
    typer.echo(f"  store {where}   feed {feed or 'none'}   registry "
               f"{type(registry).__name__}")
    if backplane is not None:
        typer.echo(f"  backplane {backplane}   prefix "
                   f"{redis_prefix or 'bt-ws:' + signer.ss58_address}")
    sys.stdout.flush()
    try:
        web.run_app(application, host=host, port=port, print=None, shutdown_timeout=10.0,
                    handle_signals=True, ssl_context=ssl_context)
    except OSError as exc:
        raise _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", code=1) from None
    finally:
        if dev and store is None and store_path is not None:
            # a throwaway store for a throwaway key: leave no litter
            shutil.rmtree(store_path.parent, ignore_errors=True)
    typer.echo("hub stopped: miners closed with 1001, store flushed")


def check_backplane(url: str | None) -> str | None:
    """``--backplane`` checked before anything starts (scheme and the redis package)."""
    if url is None:
        return None
    from sdk.errors import MissingExtraError

    from .backplane.connect import check_backplane_url, require_redis

    try:
        check_backplane_url(url)
        require_redis()
    except (ValueError, MissingExtraError) as exc:
        raise _fail(f"--backplane: {exc}") from None
    return url


@app.command()
def announce(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(
        "--url", help="The hub's WebSocket URL as miners should reach it, e.g. "
                      "wss://hub.example.org/ws.")],
    netuid: Annotated[int, typer.Option("--netuid", min=0, help="The subnet.")],
    network: Annotated[str, typer.Option(
        "--subtensor.network", "--network", help="Chain network (finney, test, ws://...).")]
    = "finney",
    wallet_name: WalletNameOpt = None,
    wallet_hotkey: WalletHotkeyOpt = "default",
    wallet_path: WalletPathOpt = "~/.bittensor/wallets",
    validator_uri: ValidatorUriOpt = None,
) -> None:
    """Announce the hub's URL in the hotkey's chain commitment on --netuid
    (bt-ws=<url>): bt-miner then connects there instead of to the axon's ip:port.
    Replaces whatever the hotkey had committed on this subnet."""
    import asyncio

    from sdk.announce import AnnounceError, announcement
    from sdk.signing import hotkey_signer
    from sdk.wallets import WalletError, key_from_uri, load_wallet

    from .announce import CommitError, Committer, commit_on_chain

    try:
        text = announcement(url)
    except AnnounceError as exc:
        raise _fail(f"--url: {exc}") from None
    try:
        if validator_uri is not None:
            key = key_from_uri(validator_uri)
            wallet, hotkey = key, key.ss58_address
        elif wallet_name is None:
            raise _fail("give the validator identity: --wallet.name/--wallet.hotkey "
                        "(and --wallet.path), or --validator-uri //Name")
        else:
            loaded = load_wallet(wallet_name, wallet_hotkey, wallet_path)
            wallet, hotkey = loaded, hotkey_signer(loaded).ss58_address
    except WalletError as exc:
        raise _fail(str(exc)) from None
    committer: Committer = (ctx.obj or {}).get("committer", commit_on_chain)
    try:
        asyncio.run(committer(wallet, netuid, network, text))
    except CommitError as exc:
        raise _fail(str(exc), code=1) from None
    typer.echo(f"announced {text} for hotkey {hotkey} on netuid {netuid} ({network})")


@app.callback()
def _root() -> None:
    """bettensor-ws validator hub."""


def main() -> None:
    app(prog_name="bt-validator-stub")
