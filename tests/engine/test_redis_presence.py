"""RedisPresence against a private redis-server: nodes are RedisPresence instances on one
Redis (in this process, or `hubbub` child processes that the tests kill -9 or pause with
SIGSTOP), each recording what it publishes as a node's bus would carry it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.crc import key_slot
from support.redis_server import REDIS_DURABLE, RedisServer

from hubbub.engine.redis.presence import RedisPresence, sweep_dead_nodes
from hubbub.engine.redis.schema import NODES_KEY, count_key, name_key, node_set_key, rooms_key
from hubbub.protocol.errors import Unavailable

INTERVAL = 0.2  # heartbeat seconds: a dead node is offline everywhere within 0.6 s
SLACK = 0.4  # scheduling delay allowed on a busy 2-core machine on top of the guarantee


def offline(room: str, user: str) -> dict[str, Any]:
    return {"type": "presence", "room": room, "user": user, "status": "offline"}


def online(room: str, user: str) -> dict[str, Any]:
    return {"type": "presence", "room": room, "user": user, "status": "online"}


async def wait_for(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float, what: str
) -> float:
    """Poll until the condition holds; returns the seconds it took, fails at the deadline."""
    start = time.monotonic()
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


class Node:
    """A RedisPresence on its own connection, with the events it published."""

    def __init__(self, server: RedisServer, name: str, interval: float = INTERVAL) -> None:
        self.client = server.client()
        self.events: list[dict[str, Any]] = []
        self.presence = RedisPresence(self.client, name, self._publish, interval)

    def _publish(self, room: str, frame: dict[str, Any]) -> None:
        assert frame["room"] == room
        self.events.append(frame)

    async def join(self, room: str, user: str, session: str) -> bool:
        """What a join does: add, and publish `online` when told it is the first."""
        first = await self.presence.add(room, user, session)
        if first:
            self._publish(room, online(room, user))
        return first

    async def leave(self, room: str, user: str, session: str) -> bool:
        last = await self.presence.remove(room, user, session)
        if last:
            self._publish(room, offline(room, user))
        return last

    async def close(self) -> None:
        await self.presence.close()
        await self.client.aclose()


# A node in a child process: registers, joins room:user:session entries, prints "ready",
# then prints every frame it publishes, one JSON line each, until it is killed.
CHILD = """
import asyncio, json, sys
from redis.asyncio import Redis
from hubbub.engine.redis.presence import RedisPresence

async def main() -> None:
    port, node, interval, *entries = sys.argv[1:]
    client = Redis(host="127.0.0.1", port=int(port))
    def publish(room, frame):
        print(json.dumps(frame), flush=True)
    presence = RedisPresence(client, node, publish, float(interval))
    await presence.start()
    for entry in entries:
        room, user, session = entry.split(":")
        if await presence.add(room, user, session):
            publish(room, {"type": "presence", "room": room, "user": user, "status": "online"})
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class ChildNode:
    """A node process: killed with SIGKILL or paused with SIGSTOP by the test."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, server: RedisServer, name: str, *entries: str) -> ChildNode:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            str(server.port),
            name,
            str(INTERVAL),
            *entries,
            stdout=asyncio.subprocess.PIPE,
        )
        child = cls(proc)
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            while (line := await proc.stdout.readline()) != b"ready\n":
                assert line, "the node process exited before it was ready"
                child.events.append(json.loads(line))
        child._reader = asyncio.create_task(child._read())
        return child

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.events.append(json.loads(line))

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.proc.pid, sig)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        if self._reader is not None:
            await self._reader


NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture
async def nodes(client: Redis, redis_server: RedisServer) -> AsyncIterator[NodeFactory]:
    """Starts nodes on the module's Redis (emptied first); closes them after the test."""
    started: list[Node] = []

    async def start(name: str, server: RedisServer = redis_server, **options: Any) -> Node:
        node = Node(server, name, **options)
        await node.presence.start()
        started.append(node)
        return node

    yield start
    for node in started:
        await node.close()


def expired_count() -> float:
    return REGISTRY.get_sample_value("hubbub_presence_expired_nodes_total") or 0.0


def redis_errors() -> float:
    labels = {"backend": "redis"}
    return REGISTRY.get_sample_value("hubbub_backend_errors_total", labels) or 0.0


# Counting across nodes


