"""Engines chosen by URL at start-up.

- `sqlite:///path` (the default): SQLite, in-process fan-out and presence; one node.
- `postgresql://...` alone: PostgreSQL for everything durable, in-process fan-out; one node.
  (Both count failed logins in process memory: `MemoryCounters`.)
- `postgresql://...` with `--redis redis://...`: many nodes. PostgreSQL holds users, rooms
  and all history; Redis the recent log, fan-out, presence, idempotency records and the
  failed-login counters (`RedisCounters`, one limit for every node); the
  worker (`hubbub worker`) moves the log into PostgreSQL. `--redis
  redis+sentinel://host:26379[,...]/MASTER` runs the same on the primary Redis Sentinel
  names (following its failovers), `--redis redis+cluster://host:port[,host:port...]` on a
  Redis Cluster (`hubbub.engine.redis.client`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hubbub.engine.base import Bus, Counters, Engine, Log, Presence, Store

if TYPE_CHECKING:  # asyncpg is imported only by the engines that use it
    from hubbub.engine.postgres.database import PostgresDatabase
    from hubbub.engine.sql import Database


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """What the engines take from the node's configuration (`server.config.Config`)."""

    database_url: str
    redis: str | None = None
    redis_replicas: int = 0
    node_id: str = "hubbub"
    heartbeat: float = 15.0
    canary_interval: float = 5.0
    database_read: str | None = None  # a streaming replica's URL, for history reads


class EmbeddedEngine:
    """SQLite for everything durable, in-process fan-out and presence: nothing to install."""

    def __init__(self, config: EngineSettings) -> None:
        from hubbub.engine.memory import MemoryBus, MemoryCounters, MemoryPresence
        from hubbub.engine.sqlite.database import SqliteDatabase
        from hubbub.engine.sqlite.store import SqliteLog, SqliteStore

        url = config.database_url
        self.db = SqliteDatabase(sqlite_path(url))
        memory_bus = MemoryBus()
        self.bus: Bus = memory_bus
        self.presence: Presence = MemoryPresence()
        self.store: Store = SqliteStore(self.db)
        self.log: Log = SqliteLog(self.db, memory_bus.deliver)
        self.counters: Counters = MemoryCounters()

    async def start(self) -> None:
        self.db.open()

    def problem(self) -> str | None:
        return None  # one process: nothing to be cut off from

    async def close(self) -> None:
        await self.db.close()


class PostgresEngine:
    """PostgreSQL for everything durable, in-process fan-out and presence: a single node."""

    def __init__(self, config: EngineSettings) -> None:
        # asyncpg is imported here, not at package import: only this engine needs it.
        from hubbub.engine.memory import MemoryBus, MemoryCounters, MemoryPresence
        from hubbub.engine.postgres.database import PostgresDatabase
        from hubbub.engine.postgres.log import PostgresLog
        from hubbub.engine.postgres.store import PostgresStore

        self.db = PostgresDatabase(config.database_url, watch=True)
        self.replica = replica_of(config)
        memory_bus = MemoryBus()
        self.bus: Bus = memory_bus
        self.presence: Presence = MemoryPresence()
        self.store: Store = PostgresStore(self.db)
        log = PostgresLog(self.db, memory_bus.deliver)
        log.reads = replica_reads(self.db, self.replica)
        self.log: Log = log
        self.counters: Counters = MemoryCounters()

    async def start(self) -> None:
        await self.db.open()
        if self.replica is not None:
            await self.replica.open()

    def problem(self) -> str | None:
        return self.db.problem()

    async def close(self) -> None:
        try:
            if self.replica is not None:
                await self.replica.close()
        finally:
            await self.db.close()


