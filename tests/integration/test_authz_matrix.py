"""The authorization matrix: every call and frame about a room, by every kind of actor, in a
public and a private room, with the one answer the spec and docs/protocol.md give.

The whole contract is the table `MATRIX` below; one parametrized test checks each cell.
Where the server disagrees, the server is wrong (the table follows the spec, never the code):

- spec: a private room is invisible to non-members, "every call and frame about it answers
  404 / not_found, exactly as for a room that does not exist" (each 404 cell here is also
  compared with the same call on a room that does not exist);
- spec: public rooms are readable by every logged-in user; a user banned from one gets
  403 / forbidden there (docs: "on every call and frame about a public room");
- docs "Rooms, roles, membership": self-join of a public room, invite and kick by the owner
  or a moderator, moderators may not kick or ban the owner or another moderator, the owner
  cannot leave, only the owner promotes and demotes, bans are listed by staff;
- no, a malformed or a revoked token: 401 unauthorized on HTTP, `error unauthorized` and
  close 4001 on a WebSocket, whatever the room (nothing is revealed about it).

The users and both rooms are made once for the module (argon2 makes users slow-ish). A cell
whose call changed something (a kick, a ban, a join...) is followed by `restore`, which puts
the room back as `Room.setup` made it, so the cells stay independent in any order.

The server runs with its abuse limits off: the matrix sends hundreds of calls a second from
a few users, and a `rate_limited` answer would hide the authorization answer under test.
"""

# ruff: noqa: E501 (the matrix is one table, a row per line)
from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from support.server import ServerProcess

# --- the table -----------------------------------------------------------------------------------
#
# HTTP cells: a status; 2xx has the body of the call, 4xx the error body with the code of that
# status (401 unauthorized, 403 forbidden, 404 not_found). WebSocket cells: the reply's type
# (`joined`, `left`, `ack`, `history`), `quiet` (no reply at all: a typing frame), an error
# code (`forbidden`, `not_found`, `not_joined`), or `4001` (`error unauthorized`, then close
# 4001). `logged out` is the answer for each of: no token, a malformed token, a revoked one.
#
# Targets: `self` is the actor; `newcomer` a user who is not in the room; `member`,
# `moderator`, `owner` the room's; `banned` a user banned from the room. Removing someone
# who is not a member is a no-op 204; promoting them is 404 (docs/protocol.md); adding a
# banned user is 403 (unban first); the owner's role never changes (403).
# WebSocket frames go on a fresh connection after hello; `join+X` joins first, then X.

ACTORS = ("owner", "moderator", "member", "outsider", "banned")
LOGGED_OUT = ("no-token", "bad-token", "revoked-token")