async def test_a_user_is_online_from_the_first_session_anywhere_to_the_last(
    nodes: NodeFactory,
) -> None:
    a, b = await nodes("a"), await nodes("b")
    assert await a.presence.add("lobby", "alice", "s1") is True
    assert await b.presence.add("lobby", "alice", "s2") is False  # online through a already
    assert await a.presence.add("lobby", "alice", "s3") is False
    assert await a.presence.online("lobby") == await b.presence.online("lobby") == ["alice"]
    assert await a.presence.remove("lobby", "alice", "s1") is False
    assert await a.presence.remove("lobby", "alice", "s3") is False  # still on b
    assert await b.presence.online("lobby") == ["alice"]
    assert await b.presence.remove("lobby", "alice", "s2") is True
    assert await a.presence.online("lobby") == []
    assert await b.presence.add("lobby", "alice", "s4") is True  # online again


async def test_rooms_are_counted_apart_and_unknown_sessions_change_nothing(
    nodes: NodeFactory,
) -> None:
    a, b = await nodes("a"), await nodes("b")
    assert await a.presence.add("lobby", "alice", "s1") is True
    assert await a.presence.add("lobby", "alice", "s1") is False  # the same session again
    assert await b.presence.add("dev", "alice", "s2") is True  # another room
    assert await a.presence.remove("lobby", "alice", "other") is False
    assert await a.presence.remove("dev", "alice", "s1") is False  # that session is in lobby
    assert await b.presence.remove("lobby", "alice", "s2") is False
    assert await a.presence.remove("lobby", "alice", "s1") is True
    assert await a.presence.remove("lobby", "alice", "s1") is False  # reported last once
    assert await a.presence.online("lobby") == []
    assert await a.presence.online("dev") == ["alice"]


async def test_names_are_case_insensitive_and_keep_their_display_form(
    nodes: NodeFactory,
) -> None:
    a, b = await nodes("a"), await nodes("b")
    assert await a.presence.add("lobby", "Alice", "s1") is True
    assert await b.presence.add("lobby", "alice", "s2") is False  # the same user
    for name, session in (("bob", "s3"), ("Carol", "s4"), ("ALBERT", "s5")):
        assert await b.presence.add("lobby", name, session) is True
    assert await a.presence.online("lobby") == ["ALBERT", "Alice", "bob", "Carol"]
    assert await a.presence.remove("lobby", "ALICE", "s1") is False  # any case removes
    assert await b.presence.remove("lobby", "alice", "s2") is True
    assert await b.presence.online("lobby") == ["ALBERT", "bob", "Carol"]


async def test_concurrent_joins_and_leaves_of_a_node_reach_redis_in_order(
    nodes: NodeFactory, client: Redis
) -> None:
    a = await nodes("a")
    results = await asyncio.gather(
        *(
            call
            for i in range(50)
            for call in (
                a.presence.add("lobby", f"user{i}", "s1"),
                a.presence.remove("lobby", f"user{i}", "s1"),
                a.presence.add("lobby", f"user{i}", "s2"),
            )
        )
    )
    assert results == [True, True, True] * 50  # online, offline, online again: each in turn
    users = sorted((f"user{i}" for i in range(50)), key=str.lower)
    assert await a.presence.online("lobby") == users
    counts = await client.hgetall(count_key("lobby"))
    assert set(counts.values()) == {b"1"} and len(counts) == 50


async def test_the_keys_of_a_room_share_its_hash_slot(nodes: NodeFactory, client: Redis) -> None:
    a, b = await nodes("a"), await nodes("b")
    await a.presence.add("lobby", "alice", "s1")
    await b.presence.add("lobby", "bob", "s2")
    keys = [k.decode() async for k in client.scan_iter(match="hubbub:{lobby}:*")]
    expected = {count_key("lobby"), name_key("lobby")}
    expected |= {node_set_key("lobby", n.presence.incarnation) for n in (a, b)}
    assert set(keys) == expected
    assert len({key_slot(k.encode()) for k in keys}) == 1
    assert await client.smembers(rooms_key(a.presence.incarnation)) == {b"lobby"}
    assert await client.hexists(NODES_KEY, a.presence.incarnation)


async def test_a_node_that_closes_removes_its_entries_and_reports_who_went_offline(
    nodes: NodeFactory, client: Redis
) -> None:
    a, b = await nodes("a"), await nodes("b")
    await a.join("lobby", "alice", "s1")
    await a.join("lobby", "bob", "s2")
    await b.join("lobby", "bob", "s3")
    a.events.clear()
    incarnation = a.presence.incarnation
    await a.presence.close()
    assert a.events == [offline("lobby", "alice")]  # bob is still online through b
    assert await b.presence.online("lobby") == ["bob"]
    assert not await client.hexists(NODES_KEY, incarnation)
    assert not await client.exists(rooms_key(incarnation), node_set_key("lobby", incarnation))


