"""Fixtures of the integration tests, on top of tests/conftest.py (`server`, `api`,
`connect`, `server_factory`): `unique`, `assert_error`, `wait_for`, `new_user`, `party`,
`send_messages`, `filled_room`, and for several nodes `on`, `ws_to` and `shm_data`. What they
build on is in tests/support (`support.api`, `support.ws`, `support.multinode`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.api import (
    FILLED_ROOM_SIZE,
    Api,
    FilledRoom,
    Party,
    User,
    check_error,
    unique,
)
from support.api import wait_for as poll
from support.multinode import Client
from support.server import ServerProcess
from support.ws import WS, publish_messages


@pytest.fixture(scope="session", name="unique")
def unique_fixture() -> Callable[..., str]:
    """`unique(prefix)`: a name no other test uses (support.api.unique)."""
    return unique


# --- error bodies --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def assert_error() -> Callable[[tuple[int, Any], int, str], dict[str, Any]]:
    """`assert_error((status, body), 404, "not_found")` checks the status, the code and the
    body shape `{"error": {"code", "message"}}`; returns the inner error object."""
    return check_error


# --- waiting for conditions ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., Awaitable[Any]]:
    """`await wait_for(fetch, predicate, deadline_s=10, what="...")`: poll with a deadline."""
    return poll


# --- users, rooms and messages -------------------------------------------------------------------


@pytest.fixture
def new_user(api: Any) -> Callable[..., Awaitable[User]]:
    """`await new_user(name=None, password=...)`: a registered, logged-in user (name, token)."""

    async def make(name: str | None = None, password: str = "correct horse") -> User:
        return User(*await api.user(name, password))

    return make


@pytest.fixture
def party(api: Any, new_user: Callable[..., Awaitable[User]]) -> Callable[..., Awaitable[Party]]:
    """`await party(private=False, moderators=0, members=0)`: a room with people in it."""

    async def make(private: bool = False, moderators: int = 0, members: int = 0) -> Party:
        owner = await new_user()
        room = await api.room(owner.token, private=private)
        p = Party(room, owner)
        for _ in range(moderators + members):
            u = await new_user()
            status, body = await api.call(
                "PUT", f"/api/v1/rooms/{room}/members/{u.name}", owner.token
            )
            assert status == 204, (status, body)
            if len(p.moderators) < moderators:
                status, body = await api.call(
                    "PUT", f"/api/v1/rooms/{room}/moderators/{u.name}", owner.token
                )
                assert status == 204, (status, body)
                p.moderators.append(u)
            else:
                p.members.append(u)
        return p

    return make


@pytest.fixture
def send_messages(
    connect: Any, unique: Callable[..., str]
) -> Callable[..., Awaitable[list[dict[str, Any]]]]:
    """`await send_messages(token, room, bodies, connections=1)` -> acks (with body), seq order."""

    async def send(
        token: str, room: str, bodies: list[str], connections: int = 1
    ) -> list[dict[str, Any]]:
        return await publish_messages(connect, token, room, bodies, unique("m"), connections)

    return send


@pytest.fixture(scope="module")
def filled_room(shared_server: ServerProcess) -> Iterator[FilledRoom]:
    """One room with FILLED_ROOM_SIZE messages, built once per test module (history paging)."""

    async def build() -> FilledRoom:
        async with aiohttp.ClientSession() as http:
            api = Api(http, shared_server.url)
            owner = User(*await api.user())
            room = await api.room(owner.token, topic="history")

            async def open_ws(token: str) -> Any:
                ws = WS(await http.ws_connect(shared_server.ws_url, max_msg_size=0))
                await ws.hello(token)
                return ws

            bodies = [f"message number {i + 1}" for i in range(FILLED_ROOM_SIZE)]
            acks = await publish_messages(
                open_ws, owner.token, room, bodies, unique("h"), connections=8
            )
            return FilledRoom(room, owner, acks)

    filled = asyncio.run(build())
    assert [a["seq"] for a in filled.acks] == list(range(1, FILLED_ROOM_SIZE + 1))
    yield filled


# --- several nodes -------------------------------------------------------------------------------


@pytest.fixture
def on(http: aiohttp.ClientSession) -> Callable[[Any], Any]:
    """`on(node)`: the HTTP helper (`Api`) for that node."""
    return lambda node: Api(http, node.url)


@pytest.fixture
async def ws_to(http: aiohttp.ClientSession) -> Any:
    """`await ws_to(node, token)`: a `multinode.Client` to that node, after hello; closed
    at the end of the test."""
    opened: list[Any] = []

    async def open_ws(node: Any, token: str) -> Any:
        ws = Client(await http.ws_connect(node.ws_url, max_msg_size=0))
        opened.append(ws)
        await ws.hello(token)
        return ws

    yield open_ws
    for ws in opened:
        with contextlib.suppress(Exception):  # a test may leave a connection broken
            await ws.close()


@pytest.fixture
def shm_data() -> Iterator[Path]:
    """A data directory in memory where there is one, so fsync times add no disk noise."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="hubbub-slow-", dir=base) as d:
        yield Path(d)
