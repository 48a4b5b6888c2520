"""The embedded store and message log on SQLite (see `sqlite_db` for the threading)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

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
from hubbub.engine.sqlite.database import SqliteDatabase
from hubbub.protocol.errors import Conflict

ROOM_COLUMNS = "name, topic, private, owner, created_at"
ROOM_SELECT = (
    "SELECT r.name, r.topic, r.private, u.name, r.created_at FROM rooms r "
    "JOIN users u ON u.key = r.owner_key"
)


TOKEN_COLUMNS = (
    "token_hash, user_key, created_at, expires_at, id, last_used_at, user_agent, address"
)
SESSION_SELECT = (
    "SELECT t.id, t.token_hash, u.name, t.created_at, t.last_used_at, t.expires_at, "
    "t.user_agent, t.address FROM tokens t JOIN users u ON u.key = t.user_key"
)


def _room(row: tuple[str, str, int, str, int]) -> Room:
    return Room(name=row[0], topic=row[1], private=bool(row[2]), owner=row[3], created_at=row[4])


def _session(row: tuple[Any, ...]) -> LoginSession:
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


class SqliteStore:
    """Users, tokens, rooms, memberships and bans in SQLite."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def create_user(self, name: str, password_hash: str, now: int) -> User:
        def run(c: sqlite3.Connection) -> User:
            c.execute(
                "INSERT INTO users (key, name, password_hash, created_at) VALUES (?, ?, ?, ?)",
                (name.lower(), name, password_hash, now),
            )
            return User(name, password_hash)

        try:
            return await self.db.write(run)
        except sqlite3.IntegrityError:
            raise Conflict("that username is taken") from None

    async def get_user(self, name: str) -> User | None:
        def run(c: sqlite3.Connection) -> User | None:
            row = c.execute(
                "SELECT name, password_hash FROM users WHERE key = ?", (name.lower(),)
            ).fetchone()
            return User(row[0], row[1]) if row else None

        return await self.db.read(run)

    async def set_password_hash(self, name: str, password_hash: str) -> None:
        await self.db.write(
            lambda c: c.execute(
                "UPDATE users SET password_hash = ? WHERE key = ?", (password_hash, name.lower())
            )
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
        def run(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM tokens WHERE user_key = ? AND expires_at <= ?", (key, now))
            c.execute(
                f"INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token_hash, key, now, expires_at, session_id, now, user_agent, address),
            )

        key = user.lower()
        await self.db.write(run)

    async def token_session(self, token_hash: str, now: int) -> LoginSession | None:
        def run(c: sqlite3.Connection) -> LoginSession | None:
            row = c.execute(
                SESSION_SELECT + " WHERE t.token_hash = ? AND t.expires_at > ?", (token_hash, now)
            ).fetchone()
            return _session(row) if row else None

        return await self.db.read(run)

    async def touch_token(self, token_hash: str, now: int) -> None:
        await self.db.write(
            lambda c: c.execute(
                "UPDATE tokens SET last_used_at = ? WHERE token_hash = ?", (now, token_hash)
            ),
            savepoint=False,
        )

    async def sessions(self, user: str, now: int) -> list[LoginSession]:
        def run(c: sqlite3.Connection) -> list[LoginSession]:
            rows = c.execute(
                SESSION_SELECT + " WHERE t.user_key = ? AND t.expires_at > ? "
                "ORDER BY t.created_at DESC, t.id",
                (user.lower(), now),
            ).fetchall()
            return [_session(row) for row in rows]

        return await self.db.read(run)

    async def delete_session(self, user: str, session_id: str) -> str | None:
        def run(c: sqlite3.Connection) -> str | None:
            row = c.execute(
                "DELETE FROM tokens WHERE user_key = ? AND id = ? RETURNING token_hash",
                (user.lower(), session_id),
            ).fetchone()
            return str(row[0]) if row else None

        return await self.db.write(run, savepoint=False)

    async def delete_sessions(self, user: str, keep: str | None = None) -> list[str]:
        def run(c: sqlite3.Connection) -> list[str]:
            rows = c.execute(
                "DELETE FROM tokens WHERE user_key = ? AND token_hash != ? RETURNING token_hash",
                (user.lower(), keep or ""),
            ).fetchall()
            return [str(row[0]) for row in rows]

        return await self.db.write(run, savepoint=False)

    async def delete_token(self, token_hash: str) -> None:
        await self.db.write(
            lambda c: c.execute("DELETE FROM tokens WHERE token_hash = ?", (token_hash,))
        )

    async def create_room(self, room: Room) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO rooms (name, topic, private, owner_key, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (room.name, room.topic, room.private, room.owner.lower(), room.created_at),
            )
            c.execute(
                "INSERT INTO memberships (room, user_key, role, joined_at) VALUES (?, ?, ?, ?)",
                (room.name, room.owner.lower(), Role.OWNER.value, room.created_at),
            )

        try:
            await self.db.write(run)
        except sqlite3.IntegrityError:
            raise Conflict("a room with that name exists") from None

    async def get_room(self, name: str) -> Room | None:
        def run(c: sqlite3.Connection) -> Room | None:
            row = c.execute(ROOM_SELECT + " WHERE r.name = ?", (name,)).fetchone()
            return _room(row) if row else None

        return await self.db.read(run)

    async def list_rooms(self, user: str) -> list[Room]:
        sql = (
            ROOM_SELECT + " WHERE r.private = 0 OR EXISTS (SELECT 1 FROM memberships m "
            "WHERE m.room = r.name AND m.user_key = ?) ORDER BY r.name"
        )
        return await self.db.read(lambda c: [_room(row) for row in c.execute(sql, (user.lower(),))])

    async def member_rooms(self, user: str) -> list[Room]:
        sql = (
            ROOM_SELECT + " JOIN memberships m ON m.room = r.name WHERE m.user_key = ? "
            "ORDER BY r.name"
        )
        return await self.db.read(lambda c: [_room(row) for row in c.execute(sql, (user.lower(),))])

    async def role(self, room: str, user: str) -> Role | None:
        def run(c: sqlite3.Connection) -> Role | None:
            row = c.execute(
                "SELECT role FROM memberships WHERE room = ? AND user_key = ?",
                (room, user.lower()),
            ).fetchone()
            return Role(row[0]) if row else None

        return await self.db.read(run)

    async def members(self, room: str) -> list[tuple[str, Role]]:
        sql = (
            "SELECT u.name, m.role FROM memberships m JOIN users u ON u.key = m.user_key "
            "WHERE m.room = ? ORDER BY u.key"
        )
        return await self.db.read(
            lambda c: [(row[0], Role(row[1])) for row in c.execute(sql, (room,))]
        )

    async def set_member(self, room: str, user: str, role: Role, now: int) -> None:
        await self.db.write(
            lambda c: c.execute(
                "INSERT INTO memberships (room, user_key, role, joined_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (room, user_key) DO UPDATE SET role = excluded.role",
                (room, user.lower(), role.value, now),
            )
        )

    async def add_member(self, room: str, user: str, now: int) -> bool:
        return await self.db.write(
            lambda c: (
                c.execute(
                    "INSERT INTO memberships (room, user_key, role, joined_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (room, user.lower(), Role.MEMBER.value, now),
                ).rowcount
                > 0
            )
        )

    async def remove_member(self, room: str, user: str) -> bool:
        return await self.db.write(
            lambda c: (
                c.execute(
                    "DELETE FROM memberships WHERE room = ? AND user_key = ?", (room, user.lower())
                ).rowcount
                > 0
            )
        )

    async def is_banned(self, room: str, user: str) -> bool:
        return await self.db.read(
            lambda c: (
                c.execute(
                    "SELECT 1 FROM bans WHERE room = ? AND user_key = ?", (room, user.lower())
                ).fetchone()
                is not None
            )
        )

    async def ban(self, room: str, user: str, by: str, now: int) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute(
                "DELETE FROM memberships WHERE room = ? AND user_key = ?", (room, user.lower())
            )
            c.execute(
                "INSERT INTO bans (room, user_key, banned_by, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (room, user.lower(), by, now),
            )

        await self.db.write(run)

    async def unban(self, room: str, user: str) -> bool:
        return await self.db.write(
            lambda c: (
                c.execute(
                    "DELETE FROM bans WHERE room = ? AND user_key = ?", (room, user.lower())
                ).rowcount
                > 0
            )
        )

    async def bans(self, room: str) -> list[str]:
        sql = (
            "SELECT u.name FROM bans b JOIN users u ON u.key = b.user_key WHERE b.room = ? "
            "ORDER BY u.key"
        )
        return await self.db.read(lambda c: [row[0] for row in c.execute(sql, (room,))])


def _message(row: tuple[str, int, str, str, str, int]) -> Message:
    return Message(room=row[0], seq=row[1], id=row[2], sender=row[3], body=row[4], ts=row[5])


MESSAGE_SELECT = "SELECT room, seq, client_id, sender, body, ts FROM messages"
INSERT_MESSAGE = (
    "INSERT INTO messages (room, seq, client_id, sender_key, sender, body, ts) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (room, sender_key, client_id) DO NOTHING"
)


class SqliteLog:
    """Per-room gapless logs in the `messages` table; appends are group-committed."""

    def __init__(
        self, db: SqliteDatabase, on_commit: OnCommit, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.on_commit = on_commit
        self.clock = clock
        self._last: dict[str, int] = {}  # kept by the write jobs (one group at a time)
        db.on_rollback.append(self._last.clear)

    def _last_seq_locked(self, c: sqlite3.Connection, room: str) -> int:
        last = self._last.get(room)
        if last is None:
            row = c.execute("SELECT MAX(seq) FROM messages WHERE room = ?", (room,)).fetchone()
            last = int(row[0] or 0)
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
            existing = c.execute(
                MESSAGE_SELECT + " WHERE room = ? AND sender_key = ? AND client_id = ?",
                (room, sender_key, msg_id),
            ).fetchone()
            return replayed(_message(existing), body)

        return await self.db.write(run, self._published, savepoint=False)

    def _published(self, appended: Appended) -> None:
        if appended.created:
            self.on_commit(appended.message)

    async def last_seq(self, room: str) -> int:
        # Asked through the writer queue, so the answer resolves after the publication of
        # every message up to it (see Log.last_seq): a join can trust it as a fan-out cut.
        return await self.db.write(lambda c: self._last_seq_locked(c, room))

    async def read(self, room: str, after: int, upto: int) -> list[Message]:
        sql = MESSAGE_SELECT + " WHERE room = ? AND seq > ? AND seq <= ? ORDER BY seq"
        return await self.db.read(
            lambda c: [_message(row) for row in c.execute(sql, (room, after, upto))]
        )

    async def page(
        self, room: str, before: int | None, after: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        def run(c: sqlite3.Connection) -> tuple[list[Message], bool]:
            where: list[str] = ["room = ?"]
            args: list[Any] = [room]
            if before is not None:
                where.append("seq < ?")
                args.append(before)
            if after is not None:
                where.append("seq > ?")
                args.append(after)
            # Newest first below `before` (or unbounded); oldest first above a lone `after`.
            order = "ASC" if after is not None and before is None else "DESC"
            sql = f"{MESSAGE_SELECT} WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ?"
            rows = [_message(r) for r in c.execute(sql, (*args, limit + 1))]
            more = len(rows) > limit
            rows = rows[:limit]
            if order == "DESC":
                rows.reverse()
            return rows, more

        return await self.db.read(run)
