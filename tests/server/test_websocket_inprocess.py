"""The WebSocket handler in process: a node's application on an embedded engine in a
temporary directory, served by aiohttp's test server (no subprocess, no services)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from hubbub.core.passwords import Passwords
from hubbub.server.config import Config
from hubbub.server.node import Node

PASSWORD = "correct horse"
TIMEOUT = 5.0


class Peer:
    """One WebSocket client of the node under test."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_json(frame)

    async def recv(self) -> dict[str, Any]:
        frame: dict[str, Any] = await self.ws.receive_json(timeout=TIMEOUT)
        return frame

    async def recv_type(self, kind: str) -> dict[str, Any]:
        """The next frame of type `kind`, skipping others (presence, say)."""
        while True:
            frame = await self.recv()
            if frame["type"] == kind:
                return frame

    async def call(self, frame: dict[str, Any]) -> dict[str, Any]:
        ref = f"r{id(frame)}"
        await self.send({**frame, "ref": ref})
        while True:
            reply = await self.recv()
            if reply.get("ref") == ref:
                return reply

    async def closed(self) -> int:
        msg = await self.ws.receive(timeout=TIMEOUT)
        while msg.type not in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            msg = await self.ws.receive(timeout=TIMEOUT)
        code: int = self.ws.close_code
        return code


class Harness:
    def __init__(self, node: Node, client: TestClient[Any, Any]) -> None:
        self.node = node
        self.client = client
        self.peers: list[Peer] = []

    async def user(self, name: str) -> str:
        for path in ("/api/v1/users", "/api/v1/login"):
            r = await self.client.post(path, json={"username": name, "password": PASSWORD})
            assert r.status in (200, 201), await r.text()
        token: str = (await r.json())["token"]
        return token

    async def room(self, token: str, name: str) -> None:
        r = await self.client.post(
            "/api/v1/rooms", json={"name": name}, headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status == 201, await r.text()

    async def open(self) -> Peer:
        peer = Peer(await self.client.ws_connect("/ws"))
        self.peers.append(peer)
        return peer

    async def connect(self, token: str) -> Peer:
        peer = await self.open()
        welcome = await peer.call({"type": "hello", "token": token})
        assert welcome["type"] == "welcome", welcome
        return peer


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Harness]:
    node = Node(Config(data=tmp_path, node_id="in-process", rate_limit=0, heartbeat=30.0))
    node.chat.passwords = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    await node.engine.start()
    node.started.set()
    client: TestClient[Any, Any] = TestClient(TestServer(node.app))
    await client.start_server()
    harness = Harness(node, client)
    try:
        yield harness
    finally:
        for peer in harness.peers:
            await peer.ws.close()
        await client.close()
        await node.gateway.wait_tasks(1.0)
        await node.engine.close()


async def test_hello_is_welcomed_with_the_user_connection_id_node_and_heartbeat(
    hub: Harness,
) -> None:
    token = await hub.user("alice")
    peer = await hub.open()
    welcome = await peer.call({"type": "hello", "token": token})
    assert welcome["user"] == "alice"
    assert welcome["node"] == "in-process"
    assert welcome["heartbeat"] == 30.0
    assert isinstance(welcome["session"], str) and len(welcome["session"]) == 16
    assert set(hub.node.gateway.by_id) == {welcome["session"]}


async def test_a_bad_token_is_unauthorized_and_closed_with_4001(hub: Harness) -> None:
    peer = await hub.open()
    error = await peer.call({"type": "hello", "token": "not-a-token"})
    assert (error["type"], error["code"]) == ("error", "unauthorized")
    assert await peer.closed() == 4001


async def test_a_first_frame_that_is_not_hello_is_unauthorized(hub: Harness) -> None:
    peer = await hub.open()
    error = await peer.call({"type": "ping"})
    assert error["code"] == "unauthorized"
    assert error["message"] == "the first frame must be hello"
    assert await peer.closed() == 4001


async def test_join_answers_the_cut_presence_and_recovered(hub: Harness) -> None:
    token = await hub.user("alice")
    await hub.room(token, "lobby")
    peer = await hub.connect(token)
    joined = await peer.call({"type": "join", "room": "lobby"})
    assert joined == {
        "type": "joined",
        "room": "lobby",
        "seq": 0,
        "presence": ["alice"],
        "recovered": True,
        "ref": joined["ref"],
    }


async def test_join_of_an_unknown_room_is_not_found(hub: Harness) -> None:
    peer = await hub.connect(await hub.user("alice"))
    error = await peer.call({"type": "join", "room": "nowhere"})
    assert (error["type"], error["code"]) == ("error", "not_found")


