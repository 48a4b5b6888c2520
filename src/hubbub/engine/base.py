"""The seams between the chat rules and the backends: plain records and Protocol classes.

The rules (`hubbub.core.chat`) and the gateway depend on these interfaces only; the
embedded engine (SQLite + in-process bus) and the distributed one implement them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

# The log's records live in `engine.entry`; they are part of this module's interface.
from hubbub.engine.entry import Appended as Appended
from hubbub.engine.entry import Draft as Draft
from hubbub.engine.entry import Message as Message
from hubbub.engine.entry import replayed as replayed


class RoomChange(StrEnum):
    """What `Bus.publish_room_changed` tells the nodes of a room."""

    ARCHIVED = "archived"
    UNARCHIVED = "unarchived"
    DELETED = "deleted"


class Role(StrEnum):
    OWNER = "owner"
    MODERATOR = "moderator"
    MEMBER = "member"


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password_hash: str

    @property
    def key(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class LoginSession:
    """One issued token, as its owner sees it: a login that can be listed and revoked.

    `id` is random and unrelated to the token, so it can be shown and sent in URLs; the
    token itself is never stored, only its SHA-256 (`token_hash`).
    """

    id: str
    token_hash: str
    user: str
    created_at: int
    last_used_at: int
    expires_at: int
    user_agent: str
    address: str


@dataclass(frozen=True, slots=True)
class Room:
    name: str
    topic: str
    private: bool
    owner: str
    created_at: int
    archived: bool = False


class Store(Protocol):
    """Users, tokens, rooms, memberships and bans: the durable state besides messages."""

    async def create_user(self, name: str, password_hash: str, now: int) -> User:
        """A new account; Conflict if the name is taken, or was a deleted account's."""
        ...

    async def get_user(self, name: str) -> User | None:
        """The account of that name (any case), or None if none or it was deleted."""
        ...

    async def delete_user(self, name: str, now: int) -> list[str]:
        """Delete the account: its tokens and memberships go, its row stays (so the name
        is never given out again); the token hashes deleted."""
        ...

    async def set_password_hash(self, name: str, password_hash: str) -> None: ...
    async def create_token(
        self,
        token_hash: str,
        user: str,
        now: int,
        expires_at: int,
        *,
        session_id: str,
        user_agent: str = "",
        address: str = "",
    ) -> None:
        """Store a new token; the user's expired tokens are deleted on the way."""
        ...

    async def token_session(self, token_hash: str, now: int) -> LoginSession | None:
        """The session of an unexpired token (`user` is the display name), or None."""
        ...

    async def touch_token(self, token_hash: str, now: int) -> None:
        """Record a use of the token (callers do it at most about once a minute)."""
        ...

    async def sessions(self, user: str, now: int) -> list[LoginSession]:
        """The user's unexpired sessions, the most recently created first."""
        ...

    async def delete_session(self, user: str, session_id: str) -> str | None:
        """Delete one of the user's sessions; the token hash it had, or None if none matched."""
        ...

    async def delete_sessions(self, user: str, keep: str | None = None) -> list[str]:
        """Delete every session of the user but the token `keep`; the token hashes deleted."""
        ...

    async def delete_token(self, token_hash: str) -> None: ...
    async def create_room(self, room: Room) -> None:
        """Store a new room owned by `room.owner`; Conflict if the name is held (by a room,
        or by a deleted one not yet purged)."""
        ...

    async def get_room(self, name: str) -> Room | None:
        """The room, unless there is none or it was deleted."""
        ...

    async def list_rooms(self, user: str, archived: bool = False) -> list[Room]:
        """Public rooms and the user's private ones, archived or not as asked."""
        ...

    async def member_rooms(self, user: str) -> list[Room]:
        """The unarchived rooms the user is a member of."""
        ...

    async def set_archived(self, name: str, archived: bool) -> None: ...
    async def delete_room(self, name: str, now: int) -> None:
        """Mark the room deleted at `now` and remove its memberships and bans (the log is
        redacted by `Log.redact`)."""
        ...

    async def deleted_at(self, name: str) -> int | None:
        """When the room of that name was deleted, if it was and is not purged yet."""
        ...

    async def purge_room(self, name: str) -> None:
        """Forget a deleted room's row (after `Log.purge`): the name is free again."""
        ...

    async def role(self, room: str, user: str) -> Role | None: ...
    async def members(self, room: str) -> list[tuple[str, Role]]: ...
    async def set_member(self, room: str, user: str, role: Role, now: int) -> None: ...
    async def add_member(self, room: str, user: str, now: int) -> bool: ...
    async def remove_member(self, room: str, user: str) -> bool: ...
    async def is_banned(self, room: str, user: str) -> bool: ...
    async def ban(self, room: str, user: str, by: str, now: int) -> None: ...
    async def unban(self, room: str, user: str) -> bool: ...
    async def bans(self, room: str) -> list[str]: ...


