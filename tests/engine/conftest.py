"""Fixtures of the engine tests: the `engine` fixture runs a test once per engine in `ENGINES`;
a private redis-server per test module, emptied for each test that takes `client`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from support.engine_handles import ENGINES, EngineUnderTest
from support.pgutil import POSTGRES
from support.redis_server import RedisServer


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_test_database() -> Iterator[None]:
    """The session's PostgreSQL database, if a test created it, is dropped at the end."""
    yield
    POSTGRES.drop()


@pytest.fixture(params=sorted(ENGINES))
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EngineUnderTest]:
    """A started engine on fresh, empty data; closed after the test."""
    handle = ENGINES[request.param](tmp_path)
    await handle.start()
    try:
        yield handle
    finally:
        await handle.close()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    c = redis_server.client()
    await c.flushall()
    yield c
    await c.aclose()
