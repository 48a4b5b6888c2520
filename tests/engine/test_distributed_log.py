"""DistributedLog: the Redis log in front of PostgreSQL history, on real servers.

The log part of the engine contract suite runs here twice: on a plain stream, and on a
stream that keeps only the last 3 entries after every append (moved to PostgreSQL first,
as the worker does), so reads and history pages cross from the stream into PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from support.engine_handles import log_contract_tests, room, store_messages
from support.pgutil import POSTGRES
from support.redis_server import RedisServer

from hubbub.engine.base import Appended, Log, Message, Store
from hubbub.engine.distributed import DistributedLog
from hubbub.engine.postgres.database import PostgresDatabase
from hubbub.engine.postgres.history import PostgresHistory
from hubbub.engine.postgres.store import PostgresStore
from hubbub.engine.redis.log import RedisLog
from hubbub.engine.redis.schema import DIRTY_KEY, id_key, room_key_pattern, stream_key
from hubbub.protocol.errors import Conflict, NotFound

LOG_CONTRACT = log_contract_tests()
globals().update(LOG_CONTRACT)

KEEP = 3


class TrimmingLog:
    """The distributed log with a worker pass after every append: persist, then trim."""

    def __init__(self, log: DistributedLog, history: PostgresHistory, client: Redis) -> None:
        self.inner = log
        self.history = history
        self.client = client
        self.moving = asyncio.Lock()

    async def append(self, room: str, sender: str, msg_id: str, body: str) -> Appended:
        appended = await self.inner.append(room, sender, msg_id, body)
        await self.persist(room)
        return appended

    async def persist(self, room: str) -> None:
        async with self.moving:  # one mover at a time, as a worker holds a room's lock
            await self._persist(room)

    async def _persist(self, room: str) -> None:
        done = await self.history.persisted_seq(room)
        entries = await self.inner.recent.read(room, done, 2**62)
        await store_messages(self.history.db, entries)
        if entries and entries[-1].seq > KEEP:
            await self.client.xtrim(
                stream_key(room), minid=entries[-1].seq - KEEP + 1, approximate=False
            )

    async def last_seq(self, room: str) -> int:
        return await self.inner.last_seq(room)

    async def read(self, room: str, after: int, upto: int) -> list[Message]:
        return await self.inner.read(room, after, upto)

    async def page(
        self, room: str, before: int | None, after: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        return await self.inner.page(room, before, after, limit)

    async def redact(self, room: str) -> None:
        await self.inner.redact(room)

    async def purge(self, room: str) -> None:
        await self.inner.purge(room)


class DistributedEngine:
    """PostgreSQL store and history, the Redis log in front; optionally trimmed hard."""

    def __init__(self, server: RedisServer, url: str, trim: bool) -> None:
        self.server = server
        self.url = url
        self.trim = trim
        self.published: list[Message] = []

    async def start(self) -> None:
        self.db = PostgresDatabase(self.url, migrate=False)
        await self.db.open()
        self.client = self.server.client()
        self.store: Store = PostgresStore(self.db)
        self.history = PostgresHistory(self.db)
        self.recent = RedisLog(self.client, self.published.append, seed=self.history.persisted_seq)
        self.distributed = DistributedLog(self.recent, self.history)
        self.log: Log = (
            TrimmingLog(self.distributed, self.history, self.client)
            if self.trim
            else self.distributed
        )

    async def close(self) -> None:
        await self.recent.close()
        await self.client.aclose()
        await self.db.close()

    async def restart(self) -> None:
        await self.close()
        await self.start()

    def write_transactions(self) -> int | None:
        return self.recent.round_trips


async def _engine(server: RedisServer, trim: bool) -> DistributedEngine:
    """A started engine on empty Redis and PostgreSQL."""
    url = POSTGRES.empty_url()
    client = server.client()
    await client.flushall()
    await client.aclose()
    handle = DistributedEngine(server, url, trim=trim)
    await handle.start()
    return handle


@pytest.fixture(params=["stream", "trimmed"])
async def engine(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[DistributedEngine]:
    """Overrides the contract suite's `engine` in this module."""
    handle = await _engine(redis_server, trim=request.param == "trimmed")
    try:
        yield handle
    finally:
        await handle.close()


@pytest.fixture
async def plain(redis_server: RedisServer) -> AsyncIterator[DistributedEngine]:
    """An untrimmed engine: the tests below trim it themselves."""
    handle = await _engine(redis_server, trim=False)
    try:
        yield handle
    finally:
        await handle.close()


def test_the_log_contract_is_collected_here() -> None:
    assert "test_page_follows_the_history_rules_for_every_bound_and_limit" in LOG_CONTRACT
    assert len(LOG_CONTRACT) >= 19


