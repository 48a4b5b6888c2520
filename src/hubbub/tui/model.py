"""What the terminal client knows of its rooms, free of I/O and of Textual: messages, unread
counts, who is online, who is typing. The app feeds it SDK events and renders what it holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

# A `typing` event says "typing now"; clients repeat it every ~3 s while typing, so one that is
# not repeated within this many seconds has stopped.
TYPING_SHOWN_FOR: Final = 5.0


@dataclass(frozen=True)
class Message:
    """One message of a room, as the `message` frame and history pages carry it."""

    room: str
    seq: int
    id: str
    sender: str
    body: str
    ts: int

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Message | None:
        """The message a frame (or a history entry) carries; None if it is malformed."""
        room, seq, sender, body = (frame.get(k) for k in ("room", "seq", "from", "body"))
        if not (isinstance(room, str) and isinstance(seq, int) and isinstance(body, str)):
            return None
        ts = frame.get("ts")
        return cls(
            room,
            seq,
            str(frame.get("id", "")),
            str(sender),
            body,
            ts if isinstance(ts, int) else 0,
        )


@dataclass
class Room:
    """One joined room: its messages by `seq`, what is unread, who is here and who is typing."""

    name: str
    messages: dict[int, Message] = field(default_factory=dict)
    unread: int = 0
    online: set[str] = field(default_factory=set)
    typing: dict[str, float] = field(default_factory=dict)  # user -> when it stops showing
    more_before: bool = True  # older history may exist below the oldest message held

    @property
    def oldest(self) -> int | None:
        return min(self.messages) if self.messages else None

    @property
    def newest(self) -> int:
        return max(self.messages) if self.messages else 0

    def ordered(self) -> list[Message]:
        return [self.messages[seq] for seq in sorted(self.messages)]


class Chat:
    """Every joined room, the one on screen, and the rules that update them from events."""

    def __init__(self, me: str = "") -> None:
        self.me = me
        self.rooms: dict[str, Room] = {}
        self.current: str | None = None

    def room(self, name: str) -> Room:
        """The room, added (and made current when none is) if it was not known yet."""
        if name not in self.rooms:
            self.rooms[name] = Room(name)
        if self.current is None:
            self.current = name
        return self.rooms[name]

    def forget(self, name: str) -> None:
        """The room is left: drop it and move to another one, if any."""
        self.rooms.pop(name, None)
        if self.current == name:
            self.current = next(iter(sorted(self.rooms)), None)

    def switch(self, name: str) -> Room:
        """Show a room: its unread count is read."""
        room = self.room(name)
        self.current = name
        room.unread = 0
        return room

    def joined(self, frame: dict[str, Any]) -> Room:
        """A `joined` answer: its presence list is who is online now."""
        room = self.room(str(frame["room"]))
        presence = frame.get("presence")
        if isinstance(presence, list):
            room.online = {str(user) for user in presence}
        return room

    def add_message(self, message: Message) -> bool:
        """A live (or replayed) message; returns whether it is new. It counts as unread when
        it arrives in a room not on screen, from someone else."""
        room = self.room(message.room)
        if message.seq in room.messages:
            return False
        room.messages[message.seq] = message
        room.typing.pop(message.sender, None)  # they sent it: no longer typing
        if message.room != self.current and message.sender != self.me:
            room.unread += 1
        return True

    def add_history(self, name: str, messages: list[Message], more: bool, older: bool) -> None:
        """A page of history; `older` says it was paged backwards (so `more` is about older)."""
        room = self.room(name)
        for message in messages:
            room.messages.setdefault(message.seq, message)
        if older:
            room.more_before = more

    def presence(self, frame: dict[str, Any]) -> None:
        room = self.rooms.get(str(frame.get("room")))
        user = frame.get("user")
        if room is None or not isinstance(user, str):
            return
        if frame.get("status") == "online":
            room.online.add(user)
        else:
            room.online.discard(user)
            room.typing.pop(user, None)

    def typing(self, frame: dict[str, Any], now: float) -> None:
        room = self.rooms.get(str(frame.get("room")))
        user = frame.get("user")
        if room is not None and isinstance(user, str) and user != self.me:
            room.typing[user] = now + TYPING_SHOWN_FOR

    def typing_line(self, now: float) -> str:
        """`alice is typing…` for the room on screen (expired entries are dropped)."""
        room = self.rooms.get(self.current or "")
        if room is None:
            return ""
        for user in [user for user, until in room.typing.items() if until <= now]:
            del room.typing[user]
        users = sorted(room.typing)
        if not users:
            return ""
        if len(users) == 1:
            return f"{users[0]} is typing…"
        if len(users) <= 3:
            return f"{', '.join(users[:-1])} and {users[-1]} are typing…"
        return "several people are typing…"
