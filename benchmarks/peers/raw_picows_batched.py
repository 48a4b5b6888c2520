"""picows with the frames for a connection queued and written once per loop turn.

The same workload and server as `raw_picows.py`, with the write technique
hubbub's gateway uses: a `message` is encoded once, framed once (a server's
frames are not masked, so every member gets the same bytes) and queued on
each member; at the end of the event-loop turn every connection with queued
frames writes them all with one `write` on its socket. A fan-out burst of
many sends to one room costs one system call per member, not one per frame.

Run: python benchmarks/peers/raw_picows_batched.py --host 127.0.0.1 --port 8092
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable

from raw_picows import Connection, Hub, serve
from wire import parse_args, use_uvloop


def ws_text_frame(payload: bytes) -> bytes:
    """One final, unmasked text frame (RFC 6455 section 5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


class Flusher:
    """The connections with queued frames, flushed once per loop turn."""

    def __init__(self) -> None:
        self.dirty: list[BatchedConnection] = []

    def mark(self, conn: BatchedConnection) -> None:
        if not self.dirty:
            asyncio.get_running_loop().call_soon(self.flush)
        self.dirty.append(conn)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        for conn in dirty:
            conn.flush()


FLUSHER = Flusher()


class BatchedConnection(Connection):
    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self.queue: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.write_frame(ws_text_frame(data))

    def fan_out(self, members: Iterable[Connection], data: bytes) -> None:
        frame = ws_text_frame(data)
        for member in members:
            member.write_frame(frame)  # type: ignore[attr-defined]

    def write_frame(self, frame: bytes) -> None:
        if not self.queue:
            FLUSHER.mark(self)
        self.queue.append(frame)

    def flush(self) -> None:
        queue, self.queue = self.queue, []
        t = self.transport
        if t is not None and not t.is_disconnected and queue:
            t.underlying_transport.write(b"".join(queue) if len(queue) > 1 else queue[0])


def main() -> None:
    args = parse_args(__doc__)
    use_uvloop()
    asyncio.run(serve(args.host, args.port, BatchedConnection))


if __name__ == "__main__":
    main()
