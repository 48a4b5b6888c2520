"""Shared fixtures: a real `hubbub serve` process on a free port, and HTTP/WebSocket helpers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from pgutil import TestDatabase
from redis_server import REDIS_DURABLE, RedisServer

HUBBUB = [sys.executable, "-m", "hubbub"]
# This module, taken while it is being imported: later conftests take the name `conftest`.
_THIS = sys.modules[__name__]
_names = itertools.count()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """One `hubbub serve` subprocess; restartable on the same data directory."""

    def __init__(
        self, data: Path, env: dict[str, str] | None = None, args: list[str] | None = None
    ):
        self.data = data
        self.port = free_port()
        self.extra_env = env or {}
        self.extra_args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def command(self) -> list[str]:
        cmd = [*HUBBUB, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        return [*cmd, "--data", str(self.data), *self.extra_args]

    def start(self, timeout: float = 20.0) -> None:
        env = dict(os.environ)
        env.update(self.extra_env)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(), env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).split(b" ", 2)[1:2] == [b"200"]:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """kill -9: no chance to flush anything."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """Start servers with extra env/args; all are stopped at the end of the test."""
    started: list[ServerProcess] = []

    def make(
        env: dict[str, str] | None = None, args: list[str] | None = None, data: Path | None = None
    ) -> ServerProcess:
        d = data or tmp_path / f"data{len(started)}"
        d.mkdir(exist_ok=True)
        srv = ServerProcess(d, env, args)
        srv.start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


# The engines the protocol suite runs against: every test of the shared server runs once
# per engine, with the engine in its id (`test_x[sqlite]`, `test_x[postgres]`, `test_x[redis]`).
SERVER_ENGINES = ("sqlite", "postgres", "redis")
# The shared servers carry thousands of tests through a few pooled users, all from one
# address: the abuse limits that count per user or per address over time (history calls,
# rooms created per hour, connections, the penalty after a flood) would trip on the suite,
# not on an abuser. The
# spec's per-connection rate limits stay on; the others have their own tests on their own
# nodes (tests/integration/test_abuse_limits.py).
SHARED_ENV = {
    "HUBBUB_HISTORY_RATE": "0",
    "HUBBUB_ROOMS_PER_HOUR": "0",
    "HUBBUB_MAX_CONNECTIONS_PER_USER": "0",
    "HUBBUB_MAX_CONNECTIONS_PER_ADDRESS": "0",
    "HUBBUB_ABUSE_PENALTY": "0",
}


@pytest.fixture(scope="session", params=SERVER_ENGINES)
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server per engine for the many tests that do not restart or reconfigure it.

    `postgres` runs `hubbub serve --database` on a database made for the session (the
    server migrates it at start-up) and dropped at the end. Without a PostgreSQL server
    those tests are skipped, or fail under CI (see tests/pgutil.py). `redis` adds a
    private redis-server (AOF, fsync always) as `--redis`: the distributed engine.
    """
    engine: str = request.param
    database: TestDatabase | None = None
    redis: RedisServer | None = None
    args: list[str] = []
    if engine in ("postgres", "redis"):
        database = TestDatabase(migrate=False)
        args = ["--database", database.ensure()]
    if engine == "redis":
        redis = RedisServer(tmp_path_factory.mktemp("shared-redis-data"), *REDIS_DURABLE)
        redis.start()
        args += ["--redis", redis.url]
    srv = ServerProcess(tmp_path_factory.mktemp(f"shared-{engine}"), env=SHARED_ENV, args=args)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if redis is not None:
            redis.stop()
        if database is not None:
            database.drop()


@pytest.fixture(scope="session")
def root_conftest() -> ModuleType:
    """This module, for the tests and conftests below that cannot import it as `conftest`
    (each directory's conftest.py is a module of that name too)."""
    return _THIS


@pytest.fixture
def server(shared_server: ServerProcess) -> ServerProcess:
    return shared_server


def unique(prefix: str = "u") -> str:
    """A name no other test uses (tests share one server)."""
    return f"{prefix}{os.getpid()}x{next(_names)}"


class Api:
    """A thin HTTP helper over aiohttp for tests."""

    def __init__(self, session: aiohttp.ClientSession, base: str):
        self.session = session
        self.base = base

    async def call(
        self, method: str, path: str, token: str | None = None, json: Any = None, **kw: Any
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(
            method, self.base + path, json=json, headers=headers, **kw
        ) as r:
            body = await r.read()
            if not body:
                return r.status, None
            try:
                return r.status, await r.json(content_type=None)
            except ValueError:
                return r.status, body.decode(errors="replace")

    async def user(
        self, name: str | None = None, password: str = "correct horse"
    ) -> tuple[str, str]:
        """Register and log in a fresh user; returns (name, token)."""
        name = name or unique()
        status, _ = await self.call(
            "POST", "/api/v1/users", json={"username": name, "password": password}
        )
        assert status == 201, status
        status, body = await self.call(
            "POST", "/api/v1/login", json={"username": name, "password": password}
        )
        assert status == 200, body
        return name, body["token"]

    async def room(
        self, token: str, name: str | None = None, private: bool = False, topic: str | None = None
    ) -> str:
        name = name or unique("r")
        payload: dict[str, Any] = {"name": name, "private": private}
        if topic is not None:
            payload["topic"] = topic
        status, body = await self.call("POST", "/api/v1/rooms", token, json=payload)
        assert status == 201, body
        return name


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def api(http: aiohttp.ClientSession, server: ServerProcess) -> Api:
    return Api(http, server.url)


class WS:
    """A raw WebSocket test client: send frames, read frames with timeouts."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_json(frame)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(
                f"expected a text frame, got {msg.type} {msg.data!r} {msg.extra!r}"
            )
        data: dict[str, Any] = msg.json()
        return data

    async def recv_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """Read frames until one of the given type arrives (others are skipped)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            frame = await self.recv(max(left, 0.01))
            if frame["type"] == kind:
                return frame

    async def expect_close(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; returns the close code."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            msg = await asyncio.wait_for(self.ws.receive(), max(left, 0.01))
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            ):
                return self.ws.close_code
            if msg.type == aiohttp.WSMsgType.ERROR:
                return self.ws.close_code

    async def hello(self, token: str) -> dict[str, Any]:
        await self.send({"type": "hello", "token": token})
        frame = await self.recv()
        assert frame["type"] == "welcome", frame
        return frame

    async def join(self, room: str, since: int | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "join", "room": room}
        if since is not None:
            frame["since"] = since
        await self.send(frame)
        reply = await self.recv_type("joined")
        return reply

    async def close(self) -> None:
        await self.ws.close()


@pytest.fixture
async def connect(http: aiohttp.ClientSession, server: ServerProcess) -> AsyncIterator[Any]:
    """`await connect(token=None, url=None)`: a WebSocket, after hello when a token is given."""
    opened: list[WS] = []

    async def open_ws(token: str | None = None, url: str | None = None) -> WS:
        ws = WS(await http.ws_connect(url or server.ws_url, autoping=True, max_msg_size=0))
        opened.append(ws)
        if token is not None:
            await ws.hello(token)
        return ws

    yield open_ws
    for ws in opened:
        with contextlib.suppress(Exception):
            await ws.close()
