"""The distributed engine on a real 3-master Redis Cluster (`--redis redis+cluster://...`).

One private cluster (AOF, fsync always), one throwaway PostgreSQL database, two real
`hubbub serve` nodes and a real `hubbub worker` serve every test of this module; rooms
are chosen so that their keys live on different masters.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from redis.cluster import ClusterNode, RedisCluster
from support.api import Api, unique
from support.multinode import Client
from support.pgutil import TestDatabase
from support.redis_cluster import RedisCluster as PrivateCluster
from support.server import ServerProcess

from hubbub.engine.redis.schema import seq_key, stream_key

HEARTBEAT = 1.0
KEEP = 10  # the worker's --keep: entries a trimmed stream still holds
DEADLINE = 20.0


class WorkerProcess:
    """One `hubbub worker` subprocess, stopped by its PID."""

    def __init__(self, log_path: Path, args: list[str]) -> None:
        self.log_path = log_path
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hubbub", "worker", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@dataclass
class Deployment:
    redis: PrivateCluster
    database_url: str
    nodes: list[ServerProcess]
    worker: WorkerProcess
    client: RedisCluster  # for the test's own look at the keys

    def master_of(self, room: str) -> str:
        node = self.client.get_node_from_key(seq_key(room))
        assert node is not None
        return str(node.name)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    base = tmp_path_factory.mktemp("redis-cluster")
    redis = PrivateCluster(base / "redis")
    database = TestDatabase(migrate=False)
    url = database.ensure()
    nodes: list[ServerProcess] = []
    worker: WorkerProcess | None = None
    client: RedisCluster | None = None
    redis.start()
    try:
        for name in ("node-a", "node-b"):
            data = base / name
            data.mkdir()
            args = ["--database", url, "--redis", redis.url, "--node-id", name]
            node = ServerProcess(data, args=[*args, "--heartbeat", str(HEARTBEAT)])
            node.extra_args += ["--rate-limit", "0"]
            node.start()
            nodes.append(node)
        worker_args = ["--database", url, "--redis", redis.url, "--node-id", "worker"]
        worker_args += ["--batch", "20", "--keep", str(KEEP), "--poll-interval", "0.02"]
        worker_args += ["--scan-interval", "1"]
        worker = WorkerProcess(base / "worker.log", worker_args)
        worker.start()
        client = RedisCluster(
            startup_nodes=[ClusterNode("127.0.0.1", port) for port in redis.ports]
        )
        yield Deployment(redis, url, nodes, worker, client)
    finally:
        if client is not None:
            client.close()
        for node in nodes:
            node.stop()
        if worker is not None:
            worker.stop()
        redis.stop()
        database.drop()


async def send(ws: Client, room: str, msg_id: str, body: str = "hi") -> dict[str, Any]:
    await ws.send({"type": "send", "room": room, "id": msg_id, "body": body, "ref": msg_id})
    return await ws.reply(msg_id)


async def messages(ws: Client, room: str, count: int) -> list[dict[str, Any]]:
    """The next `count` messages of `room` (frames of other rooms and kinds are kept)."""
    got: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    while len(got) < count:
        frame = await ws.recv(DEADLINE)
        if frame["type"] == "message" and frame["room"] == room:
            got.append(frame)
        else:
            kept.append(frame)
    ws.stash[:0] = kept
    return got


def rooms_on_every_master(deployment: Deployment) -> list[str]:
    """One new room name per master: the cluster's shards all take part."""
    found: dict[str, str] = {}
    masters = len(deployment.redis.ports)
    prefix = unique("rc")
    number = 0
    while len(found) < masters:
        room = f"{prefix}-{number}"
        found.setdefault(deployment.master_of(room), room)
        number += 1
    return list(found.values())


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def stored(database_url: str, room: str) -> list[tuple[int, str]]:
    """(seq, id) of every message PostgreSQL holds for `room`."""
    with psycopg.connect(database_url, connect_timeout=5) as conn:
        cur = conn.execute(
            "SELECT seq, client_id FROM messages WHERE room = %s ORDER BY seq", (room,)
        )
        return [(int(seq), str(msg_id)) for seq, msg_id in cur.fetchall()]


