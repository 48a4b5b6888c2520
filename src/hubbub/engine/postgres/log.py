"""The message log of the PostgreSQL engine: appends and reads of `messages`, one node or many.

Seqs come from one counter row per room (`room_seqs`), incremented in the transaction
that inserts the message: the row lock, held until commit, serializes a room's appends
across every connection of every node, so seqs are gapless and commit in seq order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from hubbub.engine import sql, sqlreads, updates
from hubbub.engine.base import Appended, Message, OnCommit, replayed
from hubbub.engine.entry import Draft
from hubbub.engine.postgres.database import (
    BROKEN_CONNECTION_ERRORS,
    PostgresAdapter,
    PostgresDatabase,
)
from hubbub.engine.updates import Target

# What leaves a COMMIT's outcome unknown (see `_append`).
_CUT_OFF: tuple[type[BaseException], ...] = (*BROKEN_CONNECTION_ERRORS, asyncio.CancelledError)

log = logging.getLogger(__name__)

SENT_MESSAGE = sql.numbered(sql.SENT_MESSAGE)

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

# The room's next seq, taking its counter row (locked until commit) for an entry that is
# checked before it is inserted (`engine.updates`).
NEXT_SEQ = """
INSERT INTO room_seqs AS s (room, last_seq) VALUES ($1, 1)
ON CONFLICT (room) DO UPDATE SET last_seq = s.last_seq + 1
RETURNING last_seq
"""
INSERT_ENTRY = sql.numbered(updates.INSERT_ENTRY + " RETURNING seq")

COMMITTED = "SELECT 1 FROM messages WHERE room = $1 AND seq = $2 AND client_id = $3"

FetchRow = Callable[..., Awaitable[asyncpg.Record | None]]


async def _existing(
    conn: asyncpg.pool.PoolConnectionProxy,
    room: str,
    sender: str,
    msg_id: str,
    draft: Draft | str,
) -> Appended | None:
    """The entry stored under this idempotency key; Conflict if it is not the same."""
    row = await conn.fetchrow(SENT_MESSAGE, room, sender.lower(), msg_id)
    if row is None:
        return None
    return replayed(sql.message(row), draft)


async def _checked_entry(
    conn: asyncpg.pool.PoolConnectionProxy,
    room: str,
    sender: str,
    msg_id: str,
    draft: Draft,
    ts: int,
) -> tuple[int | None, Target | None]:
    """Take the room's next seq, check the draft (holding the counter row: every earlier
    entry of the room is committed) and store it with its effects; the seq (None if its
    idempotency key was taken meanwhile) and the message it names. A refused draft
    raises, and the caller's rollback gives the seq back."""
    seq = await conn.fetchval(NEXT_SEQ, room)
    sender_key = sender.lower()
    reads = updates.facts(room, sender_key, draft)
    rows = [await conn.fetchrow(sql.numbered(statement), *args) for statement, args in reads]
    target = updates.check(room, sender_key, draft, rows)
    row = updates.entry_row(room, seq, msg_id, sender, ts, draft)
    if await conn.fetchval(INSERT_ENTRY, *row) is None:
        return None, None
    for statement, args in updates.effects(room, seq, sender, ts, draft):
        await conn.execute(sql.numbered(statement), *args)
    return seq, target


@dataclass(slots=True, eq=False)
class _InFlight:
    """An append of this process that holds a seq and is committing."""

    seq: int
    settled: bool = False
    message: Message | None = None  # None if it did not commit
    # Its COMMIT was sent but the connection broke before the answer (the server was
    # killed, say): it may be committed, on a promoted standby too. Decided once the room's
    # counter is read again (PostgresLog._decide); until then it holds back later deliveries.
    uncertain: Message | None = None
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


