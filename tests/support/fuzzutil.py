"""Helpers of the fuzz tests: the module's world (users, rooms, acked messages), the health
check run after every test, and the checks every answer must pass.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from hubbub.protocol.errors import ERRORS, BadRequest

# The spec's error table (hubbub.protocol.errors), with the HTTP status of each code.
# 405 is the wrong-method answer, a `bad_request` body (docs/protocol.md, "HTTP details").
ERROR_STATUS: dict[str, frozenset[int]] = {
    error.code: frozenset({error.status, 405} if error is BadRequest else {error.status})
    for error in ERRORS
}
SERVER_FRAME_TYPES = frozenset(
    {"welcome", "joined", "left", "ack", "history", "pong", "message", "update", "presence"}
    | {"typing"}
)
# What an answer must never show a client: tracebacks, source paths, exception or driver
# names, memory addresses. A hostile client learns nothing about the inside from errors.
LEAK = re.compile(
    r"Traceback|File \"|\.py\b|site-packages|hubbub\.|aiohttp\.|sqlite3|asyncpg|psycopg"
    r"|redis\.|orjson|msgspec\.|Exception|Error\(|KeyError|TypeError|ValueError"
    r"|AttributeError|AssertionError|0x[0-9a-f]{6,}|object at "
)

_names = itertools.count()


def name(prefix: str) -> str:
    """A fresh lower-case name, valid as a username, room name or message id."""
    return f"{prefix}{os.getpid()}z{next(_names)}"


@dataclass
class World:
    """What a fuzz module works on, made once: users with tokens, rooms, acked messages."""

    base: str
    names: dict[str, str] = field(default_factory=dict)  # role -> registered username
    tokens: dict[str, str] = field(default_factory=dict)  # role -> token
    public: str = ""  # a public room owned by `owner`; `fuzzer` and `canary` are members
    private: str = ""  # a private room owned by `owner`; `fuzzer` is not a member
    banned: str = ""  # a public room owned by `owner` that banned `fuzzer`
    acks: list[dict[str, Any]] = field(default_factory=list)  # in `public`, before any fuzz

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/ws"

    @classmethod
    async def build(cls, base: str) -> World:
        world = cls(base)
        async with aiohttp.ClientSession() as http:
            for role in ("owner", "fuzzer", "canary"):
                world.names[role] = name(role)
                world.tokens[role] = await register(http, base, world.names[role])
            world.public = await create_room(http, base, world.tokens["owner"], False)
            world.private = await create_room(http, base, world.tokens["owner"], True)
            world.banned = await create_room(http, base, world.tokens["owner"], False)
            url = f"{base}/api/v1/rooms/{world.banned}/bans/{world.names['fuzzer']}"
            async with http.put(url, headers=auth(world.tokens["owner"])) as r:
                assert r.status == 204, await r.text()
            ws = await open_ws(http, world.ws_url, world.tokens["owner"])
            try:
                await request(ws, {"type": "join", "room": world.public}, "joined")
                for i in range(5):
                    frame = {"type": "send", "room": world.public, "id": f"base-{i}"}
                    ack = await request(ws, {**frame, "body": f"before the fuzz {i}"}, "ack")
                    world.acks.append({**ack, "body": f"before the fuzz {i}"})
            finally:
                await ws.close()
            for role in ("fuzzer", "canary"):
                url = f"{base}/api/v1/rooms/{world.public}/members/{world.names[role]}"
                async with http.put(url, headers=auth(world.tokens[role])) as r:
                    assert r.status == 204, await r.text()
        return world


async def register(http: aiohttp.ClientSession, base: str, username: str) -> str:
    """Register and log in; returns the token."""
    creds = {"username": username, "password": "correct horse battery"}
    async with http.post(f"{base}/api/v1/users", json=creds) as r:
        assert r.status == 201, await r.text()
    async with http.post(f"{base}/api/v1/login", json=creds) as r:
        assert r.status == 200, await r.text()
        token: str = (await r.json())["token"]
    return token


async def create_room(http: aiohttp.ClientSession, base: str, token: str, private: bool) -> str:
    room = name("private" if private else "public")
    payload = {"name": room, "private": private, "topic": "fuzz"}
    async with http.post(f"{base}/api/v1/rooms", json=payload, headers=auth(token)) as r:
        assert r.status == 201, await r.text()
    return room


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def open_ws(
    http: aiohttp.ClientSession, url: str, token: str | None
) -> aiohttp.ClientWebSocketResponse:
    """A WebSocket, after hello when a token is given."""
    ws = await http.ws_connect(url, max_msg_size=0, autoping=True)
    if token is not None:
        await request(ws, {"type": "hello", "token": token}, "welcome")
    return ws


async def request(
    ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any], expect: str, within: float = 5.0
) -> dict[str, Any]:
    """Send `frame` with a fresh ref; return the reply carrying it, which must be `expect`."""
    ref = name("ref")
    await ws.send_json({**frame, "ref": ref})
    while True:
        msg = await ws.receive(within)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, frame)
        reply: dict[str, Any] = json.loads(msg.data)
        if reply.get("ref") == ref:
            assert reply["type"] == expect, (frame, reply)
            return reply


async def check_healthy(http: aiohttp.ClientSession, base: str, world: World) -> None:
    """/healthz is 200, the canary can send and get an ack, and the acked messages are intact."""
    async with http.get(f"{base}/healthz") as r:
        assert r.status == 200, await r.text()
    ws = await open_ws(http, world.ws_url, world.tokens["canary"])
    try:
        await request(ws, {"type": "join", "room": world.public}, "joined")
        frame = {"type": "send", "room": world.public, "id": name("canary"), "body": "still here"}
        ack = await request(ws, frame, "ack")
        assert ack["seq"] > len(world.acks), ack
        page = await request(
            ws, {"type": "history", "room": world.public, "after": 0, "limit": 5}, "history"
        )
    finally:
        await ws.close()
    fields = ("room", "id", "seq", "ts", "body")
    expected = [{k: a[k] for k in fields} for a in world.acks]
    assert [{k: m[k] for k in fields} for m in page["messages"]] == expected
    assert all(m["from"] == world.names["owner"] for m in page["messages"]), page


def server_errors(log: str) -> list[str]:
    """The log lines at level error or above, or carrying an exception."""
    bad = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                bad.append(line)
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("level") in ("error", "critical") or "exc" in entry:
            bad.append(line)
    return bad


def check_error_payload(payload: Any, where: str) -> str:
    """An error's `{code, message}` (HTTP body's `error`, or the WebSocket frame): a spec
    code, a message that reveals nothing of the inside; returns the code."""
    assert isinstance(payload, dict), f"{where}: error is not an object: {payload!r}"
    code = payload.get("code")
    assert code in ERROR_STATUS, f"{where}: {code!r} is not a spec error code: {payload!r}"
    assert code != "internal", f"{where}: the server hit a bug: {payload!r}"
    message = payload.get("message")
    assert isinstance(message, str) and message.strip(), f"{where}: no message: {payload!r}"
    assert not LEAK.search(message), f"{where}: the message leaks internals: {payload!r}"
    return str(code)


def check_http_answer(status: int, headers: Any, raw: bytes, where: str) -> None:
    """Any HTTP answer: never 5xx; a 4xx has the spec's error body with a matching code."""
    text = raw.decode(errors="replace")
    assert status < 500, f"{where}: {status} {text[:500]!r}"
    assert not LEAK.search(text) or status < 400, f"{where}: leaks internals: {text[:500]!r}"
    if status < 400:
        return
    assert headers.get("Content-Type", "").startswith("application/json"), (where, headers)
    body = json.loads(raw)
    assert isinstance(body, dict) and set(body) == {"error"}, f"{where}: {body!r}"
    code = check_error_payload(body["error"], where)
    assert status in ERROR_STATUS[code], f"{where}: {code} with HTTP {status}"
    if status == 405:
        assert headers.get("Allow"), f"{where}: 405 without an Allow header"
