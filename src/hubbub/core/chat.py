"""The chat rules: accounts, tokens, rooms, roles, membership, bans, history, sending.

Backend-free: everything durable goes through the engine interfaces in `engine.base`.
Security events are audited here, where the rule decides (`core.audit`): callers pass
the `Client` a request came from.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from argon2 import PasswordHasher

from hubbub.core.audit import Client, audit, audited, audited_unless_self
from hubbub.core.limits import LoginThrottle
from hubbub.core.passwords import Passwords
from hubbub.core.tokens import TokenCache
from hubbub.engine.base import (
    Appended,
    Bus,
    Log,
    LoginSession,
    Message,
    Presence,
    Role,
    Room,
    RoomChange,
    Store,
)
from hubbub.protocol import rules
from hubbub.protocol.bodies import AccountDeletion, NewRoom, Registration, RoomChanges, convert
from hubbub.protocol.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ProtocolError,
    RateLimited,
    Unauthorized,
)
from hubbub.protocol.frames import valid_room_name, valid_username

STAFF = (Role.OWNER, Role.MODERATOR)
TOUCH_EVERY_MS = 60_000
"""A token's `last_used_at` is written at most this often (a write per use would cost an
fsync per request); it is as fresh as the list of sessions needs."""

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def token_hash(token: str) -> str:
    """Tokens carry 256 random bits, so a plain SHA-256 is the right way to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


def session_view(s: LoginSession, current: str) -> dict[str, Any]:
    return {
        "id": s.id,
        "created": s.created_at,
        "last_used": s.last_used_at,
        "expires": s.expires_at,
        "user_agent": s.user_agent,
        "address": s.address,
        "current": s.token_hash == current,
    }


