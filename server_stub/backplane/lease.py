"""The feed lease: exactly one of a validator's hubs runs the game feed.

``<prefix>:feed-lease`` holds the holder's hub id with a TTL. The holder extends it
every third of the TTL; every other hub tries to take it (SET NX) just as often, so
when the holder dies the lease is taken over within one TTL and a third. A holder
that cannot reach Redis stops counting itself the holder when its last extension
would have run out (measured from before that call: never later than Redis's own
expiry), so two hubs never both believe they hold it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger("server_stub.backplane.lease")

# KEYS: lease.  ARGV: holder, ttl ms.  1: held by ARGV[1] (extended or taken), 0: not.
_TAKE_OR_EXTEND = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class FeedLease:
    """One hub's view of the lease (``client``: a ``redis.asyncio.Redis``)."""

    def __init__(self, client: Any, key: str, holder: str, ttl_s: float) -> None:
        self._redis = client
        self.key = key
        self.holder = holder
        self.ttl_s = ttl_s
        self._held_until = 0.0  # time.monotonic()
        self.takeovers = 0
        """How often this hub became the holder."""

    @property
    def held(self) -> bool:
        return time.monotonic() < self._held_until

    async def refresh(self) -> bool:
        """Take the lease if free, extend it if ours; whether we hold it now."""
        started = time.monotonic()
        was_held = self.held
        try:
            taken = await self._redis.eval(_TAKE_OR_EXTEND, 1, self.key, self.holder,
                                           int(self.ttl_s * 1000))
        except (RedisError, OSError) as exc:  # keep what we had until it runs out
            log.warning("feed lease %s: cannot reach Redis (%r)", self.key, exc)
            return self.held
        self._held_until = started + self.ttl_s if taken == 1 else 0.0
        if taken == 1 and not was_held:
            self.takeovers += 1
            log.info("feed lease %s taken by %s", self.key, self.holder)
        return self.held

    async def run(self) -> None:
        """Refresh every third of the TTL until cancelled."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.ttl_s / 3)

    async def release(self) -> None:
        """Give the lease up now (a graceful stop), so another hub need not wait."""
        self._held_until = 0.0
        try:
            await self._redis.eval(_RELEASE, 1, self.key, self.holder)
        except (RedisError, OSError) as exc:  # the lease then simply expires
            log.warning("feed lease %s: not released (%r)", self.key, exc)
