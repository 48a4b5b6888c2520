"""The engines the contract suite runs against, each behind one small test handle.

Add an engine by writing a class with the `EngineUnderTest` shape and naming it in
`ENGINES`; every test that takes the `engine` fixture then runs against it too.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from hubbub.engine.base import Log, Message, Room, Store
from hubbub.engine.postgres.archive import insert_messages
from hubbub.engine.postgres.database import PostgresDatabase
from hubbub.engine.postgres.history import PostgresHistory
from hubbub.engine.postgres.log import PostgresLog
from hubbub.engine.postgres.store import PostgresStore
from hubbub.engine.sqlite.database import SqliteDatabase
from hubbub.engine.sqlite.store import SqliteLog, SqliteStore
from support.pgutil import POSTGRES


class EngineUnderTest(Protocol):
    """A Store and a Log on one backend, with what the contract suite needs to observe."""

    store: Store
    log: Log
    published: list[Message]  # every message handed to the Log's on-commit hook, in order

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def restart(self) -> None:
        """Close, then open fresh Store and Log objects on the same durable data."""
        ...

    def write_transactions(self) -> int | None:
        """Durable write transactions so far, or None where that is not observable."""
        ...


class SqliteEngine:
    """The embedded engine: a SQLite file written by one group-committing thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.published: list[Message] = []

    async def start(self) -> None:
        self.db = SqliteDatabase(self.path)
        self.db.open()
        self.store: Store = SqliteStore(self.db)
        self.log: Log = SqliteLog(self.db, on_commit=self.published.append)

    async def close(self) -> None:
        await self.db.close()

    async def restart(self) -> None:
        await self.close()
        await self.start()

    def write_transactions(self) -> int | None:
        return self.db.commits


class PostgresEngine:
    """The system of record of the distributed engine: PostgreSQL through an asyncpg pool."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.published: list[Message] = []

    async def start(self) -> None:
        # The session's database is migrated once when created (see support/pgutil.py).
        self.db = PostgresDatabase(self.url, migrate=False)
        await self.db.open()
        self.store: Store = PostgresStore(self.db)
        self.log: Log = PostgresLog(self.db, on_commit=self.published.append)

    async def close(self) -> None:
        await self.db.close()

    async def restart(self) -> None:
        await self.close()
        await self.start()

    def write_transactions(self) -> int | None:
        return None  # one transaction per append; PostgreSQL groups the WAL flushes itself


ENGINES: dict[str, Callable[[Path], EngineUnderTest]] = {
    "sqlite": lambda tmp: SqliteEngine(tmp / "db.sqlite"),
    "postgres": lambda tmp: PostgresEngine(POSTGRES.empty_url()),
}


async def store_messages(db: PostgresDatabase, messages: list[Message]) -> int:
    """Insert messages that already have their seqs, as the worker does; rows inserted."""
    async with db.connection() as conn:
        return await insert_messages(conn, messages)


async def find_sent(
    history: PostgresHistory, room: str, pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], Message]:
    """`PostgresHistory.find_sent_in_rooms` for (sender key, client id) pairs of one room."""
    found = await history.find_sent_in_rooms([(room, sender, msg_id) for sender, msg_id in pairs])
    return {(sender, msg_id): message for (_, sender, msg_id), message in found.items()}


async def user(engine: EngineUnderTest, name: str) -> None:
    """The user `name` exists (with a placeholder hash)."""
    if await engine.store.get_user(name) is None:
        await engine.store.create_user(name, f"hash-of-{name}", 1)


async def room(
    engine: EngineUnderTest, name: str = "lobby", owner: str = "alice", private: bool = False
) -> Room:
    """A new room `name` owned by `owner` (created as a user if need be)."""
    await user(engine, owner)
    created = Room(name=name, topic=f"about {name}", private=private, owner=owner, created_at=7)
    await engine.store.create_room(created)
    return created


class BusRecorder:
    """A bus listener that writes down everything it is told, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def on_message(self, message: Message) -> None:
        self.seen.append(("message", message))

    def on_event(
        self, room: str, frame: dict[str, Any], skip_user: str | None, skip_connection: str | None
    ) -> None:
        self.seen.append(("event", room, frame, skip_user, skip_connection))

    def on_removed(self, room: str, user: str, reason: str) -> None:
        self.seen.append(("removed", room, user, reason))

    def on_room_changed(self, room: str, change: str) -> None:
        self.seen.append(("room_changed", room, change))

    def on_token_revoked(self, token_hash: str) -> None:
        self.seen.append(("revoked", token_hash))


def log_contract_tests() -> dict[str, Callable[..., Any]]:
    """The contract suite's tests that use only `engine.log`: for a module whose engine is a
    Log on another backend (it puts them in its globals to collect them)."""
    import inspect

    import test_engine_contract as contract

    def log_only(test: Callable[..., Any]) -> bool:
        source = inspect.getsource(test)
        return "engine.log." in source and "engine.store." not in source

    return {
        name: test
        for name, test in sorted(vars(contract).items())
        if name.startswith("test_") and callable(test) and log_only(test)
    }
