"""Helpers of the tests that measure what hostile or slow clients cost the others.

Members time every message they receive (the send time travels in the body), a sender
posts at a fixed rate, and `SlowConsumer` is a raw WebSocket that stops reading.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson


def rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert match, status
    return int(match.group(1)) * 1024


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[int(0.99 * (len(ordered) - 1))]


async def slow_consumers_total(http: aiohttp.ClientSession, url: str) -> float:
    async with http.get(url + "/metrics") as r:
        text = await r.text()
    match = re.search(r"^hubbub_slow_consumers_total (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def masked_text(payload: dict[str, Any]) -> bytes:
    """A client-to-server text frame (clients must mask, RFC 6455 section 5.3)."""
    data = orjson.dumps(payload)
    mask = os.urandom(4)
    assert len(data) < 126
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return bytes((0x81, 0x80 | len(data))) + mask + body


def parse_frames(buf: bytearray) -> Iterator[tuple[int, bytes]]:
    """Complete server frames (opcode, payload) at the front of `buf`, consumed as read."""
    while len(buf) >= 2:
        n, head = buf[1] & 0x7F, 2
        if n == 126:
            if len(buf) < 4:
                return
            (n,), head = struct.unpack_from("!H", buf, 2), 4
        elif n == 127:
            if len(buf) < 10:
                return
            (n,), head = struct.unpack_from("!Q", buf, 2), 10
        if len(buf) < head + n:
            return
        opcode, payload = buf[0] & 0x0F, bytes(buf[head : head + n])
        del buf[: head + n]
        yield opcode, payload


class SlowConsumer:
    """A raw WebSocket that does hello and join, then stops reading."""

    def __init__(self, port: int, forwarded_for: str | None = None) -> None:
        self.port = port
        self.forwarded = f"X-Forwarded-For: {forwarded_for}\r\n" if forwarded_for else ""
        self.sock = socket.socket()
        # A small receive buffer: the backlog builds up on the node, not in the kernel.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)
        self.buf = bytearray()

    async def _frame(self, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
        while True:
            for opcode, payload in parse_frames(self.buf):
                assert opcode == 0x1, (opcode, payload)
                frame: dict[str, Any] = orjson.loads(payload)
                return frame
            chunk = await loop.sock_recv(self.sock, 65536)
            assert chunk, "closed during the handshake"
            self.buf += chunk

    async def open(self, token: str, room: str) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, ("127.0.0.1", self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(
            self.sock,
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{self.forwarded}\r\n"
            ).encode(),
        )
        while b"\r\n\r\n" not in self.buf:
            chunk = await loop.sock_recv(self.sock, 4096)
            assert chunk, "closed during the upgrade"
            self.buf += chunk
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buf = bytearray(rest)
        await loop.sock_sendall(self.sock, masked_text({"type": "hello", "token": token}))
        assert (await self._frame(loop))["type"] == "welcome"
        await loop.sock_sendall(self.sock, masked_text({"type": "join", "room": room}))
        while (await self._frame(loop))["type"] != "joined":
            pass

    async def drain(self, within: float = 10.0) -> int | None:
        """Read to the end: the close code the node sent, or None if it only dropped us."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        code = None
        try:
            while loop.time() < deadline:
                chunk = await asyncio.wait_for(
                    loop.sock_recv(self.sock, 1 << 20), deadline - loop.time()
                )
                if not chunk:
                    return code
                self.buf += chunk
                for opcode, payload in parse_frames(self.buf):
                    if opcode == 0x8:
                        code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
        except ConnectionResetError:
            return code
        raise AssertionError("the node did not close the slow consumer's connection")

    def close(self) -> None:
        self.sock.close()


BODY_KEY = '"body":"'


class Members:
    """Members joined to the room, timing every message they receive."""

    def __init__(self) -> None:
        self.window: list[float] | None = None  # where latencies go while measuring
        self.received = 0
        self.offline: asyncio.Queue[str] = asyncio.Queue()  # users seen going offline

    async def read(self, ws: aiohttp.ClientWebSocketResponse, watch: bool) -> None:
        """Time messages; with `watch`, also report who goes offline (one member does)."""
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            now = time.perf_counter()
            data: str = msg.data
            at = data.find(BODY_KEY)
            if at < 0:  # not a message: parsed whole (they are few)
                frame = orjson.loads(data)
                assert frame["type"] != "error", frame
                if watch and frame["type"] == "presence" and frame["status"] == "offline":
                    self.offline.put_nowait(frame["user"])
                continue
            self.received += 1
            if self.window is not None:
                at += len(BODY_KEY)
                self.window.append(now - float(data[at : data.index(" ", at)]))

    async def measure(self, seconds: float) -> list[float]:
        self.window = samples = []
        await asyncio.sleep(seconds)  # a measuring window's length: not waiting on an event
        self.window = None
        return samples


async def send_at_rate(
    ws: aiohttp.ClientWebSocketResponse, room: str, sent: list[int], rate: float, size: int
) -> None:
    """One message of `size` characters every 1/`rate` seconds on a fixed schedule, the send
    time in the body; `sent[0]` counts them."""
    loop = asyncio.get_running_loop()
    pad = "x" * size
    next_at = loop.time()
    while True:
        n = sent[0] = sent[0] + 1
        body = f"{time.perf_counter():.6f} {pad}"[:size]
        await ws.send_str(
            orjson.dumps({"type": "send", "room": room, "id": f"m{n}", "body": body}).decode()
        )
        next_at += 1 / rate
        await asyncio.sleep(max(next_at - loop.time(), 0))


async def drop_replies(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            frame = orjson.loads(msg.data)
            assert frame["type"] != "error", frame