# fmt: off
MATRIX: list[tuple[str, str, str, str, str, str, str, str]] = [
    # call                        room       owner      moderator  member     outsider     banned       logged out
    ("GET room",                  "public",  "200",     "200",     "200",     "200",       "403",       "401"),
    ("GET room",                  "private", "200",     "200",     "200",     "404",       "404",       "401"),
    ("PUT members/self",          "public",  "204",     "204",     "204",     "204",       "403",       "401"),
    ("PUT members/self",          "private", "204",     "204",     "204",     "404",       "404",       "401"),
    ("DELETE members/self",       "public",  "403",     "204",     "204",     "204",       "403",       "401"),
    ("DELETE members/self",       "private", "403",     "204",     "204",     "404",       "404",       "401"),
    ("PUT members/newcomer",      "public",  "204",     "204",     "403",     "403",       "403",       "401"),
    ("PUT members/newcomer",      "private", "204",     "204",     "403",     "404",       "404",       "401"),
    ("DELETE members/member",     "public",  "204",     "204",     "403",     "403",       "403",       "401"),
    ("DELETE members/member",     "private", "204",     "204",     "403",     "404",       "404",       "401"),
    ("DELETE members/moderator",  "public",  "204",     "403",     "403",     "403",       "403",       "401"),
    ("DELETE members/moderator",  "private", "204",     "403",     "403",     "404",       "404",       "401"),
    ("DELETE members/owner",      "public",  "403",     "403",     "403",     "403",       "403",       "401"),
    ("DELETE members/owner",      "private", "403",     "403",     "403",     "404",       "404",       "401"),
    ("PUT members/banned",        "public",  "403",     "403",     "403",     "403",       "403",       "401"),
    ("PUT members/banned",        "private", "403",     "403",     "403",     "404",       "404",       "401"),
    ("DELETE members/newcomer",   "public",  "204",     "204",     "403",     "403",       "403",       "401"),
    ("DELETE members/newcomer",   "private", "204",     "204",     "403",     "404",       "404",       "401"),
    ("PUT bans/member",           "public",  "204",     "204",     "403",     "403",       "403",       "401"),
    ("PUT bans/member",           "private", "204",     "204",     "403",     "404",       "404",       "401"),
    ("PUT bans/moderator",        "public",  "204",     "403",     "403",     "403",       "403",       "401"),
    ("PUT bans/moderator",        "private", "204",     "403",     "403",     "404",       "404",       "401"),
    ("PUT bans/owner",            "public",  "403",     "403",     "403",     "403",       "403",       "401"),
    ("PUT bans/owner",            "private", "403",     "403",     "403",     "404",       "404",       "401"),
    ("DELETE bans/banned",        "public",  "204",     "204",     "403",     "403",       "403",       "401"),
    ("DELETE bans/banned",        "private", "204",     "204",     "403",     "404",       "404",       "401"),
    ("GET bans",                  "public",  "200",     "200",     "403",     "403",       "403",       "401"),
    ("GET bans",                  "private", "200",     "200",     "403",     "404",       "404",       "401"),
    ("PUT moderators/member",     "public",  "204",     "403",     "403",     "403",       "403",       "401"),
    ("PUT moderators/member",     "private", "204",     "403",     "403",     "404",       "404",       "401"),
    ("DELETE moderators/moderator", "public", "204",    "403",     "403",     "403",       "403",       "401"),
    ("DELETE moderators/moderator", "private", "204",   "403",     "403",     "404",       "404",       "401"),
    ("PUT moderators/newcomer",   "public",  "404",     "403",     "403",     "403",       "403",       "401"),
    ("PUT moderators/newcomer",   "private", "404",     "403",     "403",     "404",       "404",       "401"),
    ("DELETE moderators/owner",   "public",  "403",     "403",     "403",     "403",       "403",       "401"),
    ("DELETE moderators/owner",   "private", "403",     "403",     "403",     "404",       "404",       "401"),
    ("GET messages",              "public",  "200",     "200",     "200",     "200",       "403",       "401"),
    ("GET messages",              "private", "200",     "200",     "200",     "404",       "404",       "401"),
    ("GET presence",              "public",  "200",     "200",     "200",     "200",       "403",       "401"),
    ("GET presence",              "private", "200",     "200",     "200",     "404",       "404",       "401"),
    ("ws join",                   "public",  "joined",  "joined",  "joined",  "joined",    "forbidden", "4001"),
    ("ws join",                   "private", "joined",  "joined",  "joined",  "not_found", "not_found", "4001"),
    ("ws leave",                  "public",  "left",    "left",    "left",    "left",      "left",      "4001"),
    ("ws leave",                  "private", "left",    "left",    "left",    "left",      "left",      "4001"),
    ("ws send",                   "public",  "not_joined", "not_joined", "not_joined", "not_joined", "forbidden", "4001"),
    ("ws send",                   "private", "not_joined", "not_joined", "not_joined", "not_found", "not_found", "4001"),
    ("ws join+send",              "public",  "ack",     "ack",     "ack",     "ack",       "forbidden", "4001"),
    ("ws join+send",              "private", "ack",     "ack",     "ack",     "not_found", "not_found", "4001"),
    ("ws history",                "public",  "history", "history", "history", "history",   "forbidden", "4001"),
    ("ws history",                "private", "history", "history", "history", "not_found", "not_found", "4001"),
    ("ws typing",                 "public",  "not_joined", "not_joined", "not_joined", "not_joined", "forbidden", "4001"),
    ("ws typing",                 "private", "not_joined", "not_joined", "not_joined", "not_found", "not_found", "4001"),
    ("ws join+typing",            "public",  "quiet",   "quiet",   "quiet",   "quiet",     "forbidden", "4001"),
    ("ws join+typing",            "private", "quiet",   "quiet",   "quiet",   "not_found", "not_found", "4001"),
    # Protocol v2, section 1. `theirs` is t-member's message; `mine` the one the cell sent.
    ("PATCH topic",               "public",  "200",     "200",     "403",     "403",       "403",       "401"),
    ("PATCH topic",               "private", "200",     "200",     "403",     "404",       "404",       "401"),
    ("GET edits",                 "public",  "200",     "200",     "200",     "200",       "403",       "401"),
    ("GET edits",                 "private", "200",     "200",     "200",     "404",       "404",       "401"),
    ("GET thread",                "public",  "200",     "200",     "200",     "200",       "403",       "401"),
    ("GET thread",                "private", "200",     "200",     "200",     "404",       "404",       "401"),
    ("ws edit",                   "public",  "not_joined", "not_joined", "not_joined", "not_joined", "forbidden", "4001"),
    ("ws edit",                   "private", "not_joined", "not_joined", "not_joined", "not_found", "not_found", "4001"),
    ("ws join+send+edit",         "public",  "ack",     "ack",     "ack",     "ack",       "forbidden", "4001"),
    ("ws join+send+edit",         "private", "ack",     "ack",     "ack",     "not_found", "not_found", "4001"),
    ("ws join+edit",              "public",  "forbidden", "forbidden", "forbidden", "forbidden", "forbidden", "4001"),
    ("ws join+edit",              "private", "forbidden", "forbidden", "forbidden", "not_found", "not_found", "4001"),
    ("ws delete",                 "public",  "not_joined", "not_joined", "not_joined", "not_joined", "forbidden", "4001"),
    ("ws delete",                 "private", "not_joined", "not_joined", "not_joined", "not_found", "not_found", "4001"),
    ("ws join+send+delete",       "public",  "ack",     "ack",     "ack",     "ack",       "forbidden", "4001"),
    ("ws join+send+delete",       "private", "ack",     "ack",     "ack",     "not_found", "not_found", "4001"),
    ("ws join+delete",            "public",  "ack",     "ack",     "forbidden", "forbidden", "forbidden", "4001"),
    ("ws join+delete",            "private", "ack",     "ack",     "forbidden", "not_found", "not_found", "4001"),
    ("ws react",                  "public",  "not_joined", "not_joined", "not_joined", "not_joined", "forbidden", "4001"),
    ("ws react",                  "private", "not_joined", "not_joined", "not_joined", "not_found", "not_found", "4001"),
    ("ws join+react",             "public",  "ack",     "ack",     "ack",     "ack",       "forbidden", "4001"),
    ("ws join+react",             "private", "ack",     "ack",     "ack",     "not_found", "not_found", "4001"),
    ("ws join+react+unreact",     "public",  "ack",     "ack",     "ack",     "ack",       "forbidden", "4001"),
    ("ws join+react+unreact",     "private", "ack",     "ack",     "ack",     "not_found", "not_found", "4001"),
    ("ws unreact",                "public",  "not_joined", "not_joined", "not_joined", "not_joined", "forbidden", "4001"),
    ("ws unreact",                "private", "not_joined", "not_joined", "not_joined", "not_found", "not_found", "4001"),
    ("ws join+unreact",           "public",  "not_found", "not_found", "not_found", "not_found", "forbidden", "4001"),
    ("ws join+unreact",           "private", "not_found", "not_found", "not_found", "not_found", "not_found", "4001"),
    ("ws join+reply",             "public",  "ack",     "ack",     "ack",     "ack",       "forbidden", "4001"),
    ("ws join+reply",             "private", "ack",     "ack",     "ack",     "not_found", "not_found", "4001"),
    ("ws join+thread",            "public",  "ack",     "ack",     "ack",     "ack",       "forbidden", "4001"),
    ("ws join+thread",            "private", "ack",     "ack",     "ack",     "not_found", "not_found", "4001"),
]
# fmt: on
# `ws join+unreact` removes t-member's reaction: not the actor's, so it does not stand for
# them (not_found); `ws join+delete` deletes a message t-member sent for the cell (the owner
# and moderators may); edits are only ever the sender's.
# `ws leave` answers `left` to everyone logged in: docs/protocol.md, "leave of a room the
# connection has not joined answers left anyway" (also for a room that does not exist, so
# a private room still looks exactly like a missing one, and nothing is revealed).

