"""The rules of the entries that are not plain messages, for both SQL logs: what each reads
to be checked, the check itself, and the statements that store it with its effects.

An engine runs them in the turn that assigns the entry's seq (SQLite's writer job,
PostgreSQL's transaction holding the room's counter row), so no other entry of the room
comes between the check and the write: `facts` are read, `check` raises (nothing is
written, no seq is taken) or passes, then `INSERT_ENTRY` and `effects` run. The SQL
uses `?` placeholders (`sql.numbered` renders them for PostgreSQL).

Where the spec is silent (docs/protocol.md, "Version 2"): a reply or a thread may name
a deleted message (its tombstone stays in place, and so do the answers to it); a delete
keeps its thread's count (the tombstone stays in the thread); a deleted message's
unreact is `not_found` (its reactions are gone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hubbub.engine.base import Message
from hubbub.engine.entry import Draft, Kind
from hubbub.engine.sql import Row
from hubbub.protocol.errors import Conflict, Forbidden, NotFound, TooLarge
from hubbub.protocol.rules import MAX_REACTION_KEYS

Statement = tuple[str, tuple[Any, ...]]

INSERT_ENTRY = (
    "INSERT INTO messages (room, seq, client_id, sender_key, sender, body, ts, kind, target, "
    "reply_to, thread, reaction_key, topic) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (room, sender_key, client_id) DO NOTHING"
)
# kind, deleted, sender key, sender, thread of the message a draft names
TARGET = "SELECT kind, deleted, sender_key, sender, thread FROM messages WHERE room = ? AND seq = ?"
# whether this user holds the key, whether anyone does, and how many keys stand
REACTIONS = (
    "SELECT "
    "(SELECT COUNT(*) FROM reactions WHERE room = ? AND seq = ? AND reaction_key = ? "
    "AND user_key = ?), "
    "(SELECT COUNT(*) FROM reactions WHERE room = ? AND seq = ? AND reaction_key = ?), "
    "(SELECT COUNT(DISTINCT reaction_key) FROM reactions WHERE room = ? AND seq = ?)"
)


@dataclass(frozen=True, slots=True)
class Target:
    """What a check reads of a message a draft names."""

    kind: str
    deleted: bool
    sender_key: str
    sender: str
    thread: int | None


def facts(room: str, sender_key: str, draft: Draft) -> list[Statement]:
    """The reads `check` needs, in its order: the messages the draft names, then (for a
    reaction) what stands on its target."""
    reads: list[Statement] = []
    for seq in (draft.target, draft.reply_to, draft.thread):
        if seq is not None:
            reads.append((TARGET, (room, seq)))
    if draft.kind in (Kind.REACT, Kind.UNREACT):
        key, seq = draft.key, draft.target
        reads.append((REACTIONS, (room, seq, key, sender_key, room, seq, key, room, seq)))
    return reads


def check(room: str, sender_key: str, draft: Draft, rows: Sequence[Row | None]) -> Target | None:
    """Raise the error the draft answers, given the rows of its `facts`; else return its
    target (None for a message or a topic)."""
    found = iter(rows)
    target = _message(next(found), room, draft.target) if draft.target is not None else None
    if draft.reply_to is not None:
        _message(next(found), room, draft.reply_to)
    if draft.thread is not None:
        root = _message(next(found), room, draft.thread)
        if root.thread is not None:
            raise NotFound(
                f"message {draft.thread} of #{room} is inside a thread: a thread's root is "
                "a message outside threads"
            )
    if target is None:
        return None
    if target.deleted:
        raise NotFound(f"message {draft.target} of #{room} was deleted")
    if draft.kind == Kind.EDIT and target.sender_key != sender_key:
        raise Forbidden("only its sender may edit a message")
    if draft.kind == Kind.DELETE and target.sender_key != sender_key and not draft.staff:
        raise Forbidden("only its sender, the room's owner or a moderator may delete a message")
    if draft.kind in (Kind.REACT, Kind.UNREACT):
        row = next(found)
        assert row is not None, "an aggregate answers one row"
        mine, anyone, keys = int(row[0]), int(row[1]), int(row[2])
        if draft.kind == Kind.UNREACT and not mine:
            raise NotFound(f"you have no {draft.key} reaction on message {draft.target}")
        if draft.kind == Kind.REACT and mine:
            raise Conflict(f"you already reacted {draft.key} to message {draft.target}")
        if draft.kind == Kind.REACT and not anyone and keys >= MAX_REACTION_KEYS:
            raise TooLarge(
                f"a message holds at most {MAX_REACTION_KEYS} different reactions; "
                f"message {draft.target} has them all: add one of those"
            )
    return target


def _message(row: Row | None, room: str, seq: int) -> Target:
    if row is None or row[0] != Kind.MESSAGE:
        what = "an update, not a message" if row is not None else "not there"
        raise NotFound(f"no message {seq} in #{room} ({what})")
    return Target(row[0], bool(row[1]), row[2], row[3], row[4])


def entry_row(
    room: str, seq: int, msg_id: str, sender: str, ts: int, draft: Draft
) -> tuple[Any, ...]:
    """The arguments of `INSERT_ENTRY` (an edit's body is its new text; others store '')."""
    m = stored(room, seq, msg_id, sender, ts, draft)
    return (
        *(room, seq, msg_id, sender.lower(), sender, m.body, ts, draft.kind.value),
        *(m.target, m.reply_to, m.thread, m.key, m.topic),
    )


def stored(room: str, seq: int, msg_id: str, sender: str, ts: int, draft: Draft) -> Message:
    """The entry `INSERT_ENTRY` stored, as the log hands it on."""
    body = draft.body if draft.kind in (Kind.MESSAGE, Kind.EDIT) else ""
    return Message(
        room,
        seq,
        msg_id,
        sender,
        body,
        ts,
        kind=draft.kind,
        target=draft.target,
        reply_to=draft.reply_to,
        thread=draft.thread,
        key=draft.key,
        topic=draft.topic,
    )


def effects(room: str, seq: int, sender: str, ts: int, draft: Draft) -> list[Statement]:
    """What the entry changes besides its own row: the current state it is the news of."""
    kind, target = draft.kind, draft.target
    if kind == Kind.MESSAGE:
        if draft.thread is None:
            return []
        return [
            (
                "UPDATE messages SET reply_count = reply_count + 1, last_reply_seq = ?, "
                "last_reply_ts = ? WHERE room = ? AND seq = ?",
                (seq, ts, room, draft.thread),
            )
        ]
    if kind == Kind.EDIT:
        return [
            (
                "UPDATE messages SET current_body = ?, edited = ? WHERE room = ? AND seq = ?",
                (draft.body, ts, room, target),
            )
        ]
    if kind == Kind.REACT:
        return [
            (
                "INSERT INTO reactions (room, seq, reaction_key, user_key, user_name, at_seq) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (room, target, draft.key, sender.lower(), sender, seq),
            )
        ]
    if kind == Kind.UNREACT:
        return [
            (
                "DELETE FROM reactions WHERE room = ? AND seq = ? AND reaction_key = ? "
                "AND user_key = ?",
                (room, target, draft.key, sender.lower()),
            )
        ]
    if kind == Kind.TOPIC:
        return [("UPDATE rooms SET topic = ? WHERE name = ?", (draft.topic or "", room))]
    return redaction(room, target)


def redaction(room: str, target: int | None) -> list[Statement]:
    """A delete: the message's text, every earlier version of it, its reactions and the
    keys of its react and unreact entries, removed from storage. The rows stay (seq, id,
    sender, ts), marked deleted."""
    return [
        (
            "UPDATE messages SET body = '', current_body = NULL, edited = NULL, deleted = ? "
            "WHERE room = ? AND seq = ?",
            (True, room, target),
        ),
        (
            "UPDATE messages SET body = '', reaction_key = NULL, deleted = ? "
            "WHERE room = ? AND target = ? AND kind IN ('edit', 'react', 'unreact')",
            (True, room, target),
        ),
        ("DELETE FROM reactions WHERE room = ? AND seq = ?", (room, target)),
    ]
