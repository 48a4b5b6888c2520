"""Chaos: clients keep chatting through HAProxy while one fault hits the cluster, and nothing
acked is lost, nothing is delivered that was not kept, no seq means two messages.

Each run starts a cluster of its own (three `hubbub serve` nodes, the worker, HAProxy, a
throwaway PostgreSQL database and a private redis-server with `appendfsync always`; or
`hubbub cluster --ha` for the Sentinel and PostgreSQL failover scenarios), puts
30 clients in 10 rooms (three rooms each) through HAProxy, lets them chat, does one fault,
lets them chat on, then stops new messages, waits until every message is acked, every client
has seen every room to its end and the worker has moved everything into PostgreSQL, and
audits (tests/support/chaos.py). Each run prints its report line; the counts that must be
zero are asserted.

`make chaos` runs every scenario CHAOS_RUNS times (default 5) with longer windows and a
15 s outage; the ordinary suite runs each once, short (CHAOS_RUNS=1, a 5 s outage).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import psycopg
import pytest
from support.api import Api
from support.chaos import ChaosClient, Report, audit, history
from support.partition import Partition
from support.pgutil import TestDatabase
from support.redis_server import REDIS_DURABLE, RedisServer
from support.tools import require

from hubbub.ops.cluster import Cluster
from hubbub.ops.ha import DataTier

RUNS = int(os.environ.get("CHAOS_RUNS", "1"))
LONG = RUNS > 1
BEFORE = 6.0 if LONG else 2.0  # seconds of chatting before the fault
AFTER = 10.0 if LONG else 3.0  # ...and after it (after its heal)
OUTAGE = 15.0 if LONG else 5.0  # seconds a long outage lasts
CLIENTS = 30
ROOMS = 10
ROOMS_EACH = 3
SETTLE = 90.0  # seconds the cluster may take, after the last new message, to settle


class Chaos:
    """One cluster under chatting clients, and the faults a scenario can do to it.

    On one redis-server (`appendfsync always`) and the suite's PostgreSQL, or with `ha` on
    `hubbub cluster --ha`'s data tier: a Sentinel group (a primary, two replicas, three
    sentinels, `min-replicas-to-write 1`, nodes acking after `--redis-replicas 1`) and a
    PostgreSQL primary with a synchronous standby."""

    def __init__(self, tmp: Path, ha: bool, partition: bool = False) -> None:
        require("haproxy")
        require("redis-server")
        self.database: TestDatabase | None = None
        self.redis: RedisServer | None = None
        # The first node reaches the data tier through an address that can be cut off.
        self.partition = Partition() if partition else None
        args = ["--rooms-per-hour", "0", "--heartbeat", "2"]
        if ha:
            self.cluster = Cluster(3, ha=True, data=tmp / "cluster", node_args=args)
        else:
            self.database = TestDatabase(migrate=False)
            (tmp / "redis").mkdir()
            self.redis = RedisServer(tmp / "redis", *REDIS_DURABLE)
            database = self.database.ensure()
            self.cluster = Cluster(3, database=database, data=tmp / "cluster", node_args=args)

    @property
    def tier(self) -> DataTier:
        assert self.cluster.private_ha is not None, "a scenario of the HA data tier"
        return self.cluster.private_ha

    def start(self) -> None:
        if self.redis is not None:
            self.redis.start()
            self.cluster.redis = self.redis.url
        if self.partition is not None:
            assert self.redis is not None and self.database is not None
            reach = ["--redis", self.partition.url(self.redis.url)]
            reach += ["--database", self.partition.url(self.database.url)]
            self.cluster.node_args_for = {self.cluster.nodes[0].name: reach}
        self.cluster.start()

    def stop(self) -> None:
        if self.partition is not None:
            self.partition.close()
        self.cluster.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.database is not None:
            self.database.drop()

    async def run(self, fault: Callable[[], Awaitable[None]]) -> Report:
        async with aiohttp.ClientSession() as http:
            api = Api(http, self.cluster.url)
            _, owner = await api.user()
            rooms = [await api.room(owner) for _ in range(ROOMS)]
            clients = []
            for i in range(CLIENTS):
                name, token = await api.user()
                mine = [rooms[(i + k) % ROOMS] for k in range(ROOMS_EACH)]
                clients.append(ChaosClient(name, token, mine, self.cluster.ws_url))
            tasks = [asyncio.create_task(c.run(http)) for c in clients]
            try:
                await until(lambda: all(len(c.first_join) == ROOMS_EACH for c in clients), 30)
                await asyncio.sleep(BEFORE)  # the workload's length, not a wait for anything
                fault_at = time.monotonic()
                await fault()
                await asyncio.sleep(AFTER)
                for c in clients:
                    c.quiet = True
                stored = await self.settle(api, owner, rooms, clients)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return audit(clients, stored, fault_at)

    async def settle(
        self, api: Api, token: str, rooms: list[str], clients: list[ChaosClient]
    ) -> dict[str, dict[int, str]]:
        """Wait until all is acked, seen and in PostgreSQL; then the rooms' histories.

        The histories are read only once nothing is pending: the clients are quiet, so from
        then on nothing new is sent, and a message acked after the read cannot be missing
        from it."""
        deadline = time.monotonic() + SETTLE
        while True:
            while any(c.pending for c in clients):
                assert time.monotonic() < deadline, (
                    f"not settled after {SETTLE:g}s: {sum(len(c.pending) for c in clients)} unacked"
                )
                await asyncio.sleep(0.2)
            stored = {room: await history(api, token, room) for room in rooms}
            ends = {room: max(messages, default=0) for room, messages in stored.items()}
            if all(c.settled(ends) for c in clients) and self.in_postgres() == sum(
                len(m) for m in stored.values()
            ):
                return stored
            assert time.monotonic() < deadline, (
                f"not settled after {SETTLE:g}s: "
                f"{sum(len(c.pending) for c in clients)} unacked, "
                f"{self.in_postgres()} of {sum(len(m) for m in stored.values())} in PostgreSQL"
            )
            await asyncio.sleep(0.5)

    def in_postgres(self) -> int:
        url = self.database.url if self.database else self.tier.database_url
        assert url is not None
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM messages").fetchone()
        return int(row[0]) if row else 0

    # --- faults -------------------------------------------------------------------------------

    async def kill_a_node(self) -> None:
        """kill -9 of one node; it comes back 5 s later."""
        node = self.cluster.nodes[0]
        self.cluster.kill(node)
        await asyncio.sleep(5.0)
        await asyncio.to_thread(self.cluster.restart, node)

    async def cut_a_node_off(self) -> None:
        """Every packet between one node and Redis and PostgreSQL dropped for OUTAGE s (a
        partition: its connections hang, nothing is refused), then let through again; in
        the long runs HAProxy must have taken the node out of rotation meanwhile, and it
        comes back after."""
        assert self.partition is not None
        node = self.cluster.nodes[0]
        self.partition.cut()
        try:
            healing = time.monotonic() + OUTAGE
            if LONG:  # long enough for the node to notice and HAProxy to take it out
                await asyncio.to_thread(self.cluster.wait_rotation, node, False, OUTAGE - 1)
            await asyncio.sleep(max(0.0, healing - time.monotonic()))
            dropped = await asyncio.to_thread(self.partition.dropped)
            assert dropped > 0, "the node sent nothing to the data tier during the cut"
        finally:
            self.partition.heal()
        await asyncio.to_thread(self.cluster.wait_rotation, node, True, 30.0)

    async def kill_the_worker(self) -> None:
        """kill -9 of the worker mid-batch; a new one starts 5 s later."""
        self.cluster.kill_worker(signal.SIGKILL)
        await asyncio.sleep(5.0)
        self.cluster.restart_worker()

    async def kill_redis(self, down: float) -> None:
        """kill -9 of redis-server (appendfsync always); started again on its AOF after `down` s."""
        assert self.redis is not None
        self.redis.kill()
        await asyncio.sleep(down)
        await asyncio.to_thread(self.redis.start)

    async def kill_the_primary(self, down: float) -> None:
        """kill -9 of the Sentinel group's primary; it starts again on its own data after
        `down` s (and the sentinels make it a replica of the promoted one)."""
        old = self.tier.redis.kill_primary()
        await asyncio.sleep(down)
        await asyncio.to_thread(old.start)

    async def pause_the_primary(self, pause: float) -> None:
        """SIGSTOP of the primary for `pause` s (long enough for a failover), then SIGCONT."""
        primary = self.tier.redis.primary()
        primary.signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(pause)
        finally:
            primary.signal(signal.SIGCONT)

    async def kill_a_replica_and_a_sentinel(self) -> None:
        """kill -9 of one replica and one sentinel; both start again 5 s later."""
        group = self.tier.redis
        primary = group.primary()
        replica = next(s for s in group.servers if s is not primary)
        sentinel = group.sentinels[-1]
        replica.kill()
        sentinel.kill()
        await asyncio.sleep(5.0)
        await asyncio.to_thread(replica.start)
        await asyncio.to_thread(sentinel.start)

    async def fail_postgresql_over(self) -> None:
        """kill -9 of the PostgreSQL primary, then the standby promoted (as a failover
        manager would, at once); the nodes and the worker follow the multi-host URL."""
        pair = self.tier.postgres
        pair.kill_primary()
        await asyncio.to_thread(pair.promote, 30.0)


async def until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


Fault = Callable[[Chaos], Awaitable[None]]
SCENARIOS: dict[str, tuple[bool, Fault]] = {  # name: (on the HA data tier, the fault)
    "kill -9 a node": (False, Chaos.kill_a_node),
    "cut a node off redis and postgresql": (False, Chaos.cut_a_node_off),
    "kill -9 the worker": (False, Chaos.kill_the_worker),
    "kill -9 redis, back at once": (False, lambda chaos: chaos.kill_redis(0.0)),
    "kill -9 redis, back later": (False, lambda chaos: chaos.kill_redis(OUTAGE)),
    "sentinel: kill -9 the primary, back at once": (
        True,
        lambda chaos: chaos.kill_the_primary(0.0),
    ),
    "sentinel: kill -9 the primary, back later": (
        True,
        lambda chaos: chaos.kill_the_primary(OUTAGE),
    ),
    "sentinel: SIGSTOP the primary 5 s": (True, lambda chaos: chaos.pause_the_primary(5.0)),
    "sentinel: kill -9 a replica and a sentinel": (True, Chaos.kill_a_replica_and_a_sentinel),
    "postgresql: kill -9 the primary, the standby promoted": (True, Chaos.fail_postgresql_over),
}


@pytest.fixture
def chaos(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Chaos]:
    scenario = request.node.callspec.params["scenario"]
    ha, fault = SCENARIOS[scenario]
    running = Chaos(tmp_path, ha, partition=fault == Chaos.cut_a_node_off)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("run", range(RUNS))
@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_chaos(chaos: Chaos, scenario: str, run: int) -> None:
    _, fault = SCENARIOS[scenario]
    report = await chaos.run(lambda: fault(chaos))
    print("\n" + report.line(scenario))
    assert report.acked > 0
    assert report.clean, report.examples
