"""The engine on a Redis Sentinel group (`redis+sentinel://`): URLs, WAIT through the primary,
refusals for want of replicas, and a primary demoted under the engine's open connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from support.redis_sentinel import SentinelGroup, replication

from hubbub.engine.base import Message
from hubbub.engine.redis.bus import RedisBus
from hubbub.engine.redis.client import connect
from hubbub.engine.redis.log import RedisLog
from hubbub.engine.redis.schema import stream_key
from hubbub.engine.redis.urls import SentinelTarget, check_url, sentinel_target
from hubbub.protocol.errors import Unavailable

# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis+sentinel://h1/main", SentinelTarget([("h1", 26379)], "main")),
        (
            "redis+sentinel://h1:26380,h2,10.0.0.3:26381/my%20master?db=3",
            SentinelTarget([("h1", 26380), ("h2", 26379), ("10.0.0.3", 26381)], "my master", 3),
        ),
        (
            "redis+sentinel://app:p%40ss@h1:26379,h2:26379/main",
            SentinelTarget([("h1", 26379), ("h2", 26379)], "main", 0, "app", "p@ss"),
        ),
        (
            "redis+sentinel://:secret@h1/main",
            SentinelTarget([("h1", 26379)], "main", 0, None, "secret"),
        ),
    ],
)
def test_sentinel_urls_name_the_sentinels_the_master_and_the_servers_credentials(
    url: str, target: SentinelTarget
) -> None:
    assert sentinel_target(url) == target
    check_url(url)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://h1:26379", "must name the master"),
        ("redis+sentinel://h1:26379/", "must name the master"),
        ("redis+sentinel://h1:26379/a/b", "as one path segment"),
        ("redis+sentinel://h1:x/main", "expected host or host:port"),
        ("redis+sentinel://h1:26379,/main", "got ''"),
        ("redis+sentinel://h1/main?db=one", "must be a database number"),
        ("redis+sentinel://h1/main?database=1", "takes only db"),
        ("sentinel://h1/main", "unsupported Redis URL"),
    ],
)
def test_malformed_sentinel_urls_are_refused_with_the_rule_and_the_form(
    url: str, says: str
) -> None:
    with pytest.raises(ValueError, match=says) as refused:
        check_url(url)
    assert repr(url) in str(refused.value)  # the message quotes what was given


def test_a_refused_url_never_shows_its_password() -> None:
    with pytest.raises(ValueError) as refused:
        check_url("redis+sentinel://app:hunter2@h1:26379")
    assert "hunter2" not in str(refused.value)
    assert "app:***@h1:26379" in str(refused.value)


# --- a real group ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A primary, two replicas and three sentinels for the module (no persistence: these
    tests are about routing, not about fsync)."""
    running = SentinelGroup(tmp_path_factory.mktemp("sentinel"), durable=False)
    running.start()
    yield running
    running.stop()


@pytest.fixture
async def log(group: SentinelGroup) -> AsyncIterator[RedisLog]:
    group.wait_settled()
    client = connect(group.url, socket_timeout=5.0)
    made = RedisLog(client, lambda message: None, sharded_pubsub=True, wait_replicas=1)
    yield made
    await made.close()
    await client.aclose()


async def until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


async def test_appends_go_to_the_primary_the_sentinels_name_and_wait_counts_its_replicas(
    group: SentinelGroup, log: RedisLog
) -> None:
    appended = await log.append("routing", "alice", "m1", "hello")
    assert (appended.message.seq, appended.created) == (1, True)
    primary = group.primary()
    assert primary.query("XLEN", stream_key("routing")) == 1
    everyone = RedisLog(log.client, lambda message: None, wait_replicas=2)
    await everyone.append("routing", "alice", "m2", "to every replica")  # WAIT 2 is met
    for replica in (s for s in group.servers if s is not primary):
        assert replica.query("XLEN", stream_key("routing")) == 2


async def test_a_primary_refusing_writes_for_want_of_replicas_is_unavailable(
    group: SentinelGroup, log: RedisLog
) -> None:
    primary = group.primary()
    primary.query("CONFIG", "SET", "min-replicas-to-write", "3")  # it has two
    try:
        with pytest.raises(Unavailable, match="NOREPLICAS"):
            await log.append("refused", "alice", "m1", "no")
    finally:
        primary.query("CONFIG", "SET", "min-replicas-to-write", "0")
    assert (await log.append("refused", "alice", "m1", "now")).message.seq == 1


