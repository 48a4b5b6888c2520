"""Fan-out that proves itself: a node whose Redis subscription silently stops delivering
turns /readyz to 503, says why, counts it, rebuilds its subscription, and comes back.

Two real `hubbub serve` nodes on a private redis-server and a PostgreSQL database of their
own: node a talks to Redis directly, node b through a `StallProxy`, which can make b's
pub/sub connections deliver nothing while every socket stays open (the stall behind fan-out
going silent after a failover with health checks green). Clients send through a and read
through b.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.api import Api
from support.backends import send_all, unread_messages
from support.multinode import Client, messages
from support.pgutil import TestDatabase
from support.redis_server import RedisServer
from support.server import ServerProcess
from support.stall_proxy import StallProxy, running_proxy

INTERVAL = 0.25  # node b's --canary-interval: judged stalled after 3 of them
DEADLINE = 20.0  # seconds any expected state may take to show
REASON = re.compile(r"fan-out through Redis delivered no canary for \d+ s")


@dataclass
class Stack:
    a: ServerProcess
    b: ServerProcess
    proxy: StallProxy


@pytest.fixture
def stack(tmp_path: Path, server_factory: Any) -> Iterator[Stack]:
    database = TestDatabase(migrate=False)
    url = database.ensure()
    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    nodes: list[ServerProcess] = []
    try:
        with running_proxy(redis.port) as proxy:
            try:
                common = ["--database", url, "--rate-limit", "0", "--heartbeat", "2"]
                nodes.append(server_factory(args=[*common, "--redis", redis.url]))
                b_args = ["--redis", proxy.url, "--canary-interval", str(INTERVAL)]
                nodes.append(server_factory(args=[*common, *b_args]))
                yield Stack(nodes[0], nodes[1], proxy)
            finally:
                for node in nodes:  # before the proxy and Redis go away
                    node.stop()
    finally:
        redis.stop()
        database.drop()


async def readyz(http: aiohttp.ClientSession, node: ServerProcess) -> tuple[int, Any]:
    async with http.get(node.url + "/readyz") as response:
        return response.status, await response.json()


async def metric(http: aiohttp.ClientSession, node: ServerProcess, name: str) -> float:
    async with http.get(node.url + "/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} is not on {node.url}/metrics")


async def until_ready(
    http: aiohttp.ClientSession, node: ServerProcess, status: int
) -> tuple[int, Any]:
    """Poll /readyz until it answers `status`; its last answer."""
    deadline = time.monotonic() + DEADLINE
    while True:
        answer = await readyz(http, node)
        if answer[0] == status:
            return answer
        assert time.monotonic() < deadline, f"/readyz still {answer} after {DEADLINE:g}s"
        await asyncio.sleep(0.05)


async def test_a_silently_stalled_subscription_turns_readyz_503_then_heals_and_delivers(
    stack: Stack, http: aiohttp.ClientSession, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    a, b, proxy = stack.a, stack.b, stack.proxy
    _, alice = await on(a).user()
    _, bob = await on(b).user()
    room = await on(a).room(alice)
    sender: Client = await ws_to(a, alice)
    await sender.join(room)
    reader: Client = await ws_to(b, bob)
    await reader.join(room)

    assert await readyz(http, b) == (200, {"status": "ready"})
    acked = await send_all(sender, room, ["before"])
    assert [m["id"] for m in await messages(reader, 1)] == ["before"]
    failures = await metric(http, b, "hubbub_fanout_canary_failures_total")
    opened = proxy.pubsub_opened
    assert opened >= 1  # b's subscription goes through the proxy

    stalled_at = time.monotonic()
    proxy.stall()
    acked.update(await send_all(sender, room, ["during"]))  # appends still work
    _, body = await until_ready(http, b, 503)
    detected = time.monotonic() - stalled_at
    assert body["status"] == "stalled", body
    assert REASON.fullmatch(body["reason"]), body
    assert await metric(http, b, "hubbub_fanout_canary_age_seconds") > 3 * INTERVAL
    assert await metric(http, b, "hubbub_fanout_canary_failures_total") > failures
    assert await readyz(http, a) == (200, {"status": "ready"})  # a's subscription is fine

    async def rebuilt() -> bool:
        return proxy.pubsub_opened > opened

    deadline = time.monotonic() + DEADLINE
    while not await rebuilt():  # b tore its subscription down and opened another
        assert time.monotonic() < deadline, "node b never rebuilt its subscription"
        await asyncio.sleep(0.05)
    assert proxy.dropped > 0  # the stall was real: Redis sent, b heard nothing
    assert (await readyz(http, b))[0] == 503  # a new subscription that stalls too is no cure

    healed_at = time.monotonic()
    proxy.heal()
    assert await until_ready(http, b, 200) == (200, {"status": "ready"})
    print(
        f"canary every {INTERVAL} s: /readyz 503 {detected:.2f} s after the stall, "
        f"200 again {time.monotonic() - healed_at:.2f} s after healing"
    )
    assert await metric(http, b, "hubbub_fanout_canary_age_seconds") <= 3 * INTERVAL
    acked.update(await send_all(sender, room, [f"after{i}" for i in range(5)]))
    expected = sorted((seq, msg_id) for msg_id, seq in acked.items())
    assert [seq for seq, _ in expected] == list(range(1, 8))
    # "during" came from the log (a rebuilt subscription syncs, a gap is filled), once.
    got = await messages(reader, 6, timeout=DEADLINE)
    assert [(m["seq"], m["id"]) for m in got] == expected[1:]
    assert await unread_messages(reader) == []


async def test_a_subscription_stalled_for_good_is_rebuilt_and_fan_out_resumes_by_itself(
    stack: Stack, http: aiohttp.ClientSession, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    """The failover case: the old connection never delivers again, a new one would."""
    a, b, proxy = stack.a, stack.b, stack.proxy
    _, alice = await on(a).user()
    _, bob = await on(b).user()
    room = await on(a).room(alice)
    sender: Client = await ws_to(a, alice)
    await sender.join(room)
    reader: Client = await ws_to(b, bob)
    await reader.join(room)
    acked = await send_all(sender, room, ["before"])
    assert [m["id"] for m in await messages(reader, 1)] == ["before"]
    failures = await metric(http, b, "hubbub_fanout_canary_failures_total")
    opened = proxy.pubsub_opened

    assert proxy.freeze() == 1  # b's one pub/sub connection, silent from now on
    acked.update(await send_all(sender, room, [f"during{i}" for i in range(3)]))
    # Nobody heals anything: b notices, counts it, resubscribes on a new connection.
    deadline = time.monotonic() + DEADLINE
    while await metric(http, b, "hubbub_fanout_canary_failures_total") == failures:
        assert time.monotonic() < deadline, "node b never found its subscription stalled"
        await asyncio.sleep(0.05)
    assert await until_ready(http, b, 200) == (200, {"status": "ready"})
    assert proxy.pubsub_opened > opened
    # The messages published while b heard nothing come from the log, in order, once.
    got = await messages(reader, 3, timeout=DEADLINE)
    expected = sorted((seq, msg_id) for msg_id, seq in acked.items())
    assert [(m["seq"], m["id"]) for m in got] == expected[1:]
    acked.update(await send_all(sender, room, ["after"]))
    assert [(m["seq"], m["id"]) for m in await messages(reader, 1)] == [(5, "after")]
    assert await unread_messages(reader) == []
    assert "fan-out through Redis delivered no canary" in b.log()
