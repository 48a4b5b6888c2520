"""RedisBus on a private redis-server: ordered fan-out across nodes, gap fills, reconnects."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from support.redis_server import RedisServer

from hubbub.engine.base import Message
from hubbub.engine.redis.bus import RedisBus
from hubbub.engine.redis.log import RedisLog
from hubbub.engine.redis.schema import channel, room_of, seq_key, stream_key
from hubbub.protocol.errors import Unavailable


class Recorder:
    """A BusListener that keeps everything it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.events: list[tuple[str, dict[str, Any], str | None, str | None]] = []
        self.removed: list[tuple[str, str, str]] = []
        self.revoked: list[str] = []
        self.changed: list[tuple[str, str]] = []

    def on_message(self, message: Message) -> None:
        self.messages.append(message)

    def on_event(
        self, room: str, frame: dict[str, Any], skip_user: str | None, skip_connection: str | None
    ) -> None:
        self.events.append((room, frame, skip_user, skip_connection))

    def on_removed(self, room: str, user: str, reason: str) -> None:
        self.removed.append((room, user, reason))

    def on_room_changed(self, room: str, change: str) -> None:
        self.changed.append((room, change))

    def on_token_revoked(self, token_hash: str) -> None:
        self.revoked.append(token_hash)

    def seqs(self, room: str = "lobby") -> list[int]:
        return [m.seq for m in self.messages if m.room == room]


class Node:
    """What one node has of the distributed engine: a log, a bus and what it delivered."""

    def __init__(self, server: RedisServer) -> None:
        self.client = server.client()
        self.subscriber = server.client()
        self.log = RedisLog(self.client, lambda m: None, sharded_pubsub=True)
        self.bus = RedisBus(
            self.subscriber, self.log.send, self.log.read, subscribe_timeout=2.0, idle_ping=0.5
        )
        self.seen = Recorder()
        self.bus.attach(self.seen)

    async def start(self) -> None:
        await self.bus.start()

    async def close(self) -> None:
        await self.bus.close()
        await self.log.close()
        await self.client.aclose()
        await self.subscriber.aclose()


def gap_fills() -> float:
    return REGISTRY.get_sample_value("hubbub_gap_fills_total") or 0.0


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def nodes(redis_server: RedisServer, client: Redis) -> AsyncIterator[list[Node]]:
    made = [Node(redis_server), Node(redis_server)]
    for node in made:
        await node.start()
    yield made
    for node in made:
        await node.close()


def test_the_room_of_a_channel_is_read_back() -> None:
    for room in ("lobby", "a-b_c", "x:y"):
        assert room_of(channel(room).encode()) == room


async def test_messages_from_every_node_reach_every_subscribed_node_in_seq_order(
    nodes: list[Node],
) -> None:
    a, b = nodes
    for node in nodes:
        await node.bus.subscribe("lobby")
    sends = [n.log.append("lobby", f"u{i % 2}", f"m{i}", "hi") for i, n in enumerate(nodes * 100)]
    await asyncio.gather(*sends)
    for node in nodes:
        await until(lambda node=node: len(node.seen.seqs()) == 200)  # type: ignore[misc]
        assert node.seen.seqs() == list(range(1, 201))
    assert a.seen.messages == b.seen.messages


async def test_a_node_gets_only_the_rooms_it_subscribed_and_stops_on_unsubscribe(
    nodes: list[Node],
) -> None:
    a, b = nodes
    await b.bus.subscribe("lobby")
    await a.log.append("dev", "alice", "m1", "not for b")
    await a.log.append("lobby", "alice", "m2", "for b")
    await until(lambda: b.seen.seqs() == [1])
    b.bus.unsubscribe("lobby")
    await b.bus.subscribe("dev")  # a message on dev proves b's connection is still live
    await a.log.append("lobby", "alice", "m3", "after unsubscribe")
    await a.log.append("dev", "alice", "m4", "dev again")
    await until(lambda: b.seen.seqs("dev") == [2])
    assert b.seen.seqs("lobby") == [1]


