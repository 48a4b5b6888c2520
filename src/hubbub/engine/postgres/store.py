"""The store and message log on PostgreSQL (asyncpg): the system of record of many nodes.

Every SQL statement for PostgreSQL lives here (`postgres_db` holds the pool). Seqs
come from one counter row per room (`room_seqs`), incremented in the transaction that
inserts the message: the row lock, held until commit, serializes a room's appends
across every connection of every node, so seqs are gapless and commit in seq order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from hubbub.engine.base import (
    Appended,
    LoginSession,
    Message,
    OnCommit,
    Role,
    Room,
    User,
    replayed,
)
from hubbub.engine.postgres.database import PostgresDatabase, asyncpg_dsn
from hubbub.protocol.errors import Conflict

log = logging.getLogger(__name__)

__all__ = [
    "PostgresArchive",
    "PostgresDatabase",
    "PostgresLog",
    "PostgresStore",
    "RoomClaim",
    "asyncpg_dsn",
]


def _count(status: str) -> int:
    """Rows touched, from a command status such as `INSERT 0 1` or `DELETE 3`."""
    return int(status.rsplit(" ", 1)[-1])


ROOM_SELECT = (
    "SELECT r.name, r.topic, r.private, u.name, r.created_at FROM rooms r "
    "JOIN users u ON u.key = r.owner_key"
)


SESSION_SELECT = (
    "SELECT t.id, t.token_hash, u.name, t.created_at, t.last_used_at, t.expires_at, "
    "t.user_agent, t.address FROM tokens t JOIN users u ON u.key = t.user_key"
)


def _room(row: asyncpg.Record) -> Room:
    return Room(name=row[0], topic=row[1], private=row[2], owner=row[3], created_at=row[4])


def _session(row: asyncpg.Record) -> LoginSession:
    return LoginSession(
        id=row[0],
        token_hash=row[1],
        user=row[2],
        created_at=row[3],
        last_used_at=row[4],
        expires_at=row[5],
        user_agent=row[6],
        address=row[7],
    )


class PostgresStore:
    """Users, tokens, rooms, memberships and bans in PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def create_user(self, name: str, password_hash: str, now: int) -> User:
        try:
            await self.db.execute(
                "INSERT INTO users (key, name, password_hash, created_at) VALUES ($1, $2, $3, $4)",
                name.lower(),
                name,
                password_hash,
                now,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict("that username is taken") from None
        return User(name, password_hash)

    async def get_user(self, name: str) -> User | None:
        row = await self.db.fetchrow(
            "SELECT name, password_hash FROM users WHERE key = $1", name.lower()
        )
        return User(row[0], row[1]) if row else None

    async def set_password_hash(self, name: str, password_hash: str) -> None:
        await self.db.execute(
            "UPDATE users SET password_hash = $1 WHERE key = $2", password_hash, name.lower()
        )

    async def create_token(
        self,
        token_hash: str,
        user: str,
        now: int,
        expires_at: int,
        *,
        session_id: str,
        user_agent: str = "",
        address: str = "",
    ) -> None:
        async with self.db.connection() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM tokens WHERE user_key = $1 AND expires_at <= $2", user.lower(), now
            )
            await conn.execute(
                "INSERT INTO tokens (token_hash, user_key, created_at, expires_at, id, "
                "last_used_at, user_agent, address) VALUES ($1, $2, $3, $4, $5, $3, $6, $7)",
                token_hash,
                user.lower(),
                now,
                expires_at,
                session_id,
                user_agent,
                address,
            )

    async def token_session(self, token_hash: str, now: int) -> LoginSession | None:
        row = await self.db.fetchrow(
            SESSION_SELECT + " WHERE t.token_hash = $1 AND t.expires_at > $2", token_hash, now
        )
        return _session(row) if row else None

    async def touch_token(self, token_hash: str, now: int) -> None:
        await self.db.execute(
            "UPDATE tokens SET last_used_at = $1 WHERE token_hash = $2", now, token_hash
        )

    async def sessions(self, user: str, now: int) -> list[LoginSession]:
        rows = await self.db.fetch(
            SESSION_SELECT + " WHERE t.user_key = $1 AND t.expires_at > $2 "
            "ORDER BY t.created_at DESC, t.id",
            user.lower(),
            now,
        )
        return [_session(row) for row in rows]

    async def delete_session(self, user: str, session_id: str) -> str | None:
        row = await self.db.fetchrow(
            "DELETE FROM tokens WHERE user_key = $1 AND id = $2 RETURNING token_hash",
            user.lower(),
            session_id,
        )
        return str(row[0]) if row else None

    async def delete_sessions(self, user: str, keep: str | None = None) -> list[str]:
        rows = await self.db.fetch(
            "DELETE FROM tokens WHERE user_key = $1 AND token_hash <> $2 RETURNING token_hash",
            user.lower(),
            keep or "",
        )
        return [str(row[0]) for row in rows]

    async def delete_token(self, token_hash: str) -> None:
        await self.db.execute("DELETE FROM tokens WHERE token_hash = $1", token_hash)

    async def create_room(self, room: Room) -> None:
        owner = room.owner.lower()
        try:
            async with self.db.connection() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO rooms (name, topic, private, owner_key, created_at) "
                    "VALUES ($1, $2, $3, $4, $5)",
                    room.name,
                    room.topic,
                    room.private,
                    owner,
                    room.created_at,
                )
                await conn.execute(
                    "INSERT INTO memberships (room, user_key, role, joined_at) "
                    "VALUES ($1, $2, $3, $4)",
                    room.name,
                    owner,
                    Role.OWNER.value,
                    room.created_at,
                )
        except asyncpg.UniqueViolationError:
            raise Conflict("a room with that name exists") from None

    async def get_room(self, name: str) -> Room | None:
        row = await self.db.fetchrow(ROOM_SELECT + " WHERE r.name = $1", name)
        return _room(row) if row else None

    async def list_rooms(self, user: str) -> list[Room]:
        sql = (
            ROOM_SELECT + " WHERE NOT r.private OR EXISTS (SELECT 1 FROM memberships m "
            "WHERE m.room = r.name AND m.user_key = $1) ORDER BY r.name"
        )
        return [_room(row) for row in await self.db.fetch(sql, user.lower())]

    async def member_rooms(self, user: str) -> list[Room]:
        sql = (
            ROOM_SELECT + " JOIN memberships m ON m.room = r.name WHERE m.user_key = $1 "
            "ORDER BY r.name"
        )
        return [_room(row) for row in await self.db.fetch(sql, user.lower())]

    async def role(self, room: str, user: str) -> Role | None:
        row = await self.db.fetchrow(
            "SELECT role FROM memberships WHERE room = $1 AND user_key = $2", room, user.lower()
        )
        return Role(row[0]) if row else None

    async def members(self, room: str) -> list[tuple[str, Role]]:
        sql = (
            "SELECT u.name, m.role FROM memberships m JOIN users u ON u.key = m.user_key "
            "WHERE m.room = $1 ORDER BY u.key"
        )
        return [(row[0], Role(row[1])) for row in await self.db.fetch(sql, room)]

    async def set_member(self, room: str, user: str, role: Role, now: int) -> None:
        await self.db.execute(
            "INSERT INTO memberships (room, user_key, role, joined_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (room, user_key) DO UPDATE SET role = excluded.role",
            room,
            user.lower(),
            role.value,
            now,
        )

    async def add_member(self, room: str, user: str, now: int) -> bool:
        status = await self.db.execute(
            "INSERT INTO memberships (room, user_key, role, joined_at) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT DO NOTHING",
            room,
            user.lower(),
            Role.MEMBER.value,
            now,
        )
        return _count(status) > 0

    async def remove_member(self, room: str, user: str) -> bool:
        status = await self.db.execute(
            "DELETE FROM memberships WHERE room = $1 AND user_key = $2", room, user.lower()
        )
        return _count(status) > 0

    async def is_banned(self, room: str, user: str) -> bool:
        row = await self.db.fetchrow(
            "SELECT 1 FROM bans WHERE room = $1 AND user_key = $2", room, user.lower()
        )
        return row is not None

    async def ban(self, room: str, user: str, by: str, now: int) -> None:
        async with self.db.connection() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM memberships WHERE room = $1 AND user_key = $2", room, user.lower()
            )
            await conn.execute(
                "INSERT INTO bans (room, user_key, banned_by, created_at) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                room,
                user.lower(),
                by,
                now,
            )

    async def unban(self, room: str, user: str) -> bool:
        status = await self.db.execute(
            "DELETE FROM bans WHERE room = $1 AND user_key = $2", room, user.lower()
        )
        return _count(status) > 0

    async def bans(self, room: str) -> list[str]:
        sql = (
            "SELECT u.name FROM bans b JOIN users u ON u.key = b.user_key WHERE b.room = $1 "
            "ORDER BY u.key"
        )
        return [row[0] for row in await self.db.fetch(sql, room)]


