"""What an entry of a room's log is: its kind, the draft a sender asks for, its stored form
(`Message`, with a message's current state and reactions), what an append answers
(`Appended`), and when a repeat is the same (`same_entry`, `replayed`). `engine.base`
re-exports the records with the Protocols that use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hubbub.protocol.errors import Conflict
from hubbub.protocol.events import (
    message_frame,
    message_view,
    reaction_view,
    redacted_frame,
    replies_view,
    tombstone_view,
    update_frame,
)


class Kind(StrEnum):
    """What an entry of a room's log is: a message, or an update about one (or the room)."""

    MESSAGE = "message"
    EDIT = "edit"
    DELETE = "delete"
    REACT = "react"
    UNREACT = "unreact"
    TOPIC = "topic"


@dataclass(frozen=True, slots=True)
class Draft:
    """An entry as its sender asks for it, before the log gives it a seq: `Log.append_entry`
    checks it against the log and stores it. `staff` (a delete's) says the sender may
    delete other people's messages (the room's owner or a moderator: core knows the role)."""

    kind: Kind = Kind.MESSAGE
    body: str = ""
    target: int | None = None  # the message an update is about
    reply_to: int | None = None
    thread: int | None = None
    key: str | None = None
    topic: str | None = None
    staff: bool = False


@dataclass(slots=True, unsafe_hash=True)
class Reaction:
    """One key standing on a message: how many hold it, the first 10 of them by name, and
    the keys (lower-cased names) of all of them (for `me`). A history page builds up to
    2,500 of them: not frozen (see `engine.base.Message`), treated as immutable."""

    key: str
    count: int
    users: tuple[str, ...]
    reactors: frozenset[str]

    def view(self, viewer: str | None) -> dict[str, Any]:
        me = viewer is not None and viewer.lower() in self.reactors
        return reaction_view(self.key, self.count, list(self.users), me)


def same_entry(stored: Message, draft: Draft) -> bool:
    """Whether `draft` asks for what `stored` is: the same kind, about the same messages,
    with the same text. A redacted entry's text is gone, so a repeat of it is compared on
    the rest (a resend of a message deleted since gets its ack back)."""
    if (stored.kind, stored.target, stored.reply_to, stored.thread) != (
        draft.kind,
        draft.target,
        draft.reply_to,
        draft.thread,
    ):
        return False
    if stored.deleted:
        return True
    if stored.kind in (Kind.MESSAGE, Kind.EDIT):
        return stored.body == draft.body
    if stored.kind == Kind.TOPIC:
        return (stored.topic or "") == (draft.topic or "")
    return stored.key == draft.key


_MESSAGE: str = Kind.MESSAGE.value  # a plain str: compared on every frame built


@dataclass(slots=True, unsafe_hash=True)
class Message:
    """One entry of a room's log: a message (`kind` "message") or an update about one.

    The entry as it was sent (`body` the message's, or an edit's new text) is what replays
    and live delivery carry. History reads a message in its current state as well:
    `current` (the latest edit's body), `edited` (its ts), `replies` (a thread root's
    count, last seq, last ts) and `reactions`. `deleted`: redacted, its text is gone from
    storage (body stored empty, and an update's key too).

    Treated as immutable (and hashed as such), not frozen: a frozen dataclass sets each of
    its fields through `object.__setattr__`, and one is built for every send (on the path
    to the ack and the fan-out), where the extra fields would have made that three times
    slower.
    """

    room: str
    seq: int
    id: str
    sender: str
    body: str
    ts: int
    deleted: bool = False
    kind: str = Kind.MESSAGE
    target: int | None = None
    reply_to: int | None = None
    thread: int | None = None
    key: str | None = None
    topic: str | None = None
    current: str | None = None
    edited: int | None = None
    replies: tuple[int, int, int] | None = None
    reactions: tuple[Reaction, ...] = ()

    def frame(self) -> dict[str, Any]:
        """The `message` or `update` frame of this entry, as it was sent."""
        if self.kind != _MESSAGE:
            return self._update_frame()
        if self.deleted:
            frame = redacted_frame(self.room, self.seq, self.id, self.sender, self.ts)
        else:
            frame = message_frame(self.room, self.seq, self.id, self.sender, self.body, self.ts)
        if self.reply_to is not None:
            frame["reply_to"] = self.reply_to
        if self.thread is not None:
            frame["thread"] = self.thread
        return frame

    def _update_frame(self) -> dict[str, Any]:
        frame = update_frame(self.room, self.seq, self.kind, self.sender, self.ts, self.target)
        kind = self.kind
        if kind == Kind.DELETE:
            frame["by"] = self.sender
        elif kind == Kind.TOPIC:
            frame["topic"] = self.topic or ""
        elif self.deleted:  # an edit or reaction of a message deleted since: its text is gone
            frame["deleted"] = True
        elif kind == Kind.EDIT:
            frame["body"] = self.body
        else:
            frame["key"] = self.key
        return frame

    def view(self, viewer: str | None = None) -> dict[str, Any]:
        """This message as history lists it, in its current state (a tombstone once it was
        redacted); `viewer` is who asks (the `me` of reactions)."""
        if self.deleted:
            view = tombstone_view(self.room, self.seq, self.id, self.sender, self.ts)
        else:
            body = self.body if self.current is None else self.current
            view = message_view(self.room, self.seq, self.id, self.sender, body, self.ts)
            if self.edited is not None:
                view["edited"] = self.edited
        if self.reply_to is not None:
            view["reply_to"] = self.reply_to
        if self.thread is not None:
            view["thread"] = self.thread
        if self.reactions:
            view["reactions"] = [reaction.view(viewer) for reaction in self.reactions]
        if self.replies is not None:
            view["replies"] = replies_view(*self.replies)
        return view

    def version(self) -> dict[str, Any]:
        """This message (or one of its edits) as the edit-history call lists it."""
        return {"seq": self.seq, "body": self.body, "ts": self.ts}


@dataclass(frozen=True, slots=True)
class Appended:
    """The result of a log append: the stored entry, and whether this call created it.

    `target_sender` is the sender of the message a delete was about (for the audit of
    moderators' deletes)."""

    message: Message
    created: bool
    target_sender: str | None = None


def replayed(stored: Message, draft: Draft | str) -> Appended:
    """The one idempotency rule, for every engine and both kinds of entry: a frame that
    repeats a stored entry's (room, sender, id) gets that entry back, uncreated, when it
    asks for the same (`same_entry`; a plain `send` passes its body), and Conflict when it
    does not (the id was reused for something else; nothing is stored)."""
    if isinstance(draft, str):
        draft = Draft(body=draft)
    if not same_entry(stored, draft):
        if stored.kind == draft.kind == Kind.MESSAGE:
            raise Conflict(f"id {stored.id!r} was already used with another body")
        what = "a message" if stored.kind == Kind.MESSAGE else f"an update ({stored.kind})"
        raise Conflict(f"id {stored.id!r} was already used for {what} with other content")
    return Appended(stored, created=False)
