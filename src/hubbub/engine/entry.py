"""What an entry of a room's log is, besides its stored form (`engine.base.Message`): its
kind, the draft a sender asks for, a message's reactions, and when a repeat is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from hubbub.protocol.events import reaction_view

if TYPE_CHECKING:
    from hubbub.engine.base import Message


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
