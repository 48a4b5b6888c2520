"""The worker (`hubbub worker`) on a real PostgreSQL and a private redis-server.

Messages are produced with `RedisLog.append` into rooms created through `PostgresStore`;
the worker runs in-process (`Worker`, `serve`) and as a real `hubbub worker` subprocess.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
import pytest
from prometheus_client import REGISTRY
from support.engine_handles import find_sent, store_messages
from support.pgutil import TestDatabase
from support.redis_server import RedisServer, free_port

from hubbub.engine.base import Message, Room
from hubbub.engine.postgres.archive import ROOM_LOCK_NAMESPACE, room_lock_key
from hubbub.engine.postgres.database import PostgresDatabase
from hubbub.engine.postgres.history import PostgresHistory
from hubbub.engine.postgres.store import PostgresStore
from hubbub.engine.redis.log import RedisLog
from hubbub.engine.redis.presence import RedisPresence
from hubbub.engine.redis.schema import (
    DIRTY_KEY,
    NODES_KEY,
    channel,
    id_key,
    moving_key,
    stream_key,
)
from hubbub.engine.redis.shown import publish_replicated
from hubbub.engine.redis.worker import Worker, WorkerSettings
from hubbub.ops.worker import serve
from hubbub.protocol.errors import Unavailable

TOP = 2**62


@pytest.fixture(scope="module")
def database() -> Iterator[TestDatabase]:
    db = TestDatabase()
    db.ensure()
    yield db
    db.drop()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def wait_for(
    condition: Callable[[], Awaitable[bool]], timeout: float = 15.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


class Harness:
    """Empty PostgreSQL tables and Redis, a producer (RedisLog) and PostgreSQL history."""

    def __init__(self, url: str, server: RedisServer) -> None:
        self.url = url
        self.server = server
        self.db = PostgresDatabase(url, migrate=False)
        self.client = server.client()
        self.log = RedisLog(self.client, lambda message: None)
        self.history = PostgresHistory(self.db)
        self.store = PostgresStore(self.db)
        self._closing: list[Callable[[], Awaitable[Any]]] = []

    async def start(self) -> None:
        await self.client.flushall()
        await self.db.open()
        await self.store.create_user("Alice", "x", 0)

    async def close(self) -> None:
        for close in reversed(self._closing):
            await close()
        await self.log.close()
        await self.client.aclose()
        await self.db.close()

    async def room(self, name: str) -> str:
        await self.store.create_room(Room(name, "", False, "Alice", 0))
        return name

    async def append(self, room: str, count: int, sender: str = "Alice", start: int = 0) -> None:
        """`count` messages, sent concurrently in chunks (pipelined by the log's writer)."""
        for low in range(start, start + count, 500):
            ids = range(low, min(low + 500, start + count))
            await asyncio.gather(
                *(self.log.append(room, sender, f"m{i}", f"body {i} ✓") for i in ids)
            )

    async def redis_messages(self, room: str) -> list[Message]:
        return await self.log.read(room, 0, TOP)

    async def stored(self, room: str) -> list[Message]:
        return await self.history.read(room, 0, TOP)

    async def count(self) -> int:
        row = await self.db.fetchrow("SELECT count(*) FROM messages")
        assert row is not None
        return int(row[0])

    async def ttls(self, messages: list[Message]) -> list[int]:
        async with self.client.pipeline(transaction=False) as pipe:
            for m in messages:
                pipe.ttl(id_key(m.room, m.sender, m.id))
            return [int(t) for t in await pipe.execute()]

    async def worker(self, **settings: Any) -> Worker:
        """A worker on its own pool and connection, as another process would have."""
        db = PostgresDatabase(self.url, migrate=False, max_size=2)
        await db.open()
        client = self.server.client()
        self._closing += [db.close, client.aclose]
        options = {"poll_interval": 0.01, **settings}
        return Worker(db, client, WorkerSettings(**options))


@pytest.fixture
async def h(database: TestDatabase, redis_server: RedisServer) -> AsyncIterator[Harness]:
    harness = Harness(database.empty_url(), redis_server)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.close()


async def drain(worker: Worker, passes: int = 100) -> int:
    """Run passes until one moves nothing; returns the messages moved."""
    total = 0
    for _ in range(passes):
        moved = await worker.run_pass()
        if not moved:
            return total
        total += moved
    raise AssertionError(f"still moving after {passes} passes")


async def test_every_message_lands_exactly_once_with_its_fields(h: Harness) -> None:
    one, two = await h.room("one"), await h.room("two")
    await h.append(one, 25)
    await h.append(two, 4, sender="Alice")
    await h.append(two, 3, sender="alice", start=100)  # the same user, another spelling
    worker = await h.worker(batch=10)
    before = metric("hubbub_worker_persisted_total")

    assert await worker.run_pass() == 32  # every room drained in one pass, in batches
    assert metric("hubbub_worker_lag_messages") == 32  # what waited when the pass began
    assert await drain(worker) == 0  # a repeat moves nothing
    assert metric("hubbub_worker_lag_messages") == 0

    for room, count in ((one, 25), (two, 7)):
        stored = await h.stored(room)
        assert stored == await h.redis_messages(room)  # seq, id, sender, body and ts
        assert [m.seq for m in stored] == list(range(1, count + 1))
    assert metric("hubbub_worker_persisted_total") - before == 32
    assert await h.count() == 32
    assert await h.client.scard(DIRTY_KEY) == 0
    assert not await h.client.exists(moving_key(one), moving_key(two))


async def test_records_get_a_ttl_only_once_their_message_is_stored(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    room = await h.room("kept")
    ghost = "ghost"  # no such room in PostgreSQL: its messages cannot be stored
    await h.append(room, 6)
    await h.append(ghost, 3)
    sent = await h.redis_messages(room)
    assert await h.ttls(sent) == [-1] * 6

    await drain(await h.worker(idempotency_ttl=1234))

    assert all(0 < ttl <= 1234 for ttl in await h.ttls(sent))
    lost = await h.redis_messages(ghost)
    assert len(lost) == 3  # kept whole, untrimmed
    assert await h.ttls(lost) == [-1] * 3
    assert await h.history.persisted_seq(ghost) == 0
    assert "cannot store the room's log" in caplog.text


async def test_streams_keep_the_most_recent_entries_and_nothing_unstored_is_trimmed(
    h: Harness,
) -> None:
    busy, quiet = await h.room("busy"), await h.room("quiet")
    await h.append(busy, 30)
    await h.append(quiet, 3)
    await drain(await h.worker(batch=7, keep=5))

    assert await h.client.xlen(stream_key(busy)) == 5
    assert [m.seq for m in await h.redis_messages(busy)] == [26, 27, 28, 29, 30]
    assert len(await h.stored(busy)) == 30
    assert await h.client.xlen(stream_key(quiet)) == 3  # fewer than keep: all stay
    assert len(await h.stored(quiet)) == 3


async def test_keep_zero_trims_every_stored_entry(h: Harness) -> None:
    room = await h.room("zero")
    await h.append(room, 12)
    await drain(await h.worker(batch=5, keep=0))
    assert await h.client.xlen(stream_key(room)) == 0
    assert len(await h.stored(room)) == 12


async def test_a_room_locked_by_another_worker_is_skipped_and_marked_dirty_again(
    h: Harness,
) -> None:
    room = await h.room("locked")
    await h.append(room, 5)
    worker = await h.worker()
    other = await asyncpg.connect(h.url)
    try:
        async with other.transaction():
            await other.execute(
                "SELECT pg_advisory_xact_lock($1, $2)", ROOM_LOCK_NAMESPACE, room_lock_key(room)
            )
            assert await worker.run_pass(scan=False) == 0
            assert await h.client.sismember(DIRTY_KEY, room)
            assert await h.history.persisted_seq(room) == 0
    finally:
        await other.close()
    assert await worker.run_pass(scan=False) == 5


async def test_two_workers_at_once_store_each_message_exactly_once(h: Harness) -> None:
    rooms = [await h.room(f"shared{i}") for i in range(4)]
    first, second = await h.worker(batch=20, keep=10), await h.worker(batch=20, keep=10)
    tasks = [asyncio.create_task(w.run()) for w in (first, second)]
    try:
        for chunk in range(3):  # appends keep coming while both workers run
            await asyncio.gather(*(h.append(r, 50, start=chunk * 50) for r in rooms))
        await wait_for(lambda: _count_is(h, 600), what="600 stored messages")
    finally:
        first.stop()
        second.stop()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    for room in rooms:
        stored = await h.stored(room)
        assert [m.seq for m in stored] == list(range(1, 151))
        assert sorted(m.id for m in stored) == sorted(f"m{i}" for i in range(150))
        assert await h.client.xlen(stream_key(room)) == 10
    assert not await h.client.exists(*(moving_key(r) for r in rooms))


async def _count_is(h: Harness, expected: int) -> bool:
    return await h.count() == expected


async def test_a_lost_dirty_mark_is_found_by_the_full_scan(h: Harness) -> None:
    room = await h.room("unmarked")
    worker = await h.worker(scan_interval=0.3)
    assert await worker.run_pass() == 0  # the first pass scans; the next is due in 0.3 s
    await h.append(room, 5)
    await h.client.delete(DIRTY_KEY)  # as if a worker died right after popping it

    assert await worker.run_pass() == 0  # no mark, no scan due: not seen yet
    deadline = time.monotonic() + 5
    while not await worker.run_pass():
        assert time.monotonic() < deadline, "the scan never found the room"
        await asyncio.sleep(0.05)
    assert len(await h.stored(room)) == 5


async def test_a_batch_a_dead_worker_committed_but_did_not_settle_is_settled_next(
    h: Harness,
) -> None:
    room = await h.room("orphan")
    await h.append(room, 6)
    sent = await h.redis_messages(room)
    # A worker noted batch 1..6, committed it and died before the Redis step; another
    # noted 7..9 and died before its commit.
    await h.client.rpush(moving_key(room), "1:6", "7:9")
    assert await store_messages(h.db, sent) == 6
    await h.client.delete(DIRTY_KEY)

    assert await (await h.worker(keep=2)).run_pass() == 0  # nothing left to move, but:
    assert all(ttl > 0 for ttl in await h.ttls(sent))
    assert [m.seq for m in await h.redis_messages(room)] == [5, 6]
    assert not await h.client.exists(moving_key(room))


async def test_entries_missing_from_the_stream_stop_the_room_loudly(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    room = await h.room("holed")
    await h.append(room, 5)
    await h.client.xtrim(stream_key(room), minid=3, approximate=False)  # never stored
    errors = metric("hubbub_backend_errors_total", backend="redis")

    assert await (await h.worker()).run_pass() == 0
    assert await h.history.persisted_seq(room) == 0  # no history with a hole in it
    assert [m.seq for m in await h.redis_messages(room)] == [3, 4, 5]
    assert await h.ttls(await h.redis_messages(room)) == [-1] * 3
    assert metric("hubbub_backend_errors_total", backend="redis") == errors + 1
    assert metric("hubbub_worker_lag_messages") == 5  # a stuck room still shows as lag
    assert "lacks entries" in caplog.text


async def test_an_id_stored_under_two_seqs_stops_the_room_instead_of_dropping_one(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    room = await h.room("twice")
    await h.log.append(room, "Alice", "dup", "hello")
    await h.client.delete(id_key(room, "Alice", "dup"))  # as if Redis forgot the record
    await h.log.append(room, "Alice", "dup", "hello")  # so the id got a second seq
    errors = metric("hubbub_backend_errors_total", backend="postgres")

    assert await (await h.worker()).run_pass() == 0
    assert await h.history.persisted_seq(room) == 0
    assert await h.client.xlen(stream_key(room)) == 2
    assert metric("hubbub_backend_errors_total", backend="postgres") == errors + 1
    assert metric("hubbub_worker_lag_messages") == 2
    assert "cannot store the room's log" in caplog.text


async def test_unreachable_postgresql_backs_off_and_loses_nothing(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    room = await h.room("patient")
    await h.append(room, 5)
    parts = urlsplit(h.url)
    wrong = urlunsplit(parts._replace(netloc=f"postgres@127.0.0.1:{free_port()}"))
    settings = WorkerSettings(poll_interval=0.01)
    errors = metric("hubbub_backend_errors_total", backend="postgres")

    stopping = asyncio.Event()
    task = asyncio.create_task(serve(wrong, h.server.url, settings, stopping))
    await wait_for(
        lambda: _true(metric("hubbub_backend_errors_total", backend="postgres") >= errors + 3),
        what="three failed attempts",
    )
    stopping.set()
    await asyncio.wait_for(task, 10)
    assert "database unavailable" in caplog.text
    assert await h.client.sismember(DIRTY_KEY, room)  # not taken by the failing worker
    sent = await h.redis_messages(room)
    assert len(sent) == 5 and await h.ttls(sent) == [-1] * 5

    stopping = asyncio.Event()
    task = asyncio.create_task(serve(h.url, h.server.url, settings, stopping))
    try:
        await wait_for(lambda: _count_is(h, 5), what="the messages in PostgreSQL")
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)
    assert await h.stored(room) == sent


async def _true(value: bool) -> bool:
    return value


async def test_postgresql_sessions_killed_mid_drain_lose_nothing_and_copy_nothing(
    h: Harness,
) -> None:
    rooms = [await h.room("severed0"), await h.room("severed1")]
    await asyncio.gather(*(h.append(r, 1000) for r in rooms))
    name = "hubbub-worker-under-test"
    db = PostgresDatabase(f"{h.url}?application_name={name}", migrate=False, max_size=2)
    await db.open()
    client = h.server.client()
    worker = Worker(db, client, WorkerSettings(batch=10, poll_interval=0.01))
    errors = metric("hubbub_backend_errors_total", backend="postgres")
    admin = await asyncpg.connect(h.url)
    task = asyncio.create_task(worker.run())
    try:
        kills = 0
        deadline = time.monotonic() + 30
        while (done := await admin.fetchval("SELECT count(*) FROM messages")) < 2000:
            assert time.monotonic() < deadline, f"stuck at {done} after {kills} kills"
            if done >= 300 * (kills + 1):  # cut the worker's sessions every 300 messages
                kills += await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = $1",
                    name,
                )
            await asyncio.sleep(0.005)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        await admin.close()
        await client.aclose()
        await db.close()
    assert kills >= 3
    assert metric("hubbub_backend_errors_total", backend="postgres") > errors
    for room in rooms:
        stored = await h.stored(room)
        assert [m.seq for m in stored] == list(range(1, 1001))
        assert -1 not in await h.ttls(stored)


async def test_the_worker_rides_out_a_redis_restart(h: Harness) -> None:
    room = await h.room("bumpy")
    await h.append(room, 5)
    worker = await h.worker()
    task = asyncio.create_task(worker.run())
    errors = metric("hubbub_backend_errors_total", backend="redis")
    try:
        await wait_for(lambda: _count_is(h, 5), what="the first messages")
        h.server.kill()
        await wait_for(
            lambda: _true(metric("hubbub_backend_errors_total", backend="redis") > errors),
            what="a failed pass",
        )
        h.server.start()  # same port; no persistence, so the new room starts empty
        later = await h.room("later")
        await wait_for(lambda: _appended(h, later), what="appends after the restart")
        await wait_for(lambda: _count_is(h, 8), what="the messages sent after the restart")
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
    assert not task.exception()
    assert [m.body for m in await h.stored(later)] == [f"body {i} ✓" for i in range(3)]


async def _appended(h: Harness, room: str) -> bool:
    """Append three messages once the producer's connection is back."""
    try:
        await h.append(room, 3)
    except Exception:
        return False
    return True


async def test_find_sent_and_persisted_seq_answer_from_postgresql(h: Harness) -> None:
    room, other = await h.room("looked"), await h.room("elsewhere")
    assert await h.history.persisted_seq(room) == 0
    messages = [Message(room, seq, f"m{seq}", "Alice", f"b{seq}", 1000 + seq) for seq in (1, 2, 3)]
    assert await store_messages(h.db, messages) == 3
    assert await store_messages(h.db, messages) == 0  # stored seqs are skipped
    assert await h.history.persisted_seq(room) == 3
    assert await h.history.persisted_seq(other) == 0

    found = await find_sent(
        h.history, room, [("alice", "m1"), ("alice", "m3"), ("bob", "m1"), ("alice", "nope")]
    )
    assert found == {("alice", "m1"): messages[0], ("alice", "m3"): messages[2]}
    assert await find_sent(h.history, other, [("alice", "m1")]) == {}
    assert await find_sent(h.history, room, []) == {}
    assert await h.history.read(room, 1, 3) == messages[1:]
    assert await h.history.page(room, None, None, 2) == (messages[1:], True)


# The command


class WorkerProcess:
    """One `hubbub worker` subprocess."""

    def __init__(self, log_path: Path, args: list[str]) -> None:
        self.log_path = log_path
        self.metrics_port = free_port()
        cmd = [sys.executable, "-m", "hubbub", "worker", *args]
        cmd += ["--metrics-port", str(self.metrics_port), "--node-id", "w1"]
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


async def test_kill_9_mid_drain_then_a_restart_stores_everything_exactly_once(
    h: Harness, tmp_path: Path
) -> None:
    rooms = [await h.room(f"crash{i}") for i in range(4)]
    await asyncio.gather(*(h.append(r, 1000) for r in rooms))
    args = ["--database", h.url, "--redis", h.server.url, "--batch", "20", "--keep", "100"]
    args += ["--poll-interval", "0.02", "--log-level", "info"]
    log_path = tmp_path / "worker.log"

    worker = WorkerProcess(log_path, args)
    try:
        await wait_for(lambda: _at_least(h, 400), timeout=30, what="a partial drain")
        worker.kill()
    finally:
        worker.kill()
    partial = await h.count()
    assert 400 <= partial < 4000, worker.log()

    worker = WorkerProcess(log_path, args)
    try:
        await wait_for(lambda: _count_is(h, 4000), timeout=30, what="the complete drain")
        await wait_for(lambda: _settled(h, rooms), what="every stream trimmed")
        exported = worker.metrics()
        assert 'hubbub_build_info{node="w1"' in exported
        # The restarted worker moved exactly what the killed one had not committed.
        assert f"hubbub_worker_persisted_total {float(4000 - partial)}" in exported
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(10) == 0, worker.log()
    finally:
        worker.kill()
    for room in rooms:
        stored = await h.stored(room)
        assert [m.seq for m in stored] == list(range(1, 1001))
        assert sorted(m.id for m in stored) == sorted(f"m{i}" for i in range(1000))
        assert -1 not in await h.ttls(stored)  # including a batch the kill left unsettled
    assert '"msg":"worker stopped"' in worker.log()


async def _at_least(h: Harness, count: int) -> bool:
    return await h.count() >= count


async def _settled(h: Harness, rooms: list[str]) -> bool:
    for room in rooms:
        if await h.client.xlen(stream_key(room)) != 100 or await h.client.exists(moving_key(room)):
            return False
    return True


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="--batch"):
        WorkerSettings(batch=0)
    with pytest.raises(ValueError, match="--keep"):
        WorkerSettings(keep=-1)


def test_the_command_refuses_to_run_without_both_backends(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hubbub", "worker", "--redis", "redis://127.0.0.1:1/0"],
        capture_output=True,
        timeout=30,
        env={**os.environ, "HUBBUB_DATABASE": ""},
    )
    assert result.returncode == 2
    assert b"needs --database" in result.stderr


def test_worker_flags_have_environment_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    from hubbub.ops.cli import build_parser

    monkeypatch.setenv("HUBBUB_BATCH", "7")
    monkeypatch.setenv("HUBBUB_SCAN_INTERVAL", "2.5")
    args = build_parser().parse_args(["worker", "--keep", "3"])
    assert (args.batch, args.scan_interval, args.keep) == (7, 2.5, 3)
    assert (args.idempotency_ttl, args.metrics_port) == (86400, 0)


async def test_a_full_scan_expires_the_presence_of_dead_nodes(h: Harness) -> None:
    # A node that stopped heart-beating (its expiry is in the past) with no node left alive
    # to sweep it: the worker's full scan expires it and says so on the room's channel.
    node = RedisPresence(h.client, "gone", lambda room, frame: None, interval=3600)
    await node.start()
    assert await node.add("lobby", "Alice", "s1")
    (incarnation,) = await h.client.hkeys(NODES_KEY)
    await h.client.hset(NODES_KEY, incarnation, 1)  # expired long ago
    listener = h.server.client()
    pubsub = listener.pubsub()
    await pubsub.ssubscribe(channel("lobby"))
    confirmed = await pubsub.get_message(timeout=5.0)  # listening before anything is swept
    assert confirmed is not None and confirmed["type"] == "ssubscribe"
    before = metric("hubbub_presence_expired_nodes_total")

    await (await h.worker()).run_pass(scan=True)

    assert await node.online("lobby") == []
    assert metric("hubbub_presence_expired_nodes_total") - before == 1
    published = await pubsub.get_message(timeout=5.0)
    assert published is not None, "no offline event was published"
    offline = {"type": "presence", "room": "lobby", "user": "Alice", "status": "offline"}
    assert msgspec.msgpack.decode(published["data"])[2] == offline
    await pubsub.aclose()
    await listener.aclose()
    await node.close()


async def test_entries_above_the_shown_marker_are_not_moved_until_published(h: Harness) -> None:
    # With --redis-replicas, an entry whose WAIT failed sits above the room's marker: it may
    # be missing from the replicas, so PostgreSQL must not get it (a failover would hand
    # its seq to another message) until the publish that follows a successful WAIT.
    room = await h.room("replicated")
    await h.append(room, 3)
    unreplicated = RedisLog(h.client, lambda m: None, wait_replicas=1, wait_timeout_ms=50)
    with pytest.raises(Unavailable, match="replicas"):  # this Redis has no replica
        await unreplicated.append(room, "Alice", "m3", "not on a replica")
    worker = await h.worker()
    await drain(worker)
    assert [m.seq for m in await h.stored(room)] == [1, 2, 3]
    await publish_replicated(h.client, {room: 4}, "PUBLISH")  # as after a successful WAIT
    await drain(worker)
    assert [(m.seq, m.id) for m in await h.stored(room)][-1] == (4, "m3")