async def test_a_demoted_primary_answering_readonly_sends_the_engine_to_the_new_one(
    group: SentinelGroup, log: RedisLog
) -> None:
    """The old primary comes back as a replica under the engine's open connections: the
    append that meets READONLY is unavailable, the next reaches the promoted replica, and
    the bus (its pub/sub connection cut, as Sentinel's reconfiguration does) resubscribes
    through the sentinels and fills what it missed from the log."""
    subscriber = connect(group.url)
    bus = RedisBus(subscriber, log.send, log.read, subscribe_timeout=10.0, idle_ping=0.5)
    seen: list[Message] = []
    bus.attach(_Listener(seen))
    await bus.start()
    try:
        await bus.subscribe("demoted")
        await log.append("demoted", "alice", "m1", "before")
        await until(lambda: [m.seq for m in seen] == [1], "m1 delivered")
        old = group.primary()
        old.query("WAIT", 2, 5000)  # whichever replica Sentinel picks holds m1
        # Several idle connections to `old` in the pool: one READONLY must drop them all.
        await asyncio.gather(*(log.client.blpop(["idle"], timeout=0.05) for _ in range(4)))

        new = group.failover()  # the sentinels now name `new`; `old` still thinks it leads
        assert old.query("REPLICAOF", "127.0.0.1", str(new.port)) == "OK"
        group.wait_replica_of(old, new, timeout=20.0)
        # The log's pooled connection is still on `old`: the write meets READONLY.
        with pytest.raises(Unavailable) as refused:
            await log.append("demoted", "alice", "m2", "after")
        assert "now a slave" in str(refused.value)  # redis-py's word for READONLY here
        # That dropped every idle connection to `old`: concurrent writes all reach `new`.
        await asyncio.gather(*(log.client.set(f"after{i}", i) for i in range(5)))
        resent = await log.append("demoted", "alice", "m2", "after")  # a new connection
        assert (resent.message.seq, resent.created) == (2, True)
        assert new.query("XLEN", stream_key("demoted")) == 2
        assert replication(new)["role"] == "master"

        # A pub/sub connection on a replica hears nothing published on the primary: Sentinel
        # cuts them when it reconfigures the old primary, and so does this test.
        old.query("CLIENT", "KILL", "TYPE", "pubsub")
        await until(lambda: [m.seq for m in seen] == [1, 2], "m2 filled from the log")
        await until(bus.connected.is_set, "the bus to resubscribe")
        await log.append("demoted", "alice", "m3", "live again")
        await until(lambda: [m.seq for m in seen] == [1, 2, 3], "m3 delivered live")
        assert [m.id for m in seen] == ["m1", "m2", "m3"]
    finally:
        await bus.close()
        await subscriber.aclose()


class _Listener:
    """A BusListener that keeps the messages."""

    def __init__(self, seen: list[Message]) -> None:
        self.seen = seen

    def on_message(self, message: Message) -> None:
        self.seen.append(message)

    def on_event(self, *args: object) -> None:
        pass

    def on_removed(self, *args: object) -> None:
        pass

    def on_room_changed(self, *args: object) -> None:
        pass

    def on_token_revoked(self, *args: object) -> None:
        pass


async def test_after_a_planned_failover_one_refused_append_sends_the_log_to_the_new_primary(
    group: SentinelGroup, log: RedisLog
) -> None:
    """`SENTINEL FAILOVER` leaves the old primary running, and a primary for some seconds
    more, with the log's connection still open to it; its replicas follow the new one, so
    WAIT falls short there. That append is refused, and the next asks the sentinels."""
    await log.append("planned", "alice", "m1", "before")
    group.primary().query("WAIT", 2, 5000)
    old = group.primary()
    new = group.failover()
    assert replication(old)["role"] == "master"  # not reconfigured yet
    outcomes = []
    for _ in range(3):
        try:
            appended = await log.append("planned", "alice", "m2", "after")
        except Unavailable as exc:
            outcomes.append(str(exc))
            continue
        outcomes.append(appended.message.seq)
        break
    assert outcomes[-1] == 2 and len(outcomes) <= 2, outcomes
    assert new.query("XRANGE", stream_key("planned"), "-", "+")[-1][1]["id"] == "m2"


async def test_the_db_of_a_sentinel_url_is_the_database_the_engine_writes(
    group: SentinelGroup,
) -> None:
    group.wait_settled()
    client = connect(f"{group.url}?db=3", socket_timeout=5.0)
    numbered = RedisLog(client, lambda message: None)
    try:
        await numbered.append("numbered", "alice", "m1", "hi")
    finally:
        await numbered.close()
        await client.aclose()
    primary = group.primary()
    assert primary.query("EXISTS", stream_key("numbered")) == 0  # not in db 0
    assert primary.query("INFO", "keyspace").get("db3", {}).get("keys", 0) >= 1