async def test_rooms_on_every_shard_keep_one_gapless_order_on_both_nodes(
    deployment: Deployment, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    a, b = deployment.nodes
    rooms = rooms_on_every_master(deployment)
    assert len({deployment.master_of(room) for room in rooms}) == 3  # every master serves one
    alice, alice_token = await on(a).user()
    bob, bob_token = await on(b).user()
    for room in rooms:
        await on(a).room(alice_token, name=room)
    readers = [await ws_to(a, alice_token), await ws_to(b, bob_token)]
    writers = [await ws_to(a, alice_token), await ws_to(b, bob_token)]
    for ws in readers + writers:
        for room in rooms:
            await ws.join(room)

    async def burst(ws: Client, prefix: str) -> list[dict[str, Any]]:
        return [await send(ws, room, f"{prefix}-{room}-{i}") for i in range(25) for room in rooms]

    acks = await asyncio.gather(burst(writers[0], "a"), burst(writers[1], "b"))
    assert all(ack["type"] == "ack" for batch in acks for ack in batch), acks
    for room in rooms:
        seen = [await messages(ws, room, 50) for ws in readers]
        assert [m["seq"] for m in seen[0]] == list(range(1, 51))
        assert seen[0] == seen[1]  # the same messages in the same order on both nodes
        assert {m["from"] for m in seen[0]} == {alice, bob}
        # The room's keys live on its own master, and the log holds every message there.
        assert int(deployment.client.get(seq_key(room)) or 0) == 50


async def test_presence_is_shared_across_nodes_and_shards(
    deployment: Deployment, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    a, b = deployment.nodes
    rooms = rooms_on_every_master(deployment)
    alice, alice_token = await on(a).user()
    bob, bob_token = await on(b).user()
    for room in rooms:
        await on(a).room(alice_token, name=room)
    watcher = await ws_to(a, alice_token)
    for room in rooms:
        await watcher.join(room)
    bob_ws = await ws_to(b, bob_token)
    for room in rooms:
        joined = await bob_ws.join(room)
        assert sorted(joined["presence"]) == sorted([alice, bob])
        online = await watcher.recv_type("presence", timeout=DEADLINE)
        assert (online["room"], online["user"], online["status"]) == (room, bob, "online")
    for node in (a, b):
        for room in rooms:
            status, body = await on(node).call("GET", f"/api/v1/rooms/{room}/presence", alice_token)
            assert status == 200 and sorted(body["users"]) == sorted([alice, bob])
    await bob_ws.close()
    gone = set()
    while len(gone) < len(rooms):
        offline = await watcher.recv_type("presence", timeout=DEADLINE)
        assert (offline["user"], offline["status"]) == (bob, "offline")
        gone.add(offline["room"])
    assert gone == set(rooms)


async def test_a_client_resumes_on_the_other_node_with_since(
    deployment: Deployment, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    a, b = deployment.nodes
    _, token = await on(a).user()
    room = rooms_on_every_master(deployment)[1]
    await on(a).room(token, name=room)
    first = await ws_to(a, token)
    await first.join(room)
    for i in range(5):
        assert (await send(first, room, f"m{i}"))["type"] == "ack"
    got = await messages(first, room, 5)
    await first.close()
    writer = await ws_to(a, token)
    await writer.join(room)
    for i in range(5, 12):
        assert (await send(writer, room, f"m{i}"))["type"] == "ack"
    again = await ws_to(b, token)
    joined = await again.join(room, since=got[-1]["seq"])
    assert (joined["seq"], joined["recovered"]) == (12, True)
    replay = await messages(again, room, 7)
    assert [m["id"] for m in replay] == [f"m{i}" for i in range(5, 12)]
    await send(writer, room, "live")
    assert (await messages(again, room, 1))[0]["seq"] == 13


async def test_the_worker_moves_every_shard_into_postgresql_and_trims(
    deployment: Deployment, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    a, b = deployment.nodes
    _, token = await on(a).user()
    rooms = rooms_on_every_master(deployment)
    total = 45  # more than two of the worker's batches of 20, and than --keep
    sent: dict[str, list[tuple[int, str]]] = {}
    writers = [await ws_to(a, token), await ws_to(b, token)]
    for room in rooms:
        await on(a).room(token, name=room)
        for ws in writers:
            await ws.join(room)
        acks = [await send(writers[i % 2], room, f"w{i}") for i in range(total)]
        sent[room] = [(ack["seq"], ack["id"]) for ack in acks]
        assert [seq for seq, _ in sent[room]] == list(range(1, total + 1))

    async def all_moved() -> bool:
        rows = [await asyncio.to_thread(stored, deployment.database_url, r) for r in rooms]
        return all(len(r) >= total for r in rows)

    try:
        await wait_until(all_moved, "the worker to store every room")
    except AssertionError:
        raise AssertionError(deployment.worker.log()[-3000:]) from None
    for room in rooms:
        assert await asyncio.to_thread(stored, deployment.database_url, room) == sent[room]

    async def trimmed() -> bool:
        return all(deployment.client.xlen(stream_key(room)) <= KEEP for room in rooms)

    await wait_until(trimmed, "the worker to trim every stream")
    for room in rooms:
        first = deployment.client.xrange(stream_key(room), "-", "+", count=1)
        assert int(first[0][1][b"seq"]) == total - KEEP + 1  # only the newest --keep stay
    # History below the trim point comes from PostgreSQL, through either node.
    status, body = await on(b).call(
        "GET", f"/api/v1/rooms/{rooms[0]}/messages?after=0&limit=100", token
    )
    assert status == 200, body
    assert [(m["seq"], m["id"]) for m in body["messages"]] == sent[rooms[0]]


async def test_a_killed_nodes_users_go_offline_on_every_shard(
    deployment: Deployment, on: Callable[[ServerProcess], Api], ws_to: Any, tmp_path: Path
) -> None:
    a, _ = deployment.nodes
    args = ["--database", deployment.database_url, "--redis", deployment.redis.url]
    args += ["--node-id", "node-c", "--heartbeat", str(HEARTBEAT)]
    c = ServerProcess(tmp_path, args=args)
    c.start()
    try:
        rooms = rooms_on_every_master(deployment)
        alice, alice_token = await on(a).user()
        carol, carol_token = await on(c).user()
        watcher = await ws_to(a, alice_token)
        carol_ws = await ws_to(c, carol_token)
        for room in rooms:
            await on(a).room(alice_token, name=room)
            await watcher.join(room)
            await carol_ws.join(room)
            online = await watcher.recv_type("presence", timeout=DEADLINE)
            assert (online["room"], online["user"], online["status"]) == (room, carol, "online")
        c.kill()  # kill -9: the other nodes' sweeps drop its entries on every master
        killed = time.monotonic()
        gone = set()
        while len(gone) < len(rooms):
            offline = await watcher.recv_type("presence", timeout=3 * HEARTBEAT + 5)
            assert (offline["user"], offline["status"]) == (carol, "offline")
            gone.add(offline["room"])
        assert time.monotonic() - killed <= 3 * HEARTBEAT + 1.0
        for room in rooms:
            status, body = await on(a).call("GET", f"/api/v1/rooms/{room}/presence", alice_token)
            assert (status, body["users"]) == (200, [alice])
    finally:
        c.stop()


async def test_killed_pubsub_connections_are_reopened_and_gaps_filled(
    deployment: Deployment, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    a, b = deployment.nodes
    rooms = rooms_on_every_master(deployment)
    _, token = await on(a).user()
    writer = await ws_to(a, token)
    reader = await ws_to(b, token)
    for room in rooms:
        await on(a).room(token, name=room)
        await writer.join(room)
        await reader.join(room)
        assert (await send(writer, room, "before"))["seq"] == 1
        assert [m["id"] for m in await messages(reader, room, 1)] == ["before"]
    for port in deployment.redis.ports:  # every node's subscriptions, on every master
        node = deployment.client.get_node("127.0.0.1", port)
        assert node is not None
        deployment.client.execute_command("CLIENT KILL", "TYPE", "pubsub", target_nodes=node)
    for room in rooms:
        for i in range(3):
            assert (await send(writer, room, f"after{i}"))["type"] == "ack"
    for room in rooms:
        got = await messages(reader, room, 3)
        assert [(m["seq"], m["id"]) for m in got] == [(2, "after0"), (3, "after1"), (4, "after2")]


def test_replica_acks_are_refused_on_a_cluster() -> None:
    """WAIT cannot follow writes spread over shards: the combination fails at start-up."""
    from hubbub.engine.redis.client import connect
    from hubbub.engine.redis.log import RedisLog

    client = connect("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", socket_timeout=5.0)
    with pytest.raises(ValueError, match="not supported on a Redis Cluster"):
        RedisLog(client, lambda message: None, wait_replicas=1)
    RedisLog(client, lambda message: None)  # without --redis-replicas it is fine


@pytest.mark.parametrize(
    ("url", "seeds", "user", "password"),
    [
        ("redis+cluster://h1:7000", [("h1", 7000)], None, None),
        ("redis+cluster://u:p%40ss@h1:7000,h2:7001", [("h1", 7000), ("h2", 7001)], "u", "p@ss"),
    ],
)
def test_cluster_urls_name_seeds_and_credentials(
    url: str, seeds: list[tuple[str, int]], user: str | None, password: str | None
) -> None:
    from hubbub.engine.redis.client import cluster_seeds

    assert cluster_seeds(url) == (seeds, user, password)


@pytest.mark.parametrize(
    "url", ["redis+cluster://h1", "redis+cluster://h1:7000/0", "redis+cluster://h1:x", "http://h"]
)
def test_bad_redis_urls_are_refused(url: str) -> None:
    from hubbub.engine.redis.client import check_url

    with pytest.raises(ValueError):
        check_url(url)
