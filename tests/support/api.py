"""The HTTP side of the tests: `Api` over aiohttp, fresh names, and the spec's error bodies."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import aiohttp

from hubbub.protocol.errors import ERROR_CODES as PROTOCOL_ERROR_CODES

# The error codes of the spec's error table: the only codes an error body may carry.
ERROR_CODES = frozenset(PROTOCOL_ERROR_CODES)

_names = itertools.count()


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


async def wait_for(
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
