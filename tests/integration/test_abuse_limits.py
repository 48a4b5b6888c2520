"""The abuse limits a node enforces on WebSockets, each answered with the spec's codes.

Each test runs its own node with one limit set low, so that reaching it takes a handful of
frames or connections, and checks both sides of it: what is over is refused with a clear
error, and what is under (or comes back once the count falls) still works.
"""

from __future__ import annotations

import contextlib
from typing import Any

import aiohttp
from support.api import Api
from support.ws import WS
from support.wsutil import close_code

Frame = dict[str, Any]


async def open_ws(http: aiohttp.ClientSession, url: str, token: str | None = None) -> WS:
    ws = WS(await http.ws_connect(url))
    if token is not None:
        await ws.hello(token)
    return ws


async def test_connections_per_address_past_the_limit_get_429_before_the_upgrade(
    server_factory: Any, http: aiohttp.ClientSession
) -> None:
    srv = server_factory(env={"HUBBUB_MAX_CONNECTIONS_PER_ADDRESS": "3"})
    api = Api(http, srv.url)
    _, token = await api.user()
    held = [await open_ws(http, srv.ws_url, token) for _ in range(3)]
    async with http.get(srv.ws_url, headers=upgrade_headers()) as r:
        assert r.status == 429
        body = await r.json()
        assert body["error"]["code"] == "rate_limited", body
        assert body["error"]["retry_after"] > 0, body
        assert "3 connections" in body["error"]["message"], body
        assert int(r.headers["Retry-After"]) > 0
    # The HTTP API is not a WebSocket: it still answers from that address.
    status, _ = await api.call("GET", "/api/v1/me", token)
    assert status == 200
    await held.pop().close()
    again = await open_ws(http, srv.ws_url, token)  # one closed: there is room for one
    await again.send({"type": "ping"})
    assert (await again.recv())["type"] == "pong"


def upgrade_headers() -> dict[str, str]:
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }


async def test_connections_per_user_past_the_limit_are_refused_at_hello_with_1008(
    server_factory: Any, http: aiohttp.ClientSession
) -> None:
    srv = server_factory(env={"HUBBUB_MAX_CONNECTIONS_PER_USER": "2"})
    api = Api(http, srv.url)
    _, token = await api.user()
    _, other_token = await api.user()
    held = [await open_ws(http, srv.ws_url, token) for _ in range(2)]
    third = await open_ws(http, srv.ws_url)
    await third.send({"type": "hello", "token": token, "ref": "h"})
    error = await third.recv()
    assert (error["type"], error["code"], error["ref"]) == ("error", "rate_limited", "h"), error
    assert "2 connections" in error["message"], error
    assert await third.expect_close() == 1008
    # Another user is not counted against this one.
    await open_ws(http, srv.ws_url, other_token)
    await held.pop().close()
    # The count falls when a connection closes; the node may see the close a moment
    # after the client does, so a refused hello is retried until it passes.
    for _ in range(50):
        ws = await open_ws(http, srv.ws_url)
        await ws.send({"type": "hello", "token": token})
        if (await ws.recv())["type"] == "welcome":
            break
        await ws.expect_close()
    else:
        raise AssertionError("the user's count did not fall after a connection closed")


async def test_rooms_per_connection_past_the_limit_are_forbidden_and_a_leave_makes_room(
    server_factory: Any, http: aiohttp.ClientSession
) -> None:
    srv = server_factory(env={"HUBBUB_MAX_ROOMS_PER_CONNECTION": "2"})
    api = Api(http, srv.url)
    _, token = await api.user()
    rooms = [await api.room(token) for _ in range(3)]
    ws = await open_ws(http, srv.ws_url, token)
    await ws.join(rooms[0])
    await ws.join(rooms[1])
    await ws.join(rooms[1])  # joining a joined room again is no new room
    await ws.send({"type": "join", "room": rooms[2], "ref": "j3"})
    error = await ws.recv()
    assert (error["type"], error["code"], error["ref"]) == ("error", "forbidden", "j3"), error
    assert "at most 2 rooms" in error["message"], error
    await ws.send({"type": "leave", "room": rooms[0]})
    assert (await ws.recv_type("left"))["room"] == rooms[0]
    assert (await ws.join(rooms[2]))["room"] == rooms[2]


async def test_history_requests_past_their_rate_are_rate_limited_and_others_pass(
    server_factory: Any, http: aiohttp.ClientSession
) -> None:
    srv = server_factory(env={"HUBBUB_HISTORY_RATE": "1"})  # bursts of 2
    api = Api(http, srv.url)
    _, token = await api.user()
    room = await api.room(token)
    ws = await open_ws(http, srv.ws_url, token)
    await ws.join(room)
    replies = []
    for i in range(4):
        await ws.send({"type": "history", "room": room, "ref": f"h{i}"})
        replies.append(await ws.recv())
    kinds = [(r["type"], r.get("code")) for r in replies]
    assert kinds[:2] == [("history", None)] * 2, kinds
    assert kinds[2:] == [("error", "rate_limited")] * 2, kinds
    assert 0 < replies[2]["retry_after"] <= 1.0, replies[2]
    # Other frames are not held back by the history limit.
    await ws.send({"type": "ping", "ref": "p"})
    assert (await ws.recv())["type"] == "pong"


