"""In-process fan-out and presence for a single node (the embedded default)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from hubbub.engine.base import BusListener, Message


class MemoryBus:
    """Delivers straight to the listeners of this process, synchronously and in order."""

    def __init__(self) -> None:
        self._listeners: list[BusListener] = []

    def attach(self, listener: BusListener) -> None:
        self._listeners.append(listener)

    async def subscribe(self, room: str) -> None:
        """Nothing to do: every message of this process reaches its listeners."""

    def unsubscribe(self, room: str) -> None:
        """Nothing to do (see `subscribe`)."""

    def publish_message(self, message: Message) -> None:
        for listener in self._listeners:
            listener.on_message(message)

    def publish_event(
        self,
        room: str,
        frame: dict[str, Any],
        skip_user: str | None = None,
        skip_session: str | None = None,
    ) -> None:
        for listener in self._listeners:
            listener.on_event(room, frame, skip_user, skip_session)

    def publish_removed(self, room: str, user: str, reason: str) -> None:
        for listener in self._listeners:
            listener.on_removed(room, user, reason)

    def publish_token_revoked(self, token_hash: str) -> None:
        for listener in self._listeners:
            listener.on_token_revoked(token_hash)


class MemoryPresence:
    """room -> user -> the sessions through which the user is in the room."""

    def __init__(self) -> None:
        self._rooms: defaultdict[str, dict[str, set[str]]] = defaultdict(dict)

    async def add(self, room: str, user: str, session: str) -> bool:
        sessions = self._rooms[room].setdefault(user, set())
        first = not sessions
        sessions.add(session)
        return first

    async def remove(self, room: str, user: str, session: str) -> bool:
        users = self._rooms.get(room)
        if not users or user not in users:
            return False
        sessions = users[user]
        if session not in sessions:
            return False
        sessions.discard(session)
        if sessions:
            return False
        del users[user]
        if not users:
            del self._rooms[room]
        return True

    async def online(self, room: str) -> Sequence[str]:
        return sorted(self._rooms.get(room, {}), key=str.lower)
