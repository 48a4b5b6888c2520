"""Plain helpers for the WebSocket integration tests (they work on the `support.ws.WS` client).

Every wait here is a read with a deadline: a helper returns as soon as the awaited frame
arrives and fails with the frames it saw when the deadline passes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp

Frame = dict[str, Any]
_ids = itertools.count()


def uid(prefix: str = "w") -> str:
    """A fresh name (lower case, digits): valid as a username, room name, message id or ref."""
    return f"{prefix}{os.getpid()}w{next(_ids)}"


def now_ms() -> int:
    return int(time.time() * 1000)


# Registering a user costs two argon2 hashes (~0.25 s), so tests on long-lived servers (the
# shared one, module-scoped ones) reuse users: each test gets distinct users, but the first user
# of one test is the first user of the next. Rooms are unique per test, so nothing leaks.
_user_pool: dict[str, list[tuple[str, str]]] = {}
_users_taken: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


async def user(api: Any) -> tuple[str, str]:
    """(name, token) of a user not yet handed out through this `api` object (one per test).

    Only for long-lived servers: the shared `server` and `module_server` ones. Tests that
    revoke tokens or restart servers register their own users with `api.user()`."""
    pool = _user_pool.setdefault(api.base, [])
    i = _users_taken.get(api, 0)
    _users_taken[api] = i + 1
    while len(pool) <= i:
        pool.append(await api.user())
    return pool[i]


def api_at(api: Any, srv: Any) -> Any:
    """The conftest `Api` helper (same HTTP session) bound to another server."""
    return type(api)(api.session, srv.url)


def module_server(
    tmp_path_factory: Any, shared_server: Any, env: dict[str, str] | None = None
) -> Iterator[Any]:
    """Body of a module-scoped fixture: a dedicated server (configured by `env`) that lives as
    long as the test module, on the shared server's engine and database. Use with
    `yield from`."""
    srv = type(shared_server)(tmp_path_factory.mktemp("wssrv"), env, shared_server.extra_args)
    srv.start()
    _user_pool.pop(srv.url, None)  # users of an earlier server on the same port are gone
    try:
        yield srv
    finally:
        srv.stop()


async def recv_until(
    ws: Any, pred: Callable[[Frame], bool], within: float = 5.0
) -> tuple[Frame, list[Frame]]:
    """Read frames until `pred(frame)`; returns (that frame, the frames read before it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    seen: list[Frame] = []
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"no matching frame within {within}s; last frames: {seen[-10:]}")
        try:
            frame = await ws.recv(left)
        except TimeoutError:
            raise AssertionError(
                f"no matching frame within {within}s; last frames: {seen[-10:]}"
            ) from None
        if pred(frame):
            return frame, seen
        seen.append(frame)


async def request(ws: Any, frame: Frame, within: float = 5.0) -> Frame:
    """Send `frame` with a fresh `ref` (unless it has one) and return the reply carrying it."""
    ref = frame.get("ref") or uid("ref")
    await ws.send({**frame, "ref": ref})
    reply, _ = await recv_until(ws, lambda f: f.get("ref") == ref, within)
    return reply


async def acked(ws: Any, frame: Frame) -> Frame:
    """Send a frame that appends to a room's log (a send or an update; a fresh id unless it
    has one) and return its ack, waiting out the send rate limit when it answers."""
    frame = {"id": uid("u"), **frame}
    while True:
        reply = await request(ws, frame)
        if reply.get("code") != "rate_limited":
            break
        await asyncio.sleep(reply["retry_after"])
    assert reply["type"] == "ack", reply
    return reply


async def expect_error(ws: Any, frame: Frame, code: str, within: float = 5.0) -> Frame:
    reply = await request(ws, frame, within)
    assert reply["type"] == "error", reply
    assert reply["code"] == code, reply
    assert isinstance(reply.get("message"), str), reply
    return reply