# Dead and paused nodes


async def test_a_killed_node_is_offline_on_the_others_within_three_intervals_once(
    nodes: NodeFactory, redis_server: RedisServer
) -> None:
    a, b = await nodes("a"), await nodes("b")
    await a.join("lobby", "bob", "s1")
    dead = await ChildNode.start(
        redis_server, "dead", "lobby:alice:c1", "lobby:bob:c2", "dev:Eve:c3"
    )
    assert dead.events == [online("lobby", "alice"), online("dev", "Eve")]
    assert await a.presence.online("lobby") == ["alice", "bob"]
    expired = expired_count()
    dead.signal(signal.SIGKILL)
    killed = time.monotonic()
    try:

        def everyone_offline() -> bool:
            return sum(e["status"] == "offline" for e in a.events + b.events) >= 2

        await wait_for(everyone_offline, 3 * INTERVAL + SLACK + 5, "the offline events")
        took = time.monotonic() - killed
        await asyncio.sleep(2 * INTERVAL)  # both keep sweeping: nothing more may come
    finally:
        await dead.stop()
    events = [e for e in a.events + b.events if e["status"] == "offline"]
    assert sorted(events, key=lambda e: e["user"]) == [
        offline("dev", "Eve"),
        offline("lobby", "alice"),
    ]
    assert took <= 3 * INTERVAL + SLACK, f"offline after {took:.2f}s"
    assert expired_count() - expired == 1  # one of the two sweepers swept it
    assert await a.presence.online("lobby") == ["bob"]
    assert await b.presence.online("dev") == []


async def test_concurrent_sweepers_report_each_dead_user_once(
    client: Redis, redis_server: RedisServer
) -> None:
    dead = await ChildNode.start(
        redis_server, "dead", *(f"room{i % 5}:user{i}:s{i}" for i in range(40))
    )
    dead.signal(signal.SIGKILL)
    await dead.stop()

    async def expired() -> bool:
        (value,) = (await client.hgetall(NODES_KEY)).values()
        seconds, micros = await client.time()
        return int(value) < seconds * 1000 + micros // 1000

    await wait_for(expired, 3 * INTERVAL + 5, "the dead node's expiry")
    sweepers = [redis_server.client() for _ in range(4)]
    published: list[tuple[str, dict[str, Any]]] = []
    try:
        swept = await asyncio.gather(
            *(sweep_dead_nodes(c, lambda r, f: published.append((r, f))) for c in sweepers)
        )
    finally:
        for c in sweepers:
            await c.aclose()
    assert sorted(swept) == [0, 0, 0, 1]
    assert sorted(f["user"] for _, f in published) == sorted(f"user{i}" for i in range(40))
    assert all(f == offline(r, f["user"]) for r, f in published)
    assert await client.dbsize() == 0  # nothing of the dead node is left


async def test_a_paused_node_that_was_swept_comes_back_online(
    nodes: NodeFactory, redis_server: RedisServer
) -> None:
    a = await nodes("a")
    paused = await ChildNode.start(redis_server, "paused", "lobby:carol:c1")
    try:
        paused.events.clear()
        paused.signal(signal.SIGSTOP)
        await wait_for(
            lambda: a.events == [offline("lobby", "carol")], 3 * INTERVAL + 5, "carol offline"
        )
        assert await a.presence.online("lobby") == []
        paused.signal(signal.SIGCONT)

        async def back() -> bool:
            return await a.presence.online("lobby") == ["carol"]

        await wait_for(back, 2 * INTERVAL + SLACK + 5, "carol back online")
        await wait_for(
            lambda: paused.events == [online("lobby", "carol")], 5, "the node's online event"
        )
    finally:
        await paused.stop()


# Redis restarts and outages