class Chat:
    """What users may do, and its effects; shared by the HTTP API and the WebSocket gateway."""

    def __init__(
        self,
        store: Store,
        log: Log,
        bus: Bus,
        presence: Presence,
        *,
        token_ttl: int,
        name_grace: int = 7 * 24 * 3600,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.store = store
        self.log = log
        self.bus = bus
        self.presence = presence
        self.token_ttl = token_ttl
        self.name_grace = name_grace  # seconds a deleted room's name stays held
        self.passwords = Passwords(hasher)
        self.clock = clock
        self.throttle = throttle or LoginThrottle(None, 0, 0)
        self._tokens = TokenCache()
        self._joining: dict[tuple[str, str], asyncio.Future[bool]] = {}  # memberships being written
        # Rooms joined on this node that are archived or deleted (-> ARCHIVED or DELETED):
        # sends to them are refused without a read (each join refreshes its room's entry
        # from the record it loads anyway, and `room_changed` keeps it current between joins).
        self._closed: dict[str, RoomChange] = {}

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # Accounts and tokens

    async def register(
        self, username: Any, password: Any, client: Client | None = None
    ) -> dict[str, Any]:
        actor = username if isinstance(username, str) and valid_username(username) else None
        try:
            user = await self._register(username, password)
        except ProtocolError as exc:
            audit("register", actor=actor, client=client, outcome=exc.code)
            raise
        audit("register", actor=user["name"], client=client)
        return user

    async def _register(self, username: Any, password: Any) -> dict[str, Any]:
        new = convert({"username": username, "password": password}, Registration)
        # Hashed before the name is tried: a taken name costs the same time as a free one.
        hashed = await self.passwords.hash(new.password)
        user = await self.store.create_user(new.username, hashed, self.now_ms())
        return {"name": user.name}

    async def login(
        self, username: Any, password: Any, client: Client | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A new token for the right password; throttled per address and per account."""
        if not isinstance(username, str) or not isinstance(password, str):
            raise BadRequest("username and password must be strings")
        client = client or Client()
        # A string that is no username may be a password typed in the wrong field: not logged.
        actor = username if valid_username(username) else None
        keys = self.throttle.keys(username, client.address)
        try:
            await self.throttle.check(keys)
        except RateLimited:
            audit(
                "login_failed",
                actor=actor,
                client=client,
                outcome="rate_limited",
                reason="throttled",
            )
            raise
        user = await self.store.get_user(username) if actor else None
        stored = user.password_hash if user else self.passwords.dummy_hash  # same cost either way
        if not await self.passwords.verify(stored, password) or user is None:
            await self.throttle.failed(keys)
            reason = "unknown_user" if user is None else "bad_password"
            audit("login_failed", actor=actor, client=client, outcome="unauthorized", reason=reason)
            raise Unauthorized("wrong username or password")
        await self.throttle.succeeded(keys)
        if self.passwords.needs_rehash(stored):
            await self.store.set_password_hash(user.name, await self.passwords.hash(password))
            audit("password_rehashed", actor=user.name, client=client)
        token = secrets.token_urlsafe(32)
        session_id = secrets.token_urlsafe(12)
        now = self.now_ms()
        await self.store.create_token(
            token_hash(token),
            user.name,
            now,
            now + self.token_ttl * 1000,
            session_id=session_id,
            user_agent=client.user_agent,
            address=client.address,
        )
        audit("login", actor=user.name, client=client, target=session_id)
        return token, {"name": user.name}

    async def authenticate(self, token: Any) -> tuple[str, str]:
        """The user a token belongs to, and the token's hash; raises Unauthorized."""
        if not isinstance(token, str) or not token or len(token) > 256 or not token.isascii():
            raise Unauthorized("missing or malformed token")
        hashed = token_hash(token)
        now = self.now_ms()
        cached = self._tokens.get(hashed, now)
        if cached is not None:
            return cached, hashed
        found = await self.store.token_session(hashed, now)
        if found is None:
            raise Unauthorized("invalid, expired or revoked token")
        if now - found.last_used_at >= TOUCH_EVERY_MS:
            await self.store.touch_token(hashed, now)
        self._tokens.put(hashed, found.user, found.expires_at, now)
        return found.user, hashed

    async def logout(
        self, hashed: str, *, user: str | None = None, client: Client | None = None
    ) -> None:
        """Revoke the token `hashed` (of `user`, who is logging out)."""
        await self.store.delete_token(hashed)
        self._revoked(hashed)
        audit("logout", actor=user, client=client)

    def _revoked(self, hashed: str) -> None:
        """Forget the token here, and close its WebSockets (4001) on every node."""
        self._tokens.forget(hashed)
        self.bus.publish_token_revoked(hashed)

    def forget_token(self, hashed: str) -> None:
        """Drop a token revoked on another node (or this one) from this node's cache."""
        self._tokens.forget(hashed)

    async def sessions(self, user: str, current: str) -> list[dict[str, Any]]:
        """The user's live tokens; `current` (a token hash) is the one asking."""
        return [session_view(s, current) for s in await self.store.sessions(user, self.now_ms())]

    async def revoke_session(
        self, user: str, session_id: str, client: Client | None = None
    ) -> None:
        """Revoke one of the user's sessions; NotFound for an unknown id or someone else's."""
        with audited("session_revoked", user, client, target=session_id):
            hashed = None
            if SESSION_ID.match(session_id):
                hashed = await self.store.delete_session(user, session_id)
            if hashed is None:
                raise NotFound(f"no session {session_id!r}")
            self._revoked(hashed)

    async def revoke_sessions(
        self, user: str, keep: str | None, client: Client | None = None
    ) -> int:
        """Revoke every session of the user but the token `keep` (a hash); how many went."""
        revoked = await self.store.delete_sessions(user, keep)
        for hashed in revoked:
            self._revoked(hashed)
        audit(
            "sessions_revoked_all",
            actor=user,
            client=client,
            reason="kept current" if keep else None,
            count=len(revoked),
        )
        return len(revoked)

    async def delete_account(
        self, user: str, data: dict[str, Any], client: Client | None = None
    ) -> None:
        """Delete the user's account once its password is given (throttled as logins are):
        tokens revoked (their WebSockets close with 4001 on every node), memberships and
        bans gone; the name stays taken for good, and sent messages keep their sender."""
        with audited("account_deleted", user, client):
            deletion = convert(data, AccountDeletion)
            keys = self.throttle.keys(user, (client or Client()).address)
            await self.throttle.check(keys)
            account = await self.store.get_user(user)
            stored = account.password_hash if account else self.passwords.dummy_hash
            if not await self.passwords.verify(stored, deletion.password) or account is None:
                await self.throttle.failed(keys)
                raise Unauthorized("wrong password: the account was not deleted")
            await self.throttle.succeeded(keys)
            for hashed in await self.store.delete_user(account.name, self.now_ms()):
                self._revoked(hashed)

    # Rooms

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
        """Apply a `RoomChanges` body (the owner's); the room as it is afterwards."""
        changes = convert(data, RoomChanges)
        if changes.archived is None:
            return await self.room_view(await self.owned(user, name))
        archived = changes.archived
        with audited("room_archived" if archived else "room_unarchived", user, client, room=name):
            room = await self.owned(user, name)
            if archived != room.archived:
                await self.store.set_archived(name, archived)
                change = RoomChange.ARCHIVED if archived else RoomChange.UNARCHIVED
                self.room_changed(name, change)  # here at once, elsewhere through the bus
                self.bus.publish_room_changed(name, change)
                room = dataclasses.replace(room, archived=archived)
        return await self.room_view(room)

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

    # Messages and presence

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
