"""Fixtures shared by every tier: real `hubbub serve` processes (`server_factory`, the shared
`server` of each engine) and the HTTP and WebSocket clients on them (`http`, `api`, `connect`).
The helpers they build on are in tests/support."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.api import Api
from support.pgutil import TestDatabase
from support.redis_server import REDIS_DURABLE, RedisServer
from support.server import SERVER_ENGINES, SHARED_ENV, ServerProcess
from support.ws import WS


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--screenshots",
        metavar="DIR",
        default=None,
        help="write the docs' screenshots (webapp.png, terminal.svg) into DIR "
        "(`make screenshots` passes docs/img); by default they go to a temporary directory",
    )


@pytest.fixture
def screenshot_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where a test saves the screenshot the docs show: `--screenshots DIR`, else tmp_path
    (so a plain test run leaves docs/img alone)."""
    option: str | None = request.config.getoption("--screenshots")
    if option is None:
        return tmp_path
    directory = Path(option).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


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


@pytest.fixture(scope="session", params=SERVER_ENGINES)
def shared_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server per engine for the many tests that do not restart or reconfigure it.

    `postgres` runs `hubbub serve --database` on a database made for the session (the
    server migrates it at start-up) and dropped at the end. Without a PostgreSQL server
    those tests are skipped, or fail under CI (see tests/support/pgutil.py). `redis` adds a
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


@pytest.fixture
def server(shared_server: ServerProcess) -> ServerProcess:
    return shared_server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def api(http: aiohttp.ClientSession, server: ServerProcess) -> Api:
    return Api(http, server.url)


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
