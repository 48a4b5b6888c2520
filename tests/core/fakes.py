"""Fakes of the engine contracts and of a connection, for the core rules' tests: plain
lists and dicts, no services, with hooks to stage what happens during a join."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from hubbub.engine.base import Message, Role, Room
from hubbub.protocol.errors import Forbidden, NotFound

Hook = Callable[[], Awaitable[None]]


class FakeBus:
    """Delivers messages to its listeners at once; records events and subscriptions."""

    def __init__(self, calls: list[str] | None = None) -> None:
        self.listeners: list[Any] = []
        self.events: list[tuple[str, dict[str, Any], str | None, str | None]] = []
        self.calls = calls if calls is not None else []

    def attach(self, listener: Any) -> None:
        self.listeners.append(listener)

    async def subscribe(self, room: str) -> None:
        self.calls.append(f"subscribe {room}")

    def unsubscribe(self, room: str) -> None:
        self.calls.append(f"unsubscribe {room}")

    def publish_message(self, message: Message) -> None:
        for listener in self.listeners:
            listener.on_message(message)

    def publish_event(
        self,
        room: str,
        frame: dict[str, Any],
        skip_user: str | None = None,
        skip_connection: str | None = None,
    ) -> None:
        self.events.append((room, frame, skip_user, skip_connection))


class FakeLog:
    """Each room's messages in a list. `commit` stores and publishes at once, so the bus
    has every message up to `last_seq` by the time it answers, as the contract says.
    `before_cut` hooks run inside `last_seq` before it reads the end (a message committed
    then is at or below the cut); `before_read` hooks run inside `read` (a message
    committed then is above it). `read_fails` makes `read` raise it."""

    def __init__(self, bus: FakeBus) -> None:
        self.bus = bus
        self.rooms: dict[str, list[Message]] = {}
        self.before_cut: list[Hook] = []
        self.before_read: list[Hook] = []
        self.read_fails: Exception | None = None

    def commit(self, room: str, body: str, sender: str = "bob") -> Message:
        messages = self.rooms.setdefault(room, [])
        seq = len(messages) + 1
        message = Message(room, seq, f"m{seq}", sender, body, 1_700_000_000_000 + seq)
        messages.append(message)
        self.bus.publish_message(message)
        return message

    async def last_seq(self, room: str) -> int:
        self.bus.calls.append(f"last_seq {room}")
        for hook in self.before_cut:
            await hook()
        return len(self.rooms.get(room, []))

    async def read(self, room: str, after: int, upto: int) -> list[Message]:
        self.bus.calls.append(f"read {room} {after} {upto}")
        for hook in self.before_read:
            await hook()
        if self.read_fails is not None:
            raise self.read_fails
        return [m for m in self.rooms.get(room, []) if after < m.seq <= upto]


class FakePresence:
    """room -> user -> connections, like the engines count them."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, set[str]]] = {}

    async def add(self, room: str, user: str, session: str) -> bool:
        connections = self.rooms.setdefault(room, {}).setdefault(user.lower(), set())
        first = not connections
        connections.add(session)
        return first

    async def remove(self, room: str, user: str, session: str) -> bool:
        connections = self.rooms.get(room, {}).get(user.lower())
        if not connections or session not in connections:
            return False
        connections.discard(session)
        if connections:
            return False
        del self.rooms[room][user.lower()]
        return True

    async def online(self, room: str) -> Sequence[str]:
        return sorted(self.rooms.get(room, {}))


class FakeRooms:
    """Public rooms by name, and bans; `join` and `readable` as `core.chat.Chat` has them."""

    def __init__(self, *names: str) -> None:
        self.names = set(names)
        self.banned: set[tuple[str, str]] = set()
        self.joined: list[tuple[str, str]] = []

    async def readable(self, user: str, name: str) -> tuple[Room, Role | None]:
        if name not in self.names:
            raise NotFound(f"no room {name!r}")
        if (name, user) in self.banned:
            raise Forbidden(f"you are banned from {name!r}")
        return Room(name, "", False, "owner", 0), Role.MEMBER

    async def join(self, user: str, name: str) -> Room:
        room, _ = await self.readable(user, name)
        self.joined.append((user, name))
        return room


class FakeConnection:
    """A connection as a join sees it (`core.join.Joiner`), and a bus listener: what the
    gateway does, in lists. `out` is every frame it was sent, in order."""

    def __init__(self, user: str, connection: str) -> None:
        self.user = user
        self.connection = connection
        self.rooms: list[str] = []
        self.held: dict[str, list[Message]] = {}
        self.live: set[str] = set()
        self.out: list[dict[str, Any]] = []

    def on_message(self, message: Message) -> None:
        held = self.held.get(message.room)
        if held is not None:
            held.append(message)
        elif message.room in self.live:
            self.out.append(message.frame())

    def hold(self, room: str) -> None:
        self.live.discard(room)
        self.held[room] = []
        if room not in self.rooms:
            self.rooms.append(room)

    def release(self, room: str, upto: int) -> bool:
        held = self.held.pop(room, None)
        if held is None:
            return False
        self.out.extend(m.frame() for m in held if m.seq > upto)
        self.live.add(room)
        return True

    def drop(self, room: str) -> None:
        if room in self.rooms:
            self.rooms.remove(room)
        self.held.pop(room, None)
        self.live.discard(room)

    def answer(self, frame: dict[str, Any]) -> None:
        self.out.append(frame)

    def replay(self, message: Message) -> None:
        self.out.append(message.frame())

    def seqs(self) -> list[int]:
        """The seq of every message frame sent, in order."""
        return [f["seq"] for f in self.out if f["type"] == "message"]
