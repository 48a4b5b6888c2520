"""RedisLog against a private redis-server: the Log contract, publication, durability, errors.

The Log part of the contract suite (`test_engine_contract`) runs here too: its tests that
use `engine.log` and never `engine.store` directly are collected into this module, where
the `engine` fixture below gives them a RedisLog (with a SQLite store beside it only so
they can create users and rooms).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.crc import key_slot
from support.engine_handles import log_contract_tests
from support.redis_server import RedisServer, require_redis_server

from hubbub.engine.base import Log, Message, Store
from hubbub.engine.redis.log import MAX_BATCH, RedisLog
from hubbub.engine.redis.schema import (
    APPEND_SCRIPT,
    DIRTY_KEY,
    channel,
    decode_message,
    decode_published,
    gone_key,
    id_key,
    seq_key,
    shown_key,
    stream_key,
)
from hubbub.engine.sqlite.database import SqliteDatabase
from hubbub.engine.sqlite.store import SqliteStore
from hubbub.protocol.errors import Conflict, Unavailable

LOG_CONTRACT = log_contract_tests()
globals().update(LOG_CONTRACT)


class RedisLogEngine:
    """A RedisLog on a private redis-server; the SQLite store only holds users and rooms."""

    def __init__(self, server: RedisServer, store_path: Path) -> None:
        self.server = server
        self.store_path = store_path
        self.published: list[Message] = []

    async def start(self) -> None:
        self.db = SqliteDatabase(self.store_path)
        self.db.open()
        self.store: Store = SqliteStore(self.db)
        self.client = self.server.client()
        self.redis_log = RedisLog(self.client, on_commit=self.published.append)
        self.log: Log = self.redis_log

    async def close(self) -> None:
        await self.redis_log.close()
        await self.client.aclose()
        await self.db.close()

    async def restart(self) -> None:
        await self.close()
        await self.start()

    def write_transactions(self) -> int | None:
        # Pipelines sent: Redis fsyncs the AOF once per event-loop cycle, before replying,
        # so a pipeline of appends costs about one fsync, like one group commit.
        return self.redis_log.round_trips


@pytest.fixture
async def engine(
    redis_server: RedisServer, client: Redis, tmp_path: Path
) -> AsyncIterator[RedisLogEngine]:
    """Overrides the contract suite's `engine` in this module: a RedisLog on empty data."""
    handle = RedisLogEngine(redis_server, tmp_path / "store.sqlite")
    await handle.start()
    try:
        yield handle
    finally:
        await handle.close()


def test_the_log_contract_is_collected_here() -> None:
    assert "test_seqs_start_at_1_and_are_gapless_per_room" in LOG_CONTRACT
    assert "test_concurrent_appends_get_each_seq_once_commit_in_groups_publish_in_order" in (
        LOG_CONTRACT
    )
    assert "test_page_follows_the_history_rules_for_every_bound_and_limit" in LOG_CONTRACT
    assert "test_store_survives_a_restart" not in LOG_CONTRACT
    assert len(LOG_CONTRACT) >= 19  # every test of the "The log" sections


# Layout


async def test_stream_ids_are_seqs_and_entries_decode_to_the_messages(client: Redis) -> None:
    log = RedisLog(client, on_commit=lambda m: None)
    appended = [(await log.append("lobby", "Alice", f"m{i}", f"body {i}")).message for i in (1, 2)]
    entries = await client.xrange(stream_key("lobby"))
    assert [entry_id for entry_id, _ in entries] == [b"1-0", b"2-0"]
    assert [decode_message(fields) for _, fields in entries] == appended
    assert await client.get(seq_key("lobby")) == b"2"


async def test_every_key_and_the_channel_of_a_room_share_its_hash_slot(client: Redis) -> None:
    log = RedisLog(client, on_commit=lambda m: None)
    for name in ("lobby", "dev", "a-b_c"):
        await log.append(name, "alice", "m1", "hi")
        keys = await client.keys(f"hubbub:{{{name}}}:*")
        assert len(keys) == 3  # counter, stream, one idempotency record
        slots = {key_slot(key) for key in keys} | {key_slot(channel(name).encode())}
        assert slots == {key_slot(name.encode())}


