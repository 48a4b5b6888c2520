"""The distributed engine on Redis Sentinel (`--redis redis+sentinel://...`): a real failover.

A private Sentinel group (a primary and two replicas with AOF and fsync always and
`min-replicas-to-write 1`, three sentinels), a throwaway PostgreSQL database, two real
`hubbub serve` nodes with `--redis-replicas 1` and a real `hubbub worker`. While a client
sends, the primary is killed with SIGKILL, and later restarted on its data until Sentinel
has made it a replica; the nodes and the worker are never restarted.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.api import Api
from support.backends import WorkerProcess, unread_messages, wait_until, worker_args
from support.multinode import Client, messages
from support.pgutil import TestDatabase
from support.redis_sentinel import SentinelGroup
from support.server import HUBBUB, ServerProcess

REPLY_DEADLINE = 15.0  # a send's reply, ack or error: far above every timeout on the way
DEADLINE = 30.0


@dataclass
class Deployment:
    group: SentinelGroup
    database: TestDatabase
    nodes: list[ServerProcess]
    worker: WorkerProcess

    def rows(self, room: str) -> list[tuple[int, str]]:
        """(seq, id) of the room's messages in PostgreSQL, by seq."""
        assert self.database.url is not None
        with psycopg.connect(self.database.url, connect_timeout=5) as conn:
            cur = conn.execute(
                "SELECT seq, client_id FROM messages WHERE room = %s ORDER BY seq", (room,)
            )
            return [(int(seq), str(msg_id)) for seq, msg_id in cur.fetchall()]


@pytest.fixture
def deployment(tmp_path: Path, server_factory: Any) -> Iterator[Deployment]:
    group = SentinelGroup(tmp_path / "sentinel", min_replicas_to_write=1)
    database = TestDatabase()
    worker: WorkerProcess | None = None
    nodes: list[ServerProcess] = []
    try:
        group.start()
        url = database.ensure()
        for name in ("node-a", "node-b"):
            args = ["--database", url, "--redis", group.url, "--redis-replicas", "1"]
            args += ["--node-id", name, "--heartbeat", "1", "--rate-limit", "0"]
            nodes.append(server_factory(env={"HUBBUB_HISTORY_RATE": "0"}, args=args))
        worker = WorkerProcess(tmp_path / "worker.log", worker_args(url, group.url))
        worker.start()
        yield Deployment(group, database, nodes, worker)
    finally:
        for node in nodes:
            node.stop()
        if worker is not None:
            worker.stop()
        group.stop()
        database.drop()


@dataclass
class Sender:
    """Sends `window` messages at a time and resends each unacked one with the same id
    until it is acked, as the SDK does; every reply must come within REPLY_DEADLINE."""

    ws: Client
    room: str
    window: int = 4
    acked: dict[str, int] = field(default_factory=dict)
    ack_times: list[float] = field(default_factory=list)
    refused_times: list[float] = field(default_factory=list)
    _next: int = 0
    _attempt: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        pending: list[str] = []
        while not stop.is_set() or pending:
            while len(pending) < self.window and not stop.is_set():
                pending.append(f"m{self._next}")
                self._next += 1
            pending = await self._round(pending)

    async def _round(self, ids: list[str]) -> list[str]:
        refs = {}
        for msg_id in ids:
            self._attempt += 1
            refs[msg_id] = ref = f"{msg_id}.{self._attempt}"
            frame = {"type": "send", "room": self.room, "id": msg_id, "body": f"body {msg_id}"}
            await self.ws.send({**frame, "ref": ref})
        unacked = []
        for msg_id, ref in refs.items():
            try:
                reply = await self.ws.reply(ref, timeout=REPLY_DEADLINE)
            except TimeoutError:
                raise AssertionError(f"no reply to {msg_id} in {REPLY_DEADLINE:g}s") from None
            if reply["type"] == "ack":
                self.acked[msg_id] = reply["seq"]
                self.ack_times.append(time.monotonic())
                continue
            assert (reply["type"], reply["code"]) == ("error", "unavailable"), reply
            self.refused_times.append(time.monotonic())
            unacked.append(msg_id)
        if unacked:
            await asyncio.sleep(0.05)
        return unacked


