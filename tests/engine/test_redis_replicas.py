"""RedisLog with `wait_replicas` on a private primary and replica: no phantom deliveries.

A message reaches a subscriber, a read, a join cut or the worker only once WAIT confirmed
the replica has it (`engine.redis.shown`). The replica is stopped to make WAIT fail. The
Log part of the contract suite runs here too, on a log in that mode (its reads go through
`READ_SCRIPT`).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from support.engine_handles import log_contract_tests
from support.redis_server import RedisServer

from hubbub.core.join import read_cut
from hubbub.engine.base import Log, Message, Store
from hubbub.engine.redis.bus import RedisBus
from hubbub.engine.redis.log import RedisLog
from hubbub.engine.redis.schema import (
    APPEND_SCRIPT,
    channel,
    decode_published,
    gone_key,
    id_key,
    seq_key,
    shown_key,
    stream_key,
)
from hubbub.engine.sqlite.database import SqliteDatabase
from hubbub.engine.sqlite.store import SqliteStore
from hubbub.protocol.errors import Unavailable

LOG_CONTRACT = log_contract_tests()
globals().update(LOG_CONTRACT)

END = b"end"  # published by a test after its appends: every publication before it has come


class Pair:
    """A primary and its replica; the replica can be stopped and started again."""

    def __init__(self, root: Path) -> None:
        (root / "primary").mkdir()
        (root / "replica").mkdir()
        self.primary = RedisServer(root / "primary", "--repl-diskless-sync-delay", "0")
        self.primary.start()
        self.replica = RedisServer(
            root / "replica", "--replicaof", "127.0.0.1", str(self.primary.port)
        )
        self.replica.start()

    async def replica_online(self, client: Redis) -> None:
        """Wait until the primary counts the replica (WAIT can then succeed)."""
        deadline = asyncio.get_running_loop().time() + 20
        while (await client.info("replication")).get("slave0", {}).get("state") != "online":
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("the replica did not come online")
            await asyncio.sleep(0.02)

    async def stop_replica(self, client: Redis) -> None:
        self.replica.kill()
        deadline = asyncio.get_running_loop().time() + 20
        while (await client.info("replication"))["connected_slaves"] != 0:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("the primary still counts the replica")
            await asyncio.sleep(0.02)

    def stop(self) -> None:
        self.replica.stop()
        self.primary.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    servers = Pair(tmp_path_factory.mktemp("replicas"))
    yield servers
    servers.stop()


@pytest.fixture
async def client(pair: Pair) -> AsyncIterator[Redis]:
    c = pair.primary.client()
    if pair.replica.proc is None or pair.replica.proc.poll() is not None:
        pair.replica.start()  # a test stopped it
    await c.flushall()
    await pair.replica_online(c)
    yield c
    await c.aclose()


def replicated_log(
    client: Redis, on_commit: Callable[[Message], None] = lambda m: None, **options: Any
) -> RedisLog:
    options.setdefault("wait_timeout_ms", 4_000)
    return RedisLog(client, on_commit, wait_replicas=1, **options)


class ReplicatedLogEngine:
    """The contract suite's engine: a replicated RedisLog (SQLite holds users and rooms)."""

    def __init__(self, client: Redis, store_path: Path) -> None:
        self.client = client
        self.store_path = store_path
        self.published: list[Message] = []

    async def start(self) -> None:
        self.db = SqliteDatabase(self.store_path)
        self.db.open()
        self.store: Store = SqliteStore(self.db)
        self.redis_log = replicated_log(self.client, on_commit=self.published.append)
        self.log: Log = self.redis_log

    async def close(self) -> None:
        await self.redis_log.close()
        await self.db.close()

    async def restart(self) -> None:
        await self.close()
        await self.start()

    def write_transactions(self) -> int | None:
        return None  # two round trips per batch (append + WAIT, then publish)


@pytest.fixture
async def engine(client: Redis, tmp_path: Path) -> AsyncIterator[ReplicatedLogEngine]:
    """Overrides the contract suite's `engine` in this module."""
    handle = ReplicatedLogEngine(client, tmp_path / "store.sqlite")
    await handle.start()
    try:
        yield handle
    finally:
        await handle.close()


def test_the_log_contract_is_collected_here() -> None:
    assert "test_page_follows_the_history_rules_for_every_bound_and_limit" in LOG_CONTRACT
    assert len(LOG_CONTRACT) >= 19


