"""The hostile clients of tests/integration/test_hostile_clients.py, as a process of its own.

    PYTHONPATH=tests python -m support.hostile KIND PORT TOKEN ROOM ADDRESS

runs one kind of attack (flood, never-reads, joins, huge-frame, slowloris) against the
node on 127.0.0.1:PORT until SIGTERM, as the user of TOKEN from ADDRESS (sent as
X-Forwarded-For, which a node trusting 127.0.0.1 as its proxy takes as the client's),
then prints what the node did to it as one JSON line: {"cut_off": [close codes],
"slowloris_closed": [seconds], "refused": count}. It prints "ready" once
the attack is under way. A process of its own, so that its work (10,000 frames written
in a burst, a hundred sockets) never stalls the event loop of the clients that measure
latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import struct
import sys
from typing import Any

import aiohttp
import orjson

from support.latency import SlowConsumer, masked_text, parse_frames

HEADER_BYTE_EVERY = 0.1  # seconds between the slowloris' header bytes
SLOWLORIS = 100


COME_BACK = 0.1  # seconds an attacker waits after a refusal, whatever retry_after said


async def connect(
    http: aiohttp.ClientSession, url: str, token: str, refused: list[int], address: str
) -> aiohttp.ClientWebSocketResponse:
    """A WebSocket after hello, coming back every COME_BACK seconds while the node refuses
    it (429 before the upgrade, or rate_limited and 1008 at hello); counts the refusals."""
    while True:
        try:
            ws = await http.ws_connect(url, max_msg_size=0, headers={"X-Forwarded-For": address})
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 429, exc
        else:
            await ws.send_json({"type": "hello", "token": token})
            reply = await ws.receive_json(timeout=5)
            if reply["type"] == "welcome":
                return ws
            assert reply.get("code") == "rate_limited", reply
            await ws.close()
        refused.append(1)
        await asyncio.sleep(COME_BACK)


async def first_frame(
    reader: asyncio.StreamReader, opcode: int, within: float = 10.0
) -> bytes | None:
    """Read server frames to the first with `opcode`: its payload (None if the node hung up)."""
    buf = bytearray()
    async with asyncio.timeout(within):
        while chunk := await reader.read(65536):
            buf += chunk
            for kind, payload in parse_frames(buf):
                if kind == opcode:
                    return payload
    return None


async def close_code(reader: asyncio.StreamReader, within: float = 10.0) -> int | None:
    """Read server frames to the node's close frame: its code (None if it only hung up)."""
    payload = await first_frame(reader, 0x8, within)
    if payload is None:
        return None
    return int(struct.unpack_from("!H", payload)[0]) if payload else 1005


async def first_text(reader: asyncio.StreamReader, within: float = 10.0) -> dict[str, Any]:
    """The first text frame the node sends, decoded."""
    payload = await first_frame(reader, 0x1, within)
    if payload is None:
        raise ConnectionError("the node hung up before it said anything")
    frame: dict[str, Any] = orjson.loads(payload)
    return frame


def huge_frame_header(size: int) -> bytes:
    """A masked client text frame header announcing `size` bytes (64-bit length)."""
    return bytes((0x81, 0x80 | 127)) + struct.pack("!Q", size) + os.urandom(4)


