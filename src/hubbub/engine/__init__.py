"""Engines chosen by URL at start-up: `sqlite:///path` or `postgresql://...`, each with the
in-process bus and presence (one node; the Redis bus for many nodes is not built yet)."""

from __future__ import annotations

from pathlib import Path

from hubbub.config import Config
from hubbub.engine.base import Bus, Engine, Log, Presence, Store


class EmbeddedEngine:
    """SQLite for everything durable, in-process fan-out and presence: nothing to install."""

    def __init__(self, config: Config) -> None:
        from hubbub.engine.memory import MemoryBus, MemoryPresence
        from hubbub.engine.sqlite import SqliteLog, SqliteStore
        from hubbub.engine.sqlite_db import SqliteDatabase

        url = config.database_url
        self.db = SqliteDatabase(sqlite_path(url))
        memory_bus = MemoryBus()
        self.bus: Bus = memory_bus
        self.presence: Presence = MemoryPresence()
        self.store: Store = SqliteStore(self.db)
        self.log: Log = SqliteLog(self.db, memory_bus.publish_message)

    async def start(self) -> None:
        self.db.open()

    async def close(self) -> None:
        await self.db.close()


class PostgresEngine:
    """PostgreSQL for everything durable, in-process fan-out and presence: a single node."""

    def __init__(self, config: Config) -> None:
        # asyncpg is imported here, not at package import: only this engine needs it.
        from hubbub.engine.memory import MemoryBus, MemoryPresence
        from hubbub.engine.postgres import PostgresLog, PostgresStore
        from hubbub.engine.postgres_db import PostgresDatabase

        self.db = PostgresDatabase(config.database_url)
        memory_bus = MemoryBus()
        self.bus: Bus = memory_bus
        self.presence: Presence = MemoryPresence()
        self.store: Store = PostgresStore(self.db)
        self.log: Log = PostgresLog(self.db, memory_bus.publish_message)

    async def start(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()


def sqlite_path(url: str) -> Path:
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ValueError(f"not a sqlite URL: {url!r}")
    return Path(url[len(prefix) :])


def open_engine(config: Config) -> Engine:
    """Build the engine the configured URLs name; unknown schemes are rejected."""
    if config.redis:
        raise ValueError("--redis is not supported by this build yet; run without it")
    scheme = config.database_url.split(":", 1)[0]
    if scheme == "sqlite":
        return EmbeddedEngine(config)
    if scheme.split("+", 1)[0] in ("postgresql", "postgres"):
        return PostgresEngine(config)
    raise ValueError(f"unsupported database URL scheme {scheme!r} (expected sqlite or postgresql)")


__all__ = ["Bus", "Engine", "Log", "Presence", "Store", "open_engine"]