async def test_idempotency_records_keep_until_the_worker_gives_them_a_ttl(client: Redis) -> None:
    log = RedisLog(client, on_commit=lambda m: None)
    await log.append("lobby", "Alice", "m1", "hi")
    assert await client.ttl(id_key("lobby", "alice", "m1")) == -1  # no TTL: not yet persisted


async def test_every_append_batch_marks_its_rooms_dirty_for_the_worker(client: Redis) -> None:
    log = RedisLog(client, on_commit=lambda m: None)
    await asyncio.gather(*(log.append(r, "alice", f"m{i}", "hi") for i, r in enumerate("abca")))
    assert await client.smembers(DIRTY_KEY) == {b"a", b"b", b"c"}


async def test_a_missing_counter_is_seeded_from_the_database_once(client: Redis) -> None:
    seeded: list[str] = []

    async def seed(room: str) -> int:
        seeded.append(room)
        return 41  # the database already holds seqs 1..41 of this room

    log = RedisLog(client, on_commit=lambda m: None, seed=seed)
    results = await asyncio.gather(*(log.append("lobby", "alice", f"m{i}", "hi") for i in range(5)))
    assert sorted(r.message.seq for r in results) == [42, 43, 44, 45, 46]
    assert seeded and set(seeded) == {"lobby"}
    await log.append("lobby", "alice", "m9", "hi")
    assert len(seeded) <= 5  # the counter exists now: no further seeding


async def test_the_script_answers_a_known_id_with_the_stored_entry_whatever_the_body(
    client: Redis,
) -> None:
    # The body comparison is `engine.base.replayed`'s, in Python; the script writes nothing.
    log = RedisLog(client, on_commit=lambda m: None)
    stored = (await log.append("lobby", "alice", "m1", "hi")).message
    keys = (
        seq_key("lobby"),
        stream_key("lobby"),
        id_key("lobby", "alice", "m1"),
        gone_key("lobby"),
        shown_key("lobby"),
    )
    args = ("lobby", "m1", "alice", "another body", "0", channel("lobby"), "PUBLISH")
    status, payload = await client.eval(APPEND_SCRIPT, len(keys), *keys, *args)
    assert (status, decode_published(payload)) == (0, stored)
    assert await client.xlen(stream_key("lobby")) == 1
    with pytest.raises(Conflict, match="'m1' was already used with another body"):
        await log.append("lobby", "alice", "m1", "another body")


def test_idempotency_keys_keep_sender_and_id_apart() -> None:
    assert id_key("r", "a", "b:c") != id_key("r", "a:b", "c")
    assert id_key("r", "Alice", "x") == id_key("r", "alice", "x")


async def test_a_repeat_from_the_same_user_in_another_case_is_the_same_message(
    client: Redis,
) -> None:
    log = RedisLog(client, on_commit=lambda m: None)
    first = await log.append("lobby", "Alice", "m1", "hi")
    again = await log.append("lobby", "alice", "m1", "hi")
    assert (again.created, again.message) == (False, first.message)
    assert again.message.sender == "Alice"


