"""In-process fan-out, presence and counters for a single node (the embedded default)."""

from __future__ import annotations

import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
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

    def deliver(self, message: Message) -> None:
        """Hand a logged message to every listener: the log's `OnCommit` (not part of `Bus`:
        messages are published by `Log.append`)."""
        for listener in self._listeners:
            listener.on_message(message)

    def publish_event(
        self,
        room: str,
        frame: dict[str, Any],
        skip_user: str | None = None,
        skip_connection: str | None = None,
    ) -> None:
        for listener in self._listeners:
            listener.on_event(room, frame, skip_user, skip_connection)

    def publish_removed(self, room: str, user: str, reason: str) -> None:
        for listener in self._listeners:
            listener.on_removed(room, user, reason)

    def publish_room_changed(self, room: str, change: str) -> None:
        for listener in self._listeners:
            listener.on_room_changed(room, change)

    def publish_token_revoked(self, token_hash: str) -> None:
        for listener in self._listeners:
            listener.on_token_revoked(token_hash)

    def delivery_problem(self) -> str | None:
        """None: a call in this process cannot be lost on the way (no canary needed)."""
        return None


class MemoryPresence:
    """room -> user -> the connections through which the user is in the room."""

    def __init__(self) -> None:
        self._rooms: defaultdict[str, dict[str, set[str]]] = defaultdict(dict)

    async def add(self, room: str, user: str, connection: str) -> bool:
        connections = self._rooms[room].setdefault(user, set())
        first = not connections
        connections.add(connection)
        return first

    async def remove(self, room: str, user: str, connection: str) -> bool:
        users = self._rooms.get(room)
        if not users or user not in users:
            return False
        connections = users[user]
        if connection not in connections:
            return False
        connections.discard(connection)
        if connections:
            return False
        del users[user]
        if not users:
            del self._rooms[room]
        return True

    async def online(self, room: str) -> Sequence[str]:
        return sorted(self._rooms.get(room, {}), key=str.lower)


class MemoryCounters:
    """Windowed counters in a dict of bounded size (login throttling and the room quota
    on one node).

    Keys are kept in the order of their first hit. Eviction pops expired keys from the
    front and stops at the first live one: with one window that is the order of expiry,
    and with the two windows in use (logins, rooms per hour) an expired key behind a
    longer-lived one waits its turn (`get` never counts it). When `limit` keys exist (a
    flood from that many addresses or names), the oldest is dropped early: memory stays
    bounded, and the cost is that the flood's oldest counters restart from zero.
    """

    def __init__(self, limit: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        # key -> (count, expires at); an OrderedDict pops its front in O(1), a dict not always
        self._counts: OrderedDict[str, tuple[int, float]] = OrderedDict()

    async def get(self, keys: Sequence[str]) -> list[tuple[int, float]]:
        now = self.clock()
        found = []
        for key in keys:
            count, expires = self._counts.get(key, (0, now))
            found.append((count, expires - now) if expires > now else (0, 0.0))
        return found

    async def hit(self, keys: Sequence[str], window: float) -> None:
        now = self.clock()
        for key in keys:
            count, expires = self._counts.get(key, (0, now))
            if expires > now:
                self._counts[key] = (count + 1, expires)
                continue
            self._counts.pop(key, None)  # re-inserted at the end: the order stays by expiry
            self._evict(now)
            self._counts[key] = (1, now + window)

    async def clear(self, key: str) -> None:
        self._counts.pop(key, None)

    def _evict(self, now: float) -> None:
        while self._counts:
            _, expires = next(iter(self._counts.values()))
            if expires > now and len(self._counts) < self.limit:
                return
            self._counts.popitem(last=False)
