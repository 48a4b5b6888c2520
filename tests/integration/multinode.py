"""Talking to several nodes in one test: a WebSocket client that keeps the frames it reads
while waiting for a reply, and the helpers built on it (tests/integration/conftest.py hands
out the `on` and `ws_to` fixtures)."""

from __future__ import annotations

from typing import Any

import aiohttp
from conftest import WS


class Client(WS):
    """A WebSocket whose frames read while waiting for a reply are kept for later reads."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        super().__init__(ws)
        self.stash: list[dict[str, Any]] = []

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        if self.stash:
            return self.stash.pop(0)
        return await super().recv(timeout)

    async def reply(self, ref: str, timeout: float = 10.0) -> dict[str, Any]:
        while True:
            frame = await super().recv(timeout)
            if frame.get("ref") == ref:
                return frame
            self.stash.append(frame)


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