async def publications(client: Redis, pubsub: PubSub) -> list[Message]:
    """Everything published on the lobby's channel up to now (then END is published)."""
    await client.publish(channel("lobby"), END)
    got: list[Message] = []
    async with asyncio.timeout(10):
        while True:
            item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if item is None:
                continue
            if item["data"] == END:
                return got
            got.append(decode_published(item["data"]))


@pytest.fixture
async def lobby(client: Redis) -> AsyncIterator[PubSub]:
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(channel("lobby"))
        yield pubsub


async def assert_nothing_shown(log: RedisLog) -> None:
    assert await log.last_seq("lobby") == 0
    assert await log.read("lobby", 0, 10) == []
    assert await log.page("lobby", None, None, 10) == ([], False)
    assert await log.page("lobby", None, 0, 10) == ([], False)
    assert await log.read_first("lobby") is None
    cut = await read_cut(log, "lobby", 0, 100)
    assert (cut.last, cut.replay) == (0, [])


# Publication after replication


async def test_every_message_is_published_after_the_replica_has_it_in_seq_order(
    pair: Pair, client: Redis, lobby: PubSub
) -> None:
    log = replicated_log(client)
    replica = pair.replica.client()
    seen_on_replica: list[bool] = []
    appended = await asyncio.gather(*(log.append("lobby", "a", f"m{i}", "hi") for i in range(40)))
    got = await publications(client, lobby)
    for message in got:  # the replica acknowledged each before it was published
        seen_on_replica.append(
            bool(await replica.xrange(stream_key("lobby"), message.seq, message.seq))
        )
    await replica.aclose()
    assert [m.seq for m in got] == list(range(1, 41))
    assert got == sorted((a.message for a in appended), key=lambda m: m.seq)
    assert all(seen_on_replica)
    assert await client.get(shown_key("lobby")) == b"40"


async def test_a_published_payload_is_the_idempotency_record_byte_for_byte(
    client: Redis,
) -> None:
    log = replicated_log(client)
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(channel("lobby"))
        message = (await log.append("lobby", "Alice", "m1", "hé, {x}")).message
        await client.publish(channel("lobby"), END)
        item = None
        while item is None or item["type"] != "message":
            item = await pubsub.get_message(timeout=1)
    assert item["data"] == await client.get(id_key("lobby", "Alice", "m1"))
    assert decode_published(item["data"]) == message


async def test_publishing_and_reading_go_on_after_the_script_cache_is_flushed(
    client: Redis, lobby: PubSub
) -> None:
    log = replicated_log(client)
    await log.append("lobby", "a", "m1", "before")
    await client.script_flush()  # as after a Redis restart
    await log.append("lobby", "a", "m2", "after")  # the append and the publish scripts
    await client.script_flush()
    assert [m.id for m in await log.read("lobby", 0, 10)] == ["m1", "m2"]  # the read script
    assert [m.id for m in await publications(client, lobby)] == ["m1", "m2"]


# A failed WAIT


async def test_a_message_whose_wait_failed_reaches_no_subscriber_and_no_read(
    pair: Pair, client: Redis, lobby: PubSub
) -> None:
    published: list[Message] = []
    log = RedisLog(client, published.append, wait_replicas=1, wait_timeout_ms=100)
    await pair.stop_replica(client)
    with pytest.raises(Unavailable, match="fewer than 1 replicas"):
        await log.append("lobby", "alice", "m1", "not durable yet")
    assert await publications(client, lobby) == []
    assert published == []  # on_commit: nothing
    await assert_nothing_shown(log)
    # The primary holds it (above the marker), ready for a resend once a replica has it.
    assert await client.xlen(stream_key("lobby")) == 1
    assert await client.get(seq_key("lobby")) == b"1"


async def test_a_resend_while_the_replica_is_still_away_is_unavailable_again(
    pair: Pair, client: Redis, lobby: PubSub
) -> None:
    log = RedisLog(client, lambda m: None, wait_replicas=1, wait_timeout_ms=100)
    await pair.stop_replica(client)
    for _ in range(2):
        with pytest.raises(Unavailable, match="replicas"):
            await log.append("lobby", "alice", "m1", "body")
    assert await publications(client, lobby) == []
    await assert_nothing_shown(log)


