"""The SDK's WebSocket connection: hello, the reading loop, reconnecting with backoff, resuming
(re-joins from the last `seq`, pending calls resent and paced), and matching answers to calls.

`Client` (in `hubbub.client`) puts the public calls and `events()` over it; the module's
documentation there says what a caller sees of all this.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections.abc import Coroutine
from typing import Any, Final

import aiohttp
import orjson

from hubbub.client.http import HttpApi, HubbubError
from hubbub.client.state import (
    Call,
    ConnectionLost,
    End,
    Pacer,
    RoomCursors,
    close_reason,
    parse_frame,
    parse_welcome,
    unreachable,
)

_UNAUTHORIZED: Final = 4001
_MESSAGE_TOO_BIG: Final = 1009  # the server's close code for a frame over --max-frame
_HELLO_TIMEOUT: Final = 10.0
# Our own WebSocket pings find a dead path (no FIN, no RST) that the server pings cannot tell us
# about: aiohttp closes the connection when a ping gets no pong within half this interval.
_PING_INTERVAL: Final = 15.0
# Answers whose `ref` we no longer wait for (the caller gave up) are dropped, not yielded.
_REPLIES: Final = frozenset({"welcome", "joined", "left", "ack", "history", "pong", "error"})
_TEXT: Final = aiohttp.WSMsgType.TEXT


class Connection(HttpApi):
    """One resilient WebSocket connection (and, from `HttpApi`, the HTTP calls' session)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        session: aiohttp.ClientSession | None = None,
        reconnect: bool = True,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        resend_rate: float = 20.0,
    ) -> None:
        """`resend_rate`: sends per second (bursts of twice that) when resending a backlog after
        a reconnect, so the backlog does not run into the server's rate limit (the spec's default
        is 20); 0 resends at once. A resent send answered `rate_limited` is retried, not failed.
        """
        super().__init__(url, token, session)
        scheme, sep, rest = self.url.partition("://")
        if scheme not in ("http", "https") or not sep:
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
        self.ws_url = f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws"
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.resend_rate = resend_rate
        self.user: str | None = None
        self.session_id: str | None = None
        self.node: str | None = None
        self.heartbeat: float | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._generation = 0
        self._ready = False  # connected, rooms re-joined and pending calls resent
        self._runner: asyncio.Task[None] | None = None
        self._calls: dict[str, Call] = {}
        self._refs = itertools.count(1)
        self._rooms = RoomCursors()
        self._events: asyncio.Queue[dict[str, Any] | End] = asyncio.Queue()
        self._ended = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        """Connect and say hello; returns the socket once `welcome` arrived."""
        ws = await self.session.ws_connect(
            self.ws_url,
            autoping=True,
            heartbeat=_PING_INTERVAL,
            max_msg_size=0,
            timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
        )
        try:
            await ws.send_frame(orjson.dumps({"type": "hello", "token": self.token}), _TEXT)
            message = await ws.receive(timeout=_HELLO_TIMEOUT)
            if message.type is not aiohttp.WSMsgType.TEXT:
                if ws.close_code == _UNAUTHORIZED:
                    raise HubbubError("unauthorized", "the server closed with 4001")
                raise ConnectionLost(f"closed during hello ({ws.close_code})")
            frame = parse_welcome(message.data)
        except BaseException:
            await ws.close()
            raise
        self.user, self.session_id, self.node = frame["user"], frame["session"], frame["node"]
        self.heartbeat = float(frame["heartbeat"])
        return ws

    async def _run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Own the connection: read it, and replace it whenever it drops."""
        resumed = False
        try:
            while True:
                self._ws = ws
                self._generation += 1
                restore = self._spawn(self._restore(self._generation, resumed))
                code = await self._read(ws)
                self._ready = False
                restore.cancel()
                await ws.close()
                for call in list(self._calls.values()):
                    if not call.resumable and not call.future.done():
                        call.future.set_exception(ConnectionLost(f"closed with {code}"))
                if code == _MESSAGE_TOO_BIG:
                    self._fail_oversized()
                if code == _UNAUTHORIZED:
                    self._disconnected(close_reason(code), code, None)
                    raise HubbubError("unauthorized", "the server closed with 4001")
                if not self.reconnect:
                    self._disconnected(close_reason(code), code, None)
                    raise HubbubError("unavailable", f"connection lost (close code {code})")
                ws = await self._reconnect(code)
                resumed = True
        except HubbubError as error:
            self._end(error)
        except Exception as error:  # a bug: end loudly rather than leave every call hanging
            self._end(HubbubError("internal", f"the SDK failed: {error!r}"))
            raise

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> int | None:
        """Dispatch frames until the connection closes; returns the close code."""
        while True:
            message = await ws.receive()
            if message.type is aiohttp.WSMsgType.TEXT:
                self._dispatch(message.data)
            elif message.type is not aiohttp.WSMsgType.BINARY:  # CLOSE, CLOSED or ERROR
                return ws.close_code

    async def _reconnect(self, code: int | None) -> aiohttp.ClientWebSocketResponse:
        """Connect again, with backoff; every wait is told as a `disconnected` event."""
        reason = close_reason(code)
        for attempt in itertools.count():
            delay = self._backoff(attempt)
            self._disconnected(reason, code, delay)
            await asyncio.sleep(delay)
            try:
                return await self._open()
            except HubbubError as error:
                if error.code == "unauthorized":
                    self._disconnected(close_reason(_UNAUTHORIZED), code, None)
                    raise
                reason = error.message
            except (aiohttp.ClientError, OSError, TimeoutError, ConnectionLost) as error:
                reason = unreachable(self.url, error)
        raise AssertionError("unreachable")

    def _disconnected(self, reason: str, code: int | None, retry_in: float | None) -> None:
        event: dict[str, Any] = {"type": "connection", "state": "disconnected"}
        event |= {"reason": reason, "close_code": code}
        if retry_in is not None:
            event["retry_in"] = retry_in
        self._emit(event)

    async def _restore(self, generation: int, resumed: bool) -> None:
        """Re-join every joined room, then resend every call still waiting, in order; then say
        `connected` (the first time) or `resumed`."""
        try:
            rooms = list(self._rooms.last.items())
            await asyncio.gather(*(self._rejoin(room, since) for room, since in rooms))
        except ConnectionLost:
            return
        # Calls made meanwhile wait in `_calls`; there is no await between the last look at them
        # and `_ready`, so none is left behind (those waiting to retry have their own task).
        loop, pacer = asyncio.get_running_loop(), Pacer(self.resend_rate)
        while pending := [
            call
            for call in self._calls.values()
            if call.resumable and call.generation != generation and call.retry_at <= loop.time()
        ]:
            for call in pending:
                if call.frame["type"] == "send":
                    await pacer.take()
                if self._calls.get(call.frame["ref"]) is call:  # not given up meanwhile
                    call.resent = True
                    await self._write(call)
        self._ready = self._generation == generation
        if self._ready:
            state = "resumed" if resumed else "connected"
            event: dict[str, Any] = {"type": "connection", "state": state}
            event |= {"session": self.session_id, "node": self.node}
            if resumed:
                event["rooms"] = dict(rooms)
            self._emit(event)

    async def _rejoin(self, room: str, since: int) -> None:
        frame = {"type": "join", "room": room, "since": since}
        try:
            joined = await self._call(frame, resumable=False)
        except HubbubError as error:
            if error.code == "unavailable" and self._ws is not None:
                await self._ws.close()  # the node is draining: reconnect (to another one)
                raise ConnectionLost("unavailable while re-joining") from error
            # Banned, or the room vanished, while we were away.
            self._rooms.last.pop(room, None)
            self._emit(
                {"type": "error", "code": error.code, "message": error.message, "room": room}
            )
            return
        if joined.get("recovered") is False:
            self._emit(joined)

    # -- calls and frames ---------------------------------------------------------------------

    async def _call(self, frame: dict[str, Any], *, resumable: bool = True) -> dict[str, Any]:
        self._check_running()
        ref = str(next(self._refs))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        call = Call({**frame, "ref": ref}, future, resumable)
        self._calls[ref] = call
        try:
            if self._ready or not resumable:
                await self._write(call)
            return await future
        finally:
            del self._calls[ref]

    def _fail_oversized(self) -> None:
        """The server closed with 1009: the largest frame written to that connection was over
        its `--max-frame`. Fail that call instead of resending it after every reconnect."""
        written = [
            call
            for call in self._calls.values()
            if call.generation == self._generation and not call.future.done()
        ]
        if not written:
            return
        call = max(written, key=lambda c: len(orjson.dumps(c.frame)))
        size = len(orjson.dumps(call.frame))
        call.future.set_exception(
            HubbubError(
                "too_large",
                f"this {call.frame['type']} frame is {size:,} bytes, more than the server "
                "accepts in one frame; it was not sent",
            )
        )

    async def _write(self, call: Call) -> None:
        ws = self._ws
        if ws is None:
            return
        call.generation = self._generation
        # A failed write is noticed by the reader; the call is then resent after reconnecting.
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            await ws.send_frame(orjson.dumps(call.frame), _TEXT)

    def _dispatch(self, data: str) -> None:
        frame = parse_frame(data)
        if frame is None:
            return
        kind, ref = frame.get("type"), frame.get("ref")
        if ref is not None:
            call = self._calls.get(ref) if isinstance(ref, str) else None
            if call is not None and not call.future.done():
                self._answer(call, frame)
                return
            if kind in _REPLIES:
                return  # an answer nobody waits for any more
        if self._rooms.fresh(frame):
            self._emit(frame)

    def _answer(self, call: Call, frame: dict[str, Any]) -> None:
        kind, room = frame.get("type"), frame.get("room")
        if kind == "error":
            error = HubbubError.from_frame(frame)
            # A draining node, a backend down, or the burst of a resent backlog: try again later.
            again = error.code == "unavailable" or (error.code == "rate_limited" and call.resent)
            if again and call.resumable and self.reconnect:
                call.attempts += 1
                delay = max(error.retry_after or 0.0, self._backoff(call.attempts))
                call.generation = -1
                call.retry_at = asyncio.get_running_loop().time() + delay
                self._spawn(self._retry_later(call, delay))
            else:
                call.future.set_exception(error)
            return
        if kind == "joined":
            self._rooms.joined(call.frame, frame)  # here, before the messages that follow
        elif kind == "left" and isinstance(room, str):
            self._rooms.last.pop(room, None)
        call.future.set_result(frame)

    async def _retry_later(self, call: Call, delay: float) -> None:
        """Write a call again after a delay (unless it was answered, or resent meanwhile)."""
        await asyncio.sleep(delay)
        ref = call.frame["ref"]
        if self._ready and self._calls.get(ref) is call and call.generation == -1:
            await self._write(call)
        # Otherwise it was answered, given up, or resent by `_restore` after a reconnect.

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max, self.backoff_initial * 2 ** min(attempt, 32))
        return random.uniform(delay / 2, delay)

    def _emit(self, event: dict[str, Any] | End) -> None:
        self._events.put_nowait(event)

    def _end(self, error: HubbubError | None) -> None:
        """The client stops: fail every waiting call and end `events()`."""
        self._ready, self._ws, self._ended = False, None, True
        failure = error or HubbubError("closed", "the client is closed")
        for call in self._calls.values():
            if not call.future.done():
                call.future.set_exception(HubbubError(failure.code, failure.message))
        self._emit(End(error))

    def _check_running(self) -> None:
        if self._runner is None or self._runner.done():
            raise HubbubError("closed", "not connected: call connect() first")

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
