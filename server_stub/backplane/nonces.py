"""btauth/1 replay protection shared by every hub of a validator.

Each hub still checks a nonce against its own in-memory store inside
``http_auth.verify`` (synchronous, and it stops a replay at the same hub without a
round trip). Admission then claims the nonce in Redis with one ``SET NX PX``: the
first hub to claim ``<prefix>:nonce:<hotkey>:<nonce>`` admits the request, every
other hub answers ``401 replayed_request``. The key lives as long as the nonce is
fresh (plus margin), so Redis holds only the nonces of the last few seconds.

When Redis does not answer, the check *fails closed*: the caller is refused with 503
and ``Retry-After`` (admission), because admitting it would let the same signed
headers in at every hub.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .base import BackplaneUnavailable
from .redis_link import SOCKET_TIMEOUT_S, redis_errors

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["SharedNonces"]

log = logging.getLogger("server_stub.hub")


class SharedNonces:
    """Claims (hotkey, nonce) pairs in Redis; a pair is claimed once across all hubs.

    ``retention_s`` must cover the freshness window (max age + allowed skew); give it
    a margin for the hubs' clocks disagreeing a little.
    """

    def __init__(self, client: Redis, prefix: str, *, retention_s: float,
                 timeout_s: float = SOCKET_TIMEOUT_S) -> None:
        self.client = client
        self.prefix = prefix
        self.retention_ms = max(1, int(retention_s * 1000))
        self.timeout_s = timeout_s
        self.claims = 0
        self.replays = 0
        self.failures = 0
        self._errors = redis_errors()
        self._down = False  # log the loss and the return of Redis once, not per request

    def key(self, hotkey: str, nonce_ns: int) -> str:
        return f"{self.prefix}:nonce:{hotkey}:{nonce_ns}"

    async def claim(self, hotkey: str, nonce_ns: int) -> bool:
        """True when this is the first use of the pair at any hub; False: a replay.

        Raises :class:`BackplaneUnavailable` when Redis does not answer in time."""
        try:
            created = await asyncio.wait_for(
                self.client.set(self.key(hotkey, nonce_ns), b"1", nx=True,
                                px=self.retention_ms),
                self.timeout_s)
        except self._errors as exc:
            self.failures += 1
            if not self._down:
                self._down = True
                log.warning("backplane unreachable: refusing authenticated requests "
                            "with 503 until it answers (%r)", exc)
            raise BackplaneUnavailable(str(exc) or type(exc).__name__) from exc
        if self._down:
            self._down = False
            log.warning("backplane reachable again: shared replay protection restored")
        if created:
            self.claims += 1
            return True
        self.replays += 1
        return False
