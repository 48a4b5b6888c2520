"""Connections on this node: the local room index, encode-once fan-out and batched writes.

Per delivery the hot path does one list append: a message is encoded into a complete
WebSocket frame once, the same bytes are queued on every local connection joined to
the room, and all frames queued for a connection during one event-loop turn leave in
one write. Each connection's backlog is bounded in bytes: a reader that falls behind
first stops getting typing events and gets presence collapsed to each user's latest
state, and one that falls too far behind is cut off with 1008 rather than allowed to
hold memory or stall the room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from aiohttp import web

from hubbub import metrics
from hubbub.engine.base import Message, RoomChange
from hubbub.protocol.errors import ProtocolError, token_revoked
from hubbub.protocol.events import error_frame, left_frame
from hubbub.protocol.frames import encode, ws_text_frame

log = logging.getLogger(__name__)

CLOSE_GRACE = 2.0  # seconds a closing peer gets to answer our close frame
BEHIND_CHECK = 0.05  # seconds between looks at the connections that are behind


class Connection:
    """One WebSocket: who it is, which rooms it joined, and its outgoing queue."""

    __slots__ = (
        "backlogged",
        "close_code",
        "close_reason",
        "closing",
        "gateway",
        "handler",
        "id",
        "out",
        "pending",
        "rooms",
        "token_hash",
        "transport",
        "user",
        "ws",
    )

    def __init__(
        self,
        gateway: Gateway,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        connection_id: str,
    ) -> None:
        self.gateway = gateway
        self.ws = ws
        self.transport = transport
        self.id = connection_id  # random; the `session` of the welcome frame
        self.user = ""
        self.token_hash = ""
        # A list, not a set: a connection joins one or a few rooms, and a short list is a
        # quarter of a set's 216 bytes (tens of thousands of idle connections add up).
        self.rooms: list[str] = []
        self.out: list[bytes] = []
        self.closing = False
        self.close_code = 1000
        self.close_reason = ""
        self.handler: asyncio.Task[Any] | None = None  # the task reading this connection
        self.backlogged = False  # set at flush time when the socket buffer is filling up
        # While backlogged: the latest presence frame per (room, user key), sent on catching up.
        self.pending: dict[tuple[str, str], bytes] | None = None

    def push(self, data: bytes) -> None:
        """Queue one complete WebSocket frame; it leaves at the end of this loop turn."""
        if self.closing:
            return
        if not self.out:
            self.gateway.mark_dirty(self)
        self.out.append(data)

    def reply(self, frame: dict[str, Any], ref: str | None = None) -> None:
        if ref is not None:
            frame["ref"] = ref
        self.push(ws_text_frame(encode(frame)))

    def error(self, error: ProtocolError, ref: str | None = None) -> None:
        metrics.ERRORS.labels(error.code).inc()
        self.reply(error_frame(error), ref)

    def close(self, code: int, reason: str = "", flush: bool = True) -> None:
        """Close with `code`, after sending what is queued unless the reader is the problem.

        The closing handshake runs in the connection's own handler task (aiohttp skips
        waiting for the peer's close frame when `close()` comes from another task), so
        this stops that task's read and lets it finish the close.
        """
        if self.closing:
            return
        if flush:
            self.gateway.flush_one(self)
        self.closing = True
        self.close_code = code
        self.close_reason = reason
        self.out.clear()
        if self.handler is not None and self.handler is not asyncio.current_task():
            self.handler.cancel()

    async def finish(self) -> None:
        """Run the closing handshake (from the handler task); drop the peer if it stalls."""
        if not self.closing:
            self.gateway.flush_one(self)
            self.closing = True
        try:
            async with asyncio.timeout(CLOSE_GRACE):
                await self.ws.close(code=self.close_code, message=self.close_reason.encode())
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            if not self.transport.is_closing() or self.transport.get_write_buffer_size():
                self.transport.abort()


class LocalRoom:
    """The connections of this node joined to one room."""

    __slots__ = ("live", "name", "syncing")

    def __init__(self, name: str) -> None:
        self.name = name
        self.live: dict[Connection, None] = {}  # an ordered set
        # Connections between `join` and the end of their replay: live frames wait here.
        self.syncing: dict[Connection, list[tuple[int, bytes]]] = {}


class Gateway:
    """The node's connections and rooms; the bus delivers here."""

    def __init__(self, send_buffer: int) -> None:
        self.send_buffer = send_buffer
        self.rooms: dict[str, LocalRoom] = {}
        self.by_id: dict[str, Connection] = {}
        self.by_user: defaultdict[str, set[Connection]] = defaultdict(set)
        self.by_token: defaultdict[str, set[Connection]] = defaultdict(set)
        self._dirty: list[Connection] = []
        self._behind: set[Connection] = set()  # backlogged: watched until they catch up
        self._behind_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.on_room_left: Callable[[Connection, str], None] = lambda conn, room: None
        # Called when the last connection of this node leaves a room.
        self.on_room_closed: Callable[[str], None] = lambda room: None
        # Called when a room is archived, unarchived or deleted on any node.
        self.on_changed: Callable[[str, str], None] = lambda room, change: None
        # Called when a token is revoked on any node, once its connections here are closing.
        self.on_revoked: Callable[[str], None] = lambda token_hash: None

    # Writing

    def mark_dirty(self, conn: Connection) -> None:
        if not self._dirty:
            asyncio.get_running_loop().call_soon(self.flush)
        self._dirty.append(conn)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        frames = 0
        for conn in dirty:
            frames += self._write(conn)
        metrics.FRAMES_OUT.inc(frames)

    def flush_one(self, conn: Connection) -> None:
        if conn.out:
            metrics.FRAMES_OUT.inc(self._write(conn))

    def _write(self, conn: Connection) -> int:
        out = conn.out
        n = len(out)
        transport = conn.transport
        if not n or conn.closing or transport.is_closing():
            out.clear()  # a dead peer's backlog goes nowhere; its handler cleans up
            return 0
        data = out[0] if n == 1 else b"".join(out)
        out.clear()
        # The bound covers what the socket has not taken yet plus this turn's frames. A
        # socket that keeps up (nothing buffered) always gets the turn's frames, however
        # many (a long replay, say); one that is already behind is cut off before its
        # buffer would pass the bound, before anything more is handed to it.
        # (A connection not behind had at most a quarter of the bound buffered after its
        # last write, so only a turn of over three quarters needs the look before writing.)
        if conn.backlogged or len(data) > self.send_buffer - (self.send_buffer >> 2):
            buffered = transport.get_write_buffer_size()
            if buffered and buffered + len(data) > self.send_buffer:
                self._cut_off(conn, buffered + len(data))
                return 0
        try:
            transport.write(data)
        except (RuntimeError, ConnectionError):  # closed under us: never stop the batch
            return 0
        buffered = transport.get_write_buffer_size()
        if buffered > self.send_buffer:
            self._cut_off(conn, buffered)
        elif buffered > self.send_buffer // 4 and not conn.backlogged:
            conn.backlogged = True
            self._watch(conn)
        return n

    def _cut_off(self, conn: Connection, buffered: int) -> None:
        log.warning("slow consumer cut off", extra={"connection": conn.id, "buffered": buffered})
        metrics.SLOW_CONSUMERS.inc()
        conn.close(1008, "send buffer overflow: resume with since", flush=False)

    def _watch(self, conn: Connection) -> None:
        self._behind.add(conn)
        if self._behind_timer is None:
            loop = asyncio.get_running_loop()
            self._behind_timer = loop.call_later(BEHIND_CHECK, self._check_behind)

    def _check_behind(self) -> None:
        """Connections that caught up (a quarter of the bound) get their held presence."""
        self._behind_timer = None
        low = self.send_buffer // 4
        for conn in list(self._behind):
            transport = conn.transport
            if conn.closing or transport.is_closing():
                self._behind.discard(conn)
            elif transport.get_write_buffer_size() <= low:
                self._behind.discard(conn)
                conn.backlogged = False
                pending, conn.pending = conn.pending, None
                if pending:
                    for data in pending.values():
                        conn.push(data)
        if self._behind:
            loop = asyncio.get_running_loop()
            self._behind_timer = loop.call_later(BEHIND_CHECK, self._check_behind)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait_tasks(self, grace: float) -> None:
        """Wait up to `grace` seconds for the tasks in flight (sends, closes) to finish."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)

    # Registry

    def register(self, conn: Connection) -> None:
        self.by_id[conn.id] = conn
        self.by_user[conn.user.lower()].add(conn)
        self.by_token[conn.token_hash].add(conn)
        metrics.CONNECTIONS.inc()

    def unregister(self, conn: Connection) -> None:
        if self.by_id.pop(conn.id, None) is None:
            return
        metrics.CONNECTIONS.dec()
        self._behind.discard(conn)
        for room in list(conn.rooms):
            self.unsubscribe(conn, room)
        for index, key in ((self.by_user, conn.user.lower()), (self.by_token, conn.token_hash)):
            conns = index.get(key)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del index[key]

    def start_sync(self, conn: Connection, room: str) -> None:
        """Begin a join: live frames for `conn` are held until `finish_sync`."""
        local = self.rooms.get(room)
        if local is None:
            local = self.rooms[room] = LocalRoom(room)
            metrics.ROOMS.inc()
        local.live.pop(conn, None)
        local.syncing[conn] = []
        if room not in conn.rooms:
            conn.rooms.append(room)

    def finish_sync(self, conn: Connection, room: str, upto: int) -> bool:
        """End a join: release held live frames newer than the replay, then go live."""
        local = self.rooms.get(room)
        if local is None or conn not in local.syncing:
            return False  # left, kicked or disconnected meanwhile
        for seq, data in local.syncing.pop(conn):
            if seq > upto:
                conn.push(data)
        local.live[conn] = None
        return True

    def unsubscribe(self, conn: Connection, room: str) -> bool:
        """Stop delivering `room` to `conn`; True if it was joined."""
        if room not in conn.rooms:
            return False
        conn.rooms.remove(room)
        if conn.pending:
            for key in [key for key in conn.pending if key[0] == room]:
                del conn.pending[key]
        local = self.rooms.get(room)
        if local is not None:
            local.live.pop(conn, None)
            local.syncing.pop(conn, None)
            if not local.live and not local.syncing:
                del self.rooms[room]
                metrics.ROOMS.dec()
                self.on_room_closed(room)
        self.on_room_left(conn, room)
        return True

    # Bus listener

    def on_message(self, message: Message) -> None:
        local = self.rooms.get(message.room)
        if local is None:
            return
        # Once per message, not per connection: ts is the log's clock (ms); clocks of
        # different machines may disagree a little, so a negative lag counts as zero.
        metrics.FANOUT_LATENCY.observe(max(time.time() * 1000.0 - message.ts, 0.0) / 1000.0)
        data = ws_text_frame(encode(message.frame()))
        dirty = self._dirty
        if not dirty and local.live:
            asyncio.get_running_loop().call_soon(self.flush)
        for conn in local.live:
            out = conn.out
            if not out:
                if conn.closing:
                    continue
                dirty.append(conn)
            out.append(data)
        for held in local.syncing.values():
            held.append((message.seq, data))

    def on_event(
        self, room: str, frame: dict[str, Any], skip_user: str | None, skip_connection: str | None
    ) -> None:
        """Ephemeral events (typing, presence) for a connection that is behind: typing is
        dropped, presence is held and collapsed to each user's latest state until it
        catches up (so it still learns who is online, not every change on the way)."""
        local = self.rooms.get(room)
        if local is None:
            return
        data = ws_text_frame(encode(frame))
        skip_key = skip_user.lower() if skip_user else None
        user = frame.get("user")
        collapse = (room, user.lower()) if frame.get("type") == "presence" and user else None
        for conn in local.live:
            if conn.id == skip_connection:
                continue
            if skip_key is not None and conn.user.lower() == skip_key:
                continue
            if conn.backlogged or conn.pending:
                if collapse is not None:
                    pending = conn.pending
                    if pending is None:
                        pending = conn.pending = {}
                    pending.pop(collapse, None)  # the latest state goes last
                    pending[collapse] = data
                continue
            conn.push(data)

    def on_removed(self, room: str, user: str, reason: str) -> None:
        for conn in list(self.by_user.get(user.lower(), ())):
            if self.unsubscribe(conn, room):
                conn.reply(left_frame(room, reason))

    def on_room_changed(self, room: str, change: str) -> None:
        """A deleted room is left by every connection here, each told `left` (as a kick
        tells its user's); every change is handed on to `on_changed` (the chat's cache)."""
        if change == RoomChange.DELETED:
            local = self.rooms.get(room)
            if local is not None:
                for conn in [*local.live, *local.syncing]:
                    if self.unsubscribe(conn, room):
                        conn.reply(left_frame(room, change))
        self.on_changed(room, change)

    def on_token_revoked(self, token_hash: str) -> None:
        for conn in list(self.by_token.get(token_hash, ())):
            conn.error(token_revoked())
            conn.close(4001, "unauthorized")
        self.on_revoked(token_hash)

    def connections(self) -> Iterable[Connection]:
        return list(self.by_id.values())

    async def close_all(self, code: int, reason: str) -> None:
        handlers = []
        for conn in self.connections():
            conn.close(code, reason)
            if conn.handler is not None:
                handlers.append(conn.handler)
        if handlers:
            await asyncio.wait(handlers, timeout=CLOSE_GRACE + 1)
