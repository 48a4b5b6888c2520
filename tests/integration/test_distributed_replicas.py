"""Two nodes with `--redis-replicas 1` on a private Redis primary and replica: a message
reaches clients, history and joins only once the replica has it (no phantom deliveries)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.api import Api
from support.multinode import Client, messages, send
from support.pgutil import TestDatabase
from support.redis_server import REDIS_DURABLE, RedisServer
from support.server import ServerProcess


@dataclass
class Replicated:
    primary: RedisServer
    replica: RedisServer
    nodes: list[ServerProcess]

    async def replica_online(self) -> None:
        client = self.primary.client()
        try:
            deadline = asyncio.get_running_loop().time() + 20
            while (await client.info("replication")).get("slave0", {}).get("state") != "online":
                assert asyncio.get_running_loop().time() < deadline, "the replica is not online"
                await asyncio.sleep(0.02)
        finally:
            await client.aclose()

    async def stop_replica(self) -> None:
        self.replica.kill()
        client = self.primary.client()
        try:
            deadline = asyncio.get_running_loop().time() + 20
            while (await client.info("replication"))["connected_slaves"] != 0:
                assert asyncio.get_running_loop().time() < deadline, "the replica is still counted"
                await asyncio.sleep(0.02)
        finally:
            await client.aclose()


@pytest.fixture
def replicated(tmp_path: Path, server_factory: Any) -> Iterator[Replicated]:
    (tmp_path / "primary").mkdir()
    (tmp_path / "replica").mkdir()
    primary = RedisServer(tmp_path / "primary", *REDIS_DURABLE, "--repl-diskless-sync-delay", "0")
    primary.start()
    replica = RedisServer(tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary.port))
    replica.start()
    database = TestDatabase(migrate=False)
    url = database.ensure()
    nodes: list[ServerProcess] = []
    try:
        for name in ("node-a", "node-b"):
            args = ["--database", url, "--redis", primary.url, "--node-id", name]
            args += ["--redis-replicas", "1", "--rate-limit", "0"]
            nodes.append(server_factory(args=args))
        yield Replicated(primary, replica, nodes)
    finally:
        for node in nodes:
            node.stop()
        replica.stop()
        primary.stop()
        database.drop()


async def history(api: Api, room: str, token: str) -> list[tuple[int, str]]:
    status, body = await api.call("GET", f"/api/v1/rooms/{room}/messages?limit=50", token)
    assert status == 200, body
    return [(m["seq"], m["id"]) for m in body["messages"]]


async def test_a_send_whose_wait_failed_is_shown_to_nobody_and_its_resend_is_shown_once(
    replicated: Replicated, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    a, b = replicated.nodes
    await replicated.replica_online()
    _, alice = await on(a).user()
    _, bob = await on(b).user()
    room = await on(a).room(alice)
    sender: Client = await ws_to(a, alice)
    reader: Client = await ws_to(b, bob)
    await sender.join(room)
    await reader.join(room)
    assert (await send(sender, room, "before"))["seq"] == 1
    assert [m["id"] for m in await messages(reader, 1)] == ["before"]

    await replicated.stop_replica()
    refused = await send(sender, room, "during")
    assert (refused["type"], refused["code"]) == ("error", "unavailable")
    # A typing event travels the same channel after the refused send: had the message been
    # published, the reader would get it first.
    await sender.send({"type": "typing", "room": room})
    frame = await reader.recv(10)
    assert frame["type"] == "typing", frame
    assert await history(on(b), room, bob) == [(1, "before")]
    late: Client = await ws_to(b, bob)
    joined = await late.join(room, since=0)
    assert (joined["seq"], [m["id"] for m in await messages(late, 1)]) == (1, ["before"])

    replicated.replica.start()
    await replicated.replica_online()
    ack = await send(sender, room, "during")  # the same id: now on the replica
    assert (ack["type"], ack["seq"]) == ("ack", 2), ack
    assert [(m["seq"], m["id"]) for m in await messages(reader, 1)] == [(2, "during")]
    assert [(m["seq"], m["id"]) for m in await messages(late, 1)] == [(2, "during")]
    assert (await send(sender, room, "after"))["seq"] == 3
    assert [(m["seq"], m["id"]) for m in await messages(reader, 1)] == [(3, "after")]
    assert await history(on(a), room, alice) == [(1, "before"), (2, "during"), (3, "after")]
