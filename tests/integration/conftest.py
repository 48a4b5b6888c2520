"""Fixtures shared by the integration tests, on top of tests/conftest.py (`server`, `api`,
`connect`, `server_factory`).

Every conftest.py is imported as the module `conftest`, and this one is loaded after
tests/conftest.py, so `from conftest import ...` in a test module here finds *this* module.
`pytest_configure` below therefore re-exports tests/conftest.py's public names (`unique`,
`ServerProcess`, `Api`, `WS`, `free_port`): `from conftest import ServerProcess, unique` keeps
working, with the same objects (one `unique()` counter). Helpers are also handed out as
fixtures: `unique`, `assert_error`, `wait_for`, `new_user`, `party`, `send_messages`,
`filled_room`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import aiohttp
import pytest

from hubbub.protocol.errors import ERROR_CODES as PROTOCOL_ERROR_CODES

ROOT_CONFTEST = Path(__file__).resolve().parent.parent / "conftest.py"
REEXPORTED = ("unique", "ServerProcess", "Api", "WS", "free_port")

# The error codes of the spec's error table: the only codes an error body may carry.
ERROR_CODES = frozenset(PROTOCOL_ERROR_CODES)


def _root_conftest(config: pytest.Config) -> ModuleType:
    for plugin in config.pluginmanager.get_plugins():
        path = getattr(plugin, "__file__", None)
        if isinstance(plugin, ModuleType) and path and Path(path).resolve() == ROOT_CONFTEST:
            return plugin
    raise RuntimeError("tests/conftest.py is not loaded")


def pytest_configure(config: pytest.Config) -> None:
    """Re-export tests/conftest.py's helpers (runs when this conftest is registered)."""
    root = _root_conftest(config)
    for name in REEXPORTED:
        globals()[name] = getattr(root, name)


@pytest.fixture(scope="session", name="unique")
def unique_fixture(root_conftest: ModuleType) -> Callable[..., str]:
    """tests/conftest.py's `unique()`: a name no other test uses."""
    fn: Callable[..., str] = root_conftest.unique
    return fn


# --- error bodies --------------------------------------------------------------------------------


def check_error(result: tuple[int, Any], status: int, code: str) -> dict[str, Any]:
    """Assert `result` (from api.call) is the spec's error answer: HTTP status + error body."""
    got_status, body = result
    assert got_status == status, f"expected {status} {code}, got {got_status} {body!r}"
    assert isinstance(body, dict), f"error body is not a JSON object: {body!r}"
    assert set(body) == {"error"}, f"error body must be exactly {{'error': ...}}: {body!r}"
    err = body["error"]
    assert isinstance(err, dict), body
    assert err.get("code") == code, f"expected code {code!r}: {body!r}"
    assert isinstance(err.get("message"), str), body
    assert err["message"].strip(), f"empty error message: {body!r}"
    return err


@pytest.fixture(scope="session")
def assert_error() -> Callable[[tuple[int, Any], int, str], dict[str, Any]]:
    """`assert_error((status, body), 404, "not_found")` checks the status, the code and the
    body shape `{"error": {"code", "message"}}`; returns the inner error object."""
    return check_error


# --- waiting for conditions ----------------------------------------------------------------------