async def test_a_client_decoding_responses_is_rejected(redis_server: RedisServer) -> None:
    c = redis_server.client(decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisLog(c, on_commit=lambda m: None)
    await c.aclose()


# Publication


async def read_publications(pubsub: PubSub, count: int) -> list[Message]:
    got: list[Message] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if item is not None:
                got.append(decode_published(item["data"]))
    return got


async def test_each_created_message_is_published_once_on_the_room_channel_in_seq_order(
    client: Redis,
) -> None:
    log = RedisLog(client, on_commit=lambda m: None)
    async with client.pubsub() as pubsub:
        await pubsub.subscribe(channel("lobby"), channel("dev"))
        results = await asyncio.gather(
            *(log.append("lobby", "alice", f"m{i}", f"body {i}") for i in range(300))
        )
        await log.append("lobby", "alice", "m0", "body 0")  # a repeat: not published
        with pytest.raises(Conflict):
            await log.append("lobby", "alice", "m1", "another body")  # nor a conflict
        await log.append("dev", "bob", "x", "marks the end")
        got = await read_publications(pubsub, 301)
    lobby = [m for m in got if m.room == "lobby"]
    assert [m.seq for m in lobby] == list(range(1, 301))
    assert sorted(lobby, key=lambda m: m.id) == sorted(
        (r.message for r in results), key=lambda m: m.id
    )
    assert got[-1] == Message("dev", 1, "x", "bob", "marks the end", got[-1].ts)


async def test_sharded_pubsub_publishes_with_spublish(client: Redis) -> None:
    log = RedisLog(client, on_commit=lambda m: None, sharded_pubsub=True)
    async with client.pubsub() as pubsub:
        await pubsub.ssubscribe(channel("lobby"))
        await pubsub.subscribe(channel("lobby"))  # a plain subscriber hears nothing
        appended = await asyncio.gather(*(log.append("lobby", "a", f"m{i}", "b") for i in range(5)))
        got: list[tuple[str, Message]] = []
        async with asyncio.timeout(10):
            while len(got) < 5:
                item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if item is not None:
                    got.append((item["type"], decode_published(item["data"])))
    assert [kind for kind, _ in got] == ["smessage"] * 5
    assert [m for _, m in got] == sorted((a.message for a in appended), key=lambda m: m.seq)


def test_a_publication_payload_is_a_msgpack_array_of_the_message_fields() -> None:
    payload = msgspec.msgpack.encode(["lobby", 3, "m1", "Alice", "héllo 😀", 1_700_000_000_123])
    assert decode_published(payload) == Message(
        "lobby", 3, "m1", "Alice", "héllo 😀", 1_700_000_000_123
    )


# Several nodes


async def test_two_logs_on_separate_connections_append_concurrently_without_gaps(
    redis_server: RedisServer, client: Redis
) -> None:
    clients = [redis_server.client(), redis_server.client()]
    published: list[list[Message]] = [[], []]
    logs = [RedisLog(c, on_commit=p.append) for c, p in zip(clients, published, strict=True)]
    try:
        results = await asyncio.gather(
            *(logs[i % 2].append("lobby", f"user{i % 2}", f"m{i}", f"b{i}") for i in range(2_000)),
            *(logs[i % 2].append("lobby", f"user{i % 2}", f"m{i}", f"b{i}") for i in range(100)),
        )
    finally:
        for c in clients:
            await c.aclose()
    created = [r.message for r in results if r.created]
    assert sorted(m.seq for m in created) == list(range(1, 2_001))
    for mine in published:
        assert [m.seq for m in mine] == sorted(m.seq for m in mine), "each in seq order"
    assert sorted(m.seq for m in published[0] + published[1]) == list(range(1, 2_001))
    for r in results[2_000:]:  # the repeats got the stored messages
        assert r.message == next(m for m in created if m.id == r.message.id)


async def test_a_long_queue_goes_out_in_bounded_pipelines_still_in_order(client: Redis) -> None:
    published: list[Message] = []
    log = RedisLog(client, on_commit=published.append)
    count = MAX_BATCH + 1_000
    results = await asyncio.gather(*(log.append("lobby", "a", f"m{i}", "b") for i in range(count)))
    assert sorted(r.message.seq for r in results) == list(range(1, count + 1))
    assert [m.seq for m in published] == list(range(1, count + 1))
    assert log.round_trips >= 2


# Durability and the script cache


@pytest.mark.parametrize("fsync", ["always", "everysec"])
async def test_acked_messages_survive_kill_9_of_redis_with_an_append_only_file(
    tmp_path: Path, fsync: str
) -> None:
    # `always` fsyncs before replying; `everysec` writes to the kernel before replying,
    # which a process crash cannot undo (only a machine crash can: docs/guarantees.md).
    server = RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", fsync)
    server.start()
    try:
        c = server.client()
        log = RedisLog(c, on_commit=lambda m: None)
        acked = await asyncio.gather(
            *(log.append("lobby", "alice", f"m{i}", f"body {i}") for i in range(500))
        )
        server.kill()
        await c.aclose()

        server.start()  # same directory and port: Redis replays the AOF
        c = server.client()
        log = RedisLog(c, on_commit=lambda m: None)
        stored = await log.read("lobby", 0, 10_000)
        assert stored == sorted((a.message for a in acked), key=lambda m: m.seq)
        assert await log.last_seq("lobby") == 500
        again = await log.append("lobby", "alice", "m7", "body 7")
        assert (again.created, again.message) == (False, stored[7])
        nxt = await log.append("lobby", "alice", "m500", "body 500")
        assert (nxt.created, nxt.message.seq) == (True, 501)
        await c.aclose()
    finally:
        server.stop()


async def test_appends_go_on_after_the_script_cache_is_flushed(client: Redis) -> None:
    published: list[Message] = []
    log = RedisLog(client, on_commit=published.append)
    await log.append("lobby", "alice", "m1", "b")
    await client.script_flush()
    results = await asyncio.gather(*(log.append("lobby", "alice", f"n{i}", "b") for i in range(50)))
    assert sorted(r.message.seq for r in results) == list(range(2, 52))
    assert [m.seq for m in published] == list(range(1, 52))


# Failures


async def test_a_lost_redis_is_unavailable_for_every_operation(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    c = server.client()
    log = RedisLog(c, on_commit=lambda m: None)
    await log.append("lobby", "alice", "m1", "b")
    server.stop()
    try:
        results = await asyncio.gather(
            *(log.append("lobby", "alice", f"m{i}", "b") for i in range(10)),
            log.last_seq("lobby"),
            return_exceptions=True,
        )
        assert all(isinstance(r, Unavailable) for r in results), results
        with pytest.raises(Unavailable):
            await log.read("lobby", 0, 10)
        with pytest.raises(Unavailable):
            await log.page("lobby", None, None, 10)
    finally:
        await c.aclose()


async def test_wait_replicas_without_a_replica_is_unavailable(client: Redis) -> None:
    published: list[Message] = []
    log = RedisLog(client, on_commit=published.append, wait_replicas=1, wait_timeout_ms=50)
    with pytest.raises(Unavailable, match="replicas"):
        await log.append("lobby", "alice", "m1", "b")
    # The primary has it, but nothing was published or is shown until a replica has it
    # (tests/engine/test_redis_replicas.py).
    assert published == []
    assert await client.get(seq_key("lobby")) == b"1"
    assert await log.last_seq("lobby") == 0


async def test_wait_replicas_acks_once_a_replica_has_the_write(
    redis_server: RedisServer, client: Redis, tmp_path: Path
) -> None:
    replica = RedisServer(tmp_path, "--replicaof", "127.0.0.1", str(redis_server.port))
    replica.start()
    try:
        # WAIT returns as soon as one replica acknowledged the writes, so its timeout also
        # covers the replica's first sync (started at once, not after the default 5 s).
        await client.config_set("repl-diskless-sync-delay", 0)
        log = RedisLog(client, on_commit=lambda m: None, wait_replicas=1, wait_timeout_ms=4_000)
        results = await asyncio.gather(*(log.append("lobby", "a", f"m{i}", "b") for i in range(50)))
        assert sorted(r.message.seq for r in results) == list(range(1, 51))
        replica_client = replica.client()
        assert await replica_client.get(seq_key("lobby")) == b"50"
        await replica_client.aclose()
    finally:
        replica.stop()


async def test_a_wait_timeout_longer_than_the_socket_timeout_is_rejected(
    redis_server: RedisServer,
) -> None:
    c = redis_server.client(socket_timeout=2)
    with pytest.raises(ValueError, match="socket_timeout"):
        RedisLog(c, on_commit=lambda m: None, wait_replicas=1, wait_timeout_ms=2_000)
    RedisLog(c, on_commit=lambda m: None, wait_replicas=1, wait_timeout_ms=1_999)
    RedisLog(c, on_commit=lambda m: None, wait_timeout_ms=60_000)  # no WAIT, no limit
    await c.aclose()


# The test server itself


def test_a_missing_redis_server_skips_locally_and_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shutil.which", lambda name, path=None: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_redis_server()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        require_redis_server()
