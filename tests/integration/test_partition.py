"""A node cut off from its data tier by the kernel's firewall (tests/support/partition.py):
every packet to PostgreSQL (and Redis) dropped, nothing refused, connections hanging.

The node must notice within seconds, not a statement timeout: /readyz turns 503 with the
reason (the load balancer sends it no new clients), a send waiting on the database ends
`unavailable`, later ones are refused at once, and the connection stays open. Once the
cable is back the node is ready again by itself, the resend with the same id is acked
once, and nothing else happened in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.api import Api
from support.multinode import send
from support.partition import Partition
from support.pgutil import TestDatabase
from support.redis_server import REDIS_DURABLE, RedisServer

# The database watch (engine.postgres.watch) judges after two failed probes of 2 s each.
NOTICED_WITHIN = 8.0


@pytest.fixture
def partition() -> Iterator[Partition]:
    cut = Partition()
    try:
        yield cut
    finally:
        cut.close()


@pytest.fixture
def database() -> Iterator[str]:
    db = TestDatabase(migrate=True)
    try:
        yield db.ensure()
    finally:
        db.drop()


@pytest.fixture(params=["postgresql", "redis+postgresql"])
def node_args(
    request: pytest.FixtureRequest, tmp_path: Path, partition: Partition, database: str
) -> Iterator[list[str]]:
    """The node's arguments: everything it stores reached through the partition."""
    args = ["--database", partition.url(database), "--rooms-per-hour", "0"]
    if request.param == "postgresql":
        yield args
        return
    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis", *REDIS_DURABLE)
    redis.start()
    try:
        yield [*args, "--redis", partition.url(redis.url)]
    finally:
        redis.stop()


async def readyz(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url + "/readyz") as response:
        return response.status, await response.json()


async def test_a_node_cut_off_from_its_database_says_so_fails_fast_and_heals_by_itself(
    node_args: list[str],
    partition: Partition,
    server_factory: Any,
    http: aiohttp.ClientSession,
    ws_to: Any,
    wait_for: Callable[..., Any],
) -> None:
    node = server_factory(args=node_args)
    api = Api(http, node.url)
    _, token = await api.user()
    room = await api.room(token)
    ws = await ws_to(node, token)
    await ws.join(room)
    before = await send(ws, room, "before")
    assert before["type"] == "ack", before

    partition.cut()
    started = time.monotonic()
    waited = await send(ws, room, "during", "sent while the cable is out")
    took = time.monotonic() - started
    assert (waited["type"], waited["code"]) == ("error", "unavailable"), waited
    assert took < NOTICED_WITHIN, f"the send waited {took:.1f} s"
    assert "not answered" in waited["message"] or "unavailable" in waited["message"]

    status, body = await readyz(http, node.url)
    assert status == 503, body
    assert "the database has not answered" in body["reason"], body
    started = time.monotonic()
    refused = await send(ws, room, "during", "sent while the cable is out")
    assert refused["code"] == "unavailable", refused
    assert time.monotonic() - started < 1.0, "refused at once, not after a wait"
    assert partition.dropped() > 0

    partition.heal()
    await wait_for(lambda: readyz(http, node.url), lambda r: r[0] == 200, deadline_s=30)
    acked = await send(ws, room, "during", "sent while the cable is out")
    assert acked["type"] == "ack", acked
    again = await send(ws, room, "during", "sent while the cable is out")
    assert (again["type"], again["seq"]) == ("ack", acked["seq"])  # once
    status, page = await api.call("GET", f"/api/v1/rooms/{room}/messages", token)
    assert status == 200, page
    assert [(m["seq"], m["id"]) for m in page["messages"]] == [
        (before["seq"], "before"),
        (acked["seq"], "during"),
    ]