class PostgresLog(sqlreads.SqlHistory):
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
        self.sql = PostgresAdapter(db)
        self.on_commit = on_commit
        self.clock = clock
        self._in_flight: dict[str, deque[_InFlight]] = {}
        self._turns: dict[str, tuple[asyncio.Lock, int]] = {}  # lock, appends using it

    async def append(self, room: str, sender: str, msg_id: str, body: str) -> Appended:
        # A room's appends take seqs in call order (a connection's sends are in order):
        # each waits for its turn (a FIFO lock per room) and passes it on once it has a seq.
        async with self._turn(room) as turn:
            return await self._append(room, sender, msg_id, body, turn)

    async def append_entry(self, room: str, sender: str, msg_id: str, draft: Draft) -> Appended:
        async with self._turn(room) as turn:
            return await self._append(room, sender, msg_id, draft.body, turn, draft)

    async def redact(self, room: str) -> None:
        # In its turn, so every append called before it is redacted too; and holding the
        # counter row, which an append holds until it commits.
        async with self._turn(room), self.db.connection() as conn, conn.transaction():
            await conn.execute("SELECT 1 FROM room_seqs WHERE room = $1 FOR UPDATE", room)
            await conn.execute(sql.numbered(sql.REDACT_MESSAGES), True, room)
            await conn.execute(sql.numbered(sql.REDACT_REACTIONS), room)

    async def purge(self, room: str) -> None:
        await self.sql.transaction(*((statement, (room,)) for statement in sql.PURGE_LOG))

    @contextlib.asynccontextmanager
    async def _turn(self, room: str) -> AsyncIterator[_Turn]:
        """The room's FIFO lock, taken in call order and released on the way out (or by
        the holder, earlier)."""
        lock, users = self._turns.get(room) or (asyncio.Lock(), 0)
        self._turns[room] = (lock, users + 1)
        turn = _Turn(lock)
        try:
            await lock.acquire()
            turn.held = True
            yield turn
        finally:
            turn.release()
            users = self._turns[room][1] - 1
            self._turns[room] = (lock, users)
            if not users:
                del self._turns[room]

    async def _append(
        self,
        room: str,
        sender: str,
        msg_id: str,
        body: str,
        turn: _Turn,
        draft: Draft | None = None,
    ) -> Appended:
        """Append a plain message (one statement), or the entry of a `draft`."""
        asked: Draft | str = body if draft is None else draft
        async with self.db.connection() as conn:
            known = await _existing(conn, room, sender, msg_id, asked)
            if known is not None:
                return known
            ts = int(self.clock() * 1000)
            target: Target | None = None
            tx = conn.transaction()
            await tx.start()
            try:
                if draft is None:
                    seq = await conn.fetchval(
                        APPEND, room, msg_id, sender.lower(), sender, body, ts
                    )
                else:
                    seq, target = await _checked_entry(conn, room, sender, msg_id, draft, ts)
                if seq is not None:  # every seq below it is committed: decide on those
                    await self._decide(room, seq - 1, conn.fetchrow)
            except BaseException:
                turn.release()
                await tx.rollback()
                raise
            if seq is None:  # a concurrent append with this key committed first
                turn.release()
                await tx.rollback()
                known = await _existing(conn, room, sender, msg_id, asked)
                assert known is not None, "the idempotency key was taken, so the row exists"
                return known
            entry = self._register(room, seq)
            turn.release()
            if draft is None:
                message = Message(room, seq, msg_id, sender, body, ts)
            else:
                message = updates.stored(room, seq, msg_id, sender, ts, draft)
            try:
                await tx.commit()
            except _CUT_OFF:
                # Cut off, or cut short (a node stopping; the database watch ending calls
                # to a server out of reach): the COMMIT may have landed. The caller gets
                # `unavailable` and resends; the next counter read decides.
                entry.uncertain = message
                raise
            except BaseException:
                self._settle(room, entry, None)
                raise
            self._settle(room, entry, message)
        await asyncio.shield(entry.published)
        return Appended(message, created=True, target_sender=target.sender if target else None)

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

    async def _decide(self, room: str, last: int, fetchrow: FetchRow) -> None:
        """Settle the room's uncertain commits, now that every seq up to `last` is known to
        be committed: one is delivered (in seq order) if its row is there under its seq and
        id; otherwise it did not commit (its seq is handed out again, or was)."""
        for entry in list(self._in_flight.get(room, ())):
            message = entry.uncertain
            if message is None or entry.settled:
                continue
            found = None
            if entry.seq <= last:
                found = await fetchrow(COMMITTED, room, entry.seq, message.id)
            if not entry.settled:
                self._settle(room, entry, message if found is not None else None)

    async def last_seq(self, room: str) -> int:
        row = await self.db.fetchrow("SELECT last_seq FROM room_seqs WHERE room = $1", room)
        last = int(row[0]) if row else 0
        await self._decide(room, last, self.db.fetchrow)
        # Every seq up to `last` is committed; wait until this process's own ones among
        # them were published, so a join can use `last` as its cut (see Log.last_seq).
        # Other nodes publish their own appends; a gap they leave is filled from the log.
        waiting = [e.published for e in self._in_flight.get(room, ()) if e.seq <= last]
        if waiting:
            await asyncio.gather(*(asyncio.shield(f) for f in waiting))
        return last
