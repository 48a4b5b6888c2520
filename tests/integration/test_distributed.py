"""Several `hubbub serve` nodes on one Redis and one PostgreSQL: the distributed guarantees.

Each test starts its own private redis-server (AOF, fsync always), a throwaway PostgreSQL
database, and two or three real nodes on free ports, and talks to them over real sockets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.api import Api
from support.multinode import Client, messages, send
from support.pgutil import TestDatabase
from support.redis_server import REDIS_DURABLE, RedisServer
from support.server import ServerProcess

HEARTBEAT = 1.0  # seconds: presence of a dead node must expire within 3 of these


@dataclass
class Cluster:
    redis: RedisServer
    database: TestDatabase
    nodes: list[ServerProcess]
    start_node: Callable[[str], ServerProcess]


@pytest.fixture
def cluster(tmp_path: Path, server_factory: Any) -> Iterator[Cluster]:
    (tmp_path / "redis-data").mkdir()
    redis = RedisServer(tmp_path / "redis-data", *REDIS_DURABLE)
    redis.start()
    database = TestDatabase(migrate=False)
    url = database.ensure()
    started: list[ServerProcess] = []

    def start_node(name: str) -> ServerProcess:
        args = ["--database", url, "--redis", redis.url, "--node-id", name]
        args += ["--heartbeat", str(HEARTBEAT), "--rate-limit", "0"]
        node: ServerProcess = server_factory(args=args)
        started.append(node)
        return node

    try:
        yield Cluster(redis, database, [start_node("node-a"), start_node("node-b")], start_node)
    finally:
        for node in started:  # before their backends go away
            node.stop()
        redis.stop()
        database.drop()


async def test_messages_sent_on_any_node_reach_every_node_in_one_order(
    cluster: Cluster, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    a, b = cluster.nodes
    alice, alice_token = await on(a).user()
    bob, bob_token = await on(b).user()
    room = await on(a).room(alice_token)
    readers = [await ws_to(a, alice_token), await ws_to(b, bob_token)]
    for ws in readers:
        await ws.join(room)
    writers = [await ws_to(a, alice_token), await ws_to(b, bob_token)]
    for ws in writers:
        await ws.join(room)

    async def burst(ws: Client, prefix: str) -> list[dict[str, Any]]:
        return [await send(ws, room, f"{prefix}{i}") for i in range(60)]

    acks = await asyncio.gather(burst(writers[0], "a"), burst(writers[1], "b"))
    assert all(ack["type"] == "ack" for batch in acks for ack in batch)
    seen = [await messages(ws, 120) for ws in readers]
    assert [m["seq"] for m in seen[0]] == list(range(1, 121))
    assert seen[0] == seen[1]  # same messages, same order, on both nodes
    assert {m["from"] for m in seen[0]} == {alice, bob}


async def test_a_client_resumes_on_another_node_without_loss(
    cluster: Cluster, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    a, b = cluster.nodes
    _, token = await on(a).user()
    room = await on(a).room(token)
    first = await ws_to(a, token)
    await first.join(room)
    for i in range(5):
        await send(first, room, f"m{i}")
    got = await messages(first, 5)
    await first.close()
    writer = await ws_to(a, token)
    await writer.join(room)
    for i in range(5, 12):
        assert (await send(writer, room, f"m{i}"))["type"] == "ack"
    again = await ws_to(b, token)
    joined = await again.join(room, since=got[-1]["seq"])
    assert (joined["seq"], joined["recovered"]) == (12, True)
    replay = await messages(again, 7)
    assert [m["id"] for m in replay] == [f"m{i}" for i in range(5, 12)]
    await send(writer, room, "live")
    assert (await messages(again, 1))[0]["seq"] == 13


async def test_presence_is_shared_and_a_dead_nodes_users_go_offline_everywhere(
    cluster: Cluster, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    a, b = cluster.nodes
    c = cluster.start_node("node-c")
    cluster.nodes.append(c)
    alice, alice_token = await on(a).user()
    bob, bob_token = await on(b).user()
    room = await on(a).room(alice_token)
    watcher = await ws_to(a, alice_token)
    await watcher.join(room)
    bob_ws = await ws_to(b, bob_token)
    joined = await bob_ws.join(room)
    assert sorted(joined["presence"]) == sorted([alice, bob])
    online = await watcher.recv_type("presence")
    assert (online["user"], online["status"]) == (bob, "online")
    for node in (a, b, c):
        status, body = await on(node).call("GET", f"/api/v1/rooms/{room}/presence", alice_token)
        assert status == 200 and sorted(body["users"]) == sorted([alice, bob])

    b.kill()  # kill -9: no goodbye from node b
    killed = time.monotonic()
    offline = await watcher.recv_type("presence", timeout=3 * HEARTBEAT + 5)
    elapsed = time.monotonic() - killed
    assert (offline["user"], offline["status"]) == (bob, "offline")
    assert elapsed <= 3 * HEARTBEAT + 1.0, elapsed  # three intervals, plus scheduling slack
    status, body = await on(c).call("GET", f"/api/v1/rooms/{room}/presence", alice_token)
    assert body["users"] == [alice]


async def test_logout_and_bans_take_effect_on_every_node(
    cluster: Cluster, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    a, b = cluster.nodes
    _, owner_token = await on(a).user()
    bob, bob_token = await on(a).user()
    room = await on(a).room(owner_token)
    status, _ = await on(b).call("GET", "/api/v1/rooms", bob_token)
    assert status == 200  # node b has bob's token in its cache now
    bob_ws = await ws_to(b, bob_token)
    await bob_ws.join(room)
    status, _ = await on(a).call("POST", "/api/v1/logout", bob_token)
    assert status == 204
    assert await bob_ws.expect_close() == 4001
    status, body = await on(b).call("GET", "/api/v1/rooms", bob_token)
    assert (status, body["error"]["code"]) == (401, "unauthorized")

    status, body = await on(b).call(
        "POST", "/api/v1/login", json={"username": bob, "password": "correct horse"}
    )
    assert status == 200
    bob_ws = await ws_to(b, body["token"])
    await bob_ws.join(room)
    status, _ = await on(a).call("PUT", f"/api/v1/rooms/{room}/bans/{bob}", owner_token)
    assert status == 204
    left = await bob_ws.recv_type("left")
    assert left == {"type": "left", "room": room, "reason": "banned"}
    refused = await send(bob_ws, room, "after-ban")
    assert (refused["type"], refused["code"]) == ("error", "forbidden")


async def test_acked_messages_survive_kill_9_of_the_node_that_acked_them(
    cluster: Cluster, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    a, b = cluster.nodes
    _, token = await on(a).user()
    room = await on(a).room(token)
    ws = await ws_to(b, token)
    await ws.join(room)
    total = 400
    for i in range(total):
        await ws.send(
            {"type": "send", "room": room, "id": f"p{i}", "body": f"b{i}", "ref": f"r{i}"}
        )
    acked: dict[str, int] = {}
    while len(acked) < 50:  # kill while most sends are still in flight
        frame = await ws.recv(10.0)
        if frame["type"] == "ack":
            acked[frame["id"]] = frame["seq"]
    b.kill()
    try:
        while True:
            frame = await ws.recv(2.0)
            if frame["type"] == "ack":
                acked[frame["id"]] = frame["seq"]
    except (AssertionError, TimeoutError, aiohttp.ClientError):
        pass  # the connection died with the node
    # Resend everything through node a: acked ones come back with their seq, the rest are new.
    retry = await ws_to(a, token)
    await retry.join(room)
    final: dict[str, int] = {}
    for i in range(total):
        ack = await send(retry, room, f"p{i}", f"b{i}")
        assert ack["type"] == "ack", ack
        final[ack["id"]] = ack["seq"]
    assert all(final[msg_id] == seq for msg_id, seq in acked.items())
    assert sorted(final.values()) == list(range(1, total + 1))  # gapless, no duplicates
    history: list[dict[str, Any]] = []
    more = True
    while more:
        status, body = await on(a).call(
            "GET", f"/api/v1/rooms/{room}/messages?after={len(history)}&limit=200", token
        )
        assert status == 200, body
        history += body["messages"]
        more = body["more"]
    assert [(m["seq"], m["id"]) for m in history] == sorted((s, i) for i, s in final.items())


async def test_a_redis_outage_gives_unavailable_and_the_nodes_recover_by_themselves(
    cluster: Cluster, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    a, b = cluster.nodes
    _, token = await on(a).user()
    room = await on(a).room(token)
    sender = await ws_to(a, token)
    await sender.join(room)
    reader = await ws_to(b, token)
    await reader.join(room)
    assert (await send(sender, room, "before"))["seq"] == 1
    cluster.redis.kill()
    refused = await send(sender, room, "during")
    assert (refused["type"], refused["code"]) == ("error", "unavailable")
    cluster.redis.start()  # same port, the AOF brings the acked message back

    async def retry() -> dict[str, Any]:
        while True:
            ack = await send(sender, room, "during")
            if ack["type"] == "ack":
                return ack
            assert ack["code"] == "unavailable", ack
            await asyncio.sleep(0.1)

    ack = await asyncio.wait_for(retry(), 20)
    assert ack["seq"] == 2
    got = await messages(reader, 2, timeout=20)
    assert [(m["seq"], m["id"]) for m in got] == [(1, "before"), (2, "during")]
