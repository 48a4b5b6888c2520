"""What every SQL log reads: replays (`read`), history pages in the current state
(`page`, with each message's reactions), and a message's versions (`versions`).

History reads messages only (never updates): the current state is on each message's row
(its latest body, `edited`, a thread root's summary, see migration 0005) but for its
reactions, read for a whole page in one query from `reactions`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hubbub.engine.base import Message
from hubbub.engine.entry import Kind, Reaction
from hubbub.engine.sql import ENTRY, MESSAGE_SELECT, READ_MESSAGES, Database, message
from hubbub.protocol.errors import NotFound

# What history lists without `thread`: the messages outside threads (their roots stay).
# The words of the partial index `messages_timeline`, which the planners match literally.
TIMELINE = "kind = 'message' AND thread IS NULL"
# The first names a reaction lists; `count` says how many hold it.
REACTION_NAMES = 10

EDITS = MESSAGE_SELECT + " WHERE room = ? AND target = ? AND kind = 'edit' ORDER BY seq"
PAGE_REACTIONS = (
    "SELECT seq, reaction_key, user_key, user_name FROM reactions "
    "WHERE room = ? AND seq >= ? AND seq <= ? ORDER BY seq, at_seq"
)


async def check_root(sql: Database, room: str, thread: int) -> None:
    """NotFound unless `thread` is a thread's root: a message of the room outside threads."""
    row = await sql.one(ENTRY, room, thread)
    root = message(row) if row is not None else None
    if root is None or root.kind != Kind.MESSAGE or root.thread is not None:
        raise NotFound(f"no thread {thread} in #{room}: a thread starts at a message of the room")


async def with_reactions(sql: Database, room: str, messages: list[Message]) -> list[Message]:
    """`messages` with the reactions that stand on them (keys and names in the order they
    came), read in one query over the page's seqs."""
    if not messages:
        return messages
    seqs = {m.seq for m in messages}
    rows = await sql.all(PAGE_REACTIONS, room, messages[0].seq, messages[-1].seq)
    found: dict[int, dict[str, list[tuple[str, str]]]] = {}
    for seq, key, user_key, user_name in ((r[0], r[1], r[2], r[3]) for r in rows):
        if seq in seqs:
            found.setdefault(seq, {}).setdefault(key, []).append((user_key, user_name))
    if not found:
        return messages
    return [_reacted(m, found[m.seq]) if m.seq in found else m for m in messages]


def _reacted(m: Message, keys: dict[str, list[tuple[str, str]]]) -> Message:
    reactions = tuple(
        Reaction(
            key,
            len(users),
            tuple([name for _, name in users[:REACTION_NAMES]]),
            frozenset([user_key for user_key, _ in users]),
        )
        for key, users in keys.items()
    )
    return dataclasses.replace(m, reactions=reactions)


async def versions(sql: Database, room: str, seq: int) -> list[Message]:
    """`Log.versions` on the `messages` table."""
    row = await sql.one(ENTRY, room, seq)
    original = message(row) if row is not None else None
    if original is None or original.kind != Kind.MESSAGE or original.deleted:
        raise NotFound(f"no message {seq} in #{room}")
    return [original] + [message(r) for r in await sql.all(EDITS, room, seq)]


async def read(sql: Database, room: str, after: int, upto: int) -> list[Message]:
    """`Log.read` on the `messages` table: every entry, messages and updates."""
    return [message(row) for row in await sql.all(READ_MESSAGES, room, after, upto)]


async def page(
    sql: Database,
    room: str,
    before: int | None,
    after: int | None,
    limit: int,
    thread: int | None = None,
) -> tuple[list[Message], bool]:
    """`Log.page` on the `messages` table (see `history` for the current state)."""
    where = ["room = ?"]
    args: list[Any] = [room]
    if thread is None:
        where.append(TIMELINE)  # the words of the partial index that serves it
    else:
        await check_root(sql, room, thread)
        where.append("kind = 'message' AND (thread = ? OR seq = ?)")
        args += [thread, thread]
    if before is not None:
        where.append("seq < ?")
        args.append(before)
    if after is not None:
        where.append("seq > ?")
        args.append(after)
    # Newest first below `before` (or unbounded); oldest first above a lone `after`.
    order = "ASC" if after is not None and before is None else "DESC"
    statement = f"{MESSAGE_SELECT} WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ?"
    rows = [message(row) for row in await sql.all(statement, *args, limit + 1)]
    more = len(rows) > limit
    rows = rows[:limit]
    if order == "DESC":
        rows.reverse()
    return await with_reactions(sql, room, rows), more


class SqlHistory:
    """`Log.read`, `Log.page` and `Log.versions` over `self.sql`: the reads every SQL log
    and the Redis engine's PostgreSQL history share."""

    sql: Database
    reads: Database | None = None  # where history reads go instead (a replica's reads)

    async def read(self, room: str, after: int, upto: int) -> list[Message]:
        return await read(self.reads or self.sql, room, after, upto)

    async def page(
        self,
        room: str,
        before: int | None,
        after: int | None,
        limit: int,
        thread: int | None = None,
    ) -> tuple[list[Message], bool]:
        return await page(self.reads or self.sql, room, before, after, limit, thread)

    async def versions(self, room: str, seq: int) -> list[Message]:
        return await versions(self.reads or self.sql, room, seq)
