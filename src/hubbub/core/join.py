"""Joining a room on a connection: the join cut, and the "joined?" rule of sends and typing.

A `join` with `since` delivers the missed messages exactly once, in order, before any
live one. The connection starts holding the room's live messages (with their seq) before
the log is read; the cut is `last = log.last_seq(room)`, which answers only once every
message up to it was handed to the bus (`engine.base.Log.last_seq`), so each message
either is at or below the cut (replayed from the log when asked for, or older than the
join) or arrives afterwards and is held. Then the connection gets `joined`, the replay,
and the held messages above the cut, and goes live: no gap, no duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hubbub.core.presence import RoomPresence
from hubbub.engine.base import Bus, Log, Message, Role, Room
from hubbub.protocol.errors import Forbidden, NotJoined
from hubbub.protocol.events import joined_frame


class Joiner(Protocol):
    """One connection as a join sees it (the WebSocket handler implements it on the
    gateway's connection)."""

    @property
    def user(self) -> str: ...

    @property
    def connection(self) -> str:
        """The connection's id: presence counts connections by it."""
        ...

    @property
    def rooms(self) -> Sequence[str]:
        """The rooms joined, or being joined, on this connection."""
        ...

    def hold(self, room: str) -> None:
        """Count `room` joined and hold its live messages, with their seq, undelivered."""
        ...

    def release(self, room: str, upto: int) -> bool:
        """Deliver the held messages with seq above `upto`, then deliver `room` live;
        False if the connection left the room meanwhile."""
        ...

    def drop(self, room: str) -> None:
        """Leave `room` (the join failed): what was held is discarded."""
        ...

    def answer(self, frame: dict[str, Any]) -> None:
        """Send the join's reply (the `joined` frame, with the join's ref)."""
        ...

    def replay(self, message: Message) -> None:
        """Send one replayed message."""
        ...


class Rooms(Protocol):
    """The membership rules a join needs (`core.chat.Chat` has them)."""

    async def join(self, user: str, name: str) -> Room: ...
    async def readable(self, user: str, name: str) -> tuple[Room, Role | None]: ...


@dataclass(frozen=True, slots=True)
class Cut:
    """What a join reads from the log: the cut, the replay up to it, and whether the
    replay is all the client missed (`recovered`)."""

    last: int
    replay: list[Message]
    recovered: bool


async def read_cut(log: Log, room: str, since: int | None, replay_cap: int) -> Cut:
    """The cut of a join and its replay: the messages after `since`, when there are at most
    `replay_cap` of them (more, or a `since` past the end, is not recovered: the client
    pages history instead)."""
    last = await log.last_seq(room)
    if since is not None and since < last and last - since <= replay_cap:
        return Cut(last, await log.read(room, since, last), recovered=True)
    return Cut(last, [], recovered=since is None or since == last)


class Joins:
    """Joins rooms on connections and tells whether a connection joined a room."""

    def __init__(
        self,
        rooms: Rooms,
        log: Log,
        bus: Bus,
        presence: RoomPresence,
        *,
        replay_cap: int,
        max_rooms: int,
    ) -> None:
        self.rooms = rooms
        self.log = log
        self.bus = bus
        self.presence = presence
        self.replay_cap = replay_cap
        self.max_rooms = max_rooms  # per connection; 0 is no limit

    async def join(self, joiner: Joiner, room: str, since: int | None) -> None:
        """Join `room` on the connection, replaying what came after `since`.

        Answers `joined` unless the user was removed from the room (kick, ban) while the
        replay was read. A failure before the answer leaves the room (nothing was sent);
        the error propagates."""
        most = self.max_rooms
        joined = joiner.rooms
        if most > 0 and len(joined) >= most and room not in joined:
            raise Forbidden(f"a connection may have at most {most} rooms joined; leave one first")
        user = joiner.user
        await self.rooms.join(user, room)
        already = room in joiner.rooms
        joiner.hold(room)
        try:
            await self.bus.subscribe(room)  # before the cut: nothing above it is missed
            cut = await read_cut(self.log, room, since, self.replay_cap)
        except BaseException:
            joiner.drop(room)
            raise
        if room not in joiner.rooms:
            return  # removed from the room while the replay was read
        connection = joiner.connection
        first = not already and await self.presence.arrive(room, user, connection)
        online = list(await self.presence.online(room))
        joiner.answer(joined_frame(room, cut.last, online, cut.recovered))
        for message in cut.replay:
            joiner.replay(message)
        joiner.release(room, cut.last)
        if first:
            self.presence.announce_online(room, user, connection)

    async def require_joined(self, user: str, rooms: Sequence[str], room: str) -> None:
        """Sends and typing need the room joined on their connection (`rooms`): NotJoined
        if it is not, unless the room is unknown or refused to the user, which is said
        first (not_found, forbidden)."""
        if room not in rooms:
            await self.rooms.readable(user, room)
            raise NotJoined(f"join {room!r} on this connection first")