async def test_a_resend_after_a_failed_wait_waits_again_then_publishes_the_same_message_once(
    pair: Pair, client: Redis, lobby: PubSub
) -> None:
    log = RedisLog(client, lambda m: None, wait_replicas=1, wait_timeout_ms=4_000)
    failing = RedisLog(client, lambda m: None, wait_replicas=1, wait_timeout_ms=100)
    await pair.stop_replica(client)
    with pytest.raises(Unavailable):
        await failing.append("lobby", "alice", "m1", "body")
    pair.replica.start()
    await pair.replica_online(client)
    first = await log.append("lobby", "alice", "m1", "body")  # another node, say
    again = await log.append("lobby", "alice", "m1", "body")
    assert (first.created, again.created) == (False, False)
    assert first.message == again.message
    assert first.message.seq == 1
    assert await publications(client, lobby) == [first.message]  # once
    assert await log.read("lobby", 0, 10) == [first.message]
    assert await log.last_seq("lobby") == 1


async def test_a_known_id_is_a_write_so_the_wait_after_it_covers_the_stored_message(
    client: Redis,
) -> None:
    # WAIT waits for the connection's last write: a resend must write, or its WAIT could
    # pass on an older write while the stored message is not on the replicas yet.
    log = replicated_log(client)
    await log.append("lobby", "alice", "m1", "body")
    keys = (
        seq_key("lobby"),
        stream_key("lobby"),
        id_key("lobby", "alice", "m1"),
        gone_key("lobby"),
        shown_key("lobby"),
    )
    args = ("lobby", "m1", "alice", "body", "0", channel("lobby"), "")
    before = (await client.info("replication"))["master_repl_offset"]
    status, _ = await client.eval(APPEND_SCRIPT, len(keys), *keys, *args)
    after = (await client.info("replication"))["master_repl_offset"]
    assert status == 0
    assert after > before
    assert await client.get(shown_key("lobby")) == b"1"


async def test_the_next_append_publishes_what_a_failed_wait_left_behind_first(
    pair: Pair, client: Redis, lobby: PubSub
) -> None:
    # The state a node leaves when it dies between its WAIT and its publish is the same:
    # entries above the marker. The room's next append publishes them, in seq order.
    failing = RedisLog(client, lambda m: None, wait_replicas=1, wait_timeout_ms=100)
    await pair.stop_replica(client)
    for i in range(3):
        with pytest.raises(Unavailable):
            await failing.append("lobby", "alice", f"lost{i}", "left behind")
    pair.replica.start()
    await pair.replica_online(client)
    log = replicated_log(client)
    later = await log.append("lobby", "bob", "m4", "later")
    got = await publications(client, lobby)
    assert [(m.seq, m.id) for m in got] == [(1, "lost0"), (2, "lost1"), (3, "lost2"), (4, "m4")]
    assert got[-1] == later.message
    assert [m.seq for m in await log.read("lobby", 0, 10)] == [1, 2, 3, 4]


async def test_a_bus_syncs_and_fills_gaps_only_up_to_what_was_published(
    pair: Pair, client: Redis
) -> None:
    log = replicated_log(client, sharded_pubsub=True)
    failing = RedisLog(client, lambda m: None, wait_replicas=1, wait_timeout_ms=100)
    subscriber = pair.primary.client()
    bus = RedisBus(subscriber, log.send, log.read, subscribe_timeout=5.0, idle_ping=0.5)
    delivered: list[Message] = []
    bus.attach(_Deliveries(delivered))
    await bus.start()
    try:
        await log.append("lobby", "alice", "m1", "shown")
        await pair.stop_replica(client)
        with pytest.raises(Unavailable):
            await failing.append("lobby", "alice", "m2", "not shown")
        await bus.subscribe("lobby")  # its sync reads the marker (1), not the counter (2)
        assert bus.feeds["lobby"].cursor == 1
        pair.replica.start()
        await pair.replica_online(client)
        await log.append("lobby", "alice", "m3", "after")
        deadline = asyncio.get_running_loop().time() + 10
        while len(delivered) < 2:
            assert asyncio.get_running_loop().time() < deadline, delivered
            await asyncio.sleep(0.01)
        assert [(m.seq, m.id) for m in delivered] == [(2, "m2"), (3, "m3")]
    finally:
        await bus.close()
        await log.close()
        await subscriber.aclose()


