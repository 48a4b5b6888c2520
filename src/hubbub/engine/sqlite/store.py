"""The embedded store and message log on SQLite (see `sqlite.database` for the threading).

The store is `engine.sql.SqlStore` over `SqliteAdapter`; the log's append is SQLite's own
(a job of the writer's group commit), its reads are `engine.sql`'s.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from hubbub.engine import sql, sqlreads, updates
from hubbub.engine.base import Appended, Message, OnCommit, replayed
from hubbub.engine.entry import Draft, Kind
from hubbub.engine.sql import Row, SqlStore
from hubbub.engine.sqlite.database import SqliteDatabase


class SqliteAdapter:
    """`engine.sql.Database` on SQLite: reads in the reader threads, writes group-committed.

    A lone writing statement runs without a savepoint of its own: SQLite undoes a failed
    statement by itself (see `SqliteDatabase.write`)."""

    duplicate: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def one(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self.db.read(lambda c: c.execute(sql, args).fetchone())
        return row

    async def all(self, sql: str, *args: Any) -> Sequence[Row]:
        rows: Sequence[Row] = await self.db.read(lambda c: c.execute(sql, args).fetchall())
        return rows

    async def run(self, sql: str, *args: Any) -> int:
        return await self.db.write(lambda c: c.execute(sql, args).rowcount, savepoint=False)

    async def returning(self, sql: str, *args: Any) -> Sequence[Row]:
        rows: Sequence[Row] = await self.db.write(
            lambda c: c.execute(sql, args).fetchall(), savepoint=False
        )
        return rows

    async def transaction(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        def run(c: sqlite3.Connection) -> None:
            for statement, args in statements:
                c.execute(statement, args)

        await self.db.write(run)


class SqliteStore(SqlStore):
    """Users, tokens, rooms, memberships and bans in SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(SqliteAdapter(db))
        self.db = db


INSERT_MESSAGE = (
    "INSERT INTO messages (room, seq, client_id, sender_key, sender, body, ts) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (room, sender_key, client_id) DO NOTHING"
)


class SqliteLog(sqlreads.SqlHistory):
    """Per-room gapless logs in the `messages` table; appends are group-committed."""

    def __init__(
        self, db: SqliteDatabase, on_commit: OnCommit, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.sql = SqliteAdapter(db)
        self.on_commit = on_commit
        self.clock = clock
        self._last: dict[str, int] = {}  # kept by the write jobs (one group at a time)
        db.on_rollback.append(self._last.clear)

    def _last_seq_locked(self, c: sqlite3.Connection, room: str) -> int:
        last = self._last.get(room)
        if last is None:
            last = int(c.execute(sql.STORED_SEQ, (room,)).fetchone()[0])
            self._last[room] = last
        return last

    async def append(self, room: str, sender: str, msg_id: str, body: str) -> Appended:
        sender_key = sender.lower()

        def run(c: sqlite3.Connection) -> Appended:
            # One statement in the common case: the idempotency index turns a repeated id
            # into an ignored insert, and only then is the stored message looked up. A
            # failing INSERT undoes itself, so the job needs no savepoint of its own.
            seq = self._last_seq_locked(c, room) + 1
            ts = int(self.clock() * 1000)
            row = (room, seq, msg_id, sender_key, sender, body, ts)
            if c.execute(INSERT_MESSAGE, row).rowcount:
                self._last[room] = seq
                return Appended(Message(room, seq, msg_id, sender, body, ts), created=True)
            existing = c.execute(sql.SENT_MESSAGE, (room, sender_key, msg_id)).fetchone()
            return replayed(sql.message(existing), body)

        return await self.db.write(run, self._published, savepoint=False)

    async def append_entry(self, room: str, sender: str, msg_id: str, draft: Draft) -> Appended:
        sender_key = sender.lower()

        def run(c: sqlite3.Connection) -> Appended:
            # The writer runs one job at a time: nothing of the room comes between the
            # check and the write. A refused draft raises before writing anything.
            existing = c.execute(sql.SENT_MESSAGE, (room, sender_key, msg_id)).fetchone()
            if existing is not None:
                return replayed(sql.message(existing), draft)
            reads = updates.facts(room, sender_key, draft)
            rows = [c.execute(statement, args).fetchone() for statement, args in reads]
            target = updates.check(room, sender_key, draft, rows)
            seq = self._last_seq_locked(c, room) + 1
            ts = int(self.clock() * 1000)
            c.execute(updates.INSERT_ENTRY, updates.entry_row(room, seq, msg_id, sender, ts, draft))
            for statement, args in updates.effects(room, seq, sender, ts, draft):
                c.execute(statement, args)
            if draft.kind == Kind.DELETE:
                self.db.scrub_after_commit()
            self._last[room] = seq
            entry = updates.stored(room, seq, msg_id, sender, ts, draft)
            sent_to = target.sender if target is not None else None
            return Appended(entry, created=True, target_sender=sent_to)

        return await self.db.write(run, self._published)

    def _published(self, appended: Appended) -> None:
        if appended.created:
            self.on_commit(appended.message)

    async def redact(self, room: str) -> None:
        # A write job: appends queued before it are redacted too.
        def run(c: sqlite3.Connection) -> None:
            c.execute(sql.REDACT_MESSAGES, (True, room))
            c.execute(sql.REDACT_REACTIONS, (room,))
            self.db.scrub_after_commit()

        await self.db.write(run)

    async def purge(self, room: str) -> None:
        def run(c: sqlite3.Connection) -> None:
            for statement in sql.PURGE_LOG:
                c.execute(statement, (room,))
            self._last.pop(room, None)

        await self.db.write(run)

    async def last_seq(self, room: str) -> int:
        # Asked through the writer queue, so the answer resolves after the publication of
        # every message up to it (see Log.last_seq): a join can trust it as a fan-out cut.
        return await self.db.write(lambda c: self._last_seq_locked(c, room))
