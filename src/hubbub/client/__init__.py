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
completes exactly once, and the event stream has no gap and no duplicate. Resent sends are paced
(`resend_rate`) to stay under the server's rate limit; a resent call answered `rate_limited`, and
any call answered `unavailable` (a draining node), is tried again after a backoff.

`events()` says how the connection stands, among the frames, with `connection` events:

    {"type": "connection", "state": "connected", "session": S, "node": N}
    {"type": "connection", "state": "disconnected", "reason": "the connection was lost",
     "close_code": 1006, "retry_in": 0.4}
    {"type": "connection", "state": "resumed", "session": S, "node": N, "rooms": {"lobby": 41}}

`connected` comes once the first connection is up; `disconnected` when it drops, and again after
every failed attempt to connect again (its `reason` then says why, e.g. "cannot reach
http://127.0.0.1:8080: connection refused (is the server running, on that port?)"), with
`retry_in`, the seconds before the next attempt, unless the client gives up (a 4001, or
`reconnect=False`: `events()` then raises); `resumed` once every room was re-joined from the last
`seq` seen in it (`rooms`) and the calls still waiting were resent. The messages missed meanwhile
come once each and in order, just before or just after `resumed` (the replay of a re-join and
the event are not ordered with each other).

Errors are `HubbubError`s whose `message` is a sentence a person can read: the server's own for
an error answer ("a message needs some text: it cannot be empty or only spaces"), and for a server
out of reach, `cannot reach URL: CAUSE` (HTTP calls and `connect()` alike, code `unavailable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from hubbub.client.connection import Connection
from hubbub.client.http import HubbubError
from hubbub.client.state import ConnectionLost, End, unreachable

__all__ = ["Client", "HubbubError"]


class Client(Connection):
    """A hubbub client: the HTTP API (see `HttpApi`) and one resilient WebSocket connection
    (see `Connection`, which takes the constructor's arguments and runs the connection)."""

    @property
    def connected(self) -> bool:
        """True while the WebSocket is up and restored (False while reconnecting)."""
        return self._ready

    @property
    def last_seq(self) -> dict[str, int]:
        """The joined rooms, each with the last `seq` this client has seen there."""
        return dict(self._rooms.last)

    async def __aenter__(self) -> Client:
        """Connects the WebSocket when a token is known; otherwise only the HTTP calls work yet."""
        if self.token is not None:
            try:
                await self.connect()
            except BaseException:
                await self.close()  # `__aexit__` will not run: release the session here
                raise
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
        except (aiohttp.ClientError, OSError, TimeoutError, ConnectionLost) as error:
            raise HubbubError("unavailable", unreachable(self.url, error)) from error
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
        self._rooms.last.clear()
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
                await self._ws.send_frame(
                    orjson.dumps({"type": "typing", "room": room}), aiohttp.WSMsgType.TEXT
                )

    async def ping(self) -> float:
        """Round trip of an application-level `ping`, in seconds."""
        started = time.monotonic()
        await self._call({"type": "ping"})
        return time.monotonic() - started

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every unsolicited frame (`message`, `presence`, `typing`, `left`, `error`), in order.

        Also: the `connection` events (`connected`, `disconnected`, `resumed`: see the module's
        documentation); an `error` frame with a `room` for a room that could not be re-joined;
        the `joined` frame of a re-join whose `recovered` is false
        (page the history to fill that gap). A `message` already seen (its `seq` at or below the
        last one seen in its room) is not yielded again. The iteration ends after `close()`, and
        raises `HubbubError` when the client ends on its own (4001, or a drop with reconnecting
        turned off).
        """
        while True:
            item = await self._events.get()
            if isinstance(item, End):
                self._events.put_nowait(item)  # every other reader ends too
                if item.error is not None:
                    raise item.error
                return
            yield item

    async def _http(self, *args: Any, **kwargs: Any) -> Any:
        """Every HTTP call (`HttpApi._http`'s arguments): a server out of reach is a
        `HubbubError` that says so in words."""
        try:
            return await super()._http(*args, **kwargs)
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            raise HubbubError("unavailable", unreachable(self.url, error)) from error