async def test_entries_are_copied_back_after_redis_restarts_empty(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    a, b = Node(server, "a"), Node(server, "b")
    try:
        await a.presence.start()
        await b.presence.start()
        await a.join("lobby", "carol", "s1")
        await b.join("lobby", "Dave", "s2")
        await b.join("dev", "dave", "s3")
        a.events.clear()
        b.events.clear()
        server.stop()
        server.start()  # same port, no persistence: empty
        restarted = time.monotonic()
        check = Node(server, "check")

        async def copied() -> bool:
            try:
                lobby = await check.presence.online("lobby")
                return lobby == ["carol", "Dave"] and await check.presence.online("dev") == ["dave"]
            except Unavailable:
                return False

        await wait_for(copied, 2 * INTERVAL + SLACK + 5, "the entries copied back")
        assert time.monotonic() - restarted <= 2 * INTERVAL + SLACK
        await wait_for(lambda: len(a.events) + len(b.events) >= 3, 5, "the online events")
        assert a.events == [online("lobby", "carol")]
        assert sorted(b.events, key=lambda e: e["room"]) == [
            online("dev", "dave"),
            online("lobby", "Dave"),
        ]
        await check.client.aclose()
    finally:
        await a.close()
        await b.close()
        server.stop()


async def test_a_redis_outage_fails_softly_and_what_changed_is_published_after(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path, *REDIS_DURABLE)  # keeps its data across the outage
    server.start()
    # Heartbeats expire after 2 s: far longer than the outage, so only what a changed moves.
    a, b = Node(server, "a", interval=1.0), Node(server, "b", interval=1.0)
    try:
        await a.presence.start()
        await b.presence.start()
        await a.join("lobby", "alice", "s1")
        await b.join("lobby", "alice", "s2")
        await a.join("lobby", "bob", "s3")
        a.events.clear()
        b.events.clear()
        errors = redis_errors()
        server.stop()
        async with asyncio.timeout(5):
            assert await a.join("lobby", "carol", "s4") is False  # no exception
            assert await a.leave("lobby", "bob", "s3") is False
            assert await a.leave("lobby", "alice", "s1") is False
            with pytest.raises(Unavailable):
                await a.presence.online("lobby")
        assert redis_errors() - errors >= 3
        server.start()

        async def recovered() -> bool:
            try:
                return await b.presence.online("lobby") == ["alice", "carol"]
            except Unavailable:
                return False

        await wait_for(recovered, 1.0 + SLACK + 5, "a's state published after the outage")
        await wait_for(lambda: len(a.events) >= 2, 5, "a's events")
        assert sorted(a.events, key=lambda e: e["user"]) == [
            offline("lobby", "bob"),  # left during the outage; alice stays online through b
            online("lobby", "carol"),  # joined during the outage
        ]
        assert b.events == []
    finally:
        await a.close()
        await b.close()
        server.stop()


async def test_a_node_starts_and_stops_while_redis_is_down_without_failing(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path)
    server.start()
    server.stop()  # the port is known and nothing listens there
    a = Node(server, "a")
    try:
        async with asyncio.timeout(5):
            await a.presence.start()
            assert await a.presence.add("lobby", "alice", "s1") is False
        server.start()

        async def registered() -> bool:
            try:
                return await a.presence.online("lobby") == ["alice"]
            except Unavailable:
                return False

        await wait_for(registered, 2 * INTERVAL + 5, "the node registered")
        assert a.events == [online("lobby", "alice")]
        assert await a.client.hexists(NODES_KEY, a.presence.incarnation)
        server.stop()
        errors = redis_errors()
        async with asyncio.timeout(5):
            await a.presence.close()  # the others sweep what it could not remove
        assert redis_errors() > errors
    finally:
        await a.close()
        server.stop()


async def test_a_leave_after_redis_lost_the_entry_is_offline_unless_another_node_counts_it(
    nodes: NodeFactory, client: Redis
) -> None:
    a, b = await nodes("a", interval=30.0), await nodes("b", interval=30.0)  # no beats here
    assert await a.presence.add("lobby", "alice", "s1") is True
    assert await a.presence.add("lobby", "bob", "s2") is True
    await client.flushall()  # as a Redis restarted without its data, before the next beat
    assert await b.presence.add("lobby", "bob", "s3") is True
    assert await a.presence.remove("lobby", "alice", "s1") is True  # else online for ever
    assert await a.presence.remove("lobby", "bob", "s2") is False  # b still counts bob
    assert await a.presence.online("lobby") == ["bob"]


async def test_scripts_are_loaded_again_after_the_script_cache_is_flushed(
    nodes: NodeFactory, client: Redis
) -> None:
    a = await nodes("a", interval=30.0)  # no heartbeat during the test
    assert await a.presence.add("lobby", "alice", "s1") is True
    await client.script_flush()
    assert await a.presence.add("lobby", "bob", "s2") is True
    assert await a.presence.remove("lobby", "alice", "s1") is True
    assert await a.presence.online("lobby") == ["bob"]


async def test_a_client_decoding_responses_is_rejected(redis_server: RedisServer) -> None:
    decoding = redis_server.client(decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisPresence(decoding, "a", lambda room, frame: None, INTERVAL)
    await decoding.aclose()
