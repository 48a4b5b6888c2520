"""Async Python SDK for hubbub: HTTP calls, and a WebSocket that reconnects, resumes and resends.

    async with Client("http://127.0.0.1:8080", token=token) as client:
        await client.join("lobby")
        await client.send("lobby", "hello")
        async for event in client.events():
            ...

Every frame the client sends carries a unique `ref`; replies are matched by it, so any number of
calls may be in flight at once. When the connection drops (for any reason but `close()` or a 4001),
the client reconnects with exponential backoff and jitter, says hello again, re-joins its rooms with
`since` = the last `seq` it saw, and resends every call still waiting for its answer. Sends keep
their `id`, and the server answers a known `id` with the original ack, so a pending `send()`
completes exactly once, and the event stream has no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import aiohttp
import orjson

from hubbub._client_http import HttpApi, HubbubError

__all__ = ["Client", "HubbubError"]

_UNAUTHORIZED: Final = 4001
_HELLO_TIMEOUT: Final = 10.0
# Our own WebSocket pings find a dead path (no FIN, no RST) that the server pings cannot tell us
# about: aiohttp closes the connection when a ping gets no pong within half this interval.
_PING_INTERVAL: Final = 15.0
# Answers whose `ref` we no longer wait for (the caller gave up) are dropped, not yielded.
_REPLIES: Final = frozenset({"welcome", "joined", "left", "ack", "history", "pong", "error"})


class _ConnectionLost(Exception):
    """The WebSocket went away while a call bound to that connection waited."""


@dataclass(eq=False)
class _Call:
    """A frame waiting for its answer."""

    frame: dict[str, Any]
    future: asyncio.Future[dict[str, Any]]
    # A resumable call is resent after a reconnect or an `unavailable` answer (every user call is
    # idempotent: join, leave, send with its id, history, ping); the re-joins made while
    # reconnecting are bound to their connection instead.
    resumable: bool
    generation: int = -1  # the connection it was last written to; -1 means "write it again"
    attempts: int = 0


@dataclass(frozen=True)
class _End:
    error: HubbubError | None


class Client(HttpApi):
    """A hubbub client: the HTTP API (see `HttpApi`) and one resilient WebSocket connection."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        session: aiohttp.ClientSession | None = None,
        reconnect: bool = True,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
    ) -> None:
        super().__init__(url, token, session)
        scheme, sep, rest = self.url.partition("://")
        if scheme not in ("http", "https") or not sep:
            raise ValueError(f"expected an http:// or https:// URL, got {url!r}")
        self.ws_url = f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws"
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.user: str | None = None
        self.session_id: str | None = None
        self.node: str | None = None
        self.heartbeat: float | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._generation = 0
        self._ready = False  # connected, rooms re-joined and pending calls resent
        self._runner: asyncio.Task[None] | None = None
        self._calls: dict[str, _Call] = {}
        self._refs = itertools.count(1)
        self._last_seq: dict[str, int] = {}  # joined rooms -> the last seq seen there
        self._events: asyncio.Queue[dict[str, Any] | _End] = asyncio.Queue()
        self._ended = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        """True while the WebSocket is up and restored (False while reconnecting)."""
        return self._ready

    @property
    def last_seq(self) -> dict[str, int]:
        """The joined rooms, each with the last `seq` this client has seen there."""
        return dict(self._last_seq)

    async def __aenter__(self) -> Client:
        """Connects the WebSocket when a token is known; otherwise only the HTTP calls work yet."""
        if self.token is not None:
            await self.connect()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the WebSocket and say hello; raises `HubbubError` (`unauthorized` on 4001)."""
        if self._runner is not None and not self._runner.done():
            return
        if self.token is None:
            raise HubbubError("unauthorized", "no token: log in first")
        try:
            ws = await self._open()
        except (aiohttp.ClientError, OSError, TimeoutError, _ConnectionLost) as error:
            raise HubbubError("unavailable", f"cannot connect to {self.ws_url}: {error}") from error
        if self._ended:
            self._events, self._ended = asyncio.Queue(), False
        self._runner = asyncio.create_task(self._run(ws))

    async def close(self) -> None:
        """Close the connection; waiting calls fail with `closed` and `events()` ends."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        for task in list(self._tasks):
            task.cancel()
        if self._ws is not None:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                await self._ws.close()
        if not self._ended:
            self._end(None)
        self._last_seq.clear()
        await self.close_session()

    async def join(self, room: str, since: int | None = None) -> dict[str, Any]:
        """Join a room; returns the `joined` frame. With `since`, missed messages follow."""
        frame: dict[str, Any] = {"type": "join", "room": room}
        if since is not None:
            frame["since"] = since
        return await self._call(frame)

    async def leave(self, room: str) -> dict[str, Any]:
        """Stop receiving a room on this connection (membership stays); returns the `left` frame."""
        return await self._call({"type": "leave", "room": room})

    async def send(self, room: str, body: str, id: str | None = None) -> dict[str, Any]:
        """Send a message and wait until it is durable; returns the `ack` frame.

        Without `id` a random one is chosen. Raises `HubbubError` for an `error` answer
        (`rate_limited` carries `retry_after`).
        """
        frame = {"type": "send", "room": room, "id": id or uuid.uuid4().hex, "body": body}
        return await self._call(frame)

    async def ws_history(
        self,
        room: str,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """One page of history over the WebSocket: the `history` frame (`messages`, `more`)."""
        frame: dict[str, Any] = {"type": "history", "room": room}
        bounds = {"before": before, "after": after, "limit": limit}
        frame.update({key: value for key, value in bounds.items() if value is not None})
        return await self._call(frame)

    async def typing(self, room: str) -> None:
        """Tell the room this user is typing. Ephemeral: dropped while reconnecting."""
        self._check_running()
        if self._ready and self._ws is not None:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                await self._ws.send_frame(orjson.dumps({"type": "typing", "room": room}), _TEXT)

    async def ping(self) -> float:
        """Round trip of an application-level `ping`, in seconds."""
        started = time.monotonic()
        await self._call({"type": "ping"})
        return time.monotonic() - started

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every unsolicited frame (`message`, `presence`, `typing`, `left`, `error`), in order.

        Also: `{"type": "reconnected", "close_code", "session", "node"}` after each reconnect
        (`close_code` is that of the lost connection); an `error` frame with a `room` for a room
        that could not be re-joined; the `joined` frame of a re-join whose `recovered` is false
        (page the history to fill that gap). A `message` already seen (its `seq` at or below the
        last one seen in its room) is not yielded again. The iteration ends after `close()`, and
        raises `HubbubError` when the client ends on its own (4001, or a drop with reconnecting
        turned off).
        """
        while True:
            item = await self._events.get()
            if isinstance(item, _End):
                self._events.put_nowait(item)  # every other reader ends too
                if item.error is not None:
                    raise item.error
                return
            yield item

    # -- the connection ---------------------------------------------------------------------

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
                raise _ConnectionLost(f"closed during hello ({ws.close_code})")
            frame = _welcome(message.data)
        except BaseException:
            await ws.close()
            raise
        self.user, self.session_id, self.node = frame["user"], frame["session"], frame["node"]
        self.heartbeat = float(frame["heartbeat"])
        return ws

    async def _run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Own the connection: read it, and replace it whenever it drops."""
        reconnected: dict[str, Any] | None = None
        try:
            while True:
                self._ws = ws
                self._generation += 1
                restore = self._spawn(self._restore(self._generation, reconnected))
                code = await self._read(ws)
                self._ready = False
                restore.cancel()
                await ws.close()
                for call in list(self._calls.values()):
                    if not call.resumable and not call.future.done():
                        call.future.set_exception(_ConnectionLost(f"closed with {code}"))
                if code == _UNAUTHORIZED:
                    raise HubbubError("unauthorized", "the server closed with 4001")
                if not self.reconnect:
                    raise HubbubError("unavailable", f"connection lost (close code {code})")
                ws = await self._reconnect()
                reconnected = {"type": "reconnected", "close_code": code}
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

    async def _reconnect(self) -> aiohttp.ClientWebSocketResponse:
        for attempt in itertools.count():
            await asyncio.sleep(self._backoff(attempt))
            try:
                return await self._open()
            except HubbubError as error:
                if error.code == "unauthorized":
                    raise
            except (aiohttp.ClientError, OSError, TimeoutError, _ConnectionLost):
                pass
        raise AssertionError("unreachable")

    async def _restore(self, generation: int, reconnected: dict[str, Any] | None) -> None:
        """Re-join every joined room, then resend every call still waiting, in order."""
        if reconnected is not None:
            self._emit({**reconnected, "session": self.session_id, "node": self.node})
        try:
            rooms = list(self._last_seq.items())
            await asyncio.gather(*(self._rejoin(room, since) for room, since in rooms))
        except _ConnectionLost:
            return
        # Calls made meanwhile wait in `_calls`; there is no await between the last look at them
        # and `_ready`, so none is left behind.
        while pending := [
            call
            for call in self._calls.values()
            if call.resumable and call.generation != generation
        ]:
            for call in pending:
                await self._write(call)
        self._ready = self._generation == generation

    async def _rejoin(self, room: str, since: int) -> None:
        frame = {"type": "join", "room": room, "since": since}
        try:
            joined = await self._call(frame, resumable=False)
        except HubbubError as error:
            if error.code == "unavailable" and self._ws is not None:
                await self._ws.close()  # the node is draining: reconnect (to another one)
                raise _ConnectionLost("unavailable while re-joining") from error
            # Banned, or the room vanished, while we were away.
            self._last_seq.pop(room, None)
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
        call = _Call({**frame, "ref": ref}, future, resumable)
        self._calls[ref] = call
        try:
            if self._ready or not resumable:
                await self._write(call)
            return await future
        finally:
            del self._calls[ref]

    async def _write(self, call: _Call) -> None:
        ws = self._ws
        if ws is None:
            return
        call.generation = self._generation
        # A failed write is noticed by the reader; the call is then resent after reconnecting.
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            await ws.send_frame(orjson.dumps(call.frame), _TEXT)

    def _dispatch(self, data: str) -> None:
        try:
            frame = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(frame, dict):
            return
        kind, room, ref = frame.get("type"), frame.get("room"), frame.get("ref")
        if ref is not None:
            call = self._calls.get(ref) if isinstance(ref, str) else None
            if call is not None and not call.future.done():
                self._answer(call, frame)
                return
            if kind in _REPLIES:
                return  # an answer nobody waits for any more
        if kind == "message" and isinstance(room, str) and room in self._last_seq:
            seq = frame.get("seq")
            if isinstance(seq, int):
                if seq <= self._last_seq[room]:
                    return  # seen before (replayed after a reconnect)
                self._last_seq[room] = seq
        elif kind == "left" and isinstance(room, str):
            self._last_seq.pop(room, None)  # kicked, banned or left over HTTP
        self._emit(frame)

    def _answer(self, call: _Call, frame: dict[str, Any]) -> None:
        kind, room = frame.get("type"), frame.get("room")
        if kind == "error":
            error = HubbubError.from_frame(frame)
            if error.code == "unavailable" and call.resumable and self.reconnect:
                call.generation = -1
                self._spawn(self._retry_later(call))
            else:
                call.future.set_exception(error)
            return
        if kind == "joined" and isinstance(room, str) and isinstance(frame.get("seq"), int):
            since = call.frame.get("since")
            recovered = frame.get("recovered") is not False
            # Set here, before any message that follows is dispatched.
            if not recovered:
                self._last_seq[room] = frame["seq"]  # a gap: the caller pages the history
            elif room not in self._last_seq:
                self._last_seq[room] = since if isinstance(since, int) else frame["seq"]
            elif isinstance(since, int):  # a re-join: what was already seen stays deduplicated
                self._last_seq[room] = max(since, self._last_seq[room])
        elif kind == "left" and isinstance(room, str):
            self._last_seq.pop(room, None)
        call.future.set_result(frame)

    async def _retry_later(self, call: _Call) -> None:
        """Resend a call the server answered `unavailable` (a node draining, a backend down)."""
        call.attempts += 1
        await asyncio.sleep(self._backoff(call.attempts))
        ref = call.frame["ref"]
        if self._ready and self._calls.get(ref) is call and call.generation == -1:
            await self._write(call)
        # Otherwise it was answered, given up, or resent by `_restore` after a reconnect.

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max, self.backoff_initial * 2 ** min(attempt, 32))
        return random.uniform(delay / 2, delay)

    def _emit(self, event: dict[str, Any] | _End) -> None:
        self._events.put_nowait(event)

    def _end(self, error: HubbubError | None) -> None:
        """The client stops: fail every waiting call and end `events()`."""
        self._ready, self._ws, self._ended = False, None, True
        failure = error or HubbubError("closed", "the client is closed")
        for call in self._calls.values():
            if not call.future.done():
                call.future.set_exception(HubbubError(failure.code, failure.message))
        self._emit(_End(error))

    def _check_running(self) -> None:
        if self._runner is None or self._runner.done():
            raise HubbubError("closed", "not connected: call connect() first")

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


_TEXT: Final = aiohttp.WSMsgType.TEXT


def _welcome(data: str) -> dict[str, Any]:
    """The `welcome` frame answering hello; raises `HubbubError` for anything else."""
    frame: Any = None
    with contextlib.suppress(orjson.JSONDecodeError):
        frame = orjson.loads(data)
    if isinstance(frame, dict):
        if frame.get("type") == "error":
            raise HubbubError.from_frame(frame)
        if (
            frame.get("type") == "welcome"
            and all(isinstance(frame.get(key), str) for key in ("user", "session", "node"))
            and isinstance(frame.get("heartbeat"), int | float)
        ):
            return frame
    raise HubbubError("internal", f"expected welcome, got {data[:200]!r}")