class Log(Protocol):
    """Each room's durable, gapless message log."""

    async def append(self, room: str, sender: str, msg_id: str, body: str) -> Appended:
        """Assign the next seq and store durably (idempotent on room, sender, id), then publish.

        Raises Conflict for a known id with another body. Returns once durable.
        """
        ...

    async def last_seq(self, room: str) -> int:
        """The room's last seq, answered only once every message up to it was published.

        A join uses it as its cut between replay and live delivery: no message at or
        below it can still reach the bus afterwards.
        """
        ...

    async def read(self, room: str, after: int, upto: int) -> list[Message]:
        """Messages with after < seq <= upto, ascending."""
        ...

    async def append_entry(self, room: str, sender: str, msg_id: str, draft: Draft) -> Appended:
        """`append` for any entry but a plain message: an update, or a message with
        `reply_to` or `thread`. Checked against the log in the turn that assigns its seq
        (NotFound, Forbidden, Conflict, TooLarge: nothing is stored and no seq is taken),
        stored durably with its effects on the current state (an edit's new body, a
        reaction, a thread's summary, a delete's redaction, a room's topic), then published.
        An engine that cannot hold updates answers BadRequest and changes nothing."""
        ...

    async def page(
        self,
        room: str,
        before: int | None,
        after: int | None,
        limit: int,
        thread: int | None = None,
    ) -> tuple[list[Message], bool]:
        """One history page of messages (no updates) in their current state, ascending,
        and whether more exist in the paging direction. Without `thread` the messages
        inside threads are left out; with it, the page is that thread's: its root, then
        its replies (NotFound if `thread` is not a root: a message outside threads)."""
        ...

    async def versions(self, room: str, seq: int) -> list[Message]:
        """A message's versions, oldest first: the message as sent, then each edit (their
        `body`). NotFound for a seq that is not a message, or one that was deleted."""
        ...

    async def redact(self, room: str) -> None:
        """Remove every message body of a deleted room from storage, wherever the log keeps
        it; the messages stay as tombstones (seq, id, sender, ts, `deleted`). Appends that
        come after it are refused (NotFound) where the engine can tell (Redis)."""
        ...

    async def purge(self, room: str) -> None:
        """Forget a deleted room's log entirely, its seq counter too: a new room of that
        name starts at seq 1."""
        ...


class BusListener(Protocol):
    """What a node does with what the bus brings it (the gateway implements it)."""

    def on_message(self, message: Message) -> None: ...
    def on_event(
        self, room: str, frame: dict[str, Any], skip_user: str | None, skip_connection: str | None
    ) -> None: ...
    def on_removed(self, room: str, user: str, reason: str) -> None: ...
    def on_room_changed(self, room: str, change: str) -> None:
        """The room was archived, unarchived or deleted (`RoomChange`)."""
        ...

    def on_token_revoked(self, token_hash: str) -> None: ...


class Bus(Protocol):
    """Fan-out to every node: messages in seq order, ephemeral events, and control notices.

    Messages are published by `Log.append`, never through the bus: each engine wires its
    log to its bus (the embedded ones pass the in-process bus's delivery as the log's
    `OnCommit`; on Redis the append script publishes). The bus delivers them to listeners.
    """

    def attach(self, listener: BusListener) -> None: ...
    async def subscribe(self, room: str) -> None:
        """Start bringing `room` to this node; returns once no later message can be missed."""
        ...

    def unsubscribe(self, room: str) -> None:
        """Stop bringing `room` to this node (none of its connections is joined there)."""
        ...

    def publish_event(
        self,
        room: str,
        frame: dict[str, Any],
        skip_user: str | None = None,
        skip_connection: str | None = None,
    ) -> None: ...
    def publish_removed(self, room: str, user: str, reason: str) -> None: ...
    def publish_room_changed(self, room: str, change: str) -> None:
        """Tell every node subscribed to `room` that it changed (`RoomChange`)."""
        ...

    def publish_token_revoked(self, token_hash: str) -> None: ...
    def delivery_problem(self) -> str | None:
        """Why fan-out to this node cannot be trusted now, in a sentence (`/readyz` answers
        503 with it), or None while it delivers."""
        ...


class Presence(Protocol):
    """Who is online in which room, counted by connection, on every node."""

    async def add(self, room: str, user: str, connection: str) -> bool:
        """Record a connection in a room; True if it is the user's first there (on any node)."""
        ...

    async def remove(self, room: str, user: str, connection: str) -> bool:
        """Forget a connection in a room; True if it was the user's last there (on any node)."""
        ...

    async def online(self, room: str) -> Sequence[str]: ...


class Counters(Protocol):
    """Counters that expire a fixed window after their first hit, shared by every node.

    What login throttling counts failures in: in process memory on one node, in Redis
    when nodes share a load balancer (the limit must hold whichever node a guess reaches).
    """

    async def get(self, keys: Sequence[str]) -> list[tuple[int, float]]:
        """Each key's count and the seconds until it expires ((0, 0.0) for an absent key)."""
        ...

    async def hit(self, keys: Sequence[str], window: float) -> None:
        """Add one to each key; a key's window starts at its first hit."""
        ...

    async def clear(self, key: str) -> None: ...


class Engine(Protocol):
    """A complete backend: built once from the configured URLs by the composition root."""

    store: Store
    log: Log
    bus: Bus
    presence: Presence
    counters: Counters

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def problem(self) -> str | None:
        """Why this node should take no new clients now (its fan-out stalled, its database
        does not answer), in a sentence for `/readyz`; None while it can serve."""
        ...


OnCommit = Callable[[Message], None]
"""What a log calls with each message it created, in seq order, right after storing it."""