class RedisEngine:
    """Many symmetric nodes on Redis and PostgreSQL (see the module docstring)."""

    def __init__(self, config: EngineSettings) -> None:
        from hubbub.engine.distributed import DistributedLog
        from hubbub.engine.postgres.database import PostgresDatabase
        from hubbub.engine.postgres.history import PostgresHistory
        from hubbub.engine.postgres.store import PostgresStore
        from hubbub.engine.redis.bus import RedisBus
        from hubbub.engine.redis.client import connect
        from hubbub.engine.redis.counters import RedisCounters
        from hubbub.engine.redis.log import RedisLog
        from hubbub.engine.redis.presence import RedisPresence

        assert config.redis is not None
        self.db = PostgresDatabase(config.database_url, watch=True)
        # Commands: a socket timeout longer than WAIT's, so a hung Redis fails the call.
        self.client = connect(config.redis, socket_timeout=5.0)
        # Pub/sub blocks for as long as the node lives: no socket timeout there.
        self.subscriber = connect(config.redis)
        self.replica = replica_of(config)
        history = PostgresHistory(self.db)
        history.reads = replica_reads(self.db, self.replica)
        self.recent = RedisLog(
            self.client,
            lambda message: None,  # the script publishes; the bus delivers
            seed=history.persisted_seq,
            sharded_pubsub=True,
            wait_replicas=config.redis_replicas,
        )
        self.log: Log = DistributedLog(self.recent, history)
        self.store: Store = PostgresStore(self.db)
        self.redis_bus = RedisBus(
            self.subscriber,
            self.recent.send,
            self.log.read,
            node_id=config.node_id,
            canary_interval=config.canary_interval,
        )
        self.bus: Bus = self.redis_bus
        self.redis_presence = RedisPresence(
            self.client, config.node_id, self.redis_bus.publish_event, config.heartbeat
        )
        self.presence: Presence = self.redis_presence
        self.counters: Counters = RedisCounters(self.client)

    async def start(self) -> None:
        await self.db.open()
        if self.replica is not None:
            await self.replica.open()
        await self.redis_bus.start()
        await self.redis_presence.start()

    def problem(self) -> str | None:
        return self.redis_bus.delivery_problem() or self.db.problem()

    async def close(self) -> None:
        try:
            await self.redis_presence.close()
        finally:
            await self.redis_bus.close()
            await self.recent.close()
            await self.client.aclose()
            await self.subscriber.aclose()
            if self.replica is not None:
                await self.replica.close()
            await self.db.close()


def replica_of(config: EngineSettings) -> PostgresDatabase | None:
    """The `--database-read` pool: not migrated (a replica is read-only), and empty until a
    read needs it, so a node starts while its replica is down (reads go to the primary)."""
    from hubbub.engine.postgres.database import PostgresDatabase

    if config.database_read is None:
        return None
    return PostgresDatabase(config.database_read, min_size=0, max_size=10, migrate=False)


def replica_reads(primary: PostgresDatabase, replica: PostgresDatabase | None) -> Database | None:
    from hubbub.engine.postgres.replica import ReplicaReads

    return None if replica is None else ReplicaReads(primary, replica)


def sqlite_path(url: str) -> Path:
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"not a sqlite URL: {url!r}")
    return Path(url[len(prefix) :])


def open_engine(config: EngineSettings) -> Engine:
    """Build the engine the configured URLs name; unknown schemes are rejected."""
    scheme = config.database_url.split(":", 1)[0]
    is_postgres = scheme.split("+", 1)[0] in ("postgresql", "postgres")
    if is_postgres:
        from hubbub.engine.postgres.urls import check

        check(config.database_url)  # a malformed host list fails at start, in sentences
        if config.database_read is not None:
            check(config.database_read)
    elif config.database_read is not None:
        raise ValueError(
            "--database-read needs --database postgresql://...: it names a streaming "
            "replica of that PostgreSQL database"
        )
    if config.redis:
        from hubbub.engine.redis.client import check_url

        check_url(config.redis)
        if not is_postgres:
            raise ValueError("--redis needs --database postgresql://... (the shared history)")
        return RedisEngine(config)
    if scheme == "sqlite":
        return EmbeddedEngine(config)
    if is_postgres:
        return PostgresEngine(config)
    raise ValueError(f"unsupported database URL scheme {scheme!r} (expected sqlite or postgresql)")


__all__ = ["Bus", "Counters", "Engine", "Log", "Presence", "Store", "open_engine"]
