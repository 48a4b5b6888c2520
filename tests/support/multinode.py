"""Talking to several nodes in one test: a WebSocket client that keeps the frames it reads
while waiting for a reply, and the helpers built on it (tests/integration/conftest.py hands
out the `on` and `ws_to` fixtures)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

from support.ws import WS

_ENDED = (
    aiohttp.WSMsgType.CLOSE,
    aiohttp.WSMsgType.CLOSED,
    aiohttp.WSMsgType.CLOSING,
    aiohttp.WSMsgType.ERROR,
)


class Client(WS):
    """A WebSocket that keeps reading, as a real client does, so it answers the node's pings
    while a test waits on something else; frames read while waiting for a reply are kept for
    later reads."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        super().__init__(ws)
        self.stash: list[dict[str, Any]] = []
        self._inbox: asyncio.Queue[aiohttp.WSMessage] = asyncio.Queue()
        self._pump = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            msg = await self.ws.receive()  # answers pings (autoping)
            self._inbox.put_nowait(msg)
            if msg.type in _ENDED:
                return

    async def _next(self, timeout: float) -> aiohttp.WSMessage:
        return await asyncio.wait_for(self._inbox.get(), timeout)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        if self.stash:
            return self.stash.pop(0)
        return await self._frame(timeout)

    async def _frame(self, timeout: float) -> dict[str, Any]:
        msg = await self._next(timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            self._inbox.put_nowait(msg)  # the end stays visible to later reads
            raise AssertionError(f"expected a text frame, got {msg.type} {msg.data!r}")
        data: dict[str, Any] = msg.json()
        return data

    async def reply(self, ref: str, timeout: float = 10.0) -> dict[str, Any]:
        while True:
            frame = await self._frame(timeout)
            if frame.get("ref") == ref:
                return frame
            self.stash.append(frame)

    async def expect_close(self, timeout: float = 5.0) -> int | None:
        deadline = asyncio.get_running_loop().time() + timeout
        while (
            await self._next(max(deadline - asyncio.get_running_loop().time(), 0.01))
        ).type not in _ENDED:
            pass
        return self.ws.close_code

    async def close(self) -> None:
        self._pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._pump
        await self.ws.close()


async def send(ws: Client, room: str, msg_id: str, body: str = "hi") -> dict[str, Any]:
    await ws.send({"type": "send", "room": room, "id": msg_id, "body": body, "ref": msg_id})
    return await ws.reply(msg_id)


async def messages(ws: Client, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < count:
        frame = await ws.recv(timeout)
        if frame["type"] == "message":
            got.append(frame)
    return got
