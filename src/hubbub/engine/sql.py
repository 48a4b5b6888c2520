"""What the SQLite and PostgreSQL engines share: every statement both run, written once.

`SqlStore` is the Store of both engines, over a `Database`: four calls (`one`, `all`,
`run`, `returning`) and `transaction` for the few writes of several statements. Each
engine's adapter (`sqlite.store.SqliteAdapter`, `postgres.database.PostgresAdapter`) maps
them onto its database: SQLite's reads go to the reader threads and its writes into the
next group commit; PostgreSQL's run on a pooled connection. Statements are written with
`?` placeholders, SQLite's own; the PostgreSQL adapter renders them as `$1 .. $n` with
`numbered` (once per statement, cached).

The message logs share their reads (`engine.sqlreads`), the row mapper and the checks of
updates (`engine.updates`), not their appends: SQLite assigns seqs inside its single
writer's group commit (a synchronous job run on the event loop), PostgreSQL in a
transaction holding the room's counter row lock across awaits. Those stay in
`sqlite.store.SqliteLog` and `postgres.log.PostgresLog`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Protocol

from hubbub.engine.base import LoginSession, Message, Role, Room, User
from hubbub.protocol import rules
from hubbub.protocol.errors import Conflict


class Row(Protocol):
    """A result row: a tuple (sqlite3) or an `asyncpg.Record`, read by column index."""

    def __getitem__(self, index: int, /) -> Any: ...


class Database(Protocol):
    """What `SqlStore` and the shared reads need of a database (statements use `?`)."""

    # The errors a violated unique key raises (a taken username or room name).
    duplicate: tuple[type[Exception], ...]

    async def one(self, sql: str, *args: Any) -> Row | None:
        """The first row of a read, or None."""
        ...

    async def all(self, sql: str, *args: Any) -> Sequence[Row]:
        """Every row of a read."""
        ...

    async def run(self, sql: str, *args: Any) -> int:
        """Run one writing statement on its own; the number of rows it touched."""
        ...

    async def returning(self, sql: str, *args: Any) -> Sequence[Row]:
        """Run one writing statement with a RETURNING clause; the rows it returned."""
        ...

    async def transaction(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        """Run (statement, arguments) pairs in one transaction: all of them or none."""
        ...


@functools.cache
def numbered(sql: str) -> str:
    """`sql` with its `?` placeholders numbered `$1 .. $n`, as PostgreSQL takes them.

    A statement given here holds no `?` but its placeholders (none in a literal or comment)."""
    parts = sql.split("?")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


ROOM_SELECT = (
    "SELECT r.name, r.topic, r.private, u.name, r.created_at, r.archived FROM rooms r "
    "JOIN users u ON u.key = r.owner_key"
)
LIVE_ROOM = "r.deleted_at IS NULL"  # a room not deleted
SESSION_SELECT = (
    "SELECT t.id, t.token_hash, u.name, t.created_at, t.last_used_at, t.expires_at, "
    "t.user_agent, t.address FROM tokens t JOIN users u ON u.key = t.user_key"
)
# Every column of an entry, in the order `message` reads them.
ENTRY_COLUMNS = (
    "room, seq, client_id, sender, body, ts, deleted, kind, target, reply_to, thread, "
    "reaction_key, topic, current_body, edited, reply_count, last_reply_seq, last_reply_ts"
)
MESSAGE_SELECT = f"SELECT {ENTRY_COLUMNS} FROM messages"
# One entry by its seq.
ENTRY = MESSAGE_SELECT + " WHERE room = ? AND seq = ?"
# The message stored under an idempotency key (room, sender key, client id).
SENT_MESSAGE = MESSAGE_SELECT + " WHERE room = ? AND sender_key = ? AND client_id = ?"
# The room's highest stored seq, 0 if none.
STORED_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE room = ?"
READ_MESSAGES = MESSAGE_SELECT + " WHERE room = ? AND seq > ? AND seq <= ? ORDER BY seq"
INSERT_MEMBERSHIP = "INSERT INTO memberships (room, user_key, role, joined_at) VALUES (?, ?, ?, ?)"
REMOVE_MEMBER = "DELETE FROM memberships WHERE room = ? AND user_key = ?"
# Every text of a room removed from storage (bodies, edits, keys, topics): the rows stay
# as tombstones. Its reactions go with `REDACT_REACTIONS`.
REDACT_MESSAGES = (
    "UPDATE messages SET body = '', current_body = NULL, reaction_key = NULL, topic = NULL, "
    "deleted = ? WHERE room = ? AND NOT deleted"
)
REDACT_REACTIONS = "DELETE FROM reactions WHERE room = ?"
# A deleted room's log, forgotten (its seq counter too), each taking the room.
PURGE_LOG = (
    "DELETE FROM messages WHERE room = ?",
    "DELETE FROM reactions WHERE room = ?",
    "DELETE FROM room_seqs WHERE room = ?",
)


def message(row: Row) -> Message:
    """The entry of a row of `ENTRY_COLUMNS`."""
    return Message(
        room=row[0],
        seq=row[1],
        id=row[2],
        sender=row[3],
        body=row[4],
        ts=row[5],
        deleted=bool(row[6]),
        kind=row[7],
        target=row[8],
        reply_to=row[9],
        thread=row[10],
        key=row[11],
        topic=row[12],
        current=row[13],
        edited=row[14],
        replies=(row[15], row[16], row[17]) if row[15] else None,
    )


def _room(row: Row) -> Room:
    # `private` is an integer in SQLite and a boolean in PostgreSQL.
    return Room(
        name=row[0],
        topic=row[1],
        private=bool(row[2]),
        owner=row[3],
        created_at=row[4],
        archived=bool(row[5]),
    )


def _session(row: Row) -> LoginSession:
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


class SqlStore:
    """Users, tokens, rooms, memberships and bans in SQL (SQLite or PostgreSQL)."""

    def __init__(self, sql: Database) -> None:
        self.sql = sql

    async def create_user(self, name: str, password_hash: str, now: int) -> User:
        try:
            await self.sql.run(
                "INSERT INTO users (key, name, password_hash, created_at) VALUES (?, ?, ?, ?)",
                name.lower(),
                name,
                password_hash,
                now,
            )
        except self.sql.duplicate:
            row = await self.sql.one("SELECT deleted_at FROM users WHERE key = ?", name.lower())
            if row is not None and row[0] is not None:
                raise Conflict(rules.DELETED_ACCOUNT) from None
            raise Conflict("that username is taken") from None
        return User(name, password_hash)

    async def get_user(self, name: str) -> User | None:
        row = await self.sql.one(
            "SELECT name, password_hash FROM users WHERE key = ? AND deleted_at IS NULL",
            name.lower(),
        )
        return User(row[0], row[1]) if row else None

    async def delete_user(self, name: str, now: int) -> list[str]:
        key = name.lower()
        # The account first (its password hash too): no login can issue a token after it.
        await self.sql.transaction(
            ("UPDATE users SET deleted_at = ?, password_hash = '' WHERE key = ?", (now, key)),
            ("DELETE FROM memberships WHERE user_key = ?", (key,)),
            ("DELETE FROM bans WHERE user_key = ?", (key,)),
        )
        rows = await self.sql.returning(
            "DELETE FROM tokens WHERE user_key = ? RETURNING token_hash", key
        )
        return [str(row[0]) for row in rows]

    async def set_password_hash(self, name: str, password_hash: str) -> None:
        await self.sql.run(
            "UPDATE users SET password_hash = ? WHERE key = ?", password_hash, name.lower()
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
        key = user.lower()
        await self.sql.transaction(
            ("DELETE FROM tokens WHERE user_key = ? AND expires_at <= ?", (key, now)),
            (
                "INSERT INTO tokens (token_hash, user_key, created_at, expires_at, id, "
                "last_used_at, user_agent, address) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token_hash, key, now, expires_at, session_id, now, user_agent, address),
            ),
        )

    async def token_session(self, token_hash: str, now: int) -> LoginSession | None:
        row = await self.sql.one(
            SESSION_SELECT + " WHERE t.token_hash = ? AND t.expires_at > ?", token_hash, now
        )
        return _session(row) if row else None

    async def touch_token(self, token_hash: str, now: int) -> None:
        await self.sql.run(
            "UPDATE tokens SET last_used_at = ? WHERE token_hash = ?", now, token_hash
        )

    async def sessions(self, user: str, now: int) -> list[LoginSession]:
        rows = await self.sql.all(
            SESSION_SELECT + " WHERE t.user_key = ? AND t.expires_at > ? "
            "ORDER BY t.created_at DESC, t.id",
            user.lower(),
            now,
        )
        return [_session(row) for row in rows]

    async def delete_session(self, user: str, session_id: str) -> str | None:
        rows = await self.sql.returning(
            "DELETE FROM tokens WHERE user_key = ? AND id = ? RETURNING token_hash",
            user.lower(),
            session_id,
        )
        return str(rows[0][0]) if rows else None

    async def delete_sessions(self, user: str, keep: str | None = None) -> list[str]:
        rows = await self.sql.returning(
            "DELETE FROM tokens WHERE user_key = ? AND token_hash <> ? RETURNING token_hash",
            user.lower(),
            keep or "",
        )
        return [str(row[0]) for row in rows]

    async def delete_token(self, token_hash: str) -> None:
        await self.sql.run("DELETE FROM tokens WHERE token_hash = ?", token_hash)

    async def create_room(self, room: Room) -> None:
        owner = room.owner.lower()
        try:
            await self.sql.transaction(
                (
                    "INSERT INTO rooms (name, topic, private, owner_key, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (room.name, room.topic, room.private, owner, room.created_at),
                ),
                (INSERT_MEMBERSHIP, (room.name, owner, Role.OWNER.value, room.created_at)),
            )
        except self.sql.duplicate:
            raise Conflict("a room with that name exists") from None

    async def get_room(self, name: str) -> Room | None:
        row = await self.sql.one(ROOM_SELECT + f" WHERE r.name = ? AND {LIVE_ROOM}", name)
        return _room(row) if row else None

    async def list_rooms(self, user: str, archived: bool = False) -> list[Room]:
        sql = (
            ROOM_SELECT + f" WHERE {LIVE_ROOM} AND r.archived = ? AND (NOT r.private OR "
            "EXISTS (SELECT 1 FROM memberships m WHERE m.room = r.name AND m.user_key = ?)) "
            "ORDER BY r.name"
        )
        return [_room(row) for row in await self.sql.all(sql, archived, user.lower())]

    async def member_rooms(self, user: str) -> list[Room]:
        sql = (
            ROOM_SELECT + " JOIN memberships m ON m.room = r.name WHERE m.user_key = ? "
            f"AND {LIVE_ROOM} AND NOT r.archived ORDER BY r.name"
        )
        return [_room(row) for row in await self.sql.all(sql, user.lower())]

    async def set_archived(self, name: str, archived: bool) -> None:
        await self.sql.run(
            "UPDATE rooms SET archived = ? WHERE name = ? AND deleted_at IS NULL", archived, name
        )

    async def delete_room(self, name: str, now: int) -> None:
        await self.sql.transaction(
            ("UPDATE rooms SET deleted_at = ? WHERE name = ?", (now, name)),
            ("DELETE FROM memberships WHERE room = ?", (name,)),
            ("DELETE FROM bans WHERE room = ?", (name,)),
        )

    async def deleted_at(self, name: str) -> int | None:
        row = await self.sql.one("SELECT deleted_at FROM rooms WHERE name = ?", name)
        return int(row[0]) if row is not None and row[0] is not None else None

    async def purge_room(self, name: str) -> None:
        await self.sql.run("DELETE FROM rooms WHERE name = ? AND deleted_at IS NOT NULL", name)

    async def role(self, room: str, user: str) -> Role | None:
        row = await self.sql.one(
            "SELECT role FROM memberships WHERE room = ? AND user_key = ?", room, user.lower()
        )
        return Role(row[0]) if row else None

    async def members(self, room: str) -> list[tuple[str, Role]]:
        sql = (
            "SELECT u.name, m.role FROM memberships m JOIN users u ON u.key = m.user_key "
            "WHERE m.room = ? ORDER BY u.key"
        )
        return [(row[0], Role(row[1])) for row in await self.sql.all(sql, room)]

    async def set_member(self, room: str, user: str, role: Role, now: int) -> None:
        await self.sql.run(
            INSERT_MEMBERSHIP + " ON CONFLICT (room, user_key) DO UPDATE SET role = excluded.role",
            room,
            user.lower(),
            role.value,
            now,
        )

    async def add_member(self, room: str, user: str, now: int) -> bool:
        added = await self.sql.run(
            INSERT_MEMBERSHIP + " ON CONFLICT DO NOTHING",
            room,
            user.lower(),
            Role.MEMBER.value,
            now,
        )
        return added > 0

    async def remove_member(self, room: str, user: str) -> bool:
        return await self.sql.run(REMOVE_MEMBER, room, user.lower()) > 0

    async def is_banned(self, room: str, user: str) -> bool:
        row = await self.sql.one(
            "SELECT 1 FROM bans WHERE room = ? AND user_key = ?", room, user.lower()
        )
        return row is not None

    async def ban(self, room: str, user: str, by: str, now: int) -> None:
        key = user.lower()
        await self.sql.transaction(
            (REMOVE_MEMBER, (room, key)),
            (
                "INSERT INTO bans (room, user_key, banned_by, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (room, key, by, now),
            ),
        )

    async def unban(self, room: str, user: str) -> bool:
        removed = await self.sql.run(
            "DELETE FROM bans WHERE room = ? AND user_key = ?", room, user.lower()
        )
        return removed > 0

    async def bans(self, room: str) -> list[str]:
        sql = (
            "SELECT u.name FROM bans b JOIN users u ON u.key = b.user_key WHERE b.room = ? "
            "ORDER BY u.key"
        )
        return [row[0] for row in await self.sql.all(sql, room)]
