"""The WebSocket side of the tests: `WS`, a raw client that reads frames with timeouts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp


class WS:
    """A raw WebSocket test client: send frames, read frames with timeouts."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_json(frame)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(
                f"expected a text frame, got {msg.type} {msg.data!r} {msg.extra!r}"
            )
        data: dict[str, Any] = msg.json()
        return data

    async def recv_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """Read frames until one of the given type arrives (others are skipped)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            frame = await self.recv(max(left, 0.01))
            if frame["type"] == kind:
                return frame

    async def expect_close(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; returns the close code."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            msg = await asyncio.wait_for(self.ws.receive(), max(left, 0.01))
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            ):
                return self.ws.close_code
            if msg.type == aiohttp.WSMsgType.ERROR:
                return self.ws.close_code

    async def hello(self, token: str) -> dict[str, Any]:
        await self.send({"type": "hello", "token": token})
        frame = await self.recv()
        assert frame["type"] == "welcome", frame
        return frame

    async def join(self, room: str, since: int | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "join", "room": room}
        if since is not None:
            frame["since"] = since
        await self.send(frame)
        reply = await self.recv_type("joined")
        return reply

    async def close(self) -> None:
        await self.ws.close()


async def _publish(ws: Any, room: str, items: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Send (id, body) pairs one at a time on a joined connection; return their acks.

    A `rate_limited` answer is retried after the `retry_after` the server asks for.
    """
    acks = []
    for msg_id, body in items:
        while True:
            await ws.send({"type": "send", "room": room, "id": msg_id, "body": body, "ref": msg_id})
            while True:
                frame = await ws.recv(10.0)
                if frame["type"] == "ack" and frame.get("id") == msg_id:
                    break
                if frame["type"] == "error" and frame.get("ref") == msg_id:
                    break
            if frame["type"] == "ack":
                acks.append({**frame, "body": body})
                break
            if frame.get("code") != "rate_limited":
                raise AssertionError(f"send {msg_id} failed: {frame!r}")
            await asyncio.sleep(float(frame.get("retry_after") or 0.05))
    return acks


async def publish_messages(
    open_ws: Callable[[str], Awaitable[Any]],
    token: str,
    room: str,
    bodies: list[str],
    id_prefix: str,
    connections: int = 1,
) -> list[dict[str, Any]]:
    """Post `bodies` to `room` over `connections` WebSockets (hello + join each) in parallel.

    Returns the acks, each with the `body` it acknowledges, in `seq` order. The rate limit is
    per connection, so several connections post many messages without waiting for it.
    """
    conns = [await open_ws(token) for _ in range(connections)]
    try:
        for ws in conns:
            await ws.join(room)
        items = [(f"{id_prefix}-{i}", body) for i, body in enumerate(bodies)]
        chunks = [items[i::connections] for i in range(connections)]
        results = await asyncio.gather(
            *(_publish(ws, room, chunk) for ws, chunk in zip(conns, chunks, strict=True))
        )
    finally:
        for ws in conns:
            with contextlib.suppress(Exception):
                await ws.close()
    acks = [ack for result in results for ack in result]
    return sorted(acks, key=lambda a: a["seq"])