MESSAGE_SELECT = "SELECT room, seq, client_id, sender, body, ts FROM messages"

# One statement takes the room's counter row (locked until commit) and inserts the
# message with the new seq. If the idempotency key was taken meanwhile, nothing is
# inserted and no row comes back: the caller rolls back, undoing the increment.
APPEND = """
WITH next AS (
    INSERT INTO room_seqs AS s (room, last_seq) VALUES ($1, 1)
    ON CONFLICT (room) DO UPDATE SET last_seq = s.last_seq + 1
    RETURNING last_seq
)
INSERT INTO messages (room, seq, client_id, sender_key, sender, body, ts)
SELECT $1, next.last_seq, $2, $3, $4, $5, $6 FROM next
ON CONFLICT (room, sender_key, client_id) DO NOTHING
RETURNING seq
"""


def _message(row: asyncpg.Record) -> Message:
    return Message(room=row[0], seq=row[1], id=row[2], sender=row[3], body=row[4], ts=row[5])


async def _existing(
    conn: asyncpg.pool.PoolConnectionProxy, room: str, sender: str, msg_id: str, body: str
) -> Appended | None:
    """The message stored under this idempotency key; Conflict if its body differs."""
    row = await conn.fetchrow(
        MESSAGE_SELECT + " WHERE room = $1 AND sender_key = $2 AND client_id = $3",
        room,
        sender.lower(),
        msg_id,
    )
    if row is None:
        return None
    return replayed(_message(row), body)