class _Deliveries:
    """A BusListener that keeps the messages delivered and ignores the rest."""

    def __init__(self, into: list[Message]) -> None:
        self.into = into

    def on_message(self, message: Message) -> None:
        self.into.append(message)

    def on_event(
        self, room: str, frame: dict[str, Any], user: str | None, conn: str | None
    ) -> None:
        pass

    def on_removed(self, room: str, user: str, reason: str) -> None:
        pass

    def on_room_changed(self, room: str, change: str) -> None:
        pass

    def on_token_revoked(self, token_hash: str) -> None:
        pass


# Switching --redis-replicas on and off


async def test_turning_replicas_on_keeps_every_earlier_message_shown(
    client: Redis, lobby: PubSub
) -> None:
    plain = RedisLog(client, lambda m: None)
    for i in range(3):
        await plain.append("lobby", "a", f"m{i}", "before")
    assert await client.exists(shown_key("lobby")) == 0  # never written without replicas
    log = replicated_log(client)
    assert await log.last_seq("lobby") == 3
    await log.append("lobby", "a", "m3", "after")
    assert [m.seq for m in await log.read("lobby", 0, 10)] == [1, 2, 3, 4]
    assert [m.seq for m in await publications(client, lobby)] == [1, 2, 3, 4]


async def test_turning_replicas_off_drops_the_marker_at_the_first_append(
    pair: Pair, client: Redis
) -> None:
    failing = RedisLog(client, lambda m: None, wait_replicas=1, wait_timeout_ms=100)
    await pair.stop_replica(client)
    with pytest.raises(Unavailable):
        await failing.append("lobby", "a", "m1", "above the marker")
    plain = RedisLog(client, lambda m: None)
    await plain.append("lobby", "a", "m2", "no replicas now")
    assert await client.exists(shown_key("lobby")) == 0
    assert [m.seq for m in await plain.read("lobby", 0, 10)] == [1, 2]


# A failover


async def test_after_a_crash_stop_failover_no_seq_was_shown_with_two_messages(
    tmp_path: Path,
) -> None:
    # The replica pauses (SIGSTOP) and loses its link, so the primary takes a message that
    # WAIT cannot confirm; then the primary is killed and the replica promoted, as Sentinel would.
    # The promoted replica's counter gives that seq to the next message: nothing anyone
    # was shown before may carry it.
    servers = Pair(tmp_path)
    primary = servers.primary.client()
    shown: dict[int, set[str]] = {}

    def record(messages: list[Message]) -> None:
        for m in messages:
            shown.setdefault(m.seq, set()).add(m.id)

    try:
        await servers.replica_online(primary)
        log = replicated_log(primary)
        failing = RedisLog(primary, lambda m: None, wait_replicas=1, wait_timeout_ms=200)
        async with primary.pubsub() as pubsub:
            await pubsub.subscribe(channel("lobby"))
            for i in range(5):
                await log.append("lobby", "alice", f"m{i}", "acked")
            assert servers.replica.proc is not None
            os.kill(servers.replica.proc.pid, signal.SIGSTOP)
            # Cut its link too: what the primary had sent it waits in the replica's socket
            # buffer and would reach it after SIGCONT; nothing written from now on will.
            await primary.execute_command("CLIENT", "KILL", "TYPE", "replica")
            with pytest.raises(Unavailable, match="replicas"):
                await failing.append("lobby", "alice", "lost", "only on the primary")
            record(await publications(primary, pubsub))
        record(await log.read("lobby", 0, 100))
        record((await log.page("lobby", None, None, 100))[0])
        await log.close()
        servers.primary.kill()
        os.kill(servers.replica.proc.pid, signal.SIGCONT)
        promoted = servers.replica.client()
        await promoted.replicaof("NO", "ONE")
        after = RedisLog(promoted, lambda m: None)  # no replica left to wait for
        async with promoted.pubsub() as pubsub:
            await pubsub.subscribe(channel("lobby"))
            next_one = await after.append("lobby", "bob", "next", "after the failover")
            record(await publications(promoted, pubsub))
        record(await after.read("lobby", 0, 100))
        await after.close()
        await promoted.aclose()
    finally:
        await primary.aclose()
        if servers.replica.proc is not None and servers.replica.proc.poll() is None:
            os.kill(servers.replica.proc.pid, signal.SIGCONT)
        servers.stop()
    assert next_one.message.seq == 6  # the seq the lost message had on the old primary
    assert shown == {**{i + 1: {f"m{i}"} for i in range(5)}, 6: {"next"}}
