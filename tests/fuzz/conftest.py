"""Fixtures of the fuzz tests: one live `hubbub serve` per test module, with a canary.

Each module gets its own server (`fuzz_server`), a few users and rooms made once
(`world`), and messages acked before any fuzzing. After every test, `guard` checks what
hostile input must never break: /healthz answers 200, the canary user can still hello,
join, send and get an ack, the messages acked before the fuzz read back unchanged, and the
server logged no error (every `internal` answer and every unhandled exception is logged
at level error, so a clean log means no bug was hit, even one the client never saw).

The fuzz server runs with every per-connection and per-user limit off
(`HUBBUB_RATE_LIMIT=0` and friends): the fuzz sends hundreds of frames and requests a
second from one connection and one user, and a `rate_limited` answer would hide the
answer to the frame under test. The limits have their own tests
(tests/integration/test_ws_errors.py, tests/core/test_ratelimit.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from support.fuzzutil import World, check_healthy, server_errors
from support.server import ServerProcess

# Limits off (see the module docstring), and a short heartbeat is not wanted: a fuzz
# example must never race a server ping.
FUZZ_ENV = {
    "HUBBUB_RATE_LIMIT": "0",
    "HUBBUB_FRAME_RATE": "0",
    "HUBBUB_HISTORY_RATE": "0",
    "HUBBUB_LOGIN_FAILURES": "0",
    "HUBBUB_ROOMS_PER_HOUR": "0",
    "HUBBUB_MAX_CONNECTIONS_PER_USER": "0",
    "HUBBUB_MAX_CONNECTIONS_PER_ADDRESS": "0",
    # Oversized frames are part of the fuzz: the penalty box would refuse the next example.
    "HUBBUB_ABUSE_PENALTY": "0",
}


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    """A `hubbub serve` (SQLite) for this test module alone, limits off."""
    srv = ServerProcess(tmp_path_factory.mktemp("fuzz"), dict(FUZZ_ENV))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def world(fuzz_server: Any) -> World:
    """Users, rooms and acked messages made once per module (argon2 makes users slow-ish)."""
    return asyncio.run(World.build(fuzz_server.url))


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(autouse=True)
async def guard(fuzz_server: Any, world: World, http: aiohttp.ClientSession) -> Any:
    """After each test: the server is healthy, the canary works, acked messages are intact,
    and nothing was logged at level error while the test ran."""
    offset = len(fuzz_server.log())
    yield
    await check_healthy(http, fuzz_server.url, world)
    errors = server_errors(fuzz_server.log()[offset:])
    assert not errors, "the server logged errors during the fuzz:\n" + "\n".join(errors[:5])