@dataclass(slots=True, eq=False)
class _InFlight:
    """An append of this process that holds a seq and is committing."""

    seq: int
    settled: bool = False
    message: Message | None = None  # None if it did not commit
    published: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(slots=True, eq=False)
class _Turn:
    """One append's place in its room's FIFO lock, held while it takes its seq."""

    lock: asyncio.Lock
    held: bool = False

    def release(self) -> None:
        if self.held:
            self.held = False
            self.lock.release()


class PostgresLog:
    """Per-room gapless logs in the `messages` table, shared by every node.

    `on_commit` sees this process's own appends in seq order per room. Appends are
    registered in `_in_flight` while they hold the room's counter lock, so registration
    order is seq order; after a commit, the room's settled appends are published from
    the front of its queue up to the first one still committing.
    """

    def __init__(
        self, db: PostgresDatabase, on_commit: OnCommit, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.on_commit = on_commit
        self.clock = clock
        self._in_flight: dict[str, deque[_InFlight]] = {}
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}  # lock, appends using it

    async def append(self, room: str, sender: str, msg_id: str, body: str) -> Appended:
        # A room's appends take seqs in call order (a connection's sends are in order):
        # each waits for its turn (a FIFO lock per room) and passes it on once it has a seq.
        lock, users = self._turns.get(room) or (asyncio.Lock(), 0)
        self._turns[room] = (lock, users + 1)
        turn = _Turn(lock)
        try:
            await lock.acquire()
            turn.held = True
            return await self._append(room, sender, msg_id, body, turn)
        finally:
            turn.release()
            users = self._turns[room][1] - 1
            self._turns[room] = (lock, users)
            if not users:
                del self._turns[room]

    async def _append(
        self, room: str, sender: str, msg_id: str, body: str, turn: _Turn
    ) -> Appended:
        async with self.db.connection() as conn:
            known = await _existing(conn, room, sender, msg_id, body)
            if known is not None:
                return known
            ts = int(self.clock() * 1000)
            tx = conn.transaction()
            await tx.start()
            try:
                seq = await conn.fetchval(APPEND, room, msg_id, sender.lower(), sender, body, ts)
            except BaseException:
                turn.release()
                await tx.rollback()
                raise
            if seq is None:  # a concurrent append with this key committed first
                turn.release()
                await tx.rollback()
                known = await _existing(conn, room, sender, msg_id, body)
                assert known is not None, "the idempotency key was taken, so the row exists"
                return known
            entry = self._register(room, seq)
            turn.release()
            message = Message(room, seq, msg_id, sender, body, ts)
            try:
                await tx.commit()
            except BaseException:
                self._settle(room, entry, None)
                raise
            self._settle(room, entry, message)
        await asyncio.shield(entry.published)
        return Appended(message, created=True)

    def _register(self, room: str, seq: int) -> _InFlight:
        entry = _InFlight(seq)
        self._in_flight.setdefault(room, deque()).append(entry)
        return entry

    def _settle(self, room: str, entry: _InFlight, message: Message | None) -> None:
        entry.settled = True
        entry.message = message
        queue = self._in_flight[room]
        while queue and queue[0].settled:
            done = queue.popleft()
            if done.message is not None:
                try:
                    self.on_commit(done.message)
                except Exception:
                    log.exception("post-commit hook failed")
            done.published.set_result(None)
        if not queue:
            del self._in_flight[room]

    async def last_seq(self, room: str) -> int:
        row = await self.db.fetchrow("SELECT last_seq FROM room_seqs WHERE room = $1", room)
        last = int(row[0]) if row else 0
        # Every seq up to `last` is committed; wait until this process's own ones among
        # them were published, so a join can use `last` as its cut (see Log.last_seq).
        # Other nodes publish their own appends; a gap they leave is filled from the log.
        waiting = [e.published for e in self._in_flight.get(room, ()) if e.seq <= last]
        if waiting:
            await asyncio.gather(*(asyncio.shield(f) for f in waiting))
        return last

    async def read(self, room: str, after: int, upto: int) -> list[Message]:
        sql = MESSAGE_SELECT + " WHERE room = $1 AND seq > $2 AND seq <= $3 ORDER BY seq"
        return [_message(row) for row in await self.db.fetch(sql, room, after, upto)]

    async def page(
        self, room: str, before: int | None, after: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        where = ["room = $1"]
        args: list[Any] = [room]
        if before is not None:
            args.append(before)
            where.append(f"seq < ${len(args)}")
        if after is not None:
            args.append(after)
            where.append(f"seq > ${len(args)}")
        # Newest first below `before` (or unbounded); oldest first above a lone `after`.
        order = "ASC" if after is not None and before is None else "DESC"
        args.append(limit + 1)
        sql = (
            f"{MESSAGE_SELECT} WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ${len(args)}"
        )
        rows = [_message(r) for r in await self.db.fetch(sql, *args)]
        more = len(rows) > limit
        rows = rows[:limit]
        if order == "DESC":
            rows.reverse()
        return rows, more

    # History written by the worker (the distributed engine: Redis log, PostgreSQL history)

    async def persisted_seq(self, room: str) -> int:
        """The room's highest seq in `messages` (0 if none): the worker's cursor, and the
        seed of a Redis counter that went missing (seqs then continue after history)."""
        row = await self.db.fetchrow(PERSISTED_SEQ, room)
        return int(row[0]) if row else 0

    async def insert_messages(self, messages: list[Message]) -> int:
        """Store messages that already have their seqs; ones already stored are skipped.

        Returns how many rows were inserted."""
        if not messages:
            return 0
        return _count(await self.db.execute(INSERT_MESSAGES, *_message_columns(messages)))

    async def find_sent(
        self, room: str, pairs: list[tuple[str, str]]
    ) -> dict[tuple[str, str], Message]:
        """The stored messages of (sender key, client id) pairs of a room, in one query.

        Sender keys are lower-cased names. A Redis idempotency record lives only for a while
        after its message reached PostgreSQL; the unique index here remembers it for ever."""
        found = await self.find_sent_in_rooms([(room, sender, msg_id) for sender, msg_id in pairs])
        return {(sender, msg_id): message for (_, sender, msg_id), message in found.items()}

    async def find_sent_in_rooms(
        self, keys: list[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], Message]:
        """`find_sent` for (room, sender key, client id) keys of any rooms, in one query."""
        if not keys:
            return {}
        rooms, senders, ids = (list(column) for column in zip(*keys, strict=True))
        rows = await self.db.fetch(FIND_SENT, rooms, senders, ids)
        return {(row[0], row[6], row[2]): _message(row) for row in rows}


PERSISTED_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE room = $1"

# Rows of messages that already have their seqs (the worker's batches). A seq that is
# already stored is skipped; a known (room, sender, id) under another seq is an error,
# never silently dropped: it would leave a hole in the room's history.
INSERT_MESSAGES = """
INSERT INTO messages (room, seq, client_id, sender_key, sender, body, ts)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::bigint[])
ON CONFLICT (room, seq) DO NOTHING
"""

FIND_SENT = """
SELECT m.room, m.seq, m.client_id, m.sender, m.body, m.ts, m.sender_key
FROM messages m
JOIN unnest($1::text[], $2::text[], $3::text[]) AS p(room, sender_key, client_id)
  ON m.room = p.room AND m.sender_key = p.sender_key AND m.client_id = p.client_id
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


def _message_columns(messages: list[Message]) -> tuple[list[Any], ...]:
    """INSERT_MESSAGES's arrays: one per column, in column order."""
    return (
        [m.room for m in messages],
        [m.seq for m in messages],
        [m.id for m in messages],
        [m.sender.lower() for m in messages],
        [m.sender for m in messages],
        [m.body for m in messages],
        [m.ts for m in messages],
    )


def room_lock_key(room: str) -> int:
    """A room's advisory lock key: a stable 32-bit hash of its name.

    Two rooms may share a key; then they only take turns, which is harmless."""
    digest = hashlib.blake2b(room.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(slots=True)
class RoomClaim:
    """One room held by one worker in one open transaction (see `PostgresArchive.claim`)."""

    conn: asyncpg.pool.PoolConnectionProxy
    room: str
    persisted: int  # the room's highest stored seq when the claim began

    async def insert(self, messages: list[Message]) -> int:
        """Insert a batch in the claim's transaction; it commits when the claim ends."""
        if not messages:
            return 0
        return _count(await self.conn.execute(INSERT_MESSAGES, *_message_columns(messages)))


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
            persisted = int(await conn.fetchval(PERSISTED_SEQ, room))
            yield RoomClaim(conn, room, persisted)

    async def rooms(self, after: str, limit: int) -> list[tuple[str, int]]:
        """Up to `limit` rooms named after `after`, in name order, with their highest seq."""
        rows = await self.db.fetch(ROOMS_WITH_PERSISTED_SEQ, after, limit)
        return [(str(row[0]), int(row[1])) for row in rows]