async def _wait_for(
    fetch: Callable[[], Awaitable[Any]],
    predicate: Callable[[Any], bool],
    deadline_s: float = 10.0,
    what: str = "condition",
) -> Any:
    """Call `fetch()` until `predicate(value)` holds; fail with the last value at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while True:
        value = await fetch()
        if predicate(value):
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"gave up after {deadline_s}s waiting for {what}; last: {value!r}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., Awaitable[Any]]:
    """`await wait_for(fetch, predicate, deadline_s=10, what="...")`: poll with a deadline."""
    return _wait_for


# --- users, rooms and messages -------------------------------------------------------------------


class User(NamedTuple):
    name: str
    token: str


@dataclass
class Party:
    """A room with its owner, moderators and plain members (all logged in)."""

    room: str
    owner: User
    moderators: list[User] = field(default_factory=list)
    members: list[User] = field(default_factory=list)


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


async def _publish(ws: Any, room: str, items: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Send (id, body) pairs one at a time on a joined connection; return their acks.

    A `rate_limited` answer is retried after the `retry_after` the server asks for.
    """
    acks = []
    for msg_id, body in items:
        while True:
            await ws.send({"type": "send", "room": room, "id": msg_id, "body": body, "ref": msg_id})
            while True:
                frame = await ws.recv(10.0)
                if frame["type"] == "ack" and frame.get("id") == msg_id:
                    break
                if frame["type"] == "error" and frame.get("ref") == msg_id:
                    break
            if frame["type"] == "ack":
                acks.append({**frame, "body": body})
                break
            if frame.get("code") != "rate_limited":
                raise AssertionError(f"send {msg_id} failed: {frame!r}")
            await asyncio.sleep(float(frame.get("retry_after") or 0.05))
    return acks


async def publish_messages(
    open_ws: Callable[[str], Awaitable[Any]],
    token: str,
    room: str,
    bodies: list[str],
    id_prefix: str,
    connections: int = 1,
) -> list[dict[str, Any]]:
    """Post `bodies` to `room` over `connections` WebSockets (hello + join each) in parallel.

    Returns the acks, each with the `body` it acknowledges, in `seq` order. The rate limit is
    per connection, so several connections post many messages without waiting for it.
    """
    conns = [await open_ws(token) for _ in range(connections)]
    try:
        for ws in conns:
            await ws.join(room)
        items = [(f"{id_prefix}-{i}", body) for i, body in enumerate(bodies)]
        chunks = [items[i::connections] for i in range(connections)]
        results = await asyncio.gather(
            *(_publish(ws, room, chunk) for ws, chunk in zip(conns, chunks, strict=True))
        )
    finally:
        for ws in conns:
            with contextlib.suppress(Exception):
                await ws.close()
    acks = [ack for result in results for ack in result]
    return sorted(acks, key=lambda a: a["seq"])


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


@dataclass
class FilledRoom:
    """A public room on the shared server holding `len(acks)` messages (seq 1..N)."""

    room: str
    owner: User
    acks: list[dict[str, Any]]

    @property
    def last(self) -> int:
        return len(self.acks)


FILLED_ROOM_SIZE = 230


@pytest.fixture(scope="module")
def filled_room(shared_server: Any, root_conftest: ModuleType) -> Iterator[FilledRoom]:
    """One room with FILLED_ROOM_SIZE messages, built once per test module (history paging)."""
    unique_name: Callable[..., str] = root_conftest.unique
    ws_class = root_conftest.WS

    async def build() -> FilledRoom:
        async with aiohttp.ClientSession() as http:
            api = root_conftest.Api(http, shared_server.url)
            owner = User(*await api.user())
            room = await api.room(owner.token, topic="history")

            async def open_ws(token: str) -> Any:
                ws = ws_class(await http.ws_connect(shared_server.ws_url, max_msg_size=0))
                await ws.hello(token)
                return ws

            bodies = [f"message number {i + 1}" for i in range(FILLED_ROOM_SIZE)]
            acks = await publish_messages(
                open_ws, owner.token, room, bodies, unique_name("h"), connections=8
            )
            return FilledRoom(room, owner, acks)

    filled = asyncio.run(build())
    assert [a["seq"] for a in filled.acks] == list(range(1, FILLED_ROOM_SIZE + 1))
    yield filled


# --- several nodes -------------------------------------------------------------------------------


@pytest.fixture
def on(http: aiohttp.ClientSession) -> Callable[[Any], Any]:
    """`on(node)`: the HTTP helper (`Api`) for that node."""
    api_class = globals()["Api"]  # re-exported from tests/conftest.py at configure time
    return lambda node: api_class(http, node.url)


@pytest.fixture
async def ws_to(http: aiohttp.ClientSession) -> Any:
    """`await ws_to(node, token)`: a `multinode.Client` to that node, after hello; closed
    at the end of the test."""
    from multinode import Client  # imports `WS` from this module, re-exported at configure

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