async def history(api: Api, token: str, room: str) -> list[tuple[int, str]]:
    got: list[tuple[int, str]] = []
    more = True
    while more:
        after = got[-1][0] if got else 0
        path = f"/api/v1/rooms/{room}/messages?after={after}&limit=100"
        status, body = await api.call("GET", path, token)
        assert status == 200, body
        got += [(m["seq"], m["id"]) for m in body["messages"]]
        more = body["more"]
    return got


async def test_kill_9_of_the_primary_fails_over_without_restarts_or_acked_loss(
    deployment: Deployment, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    a, b = deployment.nodes
    pids = [node.proc.pid for node in deployment.nodes if node.proc is not None]
    _, alice = await on(a).user()
    _, bob = await on(b).user()
    room = await on(a).room(alice)
    sender_ws: Client = await ws_to(a, alice)
    await sender_ws.join(room)
    reader: Client = await ws_to(b, bob)
    await reader.join(room)
    sender = Sender(sender_ws, room)
    stop = asyncio.Event()
    sending = asyncio.create_task(sender.run(stop))

    await wait_until(lambda: _true(len(sender.acked) >= 40), "40 acks before the fault")
    group = deployment.group
    killed_at = time.monotonic()
    old = await asyncio.to_thread(group.kill_primary)
    new = await asyncio.to_thread(group.wait_failover, old, DEADLINE)
    promoted_at = time.monotonic()
    before = len(sender.acked)
    await wait_until(lambda: _true(len(sender.acked) >= before + 40), "40 acks after it")
    # The old primary comes back on its AOF, a primary of its own until Sentinel turns it
    # into a replica of the new one (and cuts its clients): sends go on meanwhile.
    restarted_at = time.monotonic()
    await asyncio.to_thread(old.start)
    await asyncio.to_thread(group.wait_replica_of, old, new, DEADLINE)
    replica_at = time.monotonic()
    before = len(sender.acked)
    await wait_until(lambda: _true(len(sender.acked) >= before + 40), "40 acks after its return")
    stop.set()
    await asyncio.wait_for(sending, DEADLINE)
    # The nodes never wrote to the returned primary, so nothing was refused meanwhile.
    assert [t for t in sender.refused_times if t > restarted_at] == []

    refused = [t for t in sender.refused_times if t > killed_at]
    assert refused  # the sends in flight at the kill were refused, none hung
    back = min(t for t in sender.ack_times if t > refused[0])
    print(
        f"\nsentinel failover: {len(sender.acked)} acked, {len(refused)} sends refused as "
        f"unavailable; promotion {promoted_at - killed_at:.2f}s after kill -9, first ack "
        f"after the outage {back - killed_at:.2f}s after it; the restarted old primary a "
        f"replica {replica_at - restarted_at:.2f}s after its restart, no send refused meanwhile"
    )
    acked = sorted((seq, msg_id) for msg_id, seq in sender.acked.items())
    assert [seq for seq, _ in acked] == list(range(1, len(acked) + 1))  # one seq per id
    assert await history(on(b), bob, room) == acked  # every ack is in history, nothing else

    for ws in (sender_ws, reader):  # live subscribers on both nodes: all of it, in order
        got = await messages(ws, len(acked), timeout=DEADLINE)
        assert [(m["seq"], m["id"]) for m in got] == acked
        assert await unread_messages(ws) == []  # and each once

    async def drained() -> bool:
        return await asyncio.to_thread(deployment.rows, room) == acked

    await wait_until(drained, "the worker to store every message in PostgreSQL")
    assert [node.proc.pid for node in deployment.nodes if node.proc is not None] == pids
    assert all(node.proc is not None and node.proc.poll() is None for node in deployment.nodes)
    assert deployment.worker.proc is not None and deployment.worker.proc.poll() is None


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("command", ["serve", "worker", "cluster"])
def test_a_malformed_sentinel_url_stops_serve_worker_and_cluster_with_one_sentence(
    command: str, tmp_path: Path
) -> None:
    args = [*HUBBUB, command, "--database", "postgresql://127.0.0.1:1/none"]
    args += ["--redis", "redis+sentinel://127.0.0.1:26379"]
    if command == "serve":
        args += ["--data", str(tmp_path)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "must name the master after the sentinels' addresses" in result.stderr
    assert "redis+sentinel://host:26379[,host:26379...]/MASTER[?db=N]" in result.stderr
