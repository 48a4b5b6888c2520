"""/metrics moves as the traffic says: a private `hubbub serve`, scraped before and after.

The node is this test's own (not the shared server), so nothing else moves its counters
and every delta can be exact. The traffic test runs on each single-node engine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from support.api import Api
from support.pgutil import TestDatabase
from support.ws import WS

from hubbub import metrics

Labels = frozenset[tuple[str, str]]


class Scrape:
    """One /metrics answer: sample values by (name, labels), and the family names."""

    def __init__(self, text: str) -> None:
        self.values: dict[tuple[str, Labels], float] = {}
        self.families: set[str] = set()
        for family in text_string_to_metric_families(text):
            self.families.add(family.name)
            for sample in family.samples:
                self.values[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def get(self, name: str, **labels: str) -> float:
        """A sample's value; 0 for a labelled child not created yet (a counter at zero)."""
        return self.values.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: aiohttp.ClientSession, url: str) -> Scrape:
    async with http.get(url + "/metrics") as response:
        assert response.status == 200
        return Scrape(await response.text())


async def open_ws(http: aiohttp.ClientSession, ws_url: str, token: str) -> Any:
    ws = WS(await http.ws_connect(ws_url, max_msg_size=0))
    await ws.hello(token)
    return ws


async def read_frames(ws: Any, wanted: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """Read until `wanted[type]` frames of each type arrived (a sender's own message may
    come before or after its ack); any other frame fails the test."""
    got: dict[str, list[dict[str, Any]]] = {kind: [] for kind in wanted}
    while any(len(got[kind]) < n for kind, n in wanted.items()):
        frame = await ws.recv()
        assert frame["type"] in got, frame
        got[frame["type"]].append(frame)
    return got


@pytest.fixture(params=["sqlite", "postgres"])
def engine_args(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """`hubbub serve` arguments of one engine (PostgreSQL: a throwaway database)."""
    if request.param == "sqlite":
        yield []
        return
    database = TestDatabase(migrate=False)
    try:
        yield ["--database", database.ensure()]
    finally:
        database.drop()


async def test_every_metric_of_the_node_is_served_on_metrics(
    http: aiohttp.ClientSession, server_factory: Callable[..., Any]
) -> None:
    srv = server_factory()
    served = (await scrape(http, srv.url)).families
    for collector in vars(metrics).values():
        if isinstance(collector, MetricWrapperBase):
            (family,) = collector.describe()
            assert family.name in served, f"{family.name} is not on /metrics"


async def test_traffic_moves_the_metrics_by_exactly_what_happened(
    engine_args: list[str],  # first: its database outlives the server
    http: aiohttp.ClientSession,
    server_factory: Callable[..., Any],
    wait_for: Callable[..., Awaitable[Any]],
) -> None:
    srv = server_factory(args=engine_args)
    api = Api(http, srv.url)
    _, alice_token = await api.user()
    _, bob_token = await api.user()
    room = await api.room(alice_token)
    before = await scrape(http, srv.url)
    assert before.get("hubbub_ready") == 1.0

    alice_ws = await open_ws(http, srv.ws_url, alice_token)
    bob_ws = await open_ws(http, srv.ws_url, bob_token)
    await alice_ws.join(room)
    await bob_ws.join(room)
    await alice_ws.recv_type("presence")  # bob came online: one more frame out
    joined = await scrape(http, srv.url)
    assert joined.get("hubbub_connections") == before.get("hubbub_connections") + 2
    assert joined.get("hubbub_rooms") == before.get("hubbub_rooms") + 1  # two joins, one room

    sends = 5
    for i in range(sends):
        frame = {"type": "send", "room": room, "id": f"m{i}", "body": f"hello {i}"}
        await alice_ws.send(frame)
    alice_got = await read_frames(alice_ws, {"ack": sends, "message": sends})
    # Acks may arrive in any order (each names its ref); the seqs follow the frames' order.
    acks = sorted(alice_got["ack"], key=lambda a: a["seq"])
    assert [a["id"] for a in acks] == [f"m{i}" for i in range(sends)]
    bob_got = await read_frames(bob_ws, {"message": sends})
    for got in (alice_got, bob_got):
        assert [m["seq"] for m in got["message"]] == [a["seq"] for a in acks]
    await alice_ws.send({"type": "no-such-frame", "ref": "bad"})
    error = await alice_ws.recv_type("error")
    assert error["code"] == "bad_request"

    after = await scrape(http, srv.url)

    def moved(name: str, **labels: str) -> float:
        return after.get(name, **labels) - before.get(name, **labels)

    assert moved("hubbub_acks_total") == sends
    assert moved("hubbub_ack_latency_seconds_count") == sends
    assert moved("hubbub_ack_latency_seconds_sum") > 0
    # Fan-out is observed once per message on the node, however many connections get it.
    assert moved("hubbub_fanout_latency_seconds_count") == sends
    assert moved("hubbub_errors_total", code="bad_request") == 1
    assert moved("hubbub_errors_total", code="internal") == 0
    # In: 2 joins, the sends and the bad frame (hello is not counted).
    assert moved("hubbub_frames_in_total") == 2 + sends + 1
    # Out: 2 welcomes, 2 joined, 1 presence, the acks, each message to both, 1 error.
    assert moved("hubbub_frames_out_total") == 2 + 2 + 1 + sends + 2 * sends + 1
    assert moved("hubbub_slow_consumers_total") == 0

    await alice_ws.close()
    await bob_ws.close()

    async def gauges() -> tuple[float, float]:
        now = await scrape(http, srv.url)
        return now.get("hubbub_connections"), now.get("hubbub_rooms")

    baseline = (before.get("hubbub_connections"), before.get("hubbub_rooms"))
    await wait_for(gauges, lambda v: v == baseline, 10.0, "connections and rooms back down")
