"""The /ws endpoint: each connection's hello, then frames in, replies and events out (see the
spec's tables). The rules are in `core` (joining: `core.join`); this is the I/O around them."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable
from typing import Any

from aiohttp import WebSocketError, WSCloseCode, WSMessage, WSMsgType, web

from hubbub import metrics
from hubbub.core.chat import Chat
from hubbub.core.join import Joins
from hubbub.core.limits import ConnectionLimits, PenaltyBox
from hubbub.engine.base import Appended, Message
from hubbub.engine.entry import Draft, Kind
from hubbub.protocol.errors import (
    BadRequest,
    Internal,
    ProtocolError,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from hubbub.protocol.events import (
    ack_frame,
    history_frame,
    left_frame,
    pong_frame,
    typing_frame,
    welcome_frame,
)
from hubbub.protocol.frames import (
    UPDATES,
    Delete,
    Edit,
    FrameError,
    Hello,
    History,
    Join,
    Leave,
    Ping,
    React,
    Send,
    Typing,
    Unreact,
    encode,
    parse_frame,
    ws_text_frame,
)
from hubbub.server.config import Config
from hubbub.server.gateway import Connection, Gateway
from hubbub.server.replies import client_of, error_response

log = logging.getLogger(__name__)
# The retry_after of a connection refused for the count of those already open: about the
# time a client's backoff takes anyway; the count falls only when one of them closes.
CONNECTIONS_RETRY_AFTER = 5.0
FLOODING = "flooding"  # the close reason of a connection cut off for flooding
OVERSIZED = "frame too large"  # ... and of one aiohttp closed with 1009
FRAMES_PER_TURN = 4  # frames one connection may handle before the event loop turns
# What the send rate limit counts: sends, updates (each appends to a room's log) and typing.
CHATTY = (Send, Typing, *UPDATES)
_CLOSED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED)  # what ends `async for`


class WebSocketHandler:
    """Runs each connection of this node from upgrade to close."""

    def __init__(
        self,
        chat: Chat,
        joins: Joins,
        gateway: Gateway,
        config: Config,
        draining: asyncio.Event,
    ) -> None:
        self.chat = chat
        self.joins = joins
        self.gateway = gateway
        self.config = config
        self.draining = draining
        self.per_address: dict[str, int] = {}  # open WebSockets per client address
        self.penalties = PenaltyBox(config.abuse_penalty)  # "user:NAME" and addresses

    async def run(self, request: web.Request) -> web.StreamResponse:
        """Serve one connection from upgrade to close; 429 before the upgrade when its
        address already holds `--max-connections-per-address` WebSockets on this node."""
        address = client_of(request).address
        most = self.config.max_connections_per_address
        wait = self.penalties.remaining(address, time.monotonic())
        if wait:
            return _refused(wait, f"{address} was cut off for abuse; wait")
        if most > 0 and self.per_address.get(address, 0) >= most:
            return _refused(
                CONNECTIONS_RETRY_AFTER, f"{address} already has {most} connections open"
            )
        self.per_address[address] = self.per_address.get(address, 0) + 1
        try:
            return await self._run(request, address)
        finally:
            left = self.per_address[address] - 1
            if left:
                self.per_address[address] = left
            else:
                del self.per_address[address]

    async def _run(self, request: web.Request, address: str) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            heartbeat=self.config.heartbeat,
            max_msg_size=self.config.max_frame + 1,  # aiohttp refuses a message of exactly this
            compress=self.config.permessage_deflate,
            autoping=True,
        )
        await ws.prepare(request)
        transport = request.transport
        assert transport is not None
        conn = Connection(self.gateway, ws, transport, secrets.token_hex(8))
        conn.handler = asyncio.current_task()
        try:
            serving = await self._hello(conn)
            # No limits, no state: an idle connection holds as little as it can.
            config = self.config
            rate = config.rate_limit
            limits = (
                ConnectionLimits(rate, time.monotonic(), config.frame_rate, config.history_rate)
                if rate > 0
                else None
            )
            # The frame loop is inline, and reads with `receive()` rather than `async for`:
            # each is one coroutine frame less held by every idle connection.
            handled = 0
            while serving:
                # `receive()` returns frames already read without giving the loop a turn: a
                # client that writes thousands of frames at once would hold the node for
                # all of them. Every FRAMES_PER_TURN frames, the others get their turn.
                handled += 1
                if handled % FRAMES_PER_TURN == 0:
                    await asyncio.sleep(0)
                msg = await ws.receive()
                if msg.type in _CLOSED:
                    break
                metrics.FRAMES_IN.inc()
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        conn.error(BadRequest("binary frames are not accepted; send JSON text"))
                        continue
                    _note_oversized(conn, msg)
                    break
                now = time.monotonic()
                try:
                    frame = parse_frame(msg.data, self.config.max_body)
                except FrameError as exc:
                    if self._allowed(conn, limits, False, now, exc.ref):
                        conn.error(exc.error, exc.ref)
                    elif conn.closing:
                        break
                    continue
                chatty = isinstance(frame, CHATTY)
                history = isinstance(frame, History)
                if not self._allowed(conn, limits, chatty, now, frame.ref, history):
                    if conn.closing:
                        break
                    continue
                if self.draining.is_set():
                    conn.error(Unavailable("this node is draining; reconnect"), frame.ref)
                    continue
                try:
                    await self._dispatch(conn, frame)
                except ProtocolError as exc:
                    conn.error(exc, frame.ref)
                except Exception:
                    self._internal(conn, frame.ref)
                if conn.closing:
                    break
        except asyncio.CancelledError:
            # Connection.close() stops the read this way; any other cancellation propagates.
            if not conn.closing or _uncancel() > 0:
                raise
        except Exception:  # a bug outside any one frame's handling: say so, and close
            self._internal(conn, None)
            conn.close(1011, "internal error")
        finally:
            self.gateway.unregister(conn)
            if conn.close_reason in (FLOODING, OVERSIZED):
                # Abuse after hello is the user's: others at the address (a NAT, an office)
                # did nothing. Before hello there is only the address to keep out.
                key = _user_key(conn.user) if conn.user else address
                self.penalties.add(key, time.monotonic())
        if not ws.closed:
            await conn.finish()
        return ws

    async def _hello(self, conn: Connection) -> bool:
        try:
            msg = await conn.ws.receive(timeout=self.config.hello_timeout)
        except TimeoutError:
            return self._reject(conn, "no hello in time")
        if msg.type != WSMsgType.TEXT:
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                _note_oversized(conn, msg)
                return False
            return self._reject(conn, "the first frame must be hello")
        try:
            frame = parse_frame(msg.data, self.config.max_body)
        except FrameError as exc:
            return self._reject(conn, "the first frame must be a valid hello", exc.ref)
        if not isinstance(frame, Hello):
            return self._reject(conn, "the first frame must be hello", frame.ref)
        try:
            conn.user, conn.token_hash = await self.chat.authenticate(frame.token)
        except Unauthorized as exc:
            return self._reject(conn, exc.message, frame.ref)
        wait = self.penalties.remaining(_user_key(conn.user), time.monotonic())
        if wait:
            conn.error(RateLimited.after(wait, f"{conn.user} was cut off for abuse"), frame.ref)
            conn.close(1008, "cut off for abuse")
            return False
        most = self.config.max_connections_per_user
        if most > 0 and len(self.gateway.by_user.get(conn.user.lower(), ())) >= most:
            conn.error(
                RateLimited(
                    CONNECTIONS_RETRY_AFTER,
                    f"{conn.user} already has {most} connections open on this node",
                ),
                frame.ref,
            )
            conn.close(1008, "too many connections for this user")
            return False
        self.gateway.register(conn)
        # The protocol calls the connection's id `session`.
        welcome = welcome_frame(conn.user, conn.id, self.config.node_id, self.config.heartbeat)
        conn.reply(welcome, frame.ref)
        return True

    def _reject(self, conn: Connection, why: str, ref: str | None = None) -> bool:
        conn.error(Unauthorized(why), ref)
        conn.close(4001, "unauthorized")
        return False

    def _allowed(
        self,
        conn: Connection,
        limits: ConnectionLimits | None,
        chatty: bool,
        now: float,
        ref: str | None,
        history: bool = False,
    ) -> bool:
        if limits is None:
            return True
        wait = limits.check(chatty, now, history)
        if not wait:
            return True
        if limits.flood.strike(now):
            conn.error(RateLimited.after(wait, "flooding: closing the connection"), ref)
            conn.close(1008, FLOODING)
        else:
            conn.error(RateLimited.after(wait), ref)
        return False

    def _internal(self, conn: Connection, ref: str | None) -> None:
        incident = secrets.token_hex(6)
        log.exception("internal error", extra={"incident": incident, "connection": conn.id})
        conn.error(Internal(f"internal error {incident}; it has been logged"), ref)

    async def _dispatch(self, conn: Connection, frame: Any) -> None:
        if isinstance(frame, Send):
            await self.joins.require_joined(conn.user, conn.rooms, frame.room)
            self.gateway.spawn(self._send(conn, frame))
        elif isinstance(frame, Join):
            await self.joins.join(Joining(self.gateway, conn, frame.ref), frame.room, frame.since)
        elif isinstance(frame, Leave):
            self.gateway.unsubscribe(conn, frame.room)
            conn.reply(left_frame(frame.room), frame.ref)
        elif isinstance(frame, UPDATES):
            await self.joins.require_joined(conn.user, conn.rooms, frame.room)
            # Drafted here, before the next frame is read: a connection's updates and sends
            # reach the log in frame order (a delete reads the sender's role first).
            draft = await self._draft(conn, frame)
            self.gateway.spawn(self._update(conn, frame, draft))
        elif isinstance(frame, History):
            messages, more = await self.chat.history(
                conn.user, frame.room, frame.before, frame.after, frame.limit, frame.thread
            )
            views = (m.view(conn.user) for m in messages)
            conn.reply(history_frame(frame.room, views, more), frame.ref)
        elif isinstance(frame, Typing):
            await self.joins.require_joined(conn.user, conn.rooms, frame.room)
            self.chat.bus.publish_event(
                frame.room,
                typing_frame(frame.room, conn.user),
                skip_user=conn.user,
            )
        elif isinstance(frame, Ping):
            conn.reply(pong_frame(), frame.ref)
        elif isinstance(frame, Hello):
            raise BadRequest("already said hello")

    async def _draft(self, conn: Connection, frame: Edit | Delete | React | Unreact) -> Draft:
        if isinstance(frame, Edit):
            return Draft(Kind.EDIT, body=frame.body, target=frame.target)
        if isinstance(frame, Delete):
            return await self.chat.delete_draft(conn.user, frame.room, frame.target)
        kind = Kind.REACT if isinstance(frame, React) else Kind.UNREACT
        return Draft(kind, target=frame.target, key=frame.key)

    async def _update(
        self, conn: Connection, frame: Edit | Delete | React | Unreact, draft: Draft
    ) -> None:
        await self._ack(conn, frame.ref, self.chat.update(conn.user, frame.room, frame.id, draft))

    async def _send(self, conn: Connection, frame: Send) -> None:
        started = time.perf_counter()
        appending = self.chat.send(
            conn.user, frame.room, frame.id, frame.body, frame.reply_to, frame.thread
        )
        await self._ack(conn, frame.ref, appending, started)

    async def _ack(
        self,
        conn: Connection,
        ref: str | None,
        appending: Awaitable[Appended],
        started: float | None = None,
    ) -> None:
        """Answer a frame that appends to a room's log: its ack once durable, or its error.
        `started` (a send's) counts the ack and its latency in the metrics."""
        try:
            appended = await appending
        except ProtocolError as exc:
            conn.error(exc, ref)
            return
        except Exception:
            self._internal(conn, ref)
            return
        m = appended.message
        if started is not None:
            metrics.ACKS.inc()
            metrics.ACK_LATENCY.observe(time.perf_counter() - started)
        conn.reply(ack_frame(m.room, m.id, m.seq, m.ts), ref)


class Joining:
    """A connection as a join sees it (`core.join.Joiner`): the gateway holds and releases
    its live messages; the answer carries the join frame's ref."""

    __slots__ = ("conn", "gateway", "ref")

    def __init__(self, gateway: Gateway, conn: Connection, ref: str | None) -> None:
        self.gateway = gateway
        self.conn = conn
        self.ref = ref

    @property
    def user(self) -> str:
        return self.conn.user

    @property
    def connection(self) -> str:
        return self.conn.id

    @property
    def rooms(self) -> list[str]:
        return self.conn.rooms

    def hold(self, room: str) -> None:
        self.gateway.start_sync(self.conn, room)

    def release(self, room: str, upto: int) -> bool:
        return self.gateway.finish_sync(self.conn, room, upto)

    def drop(self, room: str) -> None:
        self.gateway.unsubscribe(self.conn, room)

    def answer(self, frame: dict[str, Any]) -> None:
        self.conn.reply(frame, self.ref)

    def replay(self, message: Message) -> None:
        self.conn.push(ws_text_frame(encode(message.frame())))


def _note_oversized(conn: Connection, msg: WSMessage) -> None:
    """Mark a connection aiohttp closed with 1009 for a frame over --max-frame."""
    if isinstance(msg.data, WebSocketError) and msg.data.code == WSCloseCode.MESSAGE_TOO_BIG:
        conn.close_reason = OVERSIZED


def _user_key(user: str) -> str:
    return "user:" + user.lower()


def _refused(wait: float, message: str) -> web.Response:
    """HTTP 429 before the upgrade (error_response adds Retry-After)."""
    return error_response(RateLimited.after(wait, message))


def _uncancel() -> int:
    task = asyncio.current_task()
    return task.uncancel() if task is not None else 0
