"""The real PostgreSQL and Redis the high-availability tests run against.

The machine (CI's included) runs PostgreSQL on 127.0.0.1:5432 with trust auth and Redis
on 127.0.0.1:6379. A test gets its own database (created and dropped) and its own Redis
key prefix; a test that must restart Redis empty gets a private ``redis-server`` of its
own on a free port. When a service is missing the test fails with a message naming
it: these tests are the point of the feature, so they are never skipped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

POSTGRES_ADMIN_DSN = os.environ.get("BT_WS_TEST_POSTGRES",
                                    "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BT_WS_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _missing(service: str, how: str, exc: BaseException) -> None:
    pytest.fail(f"{service} is needed by this test and is not reachable ({exc!r}). {how}",
                pytrace=False)


@asynccontextmanager
async def postgres_database(prefix: str = "btws_test") -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test: yields its DSN, drops it afterwards."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        _missing("PostgreSQL", "Start it with: pg_ctlcluster --skip-systemctl-redirect "
                 "$(ls /etc/postgresql) main start (or set BT_WS_TEST_POSTGRES).", exc)
        raise
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
        yield dsn
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def redis_prefix() -> AsyncIterator[tuple[str, str]]:
    """The machine's Redis and a key prefix of this test's own: yields (url, prefix) and
    deletes the prefix's keys afterwards."""
    import redis.asyncio as aioredis

    prefix = f"btws-test-{uuid.uuid4().hex[:12]}"
    client = aioredis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        await client.aclose()
        _missing("Redis", "Start it with: redis-server --daemonize yes --bind 127.0.0.1 "
                 "--port 6379 --save '' --appendonly no (or set BT_WS_TEST_REDIS).", exc)
        raise
    try:
        yield REDIS_URL, prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


class PrivateRedis:
    """A ``redis-server`` of this test's own on a free loopback port, that keeps nothing
    on disk: :meth:`restart` brings it back empty, as a real Redis restart without
    persistence does."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is needed by this test: apt-get install redis-server",
                        pytrace=False)
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
            "--appendonly", "no", "--dir", str(self.workdir),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await _wait_for_port(self.port, timeout=10.0)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await asyncio.wait_for(self.process.wait(), 10)
        self.process = None

    async def restart(self) -> None:
        """Kill it and start it again: everything it held is gone."""
        await self.stop()
        await self.start()


@asynccontextmanager
async def private_redis(workdir: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(workdir)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_for_port(port: int, *, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port}") from None
            await asyncio.sleep(0.02)  # polling a port that is being bound: no event exists
            continue
        writer.close()
        await writer.wait_closed()
        return