async def test_frames_past_the_frame_rate_are_rate_limited(
    server_factory: Any, http: aiohttp.ClientSession
) -> None:
    srv = server_factory(env={"HUBBUB_FRAME_RATE": "10"})
    api = Api(http, srv.url)
    _, token = await api.user()
    ws = await open_ws(http, srv.ws_url, token)
    for i in range(30):
        await ws.send({"type": "ping", "ref": str(i)})
    replies = [await ws.recv() for _ in range(30)]
    pongs = sum(r["type"] == "pong" for r in replies)
    limited = [r for r in replies if r["type"] == "error"]
    # A burst of 10 passes (plus what refilled while the frames were on their way).
    assert 10 <= pongs < 30, replies
    assert {r["code"] for r in limited} == {"rate_limited"}, limited


async def test_rooms_created_past_the_hourly_quota_get_429_with_retry_after(
    server_factory: Any, http: aiohttp.ClientSession
) -> None:
    srv = server_factory(env={"HUBBUB_ROOMS_PER_HOUR": "2"})
    api = Api(http, srv.url)
    _, token = await api.user()
    _, other = await api.user()
    await api.room(token)
    await api.room(token)
    status, body = await api.call("POST", "/api/v1/rooms", token, json={"name": "third-one"})
    assert status == 429, body
    assert body["error"]["code"] == "rate_limited", body
    assert 3000 < body["error"]["retry_after"] <= 3600, body
    status, _ = await api.call("GET", "/api/v1/rooms/third-one", token)
    assert status == 404  # nothing was created
    await api.room(other)  # the quota is per user


async def test_http_history_past_its_rate_gets_429_per_user(
    server_factory: Any, http: aiohttp.ClientSession
) -> None:
    srv = server_factory(env={"HUBBUB_HISTORY_RATE": "1"})  # bursts of 2
    api = Api(http, srv.url)
    _, token = await api.user()
    _, other = await api.user()
    room = await api.room(token)
    path = f"/api/v1/rooms/{room}/messages"
    statuses = [(await api.call("GET", path, token))[0] for _ in range(4)]
    assert statuses[:2] == [200, 200] and statuses[2:] == [429, 429], statuses
    status, body = await api.call("GET", path, token)
    assert status == 429, body
    assert body["error"]["code"] == "rate_limited" and body["error"]["retry_after"] > 0, body
    assert (await api.call("GET", path, other))[0] == 200  # another user has their own


PENALTY_ENV = {
    "HUBBUB_FRAME_RATE": "5",  # a burst of pings is rate limited at once, and floods
    "HUBBUB_ABUSE_PENALTY": "60",  # longer than the test: nothing expires under it
    "HUBBUB_MAX_FRAME": "4096",
    "HUBBUB_TRUSTED_PROXIES": "127.0.0.1",
}


async def flood_until_cut_off(ws: WS) -> int | None:
    """Pings far past the frame rate until the node closes the connection for flooding."""
    for _ in range(400):
        if ws.ws.closed:
            break
        with contextlib.suppress(ConnectionResetError):
            await ws.send({"type": "ping"})
    return await close_code(ws, 10)


async def test_a_user_who_floods_is_kept_out_and_others_at_the_address_are_not(
    server_factory: Any, http: aiohttp.ClientSession
) -> None:
    srv = server_factory(env=PENALTY_ENV)
    api = Api(http, srv.url)
    flooder, flooder_token = await api.user()
    _, neighbour_token = await api.user()
    ws = await open_ws(http, srv.ws_url, flooder_token)
    assert await flood_until_cut_off(ws) == 1008
    # The flooder comes back: the upgrade is accepted, the hello refused with the wait.
    again = await open_ws(http, srv.ws_url)
    await again.send({"type": "hello", "token": flooder_token})
    refused = await again.recv()
    assert refused["code"] == "rate_limited" and refused["retry_after"] > 0, refused
    assert flooder in refused["message"], refused
    assert await close_code(again) == 1008
    # Someone else from the same address (both are 127.0.0.1) did nothing: welcome.
    neighbour = await open_ws(http, srv.ws_url, neighbour_token)
    await neighbour.send({"type": "ping"})
    assert (await neighbour.recv())["type"] == "pong"


async def test_an_oversized_frame_before_hello_keeps_the_address_out_and_no_other(
    server_factory: Any, http: aiohttp.ClientSession
) -> None:
    srv = server_factory(env=PENALTY_ENV)
    api = Api(http, srv.url)
    _, token = await api.user()
    abuser = {"X-Forwarded-For": "203.0.113.7"}
    ws = WS(await http.ws_connect(srv.ws_url, headers=abuser))
    await ws.ws.send_str("x" * 10_000)  # over --max-frame, and no hello yet
    assert await close_code(ws) == 1009
    async with http.get(srv.ws_url, headers={**upgrade_headers(), **abuser}) as r:
        assert r.status == 429, await r.text()
        body = await r.json()
        assert body["error"]["code"] == "rate_limited", body
        assert "203.0.113.7 was cut off for abuse" in body["error"]["message"], body
        assert int(r.headers["Retry-After"]) > 0
    # Another address, and the HTTP API of the same one, are not held up.
    other = WS(await http.ws_connect(srv.ws_url, headers={"X-Forwarded-For": "203.0.113.8"}))
    await other.hello(token)
    status, _ = await api.call("GET", "/api/v1/me", token)
    assert status == 200
