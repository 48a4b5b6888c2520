"""The HTTP layer in process: accounts, rooms, history and the error answers, with the
reply bodies checked against the structs the OpenAPI document is generated from."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from aiohttp.test_utils import TestClient
from support.inprocess import PASSWORD, Signup, bearer, error_of

from hubbub.protocol import bodies
from hubbub.protocol.errors import ERROR_CODES
from hubbub.protocol.frames import HISTORY_DEFAULT_LIMIT
from hubbub.server.node import Node
from hubbub.server.openapi import openapi_document

Client = TestClient[Any, Any]


async def test_register_then_login_answers_the_documented_bodies(client: Client) -> None:
    r = await client.post("/api/v1/users", json={"username": "ada", "password": PASSWORD})
    assert r.status == 201
    assert msgspec.convert(await r.json(), bodies.UserReply) == bodies.UserReply(bodies.User("ada"))
    r = await client.post("/api/v1/login", json={"username": "ada", "password": PASSWORD})
    assert r.status == 200
    reply = msgspec.convert(await r.json(), bodies.LoginReply)
    assert reply.user.name == "ada" and reply.token
    r = await client.get("/api/v1/me", headers=bearer(reply.token))
    assert msgspec.convert(await r.json(), bodies.MeReply).user.name == "ada"


async def test_a_taken_name_is_a_conflict(client: Client, signup: Signup) -> None:
    await signup("bob")
    r = await client.post("/api/v1/users", json={"username": "bob", "password": PASSWORD})
    assert (await error_of(r, 409))["code"] == "conflict"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{nope", bodies.NOT_AN_OBJECT),
        (b"[1, 2]", bodies.NOT_AN_OBJECT),
        (b'"text"', bodies.NOT_AN_OBJECT),
        (b"{}", bodies.USERNAME_RULE),
        (b'{"username": 5, "password": "x"}', bodies.USERNAME_RULE),
        # The first bad field in the spec's order, not in the order the client wrote.
        (b'{"password": 1, "username": 2}', bodies.USERNAME_RULE),
        (b'{"username": "ok\\n", "password": "long enough"}', bodies.USERNAME_RULE),
        (b'{"username": "ok", "password": "short"}', bodies.PASSWORD_RULE),
        (b'{"username": "ok", "password": null}', bodies.PASSWORD_RULE),
    ],
)
async def test_a_bad_registration_body_names_its_rule(
    client: Client, raw: bytes, message: str
) -> None:
    r = await client.post("/api/v1/users", data=raw)
    assert await error_of(r, 400) == {"code": "bad_request", "message": message}


async def test_a_password_is_measured_in_characters(client: Client) -> None:
    r = await client.post("/api/v1/users", json={"username": "eve", "password": "é" * 8})
    assert r.status == 201


@pytest.mark.parametrize(
    "body", [{"username": "ada"}, {"password": PASSWORD}, {"username": 1, "password": PASSWORD}]
)
async def test_login_needs_two_strings(client: Client, body: dict[str, Any]) -> None:
    r = await client.post("/api/v1/login", json=body)
    assert await error_of(r, 400) == {"code": "bad_request", "message": bodies.LOGIN_RULE}


async def test_a_wrong_password_is_unauthorized(client: Client, signup: Signup) -> None:
    await signup("cy")
    for password in ("wrong password", "short"):  # no length rule at login
        r = await client.post("/api/v1/login", json={"username": "cy", "password": password})
        assert await error_of(r, 401) == {
            "code": "unauthorized",
            "message": "wrong username or password",
        }


async def test_rooms_are_created_listed_and_read(client: Client, signup: Signup) -> None:
    headers = bearer(await signup("dee"))
    r = await client.post(
        "/api/v1/rooms", json={"name": "lobby", "topic": None, "private": None}, headers=headers
    )
    assert r.status == 201
    room = msgspec.convert(await r.json(), bodies.RoomReply).room
    assert (room.name, room.topic, room.private, room.owner) == ("lobby", "", False, "dee")
    r = await client.get("/api/v1/rooms", headers=headers)
    assert [room.name for room in msgspec.convert(await r.json(), bodies.RoomsReply).rooms] == [
        "lobby"
    ]
    r = await client.get("/api/v1/rooms/lobby", headers=headers)
    assert msgspec.convert(await r.json(), bodies.RoomReply).room == room
    r = await client.post("/api/v1/rooms", json={"name": "lobby"}, headers=headers)
    assert (await error_of(r, 409))["code"] == "conflict"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, bodies.ROOM_NAME_RULE),
        ({"name": "Lobby"}, bodies.ROOM_NAME_RULE + "; try lobby"),
        ({"private": 1, "name": "-x"}, bodies.ROOM_NAME_RULE + "; try x"),
        ({"name": "***"}, bodies.ROOM_NAME_RULE),
        ({"name": "ok", "topic": "t" * (bodies.TOPIC_MAX + 1)}, bodies.TOPIC_RULE),
        ({"name": "ok", "topic": 7}, bodies.TOPIC_RULE),
        ({"name": "ok", "private": "yes"}, bodies.PRIVATE_RULE),
    ],
)
async def test_a_bad_room_body_names_its_rule(
    client: Client, signup: Signup, body: dict[str, Any], message: str
) -> None:
    headers = bearer(await signup("fay"))
    r = await client.post("/api/v1/rooms", json=body, headers=headers)
    assert await error_of(r, 400) == {"code": "bad_request", "message": message}


async def test_history_pages_default_to_the_named_limit(
    client: Client, signup: Signup, node: Node
) -> None:
    headers = bearer(await signup("gus"))
    await client.post("/api/v1/rooms", json={"name": "chat"}, headers=headers)
    for i in range(HISTORY_DEFAULT_LIMIT + 2):
        await node.chat.send("gus", "chat", f"m{i}", f"hello {i}")
    r = await client.get("/api/v1/rooms/chat/messages", headers=headers)
    page = msgspec.convert(await r.json(), bodies.HistoryReply)
    assert len(page.messages) == HISTORY_DEFAULT_LIMIT and page.more
    assert page.messages[-1].sender == "gus" and page.messages[-1].seq == HISTORY_DEFAULT_LIMIT + 2
    r = await client.get("/api/v1/rooms/chat/messages?after=0&limit=3", headers=headers)
    page = msgspec.convert(await r.json(), bodies.HistoryReply)
    assert [m.seq for m in page.messages] == [1, 2, 3] and page.more
    assert (await r.json())["messages"][0] == {
        "room": "chat",
        "seq": 1,
        "id": "m0",
        "from": "gus",
        "body": "hello 0",
        "ts": page.messages[0].ts,
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit must be 1 to 200"),
        ("limit=201", "limit must be 1 to 200"),
        ("limit=+3", "limit must be an integer"),
        ("before=-1", f"before must be 0 to {2**63 - 1}"),
    ],
)
async def test_bad_history_queries(
    client: Client, signup: Signup, query: str, message: str
) -> None:
    headers = bearer(await signup("hal"))
    await client.post("/api/v1/rooms", json={"name": "q"}, headers=headers)
    r = await client.get(f"/api/v1/rooms/q/messages?{query}", headers=headers)
    assert await error_of(r, 400) == {"code": "bad_request", "message": message}


async def test_errors_of_the_routing_layer(client: Client) -> None:
    r = await client.get("/api/v1/nowhere")
    assert await error_of(r, 404) == {"code": "not_found", "message": "no route /api/v1/nowhere"}
    r = await client.delete("/api/v1/login")
    assert (await error_of(r, 405))["code"] == "bad_request"
    assert r.headers["Allow"] == "POST"
    r = await client.get("/api/v1/me")
    assert await error_of(r, 401) == {
        "code": "unauthorized",
        "message": "send Authorization: Bearer <token>",
    }
    r = await client.post("/api/v1/users", data=b"x" * (64 * 1024 + 1))
    assert (await error_of(r, 413))["code"] == "too_large"


async def test_the_served_document_is_generated_from_the_protocol(client: Client) -> None:
    r = await client.get("/api/openapi.json")
    doc = await r.json()
    assert doc == msgspec.json.decode(msgspec.json.encode(openapi_document()))
    schemas = doc["components"]["schemas"]
    assert schemas["ErrorDetail"]["properties"]["code"]["enum"] == list(ERROR_CODES)
    # The structs' Python anchors are written as JSON Schema's.
    assert schemas["Registration"]["properties"]["username"]["pattern"] == (
        "^[A-Za-z0-9_.-]{1,32}$"
    )
    assert schemas["NewRoom"]["properties"]["name"]["pattern"] == "^[a-z0-9][a-z0-9_-]{0,63}$"
