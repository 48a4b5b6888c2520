"""A TCP proxy in front of Redis that can make pub/sub deliver nothing while every
connection stays open: the silent stall of a stuck middlebox or a half-open connection.

Each connection is forwarded both ways. One whose client sent SUBSCRIBE or SSUBSCRIBE is a
pub/sub connection; while the proxy is `stalled`, whatever Redis sends to pub/sub
connections (messages, subscription confirmations, pongs), old ones and new ones alike, is
read and thrown away. Nothing is closed and nothing fails: the client's writes still reach
Redis, commands on other connections are answered as usual. `heal` lets bytes through again.
`freeze` does the same to the pub/sub connections open at that moment only, for good: new
ones work (a stall that a fresh connection cures, as after a failover behind a proxy).
While `blackhole` is set, new connections of any kind get nothing from Redis at all (an
address that accepts and never answers).

`running_proxy` runs one on an event loop of its own thread: the test's loop may block (a
node started or stopped synchronously) without freezing the node's Redis connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

# How redis-py (and hiredis) put the command name on the wire: a RESP bulk string.
_SUBSCRIBING = (b"$9\r\nSUBSCRIBE\r\n", b"$10\r\nSSUBSCRIBE\r\n")
_CHUNK = 65536


class _Link:
    """One proxied connection: whether it is a pub/sub one."""

    __slots__ = ("frozen", "pubsub")

    def __init__(self) -> None:
        self.pubsub = False
        self.frozen = False


class StallProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to 127.0.0.1:`target_port`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.stalled = False
        self.blackhole = False
        self.opened = 0  # connections accepted so far
        self.pubsub_opened = 0  # pub/sub connections seen so far
        self.dropped = 0  # bytes from Redis thrown away while stalled
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._links: set[_Link] = set()
        self._lock = threading.Lock()  # `freeze` is called from the test's thread

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def stall(self) -> None:
        self.stalled = True

    def heal(self) -> None:
        self.stalled = False

    def freeze(self) -> int:
        """Silence the pub/sub connections open now, for good; how many there were."""
        with self._lock:
            frozen = [link for link in self._links if link.pubsub]
        for link in frozen:
            link.frozen = True
        return len(frozen)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        self._writers |= {writer, up_writer}
        link = _Link()
        link.frozen = self.blackhole
        self.opened += 1
        with self._lock:
            self._links.add(link)
        pumps = [
            asyncio.create_task(self._to_redis(reader, up_writer, link)),
            asyncio.create_task(self._from_redis(up_reader, writer, link)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()
            with self._lock:
                self._links.discard(link)
            self._tasks.discard(task)

    async def _to_redis(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(_CHUNK):
                if not link.pubsub and any(word in data.upper() for word in _SUBSCRIBING):
                    link.pubsub = True
                    self.pubsub_opened += 1
                writer.write(data)
                await writer.drain()

    async def _from_redis(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(_CHUNK):
                if link.frozen or (link.pubsub and self.stalled):
                    self.dropped += len(data)
                    continue
                writer.write(data)
                await writer.drain()


@contextlib.contextmanager
def running_proxy(target_port: int) -> Iterator[StallProxy]:
    """A `StallProxy` serving from its own thread until the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="stall-proxy", daemon=True)
    thread.start()
    proxy = StallProxy(target_port)
    try:
        asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(10)
        yield proxy
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(proxy.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