async def test_trimmed_history_is_read_from_postgresql(plain: DistributedEngine) -> None:
    await room(plain, "lobby")
    trimming = TrimmingLog(plain.distributed, plain.history, plain.client)
    sent = [(await trimming.append("lobby", "alice", f"m{i}", f"b{i}")).message for i in range(10)]
    assert await plain.client.xlen(stream_key("lobby")) == KEEP
    assert await plain.distributed.read("lobby", 0, 10) == sent
    assert await plain.distributed.read("lobby", 4, 9) == sent[4:9]
    assert await plain.distributed.page("lobby", None, None, 5) == (sent[5:], True)
    assert await plain.distributed.page("lobby", 9, None, 20) == (sent[:8], False)
    assert await plain.distributed.page("lobby", None, 2, 5) == (sent[2:7], True)


async def test_a_resend_after_the_record_expired_gets_the_original_ack(
    plain: DistributedEngine,
) -> None:
    await room(plain, "lobby")
    trimming = TrimmingLog(plain.distributed, plain.history, plain.client)
    first = await trimming.append("lobby", "Alice", "m1", "hello")
    await plain.client.delete(id_key("lobby", "alice", "m1"))  # as if its TTL ran out
    again = await plain.distributed.append("lobby", "alice", "m1", "hello")
    assert again == Appended(first.message, created=False)
    with pytest.raises(Conflict):
        await plain.distributed.append("lobby", "alice", "m1", "another body")
    assert await plain.distributed.last_seq("lobby") == 1


async def test_a_counter_lost_by_redis_continues_after_postgresql_history(
    plain: DistributedEngine,
) -> None:
    await room(plain, "lobby")
    trimming = TrimmingLog(plain.distributed, plain.history, plain.client)
    for i in range(4):
        await trimming.append("lobby", "alice", f"m{i}", "x")
    await plain.client.flushall()  # Redis restarted without its data
    after = await plain.distributed.append("lobby", "alice", "m9", "after the loss")
    assert after.message.seq == 5
    assert [m.seq for m in await plain.distributed.read("lobby", 0, 5)] == [1, 2, 3, 4, 5]


async def _room_keys(client: Redis, room: str) -> list[bytes]:
    return sorted([key async for key in client.scan_iter(match=room_key_pattern(room))])


async def test_a_deleted_room_is_redacted_in_the_stream_the_records_and_postgresql(
    plain: DistributedEngine,
) -> None:
    await room(plain, "lobby")
    trimming = TrimmingLog(plain.distributed, plain.history, plain.client)
    for i in range(1, 6):  # 1..5 in PostgreSQL, 3..5 still in the stream
        await trimming.append("lobby", "alice", f"m{i}", f"secret {i}")
    for i in range(6, 8):  # 6 and 7 only in the stream
        await plain.distributed.append("lobby", "alice", f"m{i}", f"secret {i}")
    unmoved = await plain.recent.read("lobby", 5, 7)  # a worker's batch, read before
    await plain.store.delete_room("lobby", 1_000)
    await plain.log.redact("lobby")

    streamed = await plain.recent.read("lobby", 0, 100)
    assert [m.seq for m in streamed] == [3, 4, 5, 6, 7]
    assert all(m.deleted and m.body == "" for m in streamed)
    assert [key async for key in plain.client.scan_iter(match="hubbub:{lobby}:id:*")] == []
    stored = await plain.history.read("lobby", 0, 100)
    assert [m.seq for m in stored] == [1, 2, 3, 4, 5]
    assert all(m.deleted and m.body == "" for m in stored)
    # The batch read before the redaction lands redacted all the same.
    assert await store_messages(plain.db, unmoved) == 2
    stored = await plain.history.read("lobby", 0, 100)
    assert [m.seq for m in stored] == [1, 2, 3, 4, 5, 6, 7]
    assert all(m.deleted and m.body == "" for m in stored)
    assert [m.sender for m in stored] == ["alice"] * 7
    with pytest.raises(NotFound):  # on any node: the marker is in Redis
        await plain.distributed.append("lobby", "alice", "m8", "too late")


async def test_a_purged_room_leaves_no_key_and_a_new_one_starts_at_seq_1(
    plain: DistributedEngine,
) -> None:
    await room(plain, "lobby")
    trimming = TrimmingLog(plain.distributed, plain.history, plain.client)
    for i in range(5):
        await trimming.append("lobby", "alice", f"m{i}", "x")
    await plain.store.delete_room("lobby", 1_000)
    await plain.log.redact("lobby")
    assert await _room_keys(plain.client, "lobby") != []
    await plain.log.purge("lobby")
    await plain.store.purge_room("lobby")
    assert await _room_keys(plain.client, "lobby") == []
    assert not await plain.client.sismember(DIRTY_KEY, "lobby")
    await room(plain, "lobby", owner="bob")
    assert await plain.log.last_seq("lobby") == 0
    fresh = await plain.distributed.append("lobby", "bob", "m0", "new")
    assert (fresh.message.seq, fresh.created) == (1, True)
    assert await plain.distributed.read("lobby", 0, 10) == [fresh.message]
