"""The shared replay protection and presence of one hub, built on its Redis client.

:func:`~server_stub.create_app` builds them, with the stream's
:class:`~.redis_stream.RedisBackplane`, when ``config.backplane_url`` is set (the app
closes the client after the hub stops); without a backplane nothing here is built and
the hub keeps nonces and one-connection-per-hotkey in this process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import HubConfig
from .nonces import SharedNonces
from .presence import Presence

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["CLOCK_MARGIN_S", "SharedAuth"]

CLOCK_MARGIN_S = 5.0
"""Added to the freshness window for how long a nonce stays claimed in Redis: hubs whose
clocks disagree by less than this cannot both find the same nonce fresh after it
expired from Redis."""


@dataclass(slots=True)
class SharedAuth:
    """The nonce guard and presence of one hub, on one Redis prefix."""

    prefix: str
    nonces: SharedNonces
    presence: Presence

    @classmethod
    def build(cls, client: Redis, prefix: str, config: HubConfig, *,
              hub_id: str | None = None) -> SharedAuth:
        """``hub_id``: this hub's name in presence messages (default: a random one)."""
        retention = config.auth_max_age_s + config.auth_allowed_skew_s + CLOCK_MARGIN_S
        return cls(prefix=prefix,
                   nonces=SharedNonces(client, prefix, retention_s=retention),
                   presence=Presence(client, prefix, hub_id=hub_id))

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
