"""The fan-out canary of RedisBus on a private redis-server: canaries come back through the
bus's own subscription; a silent stall (a `StallProxy` dropping what Redis sends) is found,
said, counted and cured by a rebuilt, resynced subscription; a busy event loop is not a stall.
On a private 3-master Redis Cluster: a canary per master, and a stopped master is found.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from support.redis_cluster import RedisCluster
from support.redis_server import RedisServer
from support.stall_proxy import StallProxy

from hubbub.engine.base import Message
from hubbub.engine.redis.bus import RedisBus
from hubbub.engine.redis.canary import MISSES, canary_channel
from hubbub.engine.redis.client import connect
from hubbub.engine.redis.log import RedisLog
from hubbub.server.config import Config

INTERVAL = 0.05


class Seen:
    """A BusListener that keeps the messages (the rest is not what these tests are about)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def on_message(self, message: Message) -> None:
        self.messages.append(message)

    def on_event(self, *args: Any) -> None: ...
    def on_removed(self, *args: Any) -> None: ...
    def on_room_changed(self, *args: Any) -> None: ...
    def on_token_revoked(self, *args: Any) -> None: ...


class Node:
    """A log and a bus on Redis at `port` (the server's, or a proxy's)."""

    def __init__(self, port: int, node_id: str, canary_interval: float = INTERVAL) -> None:
        self.client = Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
        self.subscriber = Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
        self.log = RedisLog(self.client, lambda m: None, sharded_pubsub=True)
        self.bus = RedisBus(
            self.subscriber,
            self.log.send,
            self.log.read,
            subscribe_timeout=5.0,
            reconnect_delay=0.05,
            idle_ping=0.5,
            node_id=node_id,
            canary_interval=canary_interval,
        )
        self.seen = Seen()
        self.bus.attach(self.seen)

    async def close(self) -> None:
        await self.bus.close()
        await self.log.close()
        await self.client.aclose()
        await self.subscriber.aclose()


@pytest.fixture
async def made(client: Redis) -> AsyncIterator[list[Node]]:
    """Nodes a test makes (started), closed at its end; `client` empties Redis first."""
    nodes: list[Node] = []
    yield nodes
    for node in nodes:
        await node.close()


async def start(made: list[Node], node: Node) -> Node:
    made.append(node)
    await node.bus.start()
    return node


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def failures() -> float:
    return REGISTRY.get_sample_value("hubbub_fanout_canary_failures_total") or 0.0


async def test_canaries_come_back_through_the_subscription_and_interval_0_turns_them_off(
    redis_server: RedisServer, client: Redis, made: list[Node]
) -> None:
    on = await start(made, Node(redis_server.port, "canary-on"))
    off = await start(made, Node(redis_server.port, "canary-off", canary_interval=0))
    assert on.bus.canary is not None and off.bus.canary is None
    await until(lambda: on.bus.canary is not None and on.bus.canary.returned >= 3, "canaries")
    counts = dict(
        await client.execute_command(
            "PUBSUB SHARDNUMSUB", *map(canary_channel, ("canary-on", "canary-off"))
        )
    )
    assert counts == {b"hubbub:canary:{canary-on}": 1, b"hubbub:canary:{canary-off}": 0}
    assert on.bus.delivery_problem() is None and off.bus.delivery_problem() is None


async def test_a_blocked_event_loop_is_not_taken_for_a_stalled_subscription(
    redis_server: RedisServer, client: Redis, made: list[Node]
) -> None:
    node = await start(made, Node(redis_server.port, "busy"))
    canary = node.bus.canary
    assert canary is not None
    await until(lambda: canary.returned >= 3, "canaries")
    before, returned = failures(), canary.returned
    # The fault itself, not a wait: the loop is blocked, as by a burst of work.
    time.sleep(4 * MISSES * INTERVAL)  # noqa: ASYNC251
    assert canary.age() > MISSES * INTERVAL  # long enough by the clock alone
    await until(lambda: canary.returned > returned, "the canary waiting in the socket")
    assert node.bus.delivery_problem() is None
    assert failures() == before


