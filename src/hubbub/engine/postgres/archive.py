"""The worker's side of `messages` on PostgreSQL: rooms to look at, and one room at a time,
locked, into which the Redis log's entries are inserted with the seqs they already have."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from hubbub.engine.base import Message
from hubbub.engine.postgres.database import PostgresDatabase, touched
from hubbub.engine.sql import STORED_SEQ, numbered

# Rows of messages that already have their seqs (the worker's batches). A seq that is
# already stored is skipped; a known (room, sender, id) under another seq is an error,
# never silently dropped: it would leave a hole in the room's history.
# A deleted room's messages are stored redacted whatever the batch held (the stream may
# have been read before `RedisLog.redact` rewrote it; `PostgresHistory.redact` takes the
# room's lock, so it runs before or after a batch, never beside it). A room missing from
# `rooms` still fails on its foreign key, as before.
INSERT_MESSAGES = """
INSERT INTO messages (room, seq, client_id, sender_key, sender, body, ts, deleted)
SELECT m.room, m.seq, m.client_id, m.sender_key, m.sender,
       CASE WHEN r.deleted_at IS NULL AND NOT m.deleted THEN m.body ELSE '' END,
       m.ts, r.deleted_at IS NOT NULL OR m.deleted
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::bigint[], $8::boolean[])
     AS m(room, seq, client_id, sender_key, sender, body, ts, deleted)
LEFT JOIN rooms r ON r.name = m.room
ON CONFLICT (room, seq) DO NOTHING
"""

# Rooms in name order from a cursor, each with its highest stored seq: one index probe
# per room (the primary key starts with room), never a scan of all history.
ROOMS_WITH_PERSISTED_SEQ = """
SELECT r.name, COALESCE((SELECT m.seq FROM messages m WHERE m.room = r.name
                         ORDER BY m.seq DESC LIMIT 1), 0)
FROM rooms r WHERE r.name > $1 ORDER BY r.name LIMIT $2
"""

# The namespace of the worker's per-room advisory locks (the two-key form), so they
# cannot collide with other advisory locks in the same database.
ROOM_LOCK_NAMESPACE = 0x68756262  # "hubb"


def room_lock_key(room: str) -> int:
    """A room's advisory lock key: a stable 32-bit hash of its name.

    Two rooms may share a key; then they only take turns, which is harmless."""
    digest = hashlib.blake2b(room.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


async def insert_messages(conn: asyncpg.pool.PoolConnectionProxy, messages: list[Message]) -> int:
    """Insert messages that already have their seqs (see INSERT_MESSAGES); rows inserted."""
    if not messages:
        return 0
    columns = (
        [m.room for m in messages],
        [m.seq for m in messages],
        [m.id for m in messages],
        [m.sender.lower() for m in messages],
        [m.sender for m in messages],
        [m.body for m in messages],
        [m.ts for m in messages],
        [m.deleted for m in messages],
    )
    return touched(await conn.execute(INSERT_MESSAGES, *columns))


@dataclass(slots=True)
class RoomClaim:
    """One room held by one worker in one open transaction (see `PostgresArchive.claim`)."""

    conn: asyncpg.pool.PoolConnectionProxy
    room: str
    persisted: int  # the room's highest stored seq when the claim began

    async def insert(self, messages: list[Message]) -> int:
        """Insert a batch in the claim's transaction; it commits when the claim ends."""
        return await insert_messages(self.conn, messages)


class PostgresArchive:
    """The worker's side of `messages`: rooms to look at, and one room at a time, locked.

    Several workers may run: a room's batch is moved inside a transaction that holds the
    room's advisory lock (`pg_try_advisory_xact_lock`), so one worker moves a room at a
    time and the others skip it, and the cursor (the highest stored seq) is read and
    advanced in that same transaction."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    @contextlib.asynccontextmanager
    async def claim(self, room: str) -> AsyncIterator[RoomClaim | None]:
        """A transaction holding the room's lock, or None if another worker holds it.

        The transaction commits when the block ends normally, and rolls back on an error."""
        async with self.db.connection() as conn, conn.transaction():
            locked = await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock($1, $2)", ROOM_LOCK_NAMESPACE, room_lock_key(room)
            )
            if not locked:
                yield None
                return
            persisted = int(await conn.fetchval(numbered(STORED_SEQ), room))
            yield RoomClaim(conn, room, persisted)

    async def rooms(self, after: str, limit: int) -> list[tuple[str, int]]:
        """Up to `limit` rooms named after `after`, in name order, with their highest seq."""
        rows = await self.db.fetch(ROOMS_WITH_PERSISTED_SEQ, after, limit)
        return [(str(row[0]), int(row[1])) for row in rows]