async def barrier(ws: Any, within: float = 5.0) -> list[Frame]:
    """Ping and wait for the pong; returns every frame the server sent on `ws` before it."""
    ref = uid("barrier")
    await ws.send({"type": "ping", "ref": ref})
    pong, seen = await recv_until(ws, lambda f: f.get("ref") == ref, within)
    assert pong["type"] == "pong", pong
    return seen


async def assert_quiet(ws: Any, seconds: float) -> None:
    """Nothing at all (no frame, no close) arrives on `ws` for `seconds`."""
    try:
        msg = await asyncio.wait_for(ws.ws.receive(), seconds)
    except TimeoutError:
        return
    raise AssertionError(f"expected silence, got {msg.type} {msg.data!r}")


async def assert_usable(ws: Any) -> None:
    """The connection still answers: ping -> pong with the ref echoed."""
    ref = uid("alive")
    await ws.send({"type": "ping", "ref": ref})
    pong, _ = await recv_until(ws, lambda f: f.get("ref") == ref)
    assert pong == {"type": "pong", "ref": ref}


async def join(ws: Any, room: str, since: int | None = None) -> Frame:
    frame: Frame = {"type": "join", "room": room}
    if since is not None:
        frame["since"] = since
    reply = await request(ws, frame)
    assert reply["type"] == "joined", reply
    return reply


async def send_msg(ws: Any, room: str, body: str = "hi", msg_id: str | None = None) -> Frame:
    """Send one message and return its ack (frames read meanwhile are dropped)."""
    msg_id = msg_id or uid("m")
    reply = await request(ws, {"type": "send", "room": room, "id": msg_id, "body": body})
    assert reply["type"] == "ack", reply
    return reply


async def send_and_see(
    ws: Any, room: str, body: str = "hi", msg_id: str | None = None
) -> tuple[Frame, Frame]:
    """Send on a joined connection; returns (ack, the sender's own `message` frame)."""
    msg_id = msg_id or uid("m")
    ref = uid("ref")
    await ws.send({"type": "send", "room": room, "id": msg_id, "body": body, "ref": ref})
    ack: Frame | None = None
    msg: Frame | None = None
    while ack is None or msg is None:
        frame, _ = await recv_until(
            ws,
            lambda f: f.get("ref") == ref or (f["type"] == "message" and f.get("id") == msg_id),
        )
        if frame.get("ref") == ref:
            assert frame["type"] == "ack", frame
            ack = frame
        else:
            msg = frame
    return ack, msg


async def messages(ws: Any, room: str, n: int, within: float = 10.0) -> list[Frame]:
    """Read until `n` `message` frames of `room` arrived (other frames are skipped)."""
    got: list[Frame] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while len(got) < n:
        frame, _ = await recv_until(
            ws,
            lambda f: f["type"] == "message" and f.get("room") == room,
            max(deadline - loop.time(), 0.01),
        )
        got.append(frame)
    return got


async def close_code(ws: Any, within: float = 5.0) -> int | None:
    """Read (skipping frames) until the server closes the connection; returns the close code
    carried by the server's Close frame (None if the connection died without one).

    This does not use `ws.ws.close_code`: aiohttp resets that to 1006 when it cannot send its
    own Close reply because the server already dropped the TCP connection."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        msg = await asyncio.wait_for(ws.ws.receive(), max(deadline - loop.time(), 0.01))
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return int(msg.data)
        if msg.type in (
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.ERROR,
        ):
            return None


async def send_raw_text(ws: Any, payload: bytes) -> None:
    """Send `payload` as one text frame without any UTF-8 check on our side."""
    await ws.ws._writer.send_frame(payload, aiohttp.WSMsgType.TEXT)


async def history_all(ws: Any, room: str, within: float = 10.0) -> list[Frame]:
    """Every message of `room`, oldest first, paged with `history` frames (after=, limit=200)."""
    out: list[Frame] = []
    after = 0
    while True:
        page = await request(
            ws, {"type": "history", "room": room, "after": after, "limit": 200}, within
        )
        assert page["type"] == "history", page
        out.extend(page["messages"])
        if not page["more"]:
            return out
        assert page["messages"], page
        after = page["messages"][-1]["seq"]
