"""The real PostgreSQL and Redis the high-availability tests run against.

The machine (CI's included) runs PostgreSQL on 127.0.0.1:5432 with trust auth and Redis
on 127.0.0.1:6379. A test gets its own database (created and dropped) and its own Redis
key prefix; a test that must restart Redis empty gets a private ``redis-server`` of its
own on a free port.

When the machine's server is not running, the test session starts a private one from
the installed binaries (``redis-server``; PostgreSQL's ``initdb``/``pg_ctl``, run as the
``postgres`` user when the tests run as root), so the README's test command needs no
service running. When neither is possible the test fails with a message naming the
service: these tests are the point of the feature, so they are never skipped.
"""

from __future__ import annotations

import asyncio
import atexit
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

MACHINE_POSTGRES = os.environ.get("BT_WS_TEST_POSTGRES",
                                  "postgresql://postgres@127.0.0.1:5432/postgres")
MACHINE_REDIS = os.environ.get("BT_WS_TEST_REDIS", "redis://127.0.0.1:6379/0")
_resolved: dict[str, str] = {}


def _missing(service: str, how: str, exc: BaseException | str) -> None:
    pytest.fail(f"{service} is needed by this test and is not reachable ({exc!r}). {how}",
                pytrace=False)


def _reachable(url: str) -> bool:
    host_port = url.split("@")[-1].split("//")[-1].split("/")[0]
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
            return True
    except OSError:
        return False


def postgres_admin_dsn() -> str:
    """The machine's PostgreSQL, or (once per test session) a private cluster."""
    if "postgres" not in _resolved:
        _resolved["postgres"] = (MACHINE_POSTGRES if _reachable(MACHINE_POSTGRES)
                                 else _start_private_postgres())
    return _resolved["postgres"]


def redis_url() -> str:
    """The machine's Redis, or (once per test session) a private ``redis-server``."""
    if "redis" not in _resolved:
        _resolved["redis"] = (MACHINE_REDIS if _reachable(MACHINE_REDIS)
                              else _start_private_redis())
    return _resolved["redis"]


def service_env() -> dict[str, str]:
    """Environment naming the servers for a benchmark run as a subprocess."""
    return {"BENCH_POSTGRES": postgres_admin_dsn(), "BENCH_REDIS": redis_url()}


def _start_private_redis() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("Redis", "Start it (redis-server --daemonize yes --port 6379 --save '') or "
                 "install redis-server.", "no server on " + MACHINE_REDIS)
    port = _free_port()
    process = subprocess.Popen([str(binary), "--bind", "127.0.0.1", "--port", str(port),
                                "--save", "", "--appendonly", "no",
                                "--dir", tempfile.mkdtemp(prefix="btws-redis-")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(process.kill)
    url = f"redis://127.0.0.1:{port}/0"
    _wait_reachable(url, "redis-server")
    return url


def _start_private_postgres() -> str:
    """``initdb`` and ``pg_ctl start`` in a temp dir, as ``postgres`` when we are root
    (PostgreSQL refuses to run as root), trust auth on a free loopback port."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = bins[-1] if bins else shutil.which("initdb")
    if initdb is None:
        _missing("PostgreSQL", "Start it (pg_ctlcluster --skip-systemctl-redirect "
                 "$(ls /etc/postgresql) main start) or install postgresql.",
                 "no server on " + MACHINE_POSTGRES)
    pg_ctl = str(Path(str(initdb)).with_name("pg_ctl"))
    data = Path(tempfile.mkdtemp(prefix="btws-postgres-")) / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(data.parent, "postgres")
    port = _free_port()
    subprocess.run([*as_user, str(initdb), "-D", str(data), "-A", "trust", "-U", "postgres",
                    "--no-sync"], check=True, capture_output=True, timeout=120)
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(data.parent / "log"),
                    "-o", f"-p {port} -k {data.parent} -h 127.0.0.1 -F", "-w", "start"],
                   check=True, capture_output=True, timeout=120)
    atexit.register(subprocess.run, [*as_user, pg_ctl, "-D", str(data), "-m", "immediate",
                                     "stop"], capture_output=True, timeout=60)
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    _wait_reachable(url, "the private PostgreSQL")
    return url


def _wait_reachable(url: str, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not _reachable(url):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not start on {url}", pytrace=False)
        time.sleep(0.05)  # a server starting up: nothing to wait on but its port


@asynccontextmanager
async def postgres_database(prefix: str = "btws_test") -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test: yields its DSN, drops it afterwards."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin_dsn = postgres_admin_dsn()
    try:
        admin = await asyncpg.connect(admin_dsn, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        _missing("PostgreSQL", "Start it with: pg_ctlcluster --skip-systemctl-redirect "
                 "$(ls /etc/postgresql) main start (or set BT_WS_TEST_POSTGRES).", exc)
        raise
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name
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
    url = redis_url()
    client = aioredis.Redis.from_url(url, socket_timeout=5)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        await client.aclose()
        _missing("Redis", "Start it with: redis-server --daemonize yes --bind 127.0.0.1 "
                 "--port 6379 --save '' --appendonly no (or set BT_WS_TEST_REDIS).", exc)
        raise
    try:
        yield url, prefix
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
