"""Shared pieces of the benchmarks: server subprocesses, keys, signed connects,
percentiles, CPU/RSS accounting and the report format.

Every wait here is bounded; every server subprocess is stopped on exit (stdin
closed, then SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

HOST = "127.0.0.1"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_ROOT = str(Path(__file__).resolve().parent.parent)  # the project root (bench's parent)


# -- keys and btauth/1 ---------------------------------------------------------------


@lru_cache(maxsize=1)
def validator_key() -> Any:
    from bittensor.keyfiles import Keypair

    from bench.servers import VALIDATOR_URI

    return Keypair.create_from_uri(VALIDATOR_URI)


@lru_cache(maxsize=8)
def miner_keys(count: int) -> tuple[Any, ...]:
    """``count`` distinct sr25519 miner hotkeys, deterministic across runs.

    Made from seeds (sha256 of a name): ~20 us each, where ``create_from_uri`` costs
    ~1.7 ms per key (1.7 s for 1000 miners)."""
    from bittensor.keyfiles import Keypair

    return tuple(Keypair.create_from_seed(hashlib.sha256(f"bench-miner-{i}".encode()).digest())
                 for i in range(count))


def auth_headers(key: Any, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    """``btauth/1`` headers for a request to the hub (receiver = validator hotkey)."""
    from bittensor import http_auth

    return http_auth.sign(key, method=method, path=path, body=body,
                          receiver_ss58=validator_key().ss58_address)


def url(port: int, path: str) -> URL:
    return URL(f"http://{HOST}:{port}{path}", encoded=True)


def client_session() -> aiohttp.ClientSession:
    """A session without the connector's default 100-connection cap (every
    WebSocket holds one connection for its lifetime)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False),
                                 timeout=aiohttp.ClientTimeout(total=60))


async def connect_many(session: aiohttp.ClientSession, port: int, keys: Sequence[Any] | None,
                       count: int, *, compress: int = 0, concurrency: int = 50,
                       timeout: float = 120.0) -> list[aiohttp.ClientWebSocketResponse]:
    """Open ``count`` WebSockets to ``/ws``; signed per key when ``keys`` is given.

    Each upgrade is signed just before it is sent (btauth/1 requests are only valid
    for seconds). Bounded concurrency; raises if any connect fails or the whole
    thing takes longer than ``timeout``.
    """
    gate = asyncio.Semaphore(concurrency)
    sockets: list[aiohttp.ClientWebSocketResponse | None] = [None] * count

    async def one(index: int) -> None:
        async with gate:
            headers = auth_headers(keys[index], "GET", "/ws") if keys is not None else None
            sockets[index] = await session.ws_connect(
                url(port, "/ws"), headers=headers, autoping=True, heartbeat=None,
                compress=compress, max_msg_size=16 * 1024 * 1024)

    try:
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), timeout)
    except BaseException:
        await close_all([ws for ws in sockets if ws is not None])
        raise
    return [ws for ws in sockets if ws is not None]


async def close_all(sockets: Iterable[aiohttp.ClientWebSocketResponse],
                    timeout: float = 20.0) -> None:
    sockets = list(sockets)
    if not sockets:
        return

    async def close(ws: aiohttp.ClientWebSocketResponse) -> None:
        with contextlib.suppress(Exception):
            await ws.close()

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(close(ws) for ws in sockets)), timeout)


