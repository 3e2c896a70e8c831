"""Hub configuration: one pydantic model, filled by the CLI or by tests."""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sdk.validation import DEFAULT_DAILY_WAGER_LIMIT, DEFAULT_ODDS_TOLERANCE


class DashboardAccess(StrEnum):
    """Who may open the operator's dashboard (``GET /``, :mod:`server_stub.dashboard`)."""

    OFF = "off"
    """Not served (404)."""
    LOCAL = "local"
    """Loopback peers and ``trusted_proxies`` only (403 for anyone else)."""
    PUBLIC = "public"
    """Anyone who can reach the port."""


class HubConfig(BaseModel):
    """Every tunable of the hub, with production-sensible defaults."""

    model_config = ConfigDict(extra="forbid")

    heartbeat_interval_s: float = Field(20.0, gt=0)
    """Both sides send a heartbeat this often; a peer silent for 3 intervals is dropped."""
    max_connections: int = Field(10_000, ge=1)
    max_frame_bytes: int = Field(64 * 1024, ge=1024)
    messages_per_second: float = Field(50.0, gt=0)
    message_burst: float = Field(100.0, ge=1)
    rate_limit_strikes: int = Field(50, ge=1)
    """Rate-limited frames tolerated (refilling over 10 s) before closing with 4029."""
    send_queue_size: int = Field(512, ge=8)
    """Frames queued for one miner before it counts as a slow consumer (4008)."""
    history_size: int = Field(4096, ge=1)
    tick_interval_s: float = Field(0.5, gt=0)
    """Feed changes within one tick are sent as one game_update."""
    connects_per_minute: float = Field(30.0, gt=0)
    """Per hotkey and per client address, with a burst of ``connect_burst``."""
    connect_burst: float = Field(10.0, ge=1)
    upgrades_per_second: float | None = Field(None, gt=0)
    """WebSocket upgrade requests per client address (``GET /ws``, counted before
    authentication); None: ten times ``connects_per_minute`` / 60."""
    upgrade_burst: float | None = Field(None, ge=1)
    """Burst of the per-address upgrade limit; None: ten times ``connect_burst``."""
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    """Reverse proxies whose ``Forwarded`` / ``X-Forwarded-For`` name the client
    address (see :mod:`server_stub.forwarded`); from anyone else the headers are ignored."""
    nonce_store_size: int = Field(200_000, ge=100)
    auth_max_age_s: float = Field(10.0, gt=0)
    auth_allowed_skew_s: float = Field(2.0, ge=0)
    odds_tolerance: float = DEFAULT_ODDS_TOLERANCE
    daily_wager_limit: float = DEFAULT_DAILY_WAGER_LIMIT
    long_poll_timeout_s: float = Field(25.0, gt=0)
    body_timeout_s: float = Field(30.0, gt=0)
    """How long an HTTP request body may take to arrive; a slower one gets 408."""
    close_timeout_s: float = Field(5.0, gt=0)
    """How long a close handshake may take before the transport is aborted."""
    shutdown_retry_after_s: float = Field(5.0, ge=0)
    store_path: Path | None = None
    store_url: str | None = None
    """A ``postgresql://`` URL: predictions and games in that database, which several
    hubs of one validator share (:mod:`server_stub.pgstore`); ``store_path`` is then
    unused. None: the SQLite file at ``store_path``."""
    store_pool_size: int = Field(8, ge=1)
    """Connections to PostgreSQL (with ``store_url``)."""
    store_synchronous: str = "FULL"
    backplane_url: str | None = None
    """``redis://...``: share the game stream, its feed lease (and replay protection and
    presence) with the validator's other hubs through this Redis; None: this hub alone."""
    redis_prefix: str | None = None
    """Key prefix in that Redis; None: ``bt-ws:<validator ss58>``."""
    feed_lease_s: float = Field(5.0, gt=0)
    """With a backplane: the feed lease's TTL; when its holder dies another hub runs the
    feed within about 4/3 of it."""
    bettensor_db: Path | None = None
    """A Bettensor validator's database: games come from its ``game_data``, accepted
    predictions go into its ``predictions`` (see :mod:`server_stub.bettensor`)."""
    bettensor_poll_s: float = Field(5.0, gt=0)
    """How often ``game_data`` is read for changes (with ``bettensor_db``)."""
    bettensor_indexes: bool = False
    """Add the hub's indexes to the validator's ``predictions`` table (see
    :data:`server_stub.bettensor.schema.HUB_INDEXES`)."""
    admin_hotkeys: frozenset[str] = frozenset()
    """Hotkeys besides the validator's own allowed to POST /admin/games."""
    freeze_gc: bool = False
    """``gc.freeze()`` once started: a whole-process setting, so off for an embedded hub
    (tests, notebooks) and on in ``bt-validator-stub serve``."""
    compress: bool = True
    """Accept permessage-deflate when the miner offers it."""
    dashboard: DashboardAccess = DashboardAccess.LOCAL
    """Who may see the live dashboard at ``GET /`` (a proxy in front must guard it too)."""

    @field_validator("store_url")
    @classmethod
    def _postgres_only(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("store_url must be a postgresql:// URL (a SQLite file is "
                             "store_path)")
        return url