async def test_send_is_acked_and_delivered_to_the_room_once(hub: Harness) -> None:
    alice_token, bob_token = await hub.user("alice"), await hub.user("bob")
    await hub.room(alice_token, "lobby")
    alice, bob = await hub.connect(alice_token), await hub.connect(bob_token)
    await alice.call({"type": "join", "room": "lobby"})
    await bob.call({"type": "join", "room": "lobby"})
    ack = await alice.call({"type": "send", "room": "lobby", "id": "m1", "body": "hi"})
    assert (ack["type"], ack["room"], ack["id"], ack["seq"]) == ("ack", "lobby", "m1", 1)
    message = await bob.recv_type("message")
    assert (message["seq"], message["from"], message["body"]) == (1, "alice", "hi")
    again = await alice.call({"type": "send", "room": "lobby", "id": "m1", "body": "hi"})
    assert again["seq"] == 1  # the same id: the stored ack, no new message
    ping = await bob.call({"type": "ping"})
    assert ping["type"] == "pong"


async def test_a_resuming_join_replays_what_was_missed_in_order(hub: Harness) -> None:
    token = await hub.user("alice")
    await hub.room(token, "lobby")
    sender = await hub.connect(token)
    await sender.call({"type": "join", "room": "lobby"})
    for i in range(3):
        await sender.call({"type": "send", "room": "lobby", "id": f"m{i}", "body": str(i)})
    reader = await hub.connect(token)
    await reader.send({"type": "join", "room": "lobby", "since": 1, "ref": "j"})
    joined = await reader.recv()
    assert (joined["type"], joined["seq"], joined["recovered"]) == ("joined", 3, True)
    assert [(await reader.recv())["seq"] for _ in range(2)] == [2, 3]


async def test_send_before_join_is_not_joined(hub: Harness) -> None:
    token = await hub.user("alice")
    await hub.room(token, "lobby")
    peer = await hub.connect(token)
    error = await peer.call({"type": "send", "room": "lobby", "id": "m1", "body": "hi"})
    assert error["code"] == "not_joined"
    error = await peer.call({"type": "typing", "room": "nowhere"})
    assert error["code"] == "not_found"


async def test_a_second_hello_a_binary_frame_and_bad_json_are_bad_requests(hub: Harness) -> None:
    token = await hub.user("alice")
    peer = await hub.connect(token)
    error = await peer.call({"type": "hello", "token": token})
    assert (error["code"], error["message"]) == ("bad_request", "already said hello")
    await peer.ws.send_bytes(b"\x00")
    assert (await peer.recv())["code"] == "bad_request"
    await peer.ws.send_str("{not json")
    assert (await peer.recv())["code"] == "bad_request"


async def test_a_failing_handler_is_an_internal_error_logged_with_its_connection(
    hub: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = await hub.user("alice")
    peer = await hub.connect(token)

    async def broken(*args: Any) -> Any:
        raise RuntimeError("broken history")

    monkeypatch.setattr(hub.node.chat, "history", broken)
    with caplog.at_level(logging.ERROR, logger="hubbub.server.websocket"):
        error = await peer.call({"type": "history", "room": "lobby"})
    assert error["code"] == "internal"
    (record,) = [r for r in caplog.records if r.getMessage() == "internal error"]
    assert record.connection in hub.node.gateway.by_id
    assert record.incident in error["message"]


async def test_presence_goes_online_and_offline_with_a_users_connections(hub: Harness) -> None:
    alice_token, bob_token = await hub.user("alice"), await hub.user("bob")
    await hub.room(alice_token, "lobby")
    alice = await hub.connect(alice_token)
    await alice.call({"type": "join", "room": "lobby"})
    bob = await hub.connect(bob_token)
    joined = await bob.call({"type": "join", "room": "lobby"})
    assert joined["presence"] == ["alice", "bob"]
    online = await alice.recv_type("presence")
    assert (online["user"], online["status"]) == ("bob", "online")
    left = await bob.call({"type": "leave", "room": "lobby"})
    assert left["type"] == "left"
    offline = await alice.recv_type("presence")
    assert (offline["user"], offline["status"]) == ("bob", "offline")


async def test_logout_closes_the_tokens_connections_and_forgets_the_token(hub: Harness) -> None:
    token = await hub.user("alice")
    peer = await hub.connect(token)
    r = await hub.client.post("/api/v1/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 204
    assert (await peer.recv())["code"] == "unauthorized"
    assert await peer.closed() == 4001
    r = await hub.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status == 401
