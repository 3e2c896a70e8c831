"""The shared replay protection and presence of one hub, built from its config.

:func:`create_app` wires them into the :class:`~server_stub.Hub` when
``config.backplane_url`` is set and closes their Redis client after the hub stops;
without a backplane nothing here is built and the hub keeps today's behaviour (nonces
and one-connection-per-hotkey in this process).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import HubConfig
from .nonces import SharedNonces
from .presence import Presence
from .redis_link import default_prefix, open_redis

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["SharedAuth"]

CLOCK_MARGIN_S = 5.0
"""Added to the freshness window for how long a nonce stays claimed in Redis: hubs whose
clocks disagree by less than this cannot both find the same nonce fresh after it
expired from Redis."""


@dataclass(slots=True)
class SharedAuth:
    """The Redis client, nonce guard and presence of one hub."""

    client: Redis
    prefix: str
    nonces: SharedNonces
    presence: Presence

    @classmethod
    def from_config(cls, config: HubConfig, validator_hotkey: str) -> SharedAuth | None:
        """None without ``backplane_url``; raises RuntimeError when ``redis`` is not
        installed."""
        if config.backplane_url is None:
            return None
        client = open_redis(config.backplane_url)
        prefix = config.redis_prefix or default_prefix(validator_hotkey)
        retention = config.auth_max_age_s + config.auth_allowed_skew_s + CLOCK_MARGIN_S
        return cls(client=client, prefix=prefix,
                   nonces=SharedNonces(client, prefix, retention_s=retention),
                   presence=Presence(client, prefix))

    def health(self) -> dict[str, Any]:
        """The ``shared_auth`` section of ``GET /ws/health``."""
        return {
            "prefix": self.prefix,
            "hub_id": self.presence.hub_id,
            "nonce_claims": self.nonces.claims,
            "nonce_replays": self.nonces.replays,
            "nonce_failures": self.nonces.failures,
            "presence_subscribed": self.presence.subscribed,
            "presence_claims": self.presence.claims,
            "presence_failures": self.presence.failures,
        }

    async def close(self) -> None:
        await self.presence.stop()
        await self.client.aclose()
