"""WebSocket handshake: `hello` -> `welcome`, and every way the first frame can go wrong."""

from __future__ import annotations

import asyncio

import pytest
from support.wsutil import (
    api_at,
    assert_quiet,
    assert_usable,
    close_code,
    join,
    request,
    send_msg,
    uid,
    user,
)


async def expect_unauthorized_close(ws, within: float = 5.0) -> dict:
    frame = await ws.recv(within)
    assert frame["type"] == "error", frame
    assert frame["code"] == "unauthorized", frame
    assert isinstance(frame.get("message"), str), frame
    assert await close_code(ws, within) == 4001
    return frame


async def test_welcome_names_user_session_node_and_heartbeat(api, connect):
    name, token = await user(api)
    ws = await connect()
    await ws.send({"type": "hello", "token": token})
    welcome = await ws.recv()
    assert welcome["type"] == "welcome", welcome
    assert welcome["user"] == name  # the username as a plain string
    assert isinstance(welcome["session"], str) and welcome["session"]
    assert isinstance(welcome["node"], str) and welcome["node"]
    hb = welcome["heartbeat"]
    assert isinstance(hb, int | float) and not isinstance(hb, bool) and hb > 0
    assert hb == 15  # documented default of --heartbeat


async def test_each_connection_gets_its_own_session_on_the_same_node(api, connect):
    _, token = await user(api)
    first = await connect()
    second = await connect()
    w1 = await first.hello(token)
    w2 = await second.hello(token)
    assert w1["session"] != w2["session"]
    assert w1["node"] == w2["node"]


async def test_welcome_echoes_the_hello_ref(api, connect):
    _, token = await user(api)
    ws = await connect()
    await ws.send({"type": "hello", "token": token, "ref": "hello-1"})
    welcome = await ws.recv()
    assert welcome["type"] == "welcome", welcome
    assert welcome["ref"] == "hello-1"


async def test_hello_with_a_bad_token_is_unauthorized_and_closed_4001(connect):
    ws = await connect()
    await ws.send({"type": "hello", "token": "not-a-token"})
    await expect_unauthorized_close(ws)


async def test_hello_with_a_bad_token_error_carries_the_ref(connect):
    ws = await connect()
    await ws.send({"type": "hello", "token": "nope", "ref": "h-bad"})
    frame = await expect_unauthorized_close(ws)
    assert frame["ref"] == "h-bad"


@pytest.mark.parametrize(
    "hello",
    [
        {"type": "hello"},
        {"type": "hello", "token": ""},
        {"type": "hello", "token": None},
        {"type": "hello", "token": 12345},
    ],
    ids=["no-token", "empty-token", "null-token", "number-token"],
)
async def test_hello_without_a_usable_token_is_unauthorized_and_closed_4001(connect, hello):
    ws = await connect()
    await ws.send(hello)
    await expect_unauthorized_close(ws)


@pytest.mark.parametrize(
    "first",
    [
        {"type": "ping"},
        {"type": "join", "room": "general"},
        {"type": "send", "room": "general", "id": "m1", "body": "hi"},
        {"type": "welcome"},
    ],
    ids=["ping", "join", "send", "welcome"],
)
async def test_first_frame_other_than_hello_is_unauthorized_and_closed_4001(connect, first):
    ws = await connect()
    await ws.send(first)
    await expect_unauthorized_close(ws)


async def test_first_frame_that_is_not_json_is_unauthorized_and_closed_4001(connect):
    ws = await connect()
    await ws.ws.send_str("hello, server")
    await expect_unauthorized_close(ws)


async def test_first_frame_other_than_hello_is_rejected_even_with_a_valid_token(api, connect):
    _, token = await user(api)
    ws = await connect()
    await ws.send({"type": "ping", "token": token})
    await expect_unauthorized_close(ws)


async def test_no_hello_within_the_hello_timeout_is_unauthorized_and_closed_4001(
    server_factory, connect
):
    srv = server_factory(env={"HUBBUB_HELLO_TIMEOUT": "1"})
    ws = await connect(url=srv.ws_url)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await expect_unauthorized_close(ws, within=5.0)
    elapsed = loop.time() - start
    assert 0.5 <= elapsed <= 3.0, elapsed


async def test_hello_in_time_is_not_dropped_by_the_hello_timeout(server_factory, connect, api):
    srv = server_factory(env={"HUBBUB_HELLO_TIMEOUT": "1"})
    remote = api_at(api, srv)
    _, token = await remote.user()
    ws = await connect(token, url=srv.ws_url)
    # The timeout only governs the first frame: nothing (no error, no close) comes past it.
    await assert_quiet(ws, 1.5)
    room = await remote.room(token)
    await join(ws, room)
    await assert_usable(ws)


async def test_binary_frame_is_bad_request_and_the_connection_stays_usable(api, connect):
    _, token = await user(api)
    room = await api.room(token)
    ws = await connect(token)
    await ws.ws.send_bytes(b'{"type":"ping"}')
    frame = await ws.recv()
    assert frame["type"] == "error", frame
    assert frame["code"] == "bad_request", frame
    await assert_usable(ws)
    await join(ws, room)
    ack = await send_msg(ws, room, "still here")
    assert ack["seq"] == 1


async def test_second_connection_may_use_the_same_token(api, connect):
    _, token = await user(api)
    first = await connect(token)
    second = await connect(token)
    await assert_usable(first)
    await assert_usable(second)
    reply = await request(second, {"type": "ping", "ref": uid("r")})
    assert reply["type"] == "pong"


async def test_expired_token_is_unauthorized_and_closed_4001(server_factory, api, connect):
    srv = server_factory(env={"HUBBUB_TOKEN_TTL": "1"})
    remote = api_at(api, srv)
    _, token = await remote.user()
    ws = await connect(token, url=srv.ws_url)  # welcome: still valid
    await assert_usable(ws)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:  # a fresh hello with the same token, until it has expired
        ws = await connect(url=srv.ws_url)
        await ws.send({"type": "hello", "token": token})
        frame = await ws.recv()
        if frame["type"] == "error":
            break
        assert frame["type"] == "welcome", frame
        await ws.close()
        assert loop.time() < deadline, "a token with --token-ttl 1 still says hello after 10 s"
        await asyncio.sleep(0.2)  # poll interval
    assert frame["code"] == "unauthorized", frame
    assert await close_code(ws) == 4001


async def test_permessage_deflate_is_not_negotiated_by_default(api, http, server):
    _, token = await user(api)
    async with http.ws_connect(server.ws_url, compress=15) as ws:
        assert ws.compress == 0  # offered by the client, declined by the server
        assert "Sec-WebSocket-Extensions" not in ws._response.headers
        await ws.send_json({"type": "hello", "token": token})
        assert (await ws.receive_json(timeout=5))["type"] == "welcome"