async def test_a_silent_stall_is_found_counted_and_cured_by_a_resynced_subscription(
    redis_server: RedisServer, client: Redis, made: list[Node]
) -> None:
    proxy = StallProxy(redis_server.port)
    await proxy.start()
    try:
        writer = await start(made, Node(redis_server.port, "writer"))
        reader = await start(made, Node(proxy.port, "reader"))
        await reader.bus.subscribe("lobby")
        await writer.log.append("lobby", "ann", "m1", "one")
        await until(lambda: len(reader.seen.messages) == 1, "m1")
        before = failures()

        proxy.stall()
        for i in (2, 3):
            await writer.log.append("lobby", "ann", f"m{i}", "during the stall")
        await until(lambda: reader.bus.delivery_problem() is not None, "the stall to be found")
        problem = reader.bus.delivery_problem()
        assert problem is not None and problem.startswith("fan-out through Redis delivered no")
        assert failures() > before
        assert [m.seq for m in reader.seen.messages] == [1]  # the stall is real
        assert proxy.dropped > 0

        proxy.heal()
        await until(lambda: reader.bus.delivery_problem() is None, "the canaries to return")
        await writer.log.append("lobby", "ann", "m4", "after")
        await until(lambda: len(reader.seen.messages) >= 4, "m2..m4")
        assert [m.seq for m in reader.seen.messages] == [1, 2, 3, 4]
    finally:
        await proxy.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    servers = RedisCluster(tmp_path_factory.mktemp("canary-cluster"), durable=False)
    servers.start()
    yield servers
    servers.stop()


async def test_on_a_cluster_a_canary_proves_each_masters_connection(cluster: RedisCluster) -> None:
    """One channel per master; a master that stops answering (SIGSTOP) is found; it heals."""
    client, subscriber = connect(cluster.url, socket_timeout=1.0), connect(cluster.url)
    log = RedisLog(client, lambda m: None, sharded_pubsub=True)
    bus = RedisBus(
        subscriber, log.send, log.read, reconnect_delay=0.05, node_id="shards", canary_interval=0.1
    )
    await bus.start()
    try:
        canary = bus.canary
        assert canary is not None
        await until(lambda: len(canary.channels) == 3, "a canary channel per master")
        await until(lambda: canary.returned >= 3 * 3, "canaries from every master")
        masters = set()
        for server in cluster.servers:
            direct = server.client()
            counts = dict(await direct.execute_command("PUBSUB SHARDNUMSUB", *canary.channels))
            await direct.aclose()
            masters |= {(server.port, name) for name, count in counts.items() if count == 1}
        assert len({port for port, _ in masters}) == 3, masters  # each on its own master
        assert bus.delivery_problem() is None

        stopped = cluster.servers[1]
        assert stopped.proc is not None
        before = failures()
        os.kill(stopped.proc.pid, signal.SIGSTOP)
        try:
            await until(lambda: bus.delivery_problem() is not None, "the stopped master")
            assert failures() > before
        finally:
            os.kill(stopped.proc.pid, signal.SIGCONT)
        await until(lambda: bus.delivery_problem() is None, "canaries again", timeout=30.0)
    finally:
        await bus.close()
        await log.close()
        await client.aclose()
        await subscriber.aclose()


async def test_a_reconnect_to_an_address_that_never_answers_is_abandoned_and_retried(
    redis_server: RedisServer, client: Redis, made: list[Node]
) -> None:
    """The new connection hangs in its handshake: the canary gives up on it too."""
    proxy = StallProxy(redis_server.port)
    await proxy.start()
    try:
        writer = await start(made, Node(redis_server.port, "writer"))
        reader = await start(made, Node(proxy.port, "reader"))
        await reader.bus.subscribe("lobby")
        await writer.log.append("lobby", "ann", "m1", "one")
        await until(lambda: len(reader.seen.messages) == 1, "m1")
        before = failures()

        proxy.blackhole = True
        assert proxy.freeze() == 1
        await writer.log.append("lobby", "ann", "m2", "during")
        await until(lambda: failures() >= before + 3, "three abandoned subscriptions")
        assert reader.bus.delivery_problem() is not None
        opened = proxy.opened
        proxy.blackhole = False  # the next attempt gets through
        await until(lambda: reader.bus.delivery_problem() is None, "canaries again")
        assert proxy.opened > opened
        await writer.log.append("lobby", "ann", "m3", "after")
        await until(lambda: len(reader.seen.messages) >= 3, "m2 and m3")
        assert [m.seq for m in reader.seen.messages] == [1, 2, 3]
    finally:
        await proxy.close()


@pytest.mark.parametrize("interval", [-1.0, 3601.0])
def test_a_canary_interval_out_of_range_is_refused_with_the_rule(interval: float) -> None:
    with pytest.raises(ValueError, match=r"--canary-interval must be 0 \(off\) to 3600 seconds"):
        Config(canary_interval=interval).check()
    Config(canary_interval=0).check()  # off is allowed
