"""Servers under test: start one pinned to its CPU, wait until ready, read its RSS and CPU.

Two targets speak the same protocol: `hubbub` itself, and `raw-aiohttp`, the
minimal broadcast peer in `peers/raw_aiohttp.py` that hubbub's figures are
compared with. Accounts (users, tokens, rooms) are created over HTTP on
hubbub; the peer accepts any token.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from hubbub.bench import UNLIMITED_ENV, procstat

HERE = Path(__file__).resolve().parent
PASSWORD = "benchmark-password"


@dataclass(frozen=True)
class Target:
    """How to start one kind of server."""

    name: str
    module_args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    has_accounts: bool = True
    reset: Callable[[], None] | None = None  # empties shared backends before the setup

    def argv(self, port: int, data: Path) -> list[str]:
        args = [a.format(port=port, data=data) for a in self.module_args]
        return [sys.executable, *args]


HUBBUB = Target(
    "hubbub",
    ("-m", "hubbub", "serve", "--host", "127.0.0.1", "--port", "{port}", "--data", "{data}"),
    env=UNLIMITED_ENV,
)
# The distributed engine: one node on PostgreSQL and Redis (no worker: a run is short).
# Point HUBBUB_BENCH_REDIS at a Redis with `appendonly yes` and `appendfsync always` to
# compare acks at the same durability as SQLite's `synchronous=FULL`.
BENCH_DATABASE = os.environ.get(
    "HUBBUB_BENCH_DATABASE", "postgresql://postgres@127.0.0.1:5432/hubbub_bench"
)
BENCH_REDIS = os.environ.get("HUBBUB_BENCH_REDIS", "redis://127.0.0.1:6379/15")


def reset_backends(database: str, redis_url: str) -> None:
    """Drop and create `database`, empty the Redis database at `redis_url`."""
    import psycopg
    import redis

    admin, _, name = database.rpartition("/")
    with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()


def reset_distributed() -> None:
    """A fresh database and an empty Redis database for the distributed target."""
    reset_backends(BENCH_DATABASE, BENCH_REDIS)


HUBBUB_REDIS = Target(
    "hubbub-redis",
    HUBBUB.module_args,
    env={**UNLIMITED_ENV, "HUBBUB_DATABASE": BENCH_DATABASE, "HUBBUB_REDIS": BENCH_REDIS},
    reset=reset_distributed,
)
RAW_AIOHTTP = Target(
    "raw-aiohttp",
    (str(HERE / "peers" / "raw_aiohttp.py"), "--host", "127.0.0.1", "--port", "{port}"),
    has_accounts=False,
)
TARGETS = {t.name: t for t in (HUBBUB, HUBBUB_REDIS, RAW_AIOHTTP)}
DEFAULT_TARGETS = ("hubbub", "raw-aiohttp")  # hubbub-redis needs PostgreSQL and Redis


def cpu_list(text: str) -> list[int]:
    """`0,1` -> [0, 1]: a --server-cpus / --load-cpus value."""
    return [int(c) for c in text.split(",") if c]


def git_commit() -> str:
    """The checkout's short commit, recorded with every result."""
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
    )
    return out.stdout.strip()


def stop_on_sigterm() -> None:
    """SIGTERM unwinds through the `finally`s: servers stop, their data is removed."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin_and_raise_limits(cpus: list[int]) -> None:
    """Runs in the child before exec: pin it and let it hold many sockets."""
    os.sched_setaffinity(0, cpus)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Server:
    """One server process on a free port."""

    def __init__(self, target: Target, data: Path, cpus: list[int]) -> None:
        self.target, self.data, self.cpus = target, data, cpus
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data / f"{target.name}-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        env = {**os.environ, **self.target.env}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.target.argv(self.port, self.data),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=functools.partial(_pin_and_raise_limits, self.cpus),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.target.name} exited with {self.proc.returncode}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(self.url + "/readyz", timeout=1) as r,
            ):
                if r.status == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.target.name} not ready within {timeout:.0f}s")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self) -> int:
        return procstat.rss_kib(self.pid)

    def cpu_seconds(self) -> float:
        return procstat.cpu_seconds(self.pid)

    def wait_seconds(self) -> float:
        return procstat.run_queue_wait_seconds(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 15 s; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class ApiError(RuntimeError):
    """The server answered an HTTP call with an unexpected status."""


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, ok: tuple[int, ...], **kw: Any
) -> Any:
    async with http.request(method, url, **kw) as r:
        body = await r.text()
        if r.status not in ok:
            raise ApiError(f"{method} {url} -> {r.status} {body[:300]}")
        return await r.json(content_type=None) if body else None


async def _create_accounts(base: str, users: int, rooms: list[str], parallel: int) -> list[str]:
    gate = asyncio.Semaphore(parallel)
    async with aiohttp.ClientSession(base) as http:

        async def user_token(i: int) -> str:
            cred = {"username": f"bench{i}", "password": PASSWORD}
            async with gate:
                await _call(http, "POST", "/api/v1/users", (201, 409), json=cred)
                body = await _call(http, "POST", "/api/v1/login", (200,), json=cred)
            return str(body["token"])

        tokens = list(await asyncio.gather(*(user_token(i) for i in range(users))))
        auth = {"Authorization": f"Bearer {tokens[0]}"}
        for room in rooms:
            await _call(
                http, "POST", "/api/v1/rooms", (201, 409), json={"name": room}, headers=auth
            )
    return tokens


def create_accounts(server: Server, users: int, rooms: list[str], parallel: int = 4) -> list[str]:
    """Register and log in `users` users, create `rooms`; return the tokens by user index."""
    if not server.target.has_accounts:
        return [f"bench{i}" for i in range(users)]
    return asyncio.run(_create_accounts(server.url, users, rooms, parallel))