async def post_json(session: aiohttp.ClientSession, port: int, path: str, body: bytes,
                    key: Any | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers.update(auth_headers(key, "POST", path, body))
    async with session.post(url(port, path), data=body, headers=headers) as response:
        text = await response.text()
        if response.status != 200:
            raise RuntimeError(f"POST {path} -> {response.status}: {text[:300]}")
        return json.loads(text)


async def gc_pauses(session: aiohttp.ClientSession, port: int, *,
                    reset: bool = False) -> dict[str, Any]:
    """The server's garbage-collector pauses since the last reset (bench/servers.py)."""
    path = "/bench/gc?reset=1" if reset else "/bench/gc"
    async with session.get(url(port, path)) as response:
        data = await response.json()
    return {"gc_max_ms": max(data["max_ms"]), "gc_total_ms": sum(data["total_ms"]),
            "gc_full": data["count"][2], "gc_full_max_ms": data["max_ms"][2]}


# -- server subprocesses ----------------------------------------------------------------


@lru_cache(maxsize=1)
def core_split() -> tuple[set[int], set[int]] | None:
    """(server cores, load-generator cores): the server on the last core this process
    may use, everything else for the load generator, so the two never share a core and
    the server's CPU figures are not those of a process fighting its own clients.
    None with fewer than two usable cores, or when ``BENCH_NO_PIN`` is set. Decided
    once per process, before this process pins itself (``bench.run_all`` runs every
    benchmark in one process: asked again, it would see one core and pin nothing)."""
    if os.environ.get("BENCH_NO_PIN") or not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    return {cores[-1]}, set(cores[:-1])


def pin_load_generator() -> None:
    """Keep this (the load generator's) process off the server's core (see core_split)."""
    split = core_split()
    if split is not None and os.sched_getaffinity(0) != split[1]:
        os.sched_setaffinity(0, split[1])


def proc_rss_kib(pid: int) -> int:
    """Resident set size of a process (VmRSS, KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all threads."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class ServerProcess:
    """``python -m bench.servers ARGS`` in its own process, on an ephemeral port."""

    def __init__(self, label: str, *args: str, max_seconds: float = 900.0) -> None:
        self.label = label
        self.args = [*args, "--max-seconds", str(max_seconds)]
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        # stderr goes to a file (shown if the server fails to start); closed in stop(),
        # which keeps its text in stderr_text
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.stderr_text = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_kib(self) -> int:
        return proc_rss_kib(self.pid)

    def cpu_s(self) -> float:
        return proc_cpu_s(self.pid)

    async def start(self, timeout: float = 60.0) -> ServerProcess:
        split = core_split()
        server_cores = None if split is None else split[0]

        def pin() -> None:  # in the child, before Python starts: every thread inherits it
            if server_cores is not None:
                os.sched_setaffinity(0, server_cores)

        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.servers", *self.args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=self._stderr,
            cwd=_ROOT, preexec_fn=pin)
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            line = b""
        if not line.startswith(b"READY "):
            await self.stop()
            raise RuntimeError(f"{self.label} server did not start: {line!r}\n{self.stderr()}")
        self.port = int(line.split()[1])
        return self

    def stderr(self) -> str:
        """The server's stderr so far (its last 4000 characters)."""
        if not self._stderr.closed:
            self._stderr.seek(0)
            self.stderr_text = self._stderr.read().decode(errors="replace")
        return self.stderr_text[-4000:]

    def _close_stderr(self) -> None:
        if not self._stderr.closed:
            self.stderr()
            self._stderr.close()

    async def stop(self, timeout: float = 20.0) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            self._close_stderr()
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the server stops gracefully on stdin EOF
        for action in (None, proc.terminate, proc.kill):
            if action is not None:
                with contextlib.suppress(ProcessLookupError):
                    action()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), timeout / 2)
                break
        self._close_stderr()

    async def __aenter__(self) -> ServerProcess:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def hub_server(store_dir: str | Path, *, sync: str = "FULL",
               bettensor_db: Path | None = None, allowlist: Path | None = None,
               bettensor_poll: float = 5.0, bettensor_indexes: bool = False,
               store_url: str | None = None) -> ServerProcess:
    """The hub with its own store in ``store_dir`` (or in PostgreSQL at ``store_url``);
    with ``bettensor_db`` (and the ``allowlist`` giving the miners' UIDs) beside a
    Bettensor validator, adding its indexes to the validator's ``predictions`` when
    ``bettensor_indexes``."""
    if store_url is not None:
        return ServerProcess("hub[postgresql]", "hub", "--store", store_url)
    store = ["--store", str(Path(store_dir) / "hub.sqlite3"), "--sync", sync]
    if bettensor_db is None:
        return ServerProcess(f"hub[{sync}]", "hub", *store)
    if allowlist is None:
        raise ValueError("a hub beside a Bettensor validator needs the allowlist of UIDs")
    indexes = ["--bettensor-indexes"] if bettensor_indexes else []
    return ServerProcess(f"hub-bettensor{'+indexes' if bettensor_indexes else ''}[{sync}]",
                         "hub", *store, "--bettensor-db", str(bettensor_db),
                         "--allowlist", str(allowlist), "--bettensor-poll",
                         str(bettensor_poll), *indexes)


def ref_server(mode: str) -> ServerProcess:
    return ServerProcess(f"bare-{mode}", "ref", "--mode", mode)


@contextlib.contextmanager
def store_dir(base: str | None) -> Any:
    """A fresh directory for the hub's SQLite file (on disk: ``base`` or the cwd's
    filesystem, never a tmpfs, so FULL really fsyncs)."""
    path = tempfile.mkdtemp(prefix="bench-hub-", dir=base or _default_store_base())
    try:
        yield path
    finally:
        for child in Path(path).iterdir():
            child.unlink()
        Path(path).rmdir()


def _default_store_base() -> str:
    base = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        fstype = _fstype(base)
        if fstype in ("tmpfs", "ramfs"):
            return str(Path.cwd())
    return str(base)


def _fstype(path: Path) -> str:
    best, kind = "", ""
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if (len(parts) >= 3 and str(path.resolve()).startswith(parts[1])
                and len(parts[1]) > len(best)):
            best, kind = parts[1], parts[2]
    return kind


# -- measurement -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 100)) - 1))
    return ordered[rank]


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, all processes)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


