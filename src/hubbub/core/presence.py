"""Presence transitions: when a user goes online or offline in a room, and who hears of it.

A user is online in a room from their first joined connection there (on any node) to their
last one leaving. The engine's `Presence` counts the connections and says when a count
starts or ends; this module turns those two moments into the `presence` events of the
spec. (The distributed engine also publishes transitions it alone can see: a dead node's
users swept offline, a node re-registering after losing Redis; see `engine.redis.presence`.)
"""

from __future__ import annotations

from collections.abc import Sequence

from hubbub.engine.base import Bus, Presence
from hubbub.protocol.events import presence_frame


class RoomPresence:
    """Counts connections in rooms through the engine and publishes the transitions."""

    def __init__(self, presence: Presence, bus: Bus) -> None:
        self.presence = presence
        self.bus = bus

    async def arrive(self, room: str, user: str, connection: str) -> bool:
        """Count `connection` in `room`; True if it made the user online there (the first).

        The caller publishes the transition with `announce_online` once the connection's
        own view of the room is settled (a join answers `joined` first)."""
        return await self.presence.add(room, user, connection)

    def announce_online(self, room: str, user: str, connection: str) -> None:
        """Tell the room the user is online; the arriving connection learned it from its
        `joined` frame's presence list, so it is skipped."""
        self.bus.publish_event(
            room, presence_frame(room, user, "online"), skip_connection=connection
        )

    async def leave(self, room: str, user: str, connection: str) -> bool:
        """Forget `connection` in `room`; if it was the user's last there, tell every
        connection in the room that the user is offline; True then."""
        last = await self.presence.remove(room, user, connection)
        if last:
            self.bus.publish_event(room, presence_frame(room, user, "offline"))
        return last

    async def online(self, room: str) -> Sequence[str]:
        return await self.presence.online(room)
