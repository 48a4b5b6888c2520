"""PostgreSQL failover under a sending client: kill -9 of the primary, then `pg_promote()` of
its synchronous standby, with the node (and, on the distributed engine, the worker) on a
multi-host `--database` URL (`target_session_attrs=read-write`) and never restarted; and
history reads from the standby (`--database-read`), from the primary while it lags.

The PostgreSQL pair is `hubbub.ops.processes.PostgresPair` (initdb, `pg_basebackup -R`,
`synchronous_standby_names = 'ANY 1 (standby)'`), private and on free ports. The end state is
checked where it lives: the acks the sender got, the frames a reader received, HTTP history
served by the promoted standby.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.api import Api
from support.backends import (
    DEADLINE,
    WorkerProcess,
    history,
    require_pg_ctl,
    unread_messages,
    wait_until,
    worker_args,
)
from support.multinode import Client, messages, send
from support.redis_server import REDIS_DURABLE, RedisServer
from support.server import ServerProcess

from hubbub.ops.processes import PostgresPair

REPLY_TIMEOUT = 15.0  # a send that has no answer by then hangs: the test fails


@pytest.fixture
def pair() -> Iterator[PostgresPair]:
    require_pg_ctl()  # pg_basebackup comes with the same server binaries
    postgres = PostgresPair()
    try:
        postgres.start(60.0)
        yield postgres
    finally:
        postgres.stop()


class Sender:
    """Sends m0, m1, ... one at a time; a refused message is resent with the same id until
    acked, as a client does. Every reply must be an ack or `unavailable`, within the timeout."""

    def __init__(self, ws: Client, room: str) -> None:
        self.ws, self.room = ws, room
        self.acked: dict[str, int] = {}
        self.acked_at: dict[str, float] = {}
        self.refused: list[float] = []
        self.refusals_expected = True  # between the kill and the promotion
        self.stopping = False

    async def run(self) -> None:
        n = 0
        while not self.stopping:
            msg_id = f"m{n}"
            reply = await asyncio.wait_for(send(self.ws, self.room, msg_id), REPLY_TIMEOUT)
            if reply["type"] == "ack":
                self.acked[msg_id], self.acked_at[msg_id] = reply["seq"], time.monotonic()
                n += 1
                continue
            assert (reply["type"], reply["code"]) == ("error", "unavailable"), reply
            self.refused.append(time.monotonic())
            await asyncio.sleep(0.05)

    def acks_after(self, moment: float) -> list[float]:
        return sorted(t for t in self.acked_at.values() if t > moment)


async def test_kill_9_of_the_primary_then_promotion_loses_no_acked_message_and_needs_no_restart(
    pair: PostgresPair,
    server_factory: Any,
    on: Callable[[ServerProcess], Api],
    ws_to: Any,
    tmp_path: Path,
) -> None:
    node = server_factory(args=["--database", pair.url, "--rate-limit", "0"])
    room, bob, sender_ws, reader = await sender_and_reader(node, on, ws_to)

    sender = await fail_over_while_sending(pair, Sender(sender_ws, room))
    assert node.proc is not None and node.proc.poll() is None  # the same node throughout

    expected = sorted((seq, msg_id) for msg_id, seq in sender.acked.items())
    assert [seq for seq, _ in expected] == list(range(1, len(expected) + 1))  # gapless
    # Live delivery showed exactly the acked messages, in order: no phantom, none twice.
    got = await messages(reader, len(expected), timeout=DEADLINE)
    assert [(m["seq"], m["id"]) for m in got] == expected
    assert await unread_messages(reader) == []
    # Everything acked is in the promoted standby's history (synchronous replication).
    assert await history(on(node), bob, room, limit=50) == expected
    _, carol = await on(node).user()  # accounts are written to the new primary too
    assert carol


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", *REDIS_DURABLE)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_the_worker_and_a_distributed_node_carry_on_after_a_promotion(
    pair: PostgresPair,
    redis: RedisServer,
    server_factory: Any,
    on: Callable[[ServerProcess], Api],
    ws_to: Any,
    tmp_path: Path,
) -> None:
    node = server_factory(args=["--database", pair.url, "--redis", redis.url, "--rate-limit", "0"])
    worker = WorkerProcess(tmp_path / "worker.log", worker_args(pair.url, redis.url))
    worker.start()
    try:
        room, bob, sender_ws, reader = await sender_and_reader(node, on, ws_to)
        # Sends go to Redis; PostgreSQL is behind them (the worker) and beside them
        # (membership, accounts): refusals may or may not happen, hangs must not.
        sender = Sender(sender_ws, room)
        sender.refusals_expected = False
        sender = await fail_over_while_sending(pair, sender)
        expected = sorted((seq, msg_id) for msg_id, seq in sender.acked.items())
        assert [seq for seq, _ in expected] == list(range(1, len(expected) + 1))
        got = await messages(reader, len(expected), timeout=DEADLINE)
        assert [(m["seq"], m["id"]) for m in got] == expected

        rows: list[tuple[int, str]] = []

        async def moved() -> bool:
            nonlocal rows
            rows = await asyncio.to_thread(_rows, pair.url, room)
            return len(rows) >= len(expected)

        await wait_until(moved, "the worker to store every acked message on the new primary")
        assert rows == expected  # the worker reconnected without a restart, stored each once
        metrics = worker.metrics().splitlines()
        errors = [line for line in metrics if line.startswith("hubbub_backend_errors_total")]
        print("worker:", *errors or ["no backend errors"])
        assert worker.proc is not None and worker.proc.poll() is None, worker.log()
        assert node.proc is not None and node.proc.poll() is None
        assert await history(on(node), bob, room, limit=50) == expected
    finally:
        worker.stop()


async def test_history_reads_go_to_the_replica_and_to_the_primary_while_it_lags(
    pair: PostgresPair,
    server_factory: Any,
    on: Callable[[ServerProcess], Api],
    ws_to: Any,
) -> None:
    primary, standby = pair.primary.url, pair.standby.url
    node = server_factory(
        args=["--database", primary, "--database-read", standby, "--rate-limit", "0"]
    )
    room, bob, sender, _ = await sender_and_reader(node, on, ws_to)
    acked = [(await send(sender, room, f"m{i}"))["seq"] for i in range(5)]
    assert acked == [1, 2, 3, 4, 5]
    assert [seq for seq, _ in await history(on(node), bob, room)] == acked  # at once
    # The replica served it: its session's last statement read the page (`messages`) or the
    # reactions standing on it (`reactions`, read after the page).
    reads = ("FROM messages", "FROM reactions")
    last = await asyncio.to_thread(_last, standby)
    assert any(read in query for query in last for read in reads), last

    # A replica that lags (replay paused; synchronous commits still return, as the standby
    # has flushed them): its reader must still see its own messages, from the primary.
    await asyncio.to_thread(_query, standby, "SELECT pg_wal_replay_pause()")
    try:
        acked += [(await send(sender, room, f"n{i}"))["seq"] for i in range(5)]
        assert await asyncio.to_thread(_count, standby, room) == 5  # not replayed
        assert [seq for seq, _ in await history(on(node), bob, room)] == acked
    finally:
        await asyncio.to_thread(_query, standby, "SELECT pg_wal_replay_resume()")
    await wait_until(lambda: _later(_count(standby, room) == 10), "the replica to replay the rest")
    assert [seq for seq, _ in await history(on(node), bob, room)] == acked


async def _later(condition: bool) -> bool:
    return condition


def _query(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall() if args else conn.execute(sql).fetchall()


def _count(url: str, room: str) -> int:
    return int(_query(url, "SELECT count(*) FROM messages WHERE room = %s", room)[0][0])


def _last(url: str) -> list[str]:
    """The last statement of every other client session of this server."""
    sql = "SELECT query FROM pg_stat_activity WHERE backend_type = 'client backend'"
    return [str(row[0]) for row in _query(url, f"{sql} AND pid <> pg_backend_pid()")]


async def sender_and_reader(
    node: ServerProcess, on: Callable[[ServerProcess], Api], ws_to: Any
) -> tuple[str, str, Client, Client]:
    """A room on `node`, a sender and a reader joined to it (the reader's token too)."""
    _, alice = await on(node).user()
    _, bob = await on(node).user()
    room = await on(node).room(alice)
    sender: Client = await ws_to(node, alice)
    await sender.join(room)
    reader: Client = await ws_to(node, bob)
    await reader.join(room)
    return room, bob, sender, reader


def _rows(url: str, room: str) -> list[tuple[int, str]]:
    """(seq, id) of the room's messages on whichever host accepts writes."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        cur = conn.execute(
            "SELECT seq, client_id FROM messages WHERE room = %s ORDER BY seq", (room,)
        )
        return [(int(seq), str(msg_id)) for seq, msg_id in cur.fetchall()]


async def fail_over_while_sending(pair: PostgresPair, sender: Sender) -> Sender:
    """20 acks, kill -9 of the primary, a refused send, the promotion, 20 acks after it."""
    sending = asyncio.create_task(sender.run())
    try:
        await wait_until(lambda: _settled(sending, len(sender.acked) >= 20), "20 acks")
        killed = time.monotonic()
        await asyncio.to_thread(pair.kill_primary)
        if sender.refusals_expected:  # no host accepts writes until the promotion
            await wait_until(lambda: _settled(sending, bool(sender.refused)), "a refused send")
        await asyncio.to_thread(pair.promote, DEADLINE)
        promoted = time.monotonic()
        await wait_until(
            lambda: _settled(sending, len(sender.acks_after(promoted)) >= 20),
            "20 acks after the promotion",
        )
    finally:
        sender.stopping = True
        await sending  # re-raises a failed assertion or a hung send
    assert all(t > killed for t in sender.refused)  # nothing was refused before the kill
    first_ack = sender.acks_after(sender.refused[0] if sender.refused else killed)[0]
    print(
        f"\nfailover: {len(sender.acked)} acked, {len(sender.refused)} refused; kill -9 to "
        f"pg_promote() done {promoted - killed:.2f} s, to the first ack after it "
        f"{first_ack - killed:.2f} s"
    )
    return sender


async def _settled(task: asyncio.Task[None], condition: bool) -> bool:
    """`condition`, unless the sender has already failed: then its error, at once."""
    if task.done():
        task.result()
        raise AssertionError("the sender stopped early")
    return condition