class Hostile:
    """The attacks; each runs until cancelled, coming back whenever the node cuts it off,
    and records the close codes the node sent (`cut_off`)."""

    def __init__(
        self, http: aiohttp.ClientSession, port: int, token: str, room: str, address: str
    ) -> None:
        self.http = http
        self.address = address  # sent as X-Forwarded-For: the node trusts 127.0.0.1
        self.port = port
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.token = token
        self.room = room
        self.ready = asyncio.Event()  # the attack is under way
        self.cut_off: list[int | None] = []
        self.slowloris_closed: list[float] = []  # seconds each slow upgrade was kept open
        self.refused: list[int] = []  # connections refused for earlier abuse

    async def flood(self) -> None:
        """1,000 pings a second on one connection."""
        loop = asyncio.get_running_loop()
        while True:
            ws = await connect(self.http, self.url, self.token, self.refused, self.address)
            self.ready.set()
            reading = asyncio.create_task(self._drain(ws))  # ends at the node's close
            next_at = loop.time()
            with contextlib.suppress(ConnectionError):
                while not reading.done():
                    for _ in range(10):
                        await ws.send_str('{"type":"ping"}')
                    next_at += 0.01
                    await asyncio.sleep(max(next_at - loop.time(), 0))
            await reading
            self.cut_off.append(ws.close_code)

    async def _drain(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        with contextlib.suppress(Exception):
            async for _ in ws:
                pass
        await ws.close()

    async def never_reads(self) -> None:
        """Joins the busy room, then never reads again (the node cuts it off once its
        --send-buffer is full, which takes longer than a window)."""
        slow = SlowConsumer(self.port, self.address)
        try:
            await slow.open(self.token, self.room)
            self.ready.set()
            await asyncio.Event().wait()  # until cancelled: no read, ever
        finally:
            slow.close()

    async def joins(self) -> None:
        """10,000 join frames (the busy room and rooms that do not exist) on one connection,
        written as fast as the socket takes them."""
        frames = [
            orjson.dumps({"type": "join", "room": self.room if i % 2 else f"nope{i}"}).decode()
            for i in range(10_000)
        ]
        while True:
            ws = await connect(self.http, self.url, self.token, self.refused, self.address)
            self.ready.set()
            reading = asyncio.create_task(self._drain(ws))
            with contextlib.suppress(ConnectionError):
                for frame in frames:
                    if ws.closed:
                        break
                    await ws.send_str(frame)
            await reading
            self.cut_off.append(ws.close_code)

    async def huge_frame(self) -> None:
        """A frame announcing 10 MB: the node must refuse it from its header (1009)."""
        while True:
            reader, writer = await self._upgrade()
            self.ready.set()
            try:
                writer.write(huge_frame_header(10 * 1024 * 1024) + os.urandom(64 * 1024))
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                self.cut_off.append(await close_code(reader))
            finally:
                writer.close()

    async def _upgrade(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A raw upgraded socket after welcome, coming back every COME_BACK seconds while
        the node refuses it (429 before the upgrade, or rate_limited and 1008 at hello)."""
        while True:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(
                (
                    f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    f"Sec-WebSocket-Version: 13\r\nX-Forwarded-For: {self.address}\r\n\r\n"
                ).encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"HTTP/1.1 101"):
                writer.write(masked_text({"type": "hello", "token": self.token}))
                reply = await first_text(reader)
                if reply["type"] == "welcome":
                    return reader, writer
                assert reply.get("code") == "rate_limited", reply
            else:
                assert head.startswith(b"HTTP/1.1 429"), head
            writer.close()
            self.refused.append(1)
            await asyncio.sleep(COME_BACK)

    async def slowloris(self) -> None:
        """SLOWLORIS upgrades whose headers never end: a byte every HEADER_BYTE_EVERY
        seconds; records how long the node kept each open."""
        loop = asyncio.get_running_loop()
        start = (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"X-Forwarded-For: {self.address}\r\n"
        ).encode()

        async def one(opened: asyncio.Event) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            since = loop.time()
            opened.set()
            try:
                writer.write(start)
                line, n = b"X-Pad: a\r\n", 0
                while not reader.at_eof():
                    writer.write(line[n % len(line) :][:1])
                    n += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(reader.read(1024), HEADER_BYTE_EVERY)
            except ConnectionError:
                pass
            else:
                self.slowloris_closed.append(loop.time() - since)  # the node hung up
            finally:
                writer.close()

        while True:
            opened = [asyncio.Event() for _ in range(SLOWLORIS)]
            batch = [asyncio.create_task(one(e)) for e in opened]
            await asyncio.gather(*(e.wait() for e in opened))
            self.ready.set()
            await asyncio.gather(*batch)


async def main(kind: str, port: int, token: str, room: str, address: str) -> None:
    async with aiohttp.ClientSession() as http:
        hostile = Hostile(http, port, token, room, address)
        attack = {
            "flood": hostile.flood,
            "never-reads": hostile.never_reads,
            "joins": hostile.joins,
            "huge-frame": hostile.huge_frame,
            "slowloris": hostile.slowloris,
        }[kind]
        task = asyncio.create_task(attack())
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        ready = asyncio.create_task(hostile.ready.wait())
        await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
        print("ready", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        report = {
            "cut_off": hostile.cut_off,
            "slowloris_closed": hostile.slowloris_closed,
            "refused": len(hostile.refused),
        }
        print(orjson.dumps(report).decode(), flush=True)


if __name__ == "__main__":
    # An attacker's CPU is its own machine's: here it shares two cores with the node and
    # the clients that measure, so it runs at the lowest priority, where its own work
    # (10,000 frames encoded in a burst) does not show up as the others' latency.
    os.nice(19)
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]))
