"""Message history on PostgreSQL as the Redis engine reads it (`engine.distributed.History`).

Read-only: the Redis log appends, and the worker (`postgres.archive`) writes what it
appended into `messages`.
"""

from __future__ import annotations

from hubbub.engine import sql, sqlreads
from hubbub.engine.base import Message
from hubbub.engine.postgres.archive import ROOM_LOCK_NAMESPACE, room_lock_key
from hubbub.engine.postgres.database import PostgresAdapter, PostgresDatabase

# The stored messages of (room, sender key, client id) keys, in one query.
FIND_SENT = f"""
SELECT {", ".join("m." + column for column in sql.ENTRY_COLUMNS.split(", "))}, m.sender_key
FROM messages m
JOIN unnest($1::text[], $2::text[], $3::text[]) AS p(room, sender_key, client_id)
  ON m.room = p.room AND m.sender_key = p.sender_key AND m.client_id = p.client_id
"""


class PostgresHistory(sqlreads.SqlHistory):
    """Every room's history in `messages`, written by the worker and read by every node."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db
        self.sql = PostgresAdapter(db)

    async def redact(self, room: str) -> None:
        """Redact the room's stored messages, holding the room's worker lock: a batch the
        worker is moving commits first (then this redacts it), or comes after (then
        `INSERT_MESSAGES` stores it redacted)."""
        async with self.db.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1, $2)", ROOM_LOCK_NAMESPACE, room_lock_key(room)
            )
            await conn.execute(sql.numbered(sql.REDACT_MESSAGES), True, room)

    async def purge(self, room: str) -> None:
        await self.sql.transaction(*((statement, (room,)) for statement in sql.PURGE_LOG))

    async def persisted_seq(self, room: str) -> int:
        """The room's highest seq in `messages` (0 if none): the seed of a Redis counter
        that went missing (seqs then continue after history)."""
        row = await self.sql.one(sql.STORED_SEQ, room)
        return int(row[0]) if row else 0

    async def find_sent_in_rooms(
        self, keys: list[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], Message]:
        """The stored messages of (room, sender key, client id) keys of any rooms.

        Sender keys are lower-cased names. A Redis idempotency record lives only for a while
        after its message reached PostgreSQL; the unique index here remembers it for ever."""
        if not keys:
            return {}
        rooms, senders, ids = (list(column) for column in zip(*keys, strict=True))
        rows = await self.db.fetch(FIND_SENT, rooms, senders, ids)
        return {(row[0], row[18], row[2]): sql.message(row) for row in rows}
