"""PostgreSQL as the system of record of many nodes: one room's log shared by several pools."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from support.pgutil import POSTGRES

from hubbub.engine.base import Message, Room
from hubbub.engine.migrations import sqlalchemy_url
from hubbub.engine.postgres.database import PostgresDatabase, asyncpg_dsn
from hubbub.engine.postgres.log import PostgresLog
from hubbub.engine.postgres.store import PostgresStore
from hubbub.protocol.errors import Unavailable


class Node:
    """What one hubbub node holds of PostgreSQL: its own pool and its own log object."""

    def __init__(self, url: str) -> None:
        self.db = PostgresDatabase(url, max_size=8, migrate=False)
        self.published: list[Message] = []
        self.log = PostgresLog(self.db, on_commit=self.published.append)


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    url = POSTGRES.empty_url()
    started = [Node(url), Node(url)]
    for node in started:
        await node.db.open()
    await PostgresStore(started[0].db).create_user("alice", "h", 1)
    await PostgresStore(started[0].db).create_room(Room("lobby", "", False, "alice", 1))
    try:
        yield started
    finally:
        for node in started:
            await node.db.close()


async def test_two_nodes_appending_to_one_room_get_seqs_1_to_n_exactly_once(
    nodes: list[Node],
) -> None:
    count = 600
    a, b = nodes
    results = await asyncio.gather(
        *(
            (a if i % 2 else b).log.append("lobby", "alice", f"m{i}", f"body {i}")
            for i in range(count)
        )
    )

    assert all(r.created for r in results)
    assert sorted(r.message.seq for r in results) == list(range(1, count + 1))
    stored = await a.log.read("lobby", 0, count + 10)
    assert [m.seq for m in stored] == list(range(1, count + 1))
    assert set(stored) == {r.message for r in results}
    for node in nodes:  # each node publishes its own appends, in seq order
        seqs = [m.seq for m in node.published]
        assert seqs == sorted(seqs)
    assert sorted(a.published + b.published, key=lambda m: m.seq) == stored, "published once"
    assert await a.log.last_seq("lobby") == await b.log.last_seq("lobby") == count


async def test_one_id_sent_through_two_nodes_at_once_is_stored_once(nodes: list[Node]) -> None:
    a, b = nodes
    ids = [f"m{i}" for i in range(50)]
    results = await asyncio.gather(
        *(
            node.log.append("lobby", "alice", msg_id, f"body of {msg_id}")
            for msg_id, node in itertools.product(ids, [a, b, a, b])
        )
    )

    assert sum(r.created for r in results) == len(ids)
    by_id = {r.message.id: r.message for r in results if r.created}
    assert all(r.message == by_id[r.message.id] for r in results), "repeats get the original"
    assert sorted(m.seq for m in by_id.values()) == list(range(1, len(ids) + 1))
    assert len(a.published) + len(b.published) == len(ids)


async def test_unreachable_server_is_unavailable() -> None:
    db = PostgresDatabase("postgresql://postgres@127.0.0.1:1/nothing", migrate=False)
    with pytest.raises(Unavailable):
        await db.open()


def test_postgresql_urls_map_to_each_driver() -> None:
    url = "postgresql://u:p@db:5432/hubbub"
    assert sqlalchemy_url(url) == "postgresql+psycopg://u:p@db:5432/hubbub"
    assert sqlalchemy_url("postgres://db/h") == "postgresql+psycopg://db/h"
    assert sqlalchemy_url("sqlite:///x.db") == "sqlite:///x.db"
    assert asyncpg_dsn(url) == url
    assert asyncpg_dsn("postgresql+psycopg://db/h") == "postgresql://db/h"
    with pytest.raises(ValueError):
        asyncpg_dsn("sqlite:///x.db")