HTTP_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found"}


def cells() -> Iterator[Any]:
    for call, kind, *answers in MATRIX:
        logged_out = answers[-1]
        for actor, expected in (
            *zip(ACTORS, answers[:-1], strict=True),
            *((actor, logged_out) for actor in LOGGED_OUT),
        ):
            yield pytest.param(call, kind, actor, expected, id=f"{call}-{kind}-{actor}")


# --- the world -----------------------------------------------------------------------------------

_names = itertools.count()


def unique(prefix: str) -> str:
    """A fresh lower-case name (valid as a username, room name or message id)."""
    return f"{prefix}{os.getpid()}m{next(_names)}"


PEOPLE = ("owner", "moderator", "member", "outsider", "banned", "newcomer", "revoked")
# Targets of the calls, kept apart from the actors so a cell's actor is never its victim.
TARGETS = {"member": "t-member", "moderator": "t-moderator", "banned": "t-banned"}


@dataclass
class World:
    base: str
    names: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    rooms: dict[str, str] = field(default_factory=dict)  # kind -> room name
    theirs: dict[str, int] = field(default_factory=dict)  # kind -> seq of t-member's message

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/ws"


async def call(
    http: aiohttp.ClientSession,
    world: World,
    method: str,
    path: str,
    token: str | None,
    body: Any = None,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with http.request(method, world.base + path, headers=headers, json=body) as r:
        raw = await r.read()
        return r.status, (json.loads(raw) if raw else None)


async def owner_call(http: aiohttp.ClientSession, world: World, method: str, path: str) -> None:
    status, body = await call(http, world, method, path, world.tokens["owner"])
    assert status == 204, (method, path, status, body)


async def restore(http: aiohttp.ClientSession, world: World, kind: str) -> None:
    """Put the room back as `build` left it (each step is a no-op when nothing changed)."""
    room = f"/api/v1/rooms/{world.rooms[kind]}"
    n = world.names
    for user in ("moderator", "member", "t-member", "t-moderator"):
        await owner_call(http, world, "DELETE", f"{room}/bans/{n[user]}")
        await owner_call(http, world, "PUT", f"{room}/members/{n[user]}")
    await owner_call(http, world, "PUT", f"{room}/moderators/{n['moderator']}")
    await owner_call(http, world, "PUT", f"{room}/moderators/{n['t-moderator']}")
    await owner_call(http, world, "DELETE", f"{room}/moderators/{n['member']}")
    await owner_call(http, world, "DELETE", f"{room}/moderators/{n['t-member']}")
    for user in ("outsider", "newcomer"):
        await owner_call(http, world, "DELETE", f"{room}/members/{n[user]}")
    for user in ("banned", "t-banned"):
        await owner_call(http, world, "PUT", f"{room}/bans/{n[user]}")


async def build(base: str) -> World:
    world = World(base)
    async with aiohttp.ClientSession() as http:

        async def person(role: str) -> None:
            name = unique("az")
            creds = {"username": name, "password": "correct horse battery"}
            async with http.post(f"{base}/api/v1/users", json=creds) as r:
                assert r.status == 201, await r.text()
            async with http.post(f"{base}/api/v1/login", json=creds) as r:
                assert r.status == 200, await r.text()
                world.tokens[role] = (await r.json())["token"]
            world.names[role] = name

        await asyncio.gather(*(person(role) for role in (*PEOPLE, *TARGETS.values())))
        status, _ = await call(http, world, "POST", "/api/v1/logout", world.tokens["revoked"])
        assert status == 204
        for kind in ("public", "private"):
            name = unique("authz")
            payload = {"name": name, "private": kind == "private"}
            headers = {"Authorization": f"Bearer {world.tokens['owner']}"}
            async with http.post(f"{base}/api/v1/rooms", json=payload, headers=headers) as r:
                assert r.status == 201, await r.text()
            world.rooms[kind] = name
            await restore(http, world, kind)
            world.theirs[kind] = await sent_by_t_member(http, world, kind, react="tm")
    return world


async def sent_by_t_member(
    http: aiohttp.ClientSession, world: World, kind: str, react: str | None = None
) -> int:
    """The seq of a message t-member sends to the room (which t-member reacts to with
    `react`, when given)."""
    room = world.rooms[kind]
    async with http.ws_connect(world.ws_url) as ws:
        frames: list[dict[str, Any]] = [
            {"type": "hello", "token": world.tokens["t-member"]},
            {"type": "join", "room": room},
            {"type": "send", "room": room, "id": unique("theirs"), "body": "t-member's"},
        ]
        seq = 0
        for i, frame in enumerate(frames):
            await ws.send_json({**frame, "ref": f"s{i}"})
            reply = await next_reply(ws, f"s{i}")
            assert reply["type"] != "error", reply
            seq = reply.get("seq", seq)
        if react is not None:
            frame = {"type": "react", "room": room, "id": unique("tr"), "target": seq, "key": react}
            await ws.send_json({**frame, "ref": "react"})
            assert (await next_reply(ws, "react"))["type"] == "ack"
    return int(seq)


@pytest.fixture(scope="module")
def matrix_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    env = {
        "HUBBUB_RATE_LIMIT": "0",
        "HUBBUB_FRAME_RATE": "0",
        "HUBBUB_HISTORY_RATE": "0",
        "HUBBUB_LOGIN_FAILURES": "0",
        "HUBBUB_MAX_CONNECTIONS_PER_USER": "0",
        "HUBBUB_MAX_CONNECTIONS_PER_ADDRESS": "0",
    }
    srv = ServerProcess(tmp_path_factory.mktemp("authz"), env)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def world(matrix_server: Any) -> World:
    return asyncio.run(build(matrix_server.url))


@pytest.fixture
async def session() -> Any:
    async with aiohttp.ClientSession() as http:
        yield http


# --- performing a cell ---------------------------------------------------------------------------


def token_of(world: World, actor: str) -> str | None:
    if actor == "no-token":
        return None
    if actor == "bad-token":
        return "not-a-token"
    if actor == "revoked-token":
        return world.tokens["revoked"]
    return world.tokens[actor]


def target_name(world: World, actor: str, target: str) -> str:
    if target == "self":
        return world.names["revoked" if actor in LOGGED_OUT else actor]
    if target in ("newcomer", "owner"):
        return world.names[target]
    return world.names[TARGETS[target]]


async def http_cell(
    http: aiohttp.ClientSession, world: World, call_name: str, room: str, actor: str, theirs: int
) -> tuple[int, Any]:
    method, _, what = call_name.partition(" ")
    body = None
    if what == "room":
        path = f"/api/v1/rooms/{room}"
    elif what == "topic":
        path, body = f"/api/v1/rooms/{room}", {"topic": unique("topic")}
    elif what == "edits":
        path = f"/api/v1/rooms/{room}/messages/{theirs}/edits"
    elif what == "thread":
        path = f"/api/v1/rooms/{room}/messages?thread={theirs}"
    elif "/" in what:
        kind, _, target = what.partition("/")
        path = f"/api/v1/rooms/{room}/{kind}/{target_name(world, actor, target)}"
    else:
        path = f"/api/v1/rooms/{room}/{what}"
    return await call(http, world, method, path, token_of(world, actor), body)


async def ws_cell(
    http: aiohttp.ClientSession, world: World, call_name: str, kind: str, actor: str
) -> str:
    """Run the frame(s) on a fresh connection; the answer in the table's words (the first
    error's code, or the last step's answer)."""
    room = world.rooms[kind]
    steps = call_name.removeprefix("ws ").split("+")
    theirs = world.theirs[kind]
    if "delete" in steps and "send" not in steps:  # a message of t-member's to delete
        theirs = await sent_by_t_member(http, world, kind)
    key = unique("k")

    def frame(step: str, mine: int) -> dict[str, Any]:
        """The frame of a step; `mine` is the seq the cell's own send was acked with."""
        target = mine if "send" in steps else theirs
        fresh = {"room": room, "id": unique("authz")}
        return {
            "join": {"type": "join", "room": room},
            "leave": {"type": "leave", "room": room},
            "send": {"type": "send", **fresh, "body": "hello"},
            "history": {"type": "history", "room": room},
            "typing": {"type": "typing", "room": room},
            "edit": {"type": "edit", **fresh, "target": target, "body": "changed"},
            "delete": {"type": "delete", **fresh, "target": target},
            "react": {"type": "react", **fresh, "target": target, "key": key},
            "unreact": {
                "type": "unreact",
                **fresh,
                "target": target,
                "key": key if "react" in steps else "tm",
            },
            "reply": {"type": "send", **fresh, "body": "re", "reply_to": theirs},
            "thread": {"type": "send", **fresh, "body": "in", "thread": theirs},
        }[step]

    async with http.ws_connect(world.ws_url) as ws:
        token = token_of(world, actor)
        if actor != "no-token":
            await ws.send_json({"type": "hello", "token": token, "ref": "hello"})
            reply = await next_reply(ws, "hello")
            if reply.get("type") != "welcome":
                return await rejected(ws, reply)
        else:  # the first frame is not a hello
            await ws.send_json({**frame(steps[0], 0), "ref": "step0"})
            return await rejected(ws, await next_reply(ws, "step0"))
        mine = 0
        for i, step in enumerate(steps):
            ref = f"step{i}"
            await ws.send_json({**frame(step, mine), "ref": ref})
            if step == "typing":  # no reply when it works: a ping shows nothing came first
                await ws.send_json({"type": "ping", "ref": "after"})
                reply = await next_reply(ws, ref, "after")
            else:
                reply = await next_reply(ws, ref)
            if reply["type"] == "error":
                return str(reply["code"])
            if step == "send":
                mine = reply["seq"]
        return "quiet" if reply["type"] == "pong" else str(reply["type"])


async def next_reply(ws: aiohttp.ClientWebSocketResponse, *refs: str) -> dict[str, Any]:
    """The next frame answering one of `refs` (events such as presence are skipped)."""
    while True:
        msg = await ws.receive(5.0)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
        frame: dict[str, Any] = json.loads(msg.data)
        if frame.get("ref") in refs or frame.get("type") == "error":
            return frame


async def rejected(ws: aiohttp.ClientWebSocketResponse, reply: dict[str, Any]) -> str:
    """`4001` when the reply is `error unauthorized` and the server then closes with 4001."""
    assert reply.get("type") == "error" and reply.get("code") == "unauthorized", reply
    msg = await ws.receive(5.0)
    assert msg.type == aiohttp.WSMsgType.CLOSE, (msg.type, msg.data)
    return str(msg.data)


# --- the test ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("call_name", "kind", "actor", "expected"), list(cells()))
async def test_authorization(
    session: aiohttp.ClientSession,
    world: World,
    assert_error: Callable[[tuple[int, Any], int, str], Any],
    call_name: str,
    kind: str,
    actor: str,
    expected: str,
) -> None:
    room = world.rooms[kind]
    if call_name.startswith("ws "):
        answer = await ws_cell(session, world, call_name, kind, actor)
        if answer in ("joined", "ack", "quiet"):  # a join made the outsider a member
            await restore(session, world, kind)
        assert answer == expected
        return
    theirs = world.theirs[kind]
    status, body = await http_cell(session, world, call_name, room, actor, theirs)
    if status < 300 and not call_name.startswith("GET"):
        await restore(session, world, kind)  # even when wrongly allowed: later cells need it
    assert str(status) == expected, f"expected {expected}, got {status} {body!r}"
    if status >= 400:
        assert_error((status, body), status, HTTP_CODES[status])
    if status == 404 and kind == "private" and actor in ("outsider", "banned"):
        # Exactly as for a room that does not exist: same status, code and message.
        missing = unique("nosuch")
        status2, body2 = await http_cell(session, world, call_name, missing, actor, theirs)
        assert status2 == 404, (status2, body2)
        assert body2["error"]["code"] == body["error"]["code"]
        assert body2["error"]["message"] == body["error"]["message"].replace(room, missing)