async def test_a_missed_publish_is_filled_from_the_log_before_anything_newer(
    nodes: list[Node], client: Redis
) -> None:
    a, b = nodes
    await b.bus.subscribe("lobby")
    await a.log.append("lobby", "alice", "m1", "one")
    await until(lambda: b.seen.seqs() == [1])
    # Seqs 2 and 3 are logged but their publications are lost (as in a reconnect).
    for seq in (2, 3):
        await client.xadd(
            stream_key("lobby"),
            {"room": "lobby", "seq": seq, "id": f"lost{seq}", "from": "bob", "body": "x", "ts": 1},
            id=f"{seq}-0",
        )
        await client.incr(seq_key("lobby"))
    fills = gap_fills()
    await a.log.append("lobby", "alice", "m4", "four")
    await until(lambda: len(b.seen.seqs()) == 4)
    assert b.seen.seqs() == [1, 2, 3, 4]
    assert [m.id for m in b.seen.messages] == ["m1", "lost2", "lost3", "m4"]
    assert gap_fills() > fills


async def test_a_subscription_syncs_to_the_log_so_a_join_cut_misses_nothing(
    nodes: list[Node],
) -> None:
    a, b = nodes
    for i in range(5):
        await a.log.append("lobby", "alice", f"old{i}", "before b listened")
    await b.bus.subscribe("lobby")
    assert await b.log.last_seq("lobby") == 5  # the cut a join would read now
    await a.log.append("lobby", "alice", "new", "after")
    await until(lambda: b.seen.seqs() == [6])  # nothing at or below the cut is delivered


async def test_after_losing_its_pubsub_connection_a_node_catches_up_from_the_log(
    nodes: list[Node], client: Redis
) -> None:
    a, b = nodes
    await b.bus.subscribe("lobby")
    await a.log.append("lobby", "alice", "m1", "one")
    await until(lambda: b.seen.seqs() == [1])
    await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    # Published while b may not be listening: b must still get them, once, in order,
    # even though nothing newer arrives to reveal the gap.
    for i in range(2, 6):
        await a.log.append("lobby", "alice", f"m{i}", "during the reconnect")
    await until(lambda: len(b.seen.seqs()) >= 5)
    await until(lambda: b.bus.connected.is_set())
    await a.log.append("lobby", "alice", "m6", "after")
    await until(lambda: len(b.seen.seqs()) == 6)
    assert b.seen.seqs() == [1, 2, 3, 4, 5, 6]


async def test_events_removals_and_revocations_reach_the_other_nodes(nodes: list[Node]) -> None:
    a, b = nodes
    await b.bus.subscribe("lobby")
    frame = {"type": "typing", "room": "lobby", "user": "alice"}
    a.bus.publish_event("lobby", frame, skip_user="alice")
    a.bus.publish_removed("lobby", "bob", "banned")
    a.bus.publish_token_revoked("abc123")
    await until(lambda: bool(b.seen.events and b.seen.removed and b.seen.revoked))
    assert b.seen.events == [("lobby", frame, "alice", None)]
    assert b.seen.removed == [("lobby", "bob", "banned")]
    assert b.seen.revoked == ["abc123"]
    assert a.seen.revoked == ["abc123"]  # every node, the publisher included


async def test_subscribing_while_redis_is_down_is_unavailable_then_recovers(
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path)
    server.start()
    node = Node(server)
    await node.start()
    try:
        await until(lambda: node.bus.connected.is_set())
        server.kill()
        with pytest.raises(Unavailable):
            await node.bus.subscribe("lobby")
        server.start()  # same port, empty data
        await node.bus.subscribe("lobby")
        # The log's connection carried the bus's canaries before the kill: the first append
        # may meet it dead (`unavailable`), the next one connects afresh.
        for _ in range(3):
            with contextlib.suppress(Unavailable):
                await node.log.append("lobby", "alice", "m1", "back")
                break
        await until(lambda: node.seen.seqs() == [1])
    finally:
        await node.close()
        server.stop()
