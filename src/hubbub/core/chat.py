"""The chat rules, one object for the HTTP API and the WebSocket gateway: accounts and
tokens (`core.accounts`), rooms, roles, membership and bans (`core.rooms`), and here
the messages: history, sending, who is online.

Backend-free: everything durable goes through the engine interfaces in `engine.base`.
"""

from __future__ import annotations

from hubbub.core.accounts import Accounts, token_hash
from hubbub.core.rooms import Rooms
from hubbub.engine.base import Appended, Message, RoomChange
from hubbub.protocol import rules
from hubbub.protocol.errors import Forbidden, NotFound

__all__ = ["Chat", "token_hash"]  # callers and tests import `token_hash` from here


class Chat(Accounts, Rooms):
    """What users may do, and its effects; shared by the HTTP API and the WebSocket gateway."""

    async def history(
        self, user: str, name: str, before: int | None, after: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        await self.readable(user, name)
        return await self.log.page(name, before, after, limit)

    async def online(self, user: str, name: str) -> list[str]:
        await self.readable(user, name)
        return list(await self.presence.online(name))

    async def send(self, user: str, room: str, msg_id: str, body: str) -> Appended:
        """Append to the room's log; the gateway checked that this connection joined it.

        An archived or deleted room is refused from this node's set (no read per send)."""
        closed = self._closed.get(room)
        if closed is not None:
            if closed is RoomChange.DELETED:
                raise NotFound(f"no room {room!r}")
            raise Forbidden(rules.archived_room(room))
        return await self.log.append(room, user, msg_id, body)
