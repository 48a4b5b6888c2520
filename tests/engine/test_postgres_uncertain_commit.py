"""A COMMIT whose connection breaks before its answer (the primary killed, a failover): the
log cannot know whether the message is stored, so the next read of the room's counter
decides, and live delivery stays gapless and phantom-free either way. And a read whose
connection breaks under it (safe to repeat) is retried once on a fresh connection.

The break is made by a TCP proxy between the pool and the real PostgreSQL that, when armed,
cuts the connection at the COMMIT: after PostgreSQL answered it (the message is stored) or
instead of passing it on (PostgreSQL rolls back when the connection goes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from support.pgutil import POSTGRES

from hubbub.engine.base import Message, Room
from hubbub.engine.postgres.database import PostgresDatabase
from hubbub.engine.postgres.log import PostgresLog
from hubbub.engine.postgres.store import PostgresStore
from hubbub.protocol.errors import Unavailable


class CommitCutter:
    """A proxy to host:port; `arm("after")` or `arm("before")` cuts the next COMMIT (or the
    next message holding `marker`)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.mode: str | None = None
        self.marker = b"COMMIT"
        self.cuts = 0
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def arm(self, mode: str, marker: bytes = b"COMMIT") -> None:
        self.mode, self.marker = mode, marker

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(*self.target)
        muted = asyncio.Event()  # the COMMIT went through: its answer must not reach the client

        async def up() -> None:
            while data := await client_r.read(65536):
                if self.mode is not None and self.marker in data:
                    mode, self.mode = self.mode, None
                    self.cuts += 1
                    if mode == "before":
                        break  # never forwarded: PostgreSQL rolls back on the lost connection
                    muted.set()
                server_w.write(data)
                await server_w.drain()
            server_w.close()
            client_w.close()

        async def down() -> None:
            while data := await server_r.read(65536):
                if muted.is_set():
                    break  # PostgreSQL answered the COMMIT: it is stored; the client never knows
                client_w.write(data)
                await client_w.drain()
            client_w.close()
            server_w.close()

        for job in (up(), down()):
            task = asyncio.create_task(job)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


class Harness:
    def __init__(self, db: PostgresDatabase, cutter: CommitCutter) -> None:
        self.db, self.cutter = db, cutter
        self.published: list[Message] = []
        self.log = PostgresLog(db, on_commit=self.published.append)

    def delivered(self) -> list[tuple[int, str]]:
        return [(m.seq, m.id) for m in self.published]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    url = POSTGRES.empty_url()
    parts = urlsplit(url)
    cutter = CommitCutter(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = await cutter.start()
    user = f"{parts.username}@" if parts.username else ""
    proxied = urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))
    db = PostgresDatabase(proxied, migrate=False)
    await db.open()
    await PostgresStore(db).create_user("alice", "h", 1)
    await PostgresStore(db).create_room(Room("lobby", "", False, "alice", 1))
    try:
        yield Harness(db, cutter)
    finally:
        with contextlib.suppress(Exception):
            await db.close()
        await cutter.close()


async def test_a_stored_message_whose_commit_answer_was_lost_is_delivered_before_the_next(
    harness: Harness,
) -> None:
    harness.cutter.arm("after")
    with pytest.raises(Unavailable):
        await harness.log.append("lobby", "alice", "m1", "one")
    assert harness.cutter.cuts == 1
    assert harness.delivered() == []  # not yet known to be stored

    second = await harness.log.append("lobby", "alice", "m2", "two")
    assert second.message.seq == 2
    assert harness.delivered() == [(1, "m1"), (2, "m2")]  # in order, no gap
    resent = await harness.log.append("lobby", "alice", "m1", "one")
    assert (resent.created, resent.message.seq) == (False, 1)
    assert harness.delivered() == [(1, "m1"), (2, "m2")]  # once


async def test_a_rolled_back_message_is_never_delivered_and_its_seq_goes_to_the_next(
    harness: Harness,
) -> None:
    harness.cutter.arm("before")
    with pytest.raises(Unavailable):
        await harness.log.append("lobby", "alice", "m1", "one")
    assert harness.cutter.cuts == 1

    second = await harness.log.append("lobby", "alice", "m2", "two")
    assert second.message.seq == 1
    assert harness.delivered() == [(1, "m2")]  # no phantom m1


async def test_reading_the_counter_decides_an_uncertain_commit_too(harness: Harness) -> None:
    harness.cutter.arm("after")
    with pytest.raises(Unavailable):
        await harness.log.append("lobby", "alice", "m1", "one")
    assert await harness.log.last_seq("lobby") == 1  # a join's cut: must not wait for ever
    assert harness.delivered() == [(1, "m1")]


async def test_a_read_whose_connection_breaks_is_retried_once_on_a_fresh_one(
    harness: Harness,
) -> None:
    await harness.log.append("lobby", "alice", "m1", "one")
    harness.cutter.arm("before", b"FROM messages")
    assert [m.id for m in await harness.log.read("lobby", 0, 10)] == ["m1"]
    assert harness.cutter.cuts == 1  # the first attempt was cut; the retry answered
