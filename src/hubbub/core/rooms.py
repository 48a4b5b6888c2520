"""The room rules: a room's lifecycle (create, archive, delete), who may see it,
membership (join, invite, leave, kick), bans and roles.

Security events are audited here, where the rule decides (`core.audit`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import secrets
from contextlib import nullcontext
from typing import Any

from hubbub.core.audit import Client, audited, audited_unless_self
from hubbub.core.state import ChatState
from hubbub.engine.base import Role, Room, RoomChange
from hubbub.engine.entry import Draft, Kind
from hubbub.protocol import rules
from hubbub.protocol.bodies import NewRoom, RoomChanges, convert
from hubbub.protocol.errors import Conflict, Forbidden, NotFound
from hubbub.protocol.frames import valid_room_name, valid_username

STAFF = (Role.OWNER, Role.MODERATOR)


class Rooms(ChatState):
    """Rooms and who is in them, with which role."""

    async def create_room(self, user: str, name: Any, topic: Any, private: Any) -> dict[str, Any]:
        """A new room owned by `user`; null `topic` and `private` are taken as absent."""
        new = convert({"name": name, "topic": topic, "private": private}, NewRoom)
        room = Room(
            name=new.name,
            topic=new.topic or "",
            private=bool(new.private),
            owner=user,
            created_at=self.now_ms(),
        )
        try:
            await self.store.create_room(room)
        except Conflict:
            if not await self._free_deleted_name(new.name):
                raise
            await self.store.create_room(room)
        return await self.room_view(room)

    async def _free_deleted_name(self, name: str) -> bool:
        """Purge the room deleted under `name` once its grace is over (True); Conflict, with
        the date it is free, within the grace; False if no deleted room holds the name."""
        deleted_at = await self.store.deleted_at(name)
        if deleted_at is None:
            return False
        free_at = deleted_at + self.name_grace * 1000
        if self.now_ms() < free_at:
            when = datetime.datetime.fromtimestamp(free_at / 1000, datetime.UTC)
            raise Conflict(rules.name_held(name, when.strftime("%Y-%m-%dT%H:%M:%SZ")))
        await self.log.purge(name)
        await self.store.purge_room(name)
        self._closed.pop(name, None)
        return True

    async def readable(self, user: str, name: str) -> tuple[Room, Role | None]:
        """The room and the user's role in it, if the user may see it; else NotFound/Forbidden."""
        if not valid_room_name(name):
            # No room can have this name: say what a name is, and which one was meant.
            raise NotFound(f"no room {name[:64]!r}: {rules.room_rule(name)}")
        room = await self.store.get_room(name)
        if room is None:
            raise NotFound(f"no room {name!r}")
        role = await self.store.role(name, user)
        if role is None:
            if room.private:
                raise NotFound(f"no room {name!r}")
            if await self.store.is_banned(name, user):
                raise Forbidden(f"you are banned from {name!r}")
        return room, role

    async def owned(self, user: str, name: str) -> Room:
        room, role = await self.readable(user, name)
        if role is not Role.OWNER:
            raise Forbidden(f"only the owner of {name!r} may do that")
        return room

    async def change_room(
        self, user: str, name: str, data: dict[str, Any], client: Client | None = None
    ) -> dict[str, Any]:
        """Apply a `RoomChanges` body; the room as it is afterwards. `archived` is the
        owner's (audited), `topic` the owner's and the moderators'; both are checked before
        either applies, and the topic (the one that may be refused by the log) goes first.
        An archived room is read-only, its topic too, unless this body unarchives it. An
        empty body is the owner's."""
        changes = convert(data, RoomChanges)
        archived, topic = changes.archived, changes.topic
        if archived is None and topic is None:
            return await self.room_view(await self.owned(user, name))
        event = "room_archived" if archived else "room_unarchived"
        with audited(event, user, client, room=name) if archived is not None else nullcontext():
            room, role = await self.readable(user, name)
            if archived is not None and role is not Role.OWNER:
                raise Forbidden(f"only the owner of {name!r} may do that")
            if topic is not None and role not in STAFF:
                raise Forbidden("only the owner or a moderator may change the topic")
            if topic is not None and topic != room.topic:
                if room.archived and archived is not False:
                    raise Forbidden(rules.archived_room(name))
                draft = Draft(Kind.TOPIC, topic=topic)
                await self.log.append_entry(name, user, "topic-" + secrets.token_hex(8), draft)
                room = dataclasses.replace(room, topic=topic)
            if archived is not None:
                room = await self._set_archived(room, archived)
        return await self.room_view(room)

    async def _set_archived(self, room: Room, archived: bool) -> Room:
        if archived == room.archived:
            return room
        await self.store.set_archived(room.name, archived)
        change = RoomChange.ARCHIVED if archived else RoomChange.UNARCHIVED
        self.room_changed(room.name, change)  # here at once, elsewhere through the bus
        self.bus.publish_room_changed(room.name, change)
        return dataclasses.replace(room, archived=archived)

    async def delete_room(self, user: str, name: str, client: Client | None = None) -> None:
        """Delete the room (the owner's): memberships and bans go, every body is redacted,
        joined connections are told `left`, and the name is held for the grace."""
        with audited("room_deleted", user, client, room=name):
            await self.owned(user, name)
            await self.store.delete_room(name, self.now_ms())
            # Before the redaction: no send is taken here once it starts (see `send`).
            self._closed[name] = RoomChange.DELETED
            self.bus.publish_room_changed(name, RoomChange.DELETED)
            await self.log.redact(name)

    def room_changed(self, room: str, change: str) -> None:
        """A room was archived, unarchived or deleted on some node (from the bus)."""
        if change == RoomChange.UNARCHIVED:
            self._closed.pop(room, None)
        elif self._closed.get(room) is not RoomChange.DELETED:
            self._closed[room] = RoomChange(change)

    async def staff(self, user: str, name: str) -> tuple[Room, Role]:
        room, role = await self.readable(user, name)
        if role not in STAFF:
            raise Forbidden("only the owner or a moderator may do that")
        assert role is not None
        return room, role

    async def room_view(self, room: Room) -> dict[str, Any]:
        members = await self.store.members(room.name)
        return {
            "name": room.name,
            "topic": room.topic,
            "private": room.private,
            "owner": room.owner,
            "moderators": [name for name, role in members if role is Role.MODERATOR],
            "members": [name for name, _ in members],
            "last_seq": await self.log.last_seq(room.name),
            "created_at": room.created_at,
            "archived": room.archived,
        }

    async def get_room(self, user: str, name: str) -> dict[str, Any]:
        room, _ = await self.readable(user, name)
        return await self.room_view(room)

    async def list_rooms(self, user: str, archived: bool = False) -> list[dict[str, Any]]:
        rooms = await self.store.list_rooms(user, archived)
        banned = [await self.store.is_banned(r.name, user) for r in rooms]
        return [await self.room_view(r) for r, b in zip(rooms, banned, strict=True) if not b]

    async def me(self, user: str) -> dict[str, Any]:
        rooms = await self.store.member_rooms(user)
        return {"user": {"name": user}, "rooms": [await self.room_view(r) for r in rooms]}

    async def join(self, user: str, name: str) -> Room:
        """Make sure the user is a member (joining a public room makes them one; joining an
        archived one only reads it)."""
        room, role = await self.readable(user, name)
        if room.archived:
            self._closed[name] = RoomChange.ARCHIVED
        else:
            self._closed.pop(name, None)
        if role is None and not room.archived:
            # A burst of joins before the first is written would each write the same row:
            # they share the first one's write instead.
            key = (name, user.lower())
            write = self._joining.get(key)
            if write is None:
                write = asyncio.ensure_future(self.store.add_member(name, user, self.now_ms()))
                self._joining[key] = write
                write.add_done_callback(lambda _: self._joining.pop(key, None))
            await asyncio.shield(write)  # one joiner giving up does not cancel the others'
        return room

    async def _target(self, name: str) -> str:
        target = await self.store.get_user(name) if valid_username(name) else None
        if target is None:
            raise NotFound(f"no user {name!r}")
        return target.name

    async def add_member(
        self, actor: str, name: str, target_name: str, client: Client | None = None
    ) -> None:
        """Add a member (audited as an invite), or join a public room oneself (not audited)."""
        with audited_unless_self("invite", actor, client, target_name, name):
            await self._add_member(actor, name, target_name)

    async def _add_member(self, actor: str, name: str, target_name: str) -> None:
        room, role = await self.readable(actor, name)
        target = await self._target(target_name)
        if room.archived:
            raise Forbidden(rules.archived_members(name))
        if target.lower() != actor.lower() and role not in STAFF:
            raise Forbidden("only the owner or a moderator may add others")
        if target.lower() == actor.lower() and room.private and role is None:
            raise NotFound(f"no room {name!r}")
        if await self.store.is_banned(name, target):
            raise Forbidden(f"{target} is banned from {name!r}")
        await self.store.add_member(name, target, self.now_ms())

    async def remove_member(
        self, actor: str, name: str, target_name: str, client: Client | None = None
    ) -> None:
        """Remove a member (audited as a kick), or leave oneself (not audited)."""
        with audited_unless_self("kick", actor, client, target_name, name):
            await self._remove_member(actor, name, target_name)

    async def _remove_member(self, actor: str, name: str, target_name: str) -> None:
        room, role = await self.readable(actor, name)
        target = await self._target(target_name)
        self_leave = target.lower() == actor.lower()
        target_role = await self.store.role(name, target)
        if target_role is Role.OWNER:
            raise Forbidden("the owner cannot leave or be removed")
        if not self_leave and room.archived:
            raise Forbidden(rules.archived_members(name))
        if not self_leave:
            self._check_outranks(role, target_role)
        if await self.store.remove_member(name, target):
            self.bus.publish_removed(name, target, "left" if self_leave else "kicked")

    @staticmethod
    def _check_outranks(role: Role | None, target_role: Role | None) -> None:
        if role not in STAFF:
            raise Forbidden("only the owner or a moderator may do that")
        if target_role in STAFF and role is not Role.OWNER:
            raise Forbidden("only the owner may do that to a moderator")

    async def ban(
        self, actor: str, name: str, target_name: str, client: Client | None = None
    ) -> None:
        with audited("ban", actor, client, target=target_name, room=name):
            await self._ban(actor, name, target_name)

    async def _ban(self, actor: str, name: str, target_name: str) -> None:
        room, role = await self.staff(actor, name)
        if room.archived:
            raise Forbidden(rules.archived_members(name))
        target = await self._target(target_name)
        if target.lower() == actor.lower():
            raise Forbidden("you cannot ban yourself")
        target_role = await self.store.role(name, target)
        if target_role is Role.OWNER:
            raise Forbidden("the owner cannot be banned")
        self._check_outranks(role, target_role)
        await self.store.ban(name, target, actor, self.now_ms())
        self.bus.publish_removed(name, target, "banned")

    async def unban(
        self, actor: str, name: str, target_name: str, client: Client | None = None
    ) -> None:
        with audited("unban", actor, client, target=target_name, room=name):
            room, _ = await self.staff(actor, name)
            if room.archived:
                raise Forbidden(rules.archived_members(name))
            await self.store.unban(name, await self._target(target_name))

    async def bans(self, actor: str, name: str) -> list[str]:
        await self.staff(actor, name)
        return await self.store.bans(name)

    async def promote(
        self, actor: str, name: str, target_name: str, client: Client | None = None
    ) -> None:
        with audited("promote", actor, client, target=target_name, room=name):
            await self.set_moderator(actor, name, target_name, True)

    async def demote(
        self, actor: str, name: str, target_name: str, client: Client | None = None
    ) -> None:
        with audited("demote", actor, client, target=target_name, room=name):
            await self.set_moderator(actor, name, target_name, False)

    async def set_moderator(self, actor: str, name: str, target_name: str, on: bool) -> None:
        room, role = await self.readable(actor, name)
        if role is not Role.OWNER:
            raise Forbidden("only the owner may promote or demote moderators")
        if room.archived:
            raise Forbidden(rules.archived_members(name))
        target = await self._target(target_name)
        target_role = await self.store.role(name, target)
        if target_role is None:
            raise NotFound(f"{target} is not a member of {name!r}")
        if target_role is Role.OWNER:
            raise Forbidden("the owner's role cannot change")
        await self.store.set_member(
            name, target, Role.MODERATOR if on else Role.MEMBER, self.now_ms()
        )
