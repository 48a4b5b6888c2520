"""/metrics of two distributed nodes and their worker, scraped before and after traffic.

The nodes, the worker and the backends are this test's own (`running_backends`: a private
PostgreSQL and redis-server), so nothing else moves their counters: a delta is what the
traffic of the test caused, and a node that only relays (node b) can be told apart from
the node that acked (node a).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.api import Api
from support.backends import (
    DEADLINE,
    Backends,
    running_backends,
    send_all,
    unread_messages,
    wait_until,
)
from support.multinode import Client, messages, send
from support.server import ServerProcess

from hubbub.engine.redis.schema import channel

Labels = frozenset[tuple[str, str]]


class Scrape:
    """One /metrics answer: each sample's value by (name, labels)."""

    def __init__(self, text: str) -> None:
        self.values: dict[tuple[str, Labels], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.values[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def get(self, name: str, **labels: str) -> float:
        """A sample's value; 0 for a labelled child not created yet (a counter at zero)."""
        return self.values.get((name, frozenset(labels.items())), 0.0)


Scraper = Callable[[ServerProcess], Awaitable[Scrape]]


@pytest.fixture
def backends(tmp_path: Path, server_factory: Any) -> Iterator[Backends]:
    with running_backends(tmp_path, server_factory) as running:
        yield running


@pytest.fixture
async def scrape(http: aiohttp.ClientSession) -> Scraper:
    async def get(node: ServerProcess) -> Scrape:
        async with http.get(node.url + "/metrics") as response:
            assert response.status == 200
            return Scrape(await response.text())

    return get


async def sender_and_reader(
    backends: Backends, http: aiohttp.ClientSession, ws_to: Any
) -> tuple[str, Client, Client]:
    """A room with a sender joined on node a and a reader joined on node b."""
    a, b = backends.nodes
    _, alice = await Api(http, a.url).user()
    _, bob = await Api(http, b.url).user()
    room = await Api(http, a.url).room(alice)
    sender: Client = await ws_to(a, alice)
    await sender.join(room)
    reader: Client = await ws_to(b, bob)
    await reader.join(room)
    return room, sender, reader


async def test_traffic_sent_on_a_is_acked_on_a_fanned_out_on_b_and_persisted_by_the_worker(
    backends: Backends, http: aiohttp.ClientSession, ws_to: Any, scrape: Scraper
) -> None:
    a, b = backends.nodes
    before_a, before_b = await scrape(a), await scrape(b)
    room, sender, reader = await sender_and_reader(backends, http, ws_to)
    joined_a, joined_b = await scrape(a), await scrape(b)
    assert joined_a.get("hubbub_rooms") == before_a.get("hubbub_rooms") + 1
    assert joined_b.get("hubbub_rooms") == before_b.get("hubbub_rooms") + 1

    total = 25
    acked = await send_all(sender, room, [f"m{i}" for i in range(total)])
    got = await messages(reader, total)
    assert [m["seq"] for m in got] == sorted(acked.values()) == list(range(1, total + 1))
    after_a, after_b = await scrape(a), await scrape(b)

    def delta(name: str, after: Scrape, before: Scrape) -> float:
        return after.get(name) - before.get(name)

    # b relayed every message to its reader (once each) and acked nothing; a acked them all.
    assert delta("hubbub_fanout_latency_seconds_count", after_b, before_b) == total
    assert delta("hubbub_acks_total", after_a, before_a) == total
    assert delta("hubbub_acks_total", after_b, before_b) == 0
    assert delta("hubbub_ack_latency_seconds_count", after_a, before_a) == total

    await reader.close()

    async def b_left_the_room() -> bool:
        return (await scrape(b)).get("hubbub_rooms") == before_b.get("hubbub_rooms")

    await wait_until(b_left_the_room, "node b's hubbub_rooms to drop back")

    worker = backends.worker
    seen = Scrape("")

    async def worker_persisted_everything() -> bool:
        nonlocal seen
        seen = Scrape(worker.metrics())
        persisted = seen.get("hubbub_worker_persisted_total")
        assert persisted <= total, persisted  # never more than was sent: nothing twice
        return persisted == total and seen.get("hubbub_worker_lag_messages") == 0

    await wait_until(worker_persisted_everything, "the worker to persist every message")
    assert seen.get("hubbub_build_info", version=_version(seen), node="worker") == 1
    rows = await _rows(backends, room)
    assert rows == sorted((seq, msg_id) for msg_id, seq in acked.items())


def _version(scrape: Scrape) -> str:
    """The version label of `hubbub_build_info` in a scrape."""
    for name, labels in scrape.values:
        if name == "hubbub_build_info":
            return dict(labels)["version"]
    raise AssertionError("hubbub_build_info is missing")


async def _rows(backends: Backends, room: str) -> list[tuple[int, str]]:
    return await asyncio.to_thread(backends.postgres.rows, room)


async def test_a_redis_outage_raises_redis_backend_errors_on_a_node_that_sends(
    backends: Backends, http: aiohttp.ClientSession, ws_to: Any, scrape: Scraper
) -> None:
    a, _ = backends.nodes
    room, sender, _ = await sender_and_reader(backends, http, ws_to)
    assert (await send(sender, room, "before"))["type"] == "ack"
    before = await scrape(a)

    backends.redis.kill()
    refused = await send(sender, room, "during")
    assert (refused["type"], refused["code"]) == ("error", "unavailable"), refused
    after = await scrape(a)
    redis_errors = "hubbub_backend_errors_total"
    assert after.get(redis_errors, backend="redis") > before.get(redis_errors, backend="redis")
    unavailable = after.get("hubbub_errors_total", code="unavailable")
    assert unavailable - before.get("hubbub_errors_total", code="unavailable") == 1
    assert after.get("hubbub_acks_total") == before.get("hubbub_acks_total")


async def test_messages_published_while_b_had_no_subscription_are_gap_filled_in_order(
    backends: Backends, http: aiohttp.ClientSession, ws_to: Any, scrape: Scraper
) -> None:
    _, b = backends.nodes
    room, sender, reader = await sender_and_reader(backends, http, ws_to)
    acked = await send_all(sender, room, [f"before{i}" for i in range(5)])
    assert [m["seq"] for m in await messages(reader, 5)] == [1, 2, 3, 4, 5]
    before = await scrape(b)
    redis = backends.redis.client()
    try:
        missed = await _publish_unheard(redis, sender, room, acked)
    finally:
        await redis.aclose()
    acked.update(await send_all(sender, room, [f"after{i}" for i in range(20)]))
    expected = sorted((seq, msg_id) for msg_id, seq in acked.items())
    assert [seq for seq, _ in expected] == list(range(1, len(expected) + 1))

    await messages(sender, 5)  # the sender's own first five, read before the outage
    for ws in (reader, sender):  # neither node was subscribed when `missed` was published
        got = await messages(ws, len(expected) - 5, timeout=DEADLINE)
        assert [(m["seq"], m["id"]) for m in got] == expected[5:]  # in order, none missing
        assert await unread_messages(ws) == []  # none twice
    after = await scrape(b)
    # Node b received `missed` only by reading it from the log: a gap fill delivered it.
    assert after.get("hubbub_gap_fills_total") > before.get("hubbub_gap_fills_total")
    filled = "hubbub_gap_filled_messages_total"
    assert after.get(filled) - before.get(filled) >= len(missed)


async def _publish_unheard(
    redis: Any, sender: Client, room: str, acked: dict[str, int]
) -> list[str]:
    """Kill every pub/sub connection, then send while no node is subscribed to the room.

    `PUBSUB SHARDNUMSUB` is 0 both before the send and after its ack, so its publish
    reached no node: the nodes can only learn of the message from the log. A node
    reconnects within its reconnect delay (0.5 s); if it beat the check, try again."""
    unheard: list[str] = []
    for attempt in range(5):
        await _wait_for_subscribers(redis, 2)  # node a's and node b's, back after a kill
        killed = await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert killed >= 2, killed
        if not await _no_subscriber(redis, room, timeout=0.2):
            continue
        msg_id = f"unheard{attempt}"
        ack = await send(sender, room, msg_id)
        assert ack["type"] == "ack", ack
        acked[msg_id] = ack["seq"]
        if await _no_subscriber(redis, room, timeout=0):
            unheard.append(msg_id)
            return unheard
    raise AssertionError("the nodes resubscribed before a send could be acked, five times")


async def _wait_for_subscribers(redis: Any, count: int) -> None:
    """Wait until at least `count` pub/sub connections are open on the Redis server."""
    deadline = time.monotonic() + DEADLINE
    while True:
        listing = await redis.execute_command("CLIENT", "LIST", "TYPE", "pubsub")
        text = listing.decode() if isinstance(listing, bytes) else str(listing)
        if len([line for line in text.splitlines() if line.strip()]) >= count:
            return
        assert time.monotonic() < deadline, f"fewer than {count} pub/sub connections: {text}"
        await asyncio.sleep(0.02)


async def _no_subscriber(redis: Any, room: str, timeout: float) -> bool:
    """Whether the room's channel has no subscriber, waiting up to `timeout` for it."""
    deadline = time.monotonic() + timeout
    while True:
        _, count = await redis.execute_command("PUBSUB", "SHARDNUMSUB", channel(room))
        if int(count) == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.01)