@dataclass
class CpuWindow:
    """Wall time and CPU seconds of this process, of a server and of everything
    else on the machine over one phase."""

    server: ServerProcess
    wall: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    machine_cpu: float = 0.0
    _t0: tuple[float, ...] = field(default=(), repr=False)

    def __enter__(self) -> CpuWindow:
        self._t0 = (time.perf_counter(), time.process_time(), self.server.cpu_s(),
                    machine_busy_s())
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t0[0]
        self.client_cpu = time.process_time() - self._t0[1]
        self.server_cpu = self.server.cpu_s() - self._t0[2]
        self.machine_cpu = machine_busy_s() - self._t0[3]

    @property
    def other_load(self) -> float:
        """Cores used by other processes (not this benchmark) during the phase."""
        if not self.wall:
            return float("nan")
        return max(0.0, self.machine_cpu - self.client_cpu - self.server_cpu) / self.wall

    @property
    def client_util(self) -> float:
        return self.client_cpu / self.wall if self.wall else float("nan")

    @property
    def server_util(self) -> float:
        return self.server_cpu / self.wall if self.wall else float("nan")


async def wait_quiet(max_wait: float, *, threshold: float = 0.3, sample: float = 0.5) -> float:
    """Wait (at most ``max_wait`` s) until other processes use less than ``threshold``
    cores; return the last measured load (NaN when ``max_wait`` <= 0: no wait).
    Measurements on a shared machine are only comparable when nothing else
    competes for its cores."""
    if max_wait <= 0:
        return float("nan")
    deadline = time.monotonic() + max_wait
    while True:
        start_wall, start_busy, start_own = time.perf_counter(), machine_busy_s(), _own_cpu()
        await asyncio.sleep(sample)
        wall = time.perf_counter() - start_wall
        load = max(0.0, machine_busy_s() - start_busy - (_own_cpu() - start_own)) / wall
        if load < threshold or time.monotonic() >= deadline:
            return load


def _own_cpu() -> float:
    """CPU of this process and its children still running (the servers)."""
    total = time.process_time()
    for child in _children():
        with contextlib.suppress(OSError, ValueError):
            total += proc_cpu_s(child)
    return total


def _children() -> list[int]:
    pid = os.getpid()
    path = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        return [int(v) for v in path.read_text().split()]
    return []


def load_note(load: float, threshold: float = 0.3) -> str:
    return (f"other processes used {load:.2f} cores during this run: figures are noisy"
            if load >= threshold else "")


def fmt(value: float, digits: int = 2) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def ratio(hub: float, bare: float) -> float:
    return hub / bare if bare else float("nan")


def verdict(value: float, target: float, *, higher_is_better: bool) -> str:
    if value != value:
        return "n/a"
    met = value >= target if higher_is_better else value <= target
    op = ">=" if higher_is_better else "<="
    return f"target {op} {target:g}: {'MET' if met else 'MISSED'}"


def print_table(title: str, rows: Sequence[tuple[str, float, float, bool | None]],
                columns: tuple[str, str] = ("bare", "hub"), ratio_name: str = "hub/bare") -> None:
    """Rows of (metric, bare, hub, higher_is_better or None for no ratio column)."""
    print(f"\n== {title} ==")
    print(f"{'metric':<34}{columns[0]:>14}{columns[1]:>14}{ratio_name:>10}")
    for name, bare, hub, _better in rows:
        print(f"{name:<34}{fmt(bare):>14}{fmt(hub):>14}{fmt(ratio(hub, bare)):>10}")


VERDICTS: list[str] = []
"""Every RATIO/CHECK line printed in this process (``bench.run_all`` repeats them)."""


def print_ratio(name: str, value: float, target: float | None = None, *,
                higher_is_better: bool = True, note: str = "") -> None:
    """The verdict line of a benchmark: ``RATIO <name> = <hub/bare> (...)``."""
    extra = [] if target is None else [verdict(value, target, higher_is_better=higher_is_better)]
    if note:
        extra.append(note)
    tail = f"  ({'; '.join(extra)})" if extra else ""
    print_verdict(f"RATIO {name} = {fmt(value, 3)}{tail}")


def print_verdict(line: str) -> None:
    VERDICTS.append(line)
    print(line, flush=True)


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def run_main(banner: str, args: Any, run: Any) -> dict[str, Any]:
    """The body of every benchmark's ``main``: banner, quick-mode warning, run, JSON."""
    print(banner, flush=True)
    split = core_split()
    print("cores: " + ("not pinned" if split is None else
                       f"server on {sorted(split[0])}, load generator on {sorted(split[1])}"),
          flush=True)
    pin_load_generator()
    if args.quick:
        print("QUICK MODE: too short for meaningful ratios; it shows the benchmark runs",
              flush=True)
    outcome = asyncio.run(run(args))
    write_json(args.json, outcome)
    return outcome
