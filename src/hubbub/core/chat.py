"""The chat rules, one object for the HTTP API and the WebSocket gateway: accounts and
tokens (`core.accounts`), rooms, roles, membership and bans (`core.rooms`), and here
the room log: history, sending, the updates of messages (edit, delete, react, unreact),
who is online.

Backend-free: everything durable goes through the engine interfaces in `engine.base`.
"""

from __future__ import annotations

from hubbub.core.accounts import Accounts, token_hash
from hubbub.core.audit import audit
from hubbub.core.rooms import STAFF, Rooms
from hubbub.engine.base import Appended, Message, RoomChange
from hubbub.engine.entry import Draft, Kind
from hubbub.protocol import rules
from hubbub.protocol.errors import Forbidden, NotFound

__all__ = ["Chat", "token_hash"]  # callers and tests import `token_hash` from here


class Chat(Accounts, Rooms):
    """What users may do, and its effects; shared by the HTTP API and the WebSocket gateway."""

    async def history(
        self,
        user: str,
        name: str,
        before: int | None,
        after: int | None,
        limit: int,
        thread: int | None = None,
    ) -> tuple[list[Message], bool]:
        """A page of messages in their current state (of `thread`, when given)."""
        await self.readable(user, name)
        return await self.log.page(name, before, after, limit, thread)

    async def versions(self, user: str, name: str, seq: int) -> list[Message]:
        """A message's versions, oldest first (NotFound once it was deleted)."""
        await self.readable(user, name)
        return await self.log.versions(name, seq)

    async def online(self, user: str, name: str) -> list[str]:
        await self.readable(user, name)
        return list(await self.presence.online(name))

    def _check_open(self, room: str) -> None:
        """An archived or deleted room is refused from this node's set (no read per send)."""
        closed = self._closed.get(room)
        if closed is not None:
            if closed is RoomChange.DELETED:
                raise NotFound(f"no room {room!r}")
            raise Forbidden(rules.archived_room(room))

    async def send(
        self,
        user: str,
        room: str,
        msg_id: str,
        body: str,
        reply_to: int | None = None,
        thread: int | None = None,
    ) -> Appended:
        """Append a message to the room's log; the gateway checked that this connection
        joined it. A plain one takes the log's one-statement path."""
        self._check_open(room)
        if reply_to is None and thread is None:
            return await self.log.append(room, user, msg_id, body)
        draft = Draft(body=body, reply_to=reply_to, thread=thread)
        return await self.log.append_entry(room, user, msg_id, draft)

    async def delete_draft(self, user: str, room: str, target: int) -> Draft:
        """The draft of a delete by `user`: the room's owner and moderators may delete
        anyone's message (the log checks the rest where it assigns the seq)."""
        role = await self.store.role(room, user)
        return Draft(kind=Kind.DELETE, target=target, staff=role in STAFF)

    async def update(self, user: str, room: str, msg_id: str, draft: Draft) -> Appended:
        """Append an edit, delete, react or unreact to the room's log (the gateway checked
        the connection joined it). A moderator's delete of another's message is audited:
        who, which message, whose (never its text)."""
        self._check_open(room)
        appended = await self.log.append_entry(room, user, msg_id, draft)
        author = appended.target_sender if draft.kind == Kind.DELETE else None
        if appended.created and author is not None and author.lower() != user.lower():
            audit("message_deleted", actor=user, target=author, room=room, seq=draft.target)
        return appended
