"""Outages of the distributed engine's backends and of its worker, seen from real clients.

Each test starts its own PostgreSQL (initdb into a temp dir through `hubbub.ops.processes`'s
`PrivatePostgres`, so it can be stopped with `pg_ctl stop -m immediate` and started again
on the same data), a private redis-server (AOF, fsync always), two `hubbub serve` nodes and
a real `hubbub worker`, and checks the end state where it lives: the acks clients got, the
frames they received, PostgreSQL's `messages` table (read with psycopg) and HTTP history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.api import Api
from support.backends import (
    DEADLINE,
    Backends,
    history,
    running_backends,
    send_all,
    send_until_acked,
    stored,
    two_users_in_a_room,
    unread_messages,
    wait_until,
)
from support.multinode import messages, send
from support.server import ServerProcess


@pytest.fixture
def backends(tmp_path: Path, server_factory: Any) -> Iterator[Backends]:
    with running_backends(tmp_path, server_factory) as running:
        yield running


# --- the tests ------------------------------------------------------------------------------


async def test_a_postgresql_outage_gives_unavailable_and_everything_recovers_without_restarts(
    backends: Backends, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    a, b = backends.nodes
    room, bob, sender, reader = await two_users_in_a_room(backends, on, ws_to)
    acked = await send_all(sender, room, [f"before{i}" for i in range(5)])
    assert sorted(acked.values()) == [1, 2, 3, 4, 5]
    for ws in (sender, reader):
        assert [m["seq"] for m in await messages(ws, 5)] == [1, 2, 3, 4, 5]
    assert len(await stored(backends.postgres, room, 5)) == 5

    backends.postgres.stop_immediate()
    refused = await send(sender, room, "during", "body of during")
    assert (refused["type"], refused["code"]) == ("error", "unavailable"), refused
    status, body = await on(b).call("GET", "/api/v1/rooms", bob)
    assert (status, body["error"]["code"]) == (503, "unavailable"), body
    login = {"username": "nobody", "password": "correct horse"}
    status, body = await on(a).call("POST", "/api/v1/login", json=login)
    assert (status, body["error"]["code"]) == (503, "unavailable"), body
    assert await unread_messages(sender) == []  # the connection is open and answers
    assert await unread_messages(reader) == []  # nothing was delivered for the refused send

    backends.postgres.start()  # no node or worker restarts: they reconnect by themselves
    acked["during"] = (await send_until_acked(sender, room, "during"))["seq"]
    acked.update(await send_all(sender, room, [f"after{i}" for i in range(12)]))
    expected = sorted((seq, msg_id) for msg_id, seq in acked.items())
    assert [seq for seq, _ in expected] == list(range(1, 19))  # gapless across the outage
    for ws in (sender, reader):
        got = await messages(ws, 13, timeout=DEADLINE)
        assert [(m["seq"], m["id"]) for m in got] == expected[5:]
        assert await unread_messages(ws) == []  # and exactly once

    assert await stored(backends.postgres, room, 18) == expected  # the worker caught up
    assert await history(on(b), bob, room) == expected


async def test_kill_9_of_the_worker_mid_stream_then_a_restart_stores_everything_once(
    backends: Backends, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    _, b = backends.nodes
    room, bob, sender, reader = await two_users_in_a_room(backends, on, ws_to)
    worker = backends.worker
    acked = await send_all(sender, room, [f"first{i}" for i in range(150)])
    await stored(backends.postgres, room, 20)  # the worker is mid-stream

    worker.kill()
    partial = len(await asyncio.to_thread(backends.postgres.rows, room))
    assert 20 <= partial <= 150
    acked.update(await send_all(sender, room, [f"second{i}" for i in range(150)]))
    worker.start()
    acked.update(await send_all(sender, room, [f"third{i}" for i in range(150)]))
    expected = sorted((seq, msg_id) for msg_id, seq in acked.items())
    assert [seq for seq, _ in expected] == list(range(1, 451))

    assert await stored(backends.postgres, room, 450) == expected
    moved = f"hubbub_worker_persisted_total {float(450 - partial)}"

    async def restarted_worker_moved_the_rest() -> bool:
        return moved in await asyncio.to_thread(worker.metrics)

    # Exactly what the killed worker had not committed: nothing was stored twice.
    await wait_until(restarted_worker_moved_the_rest, moved)
    for ws in (sender, reader):
        got = await messages(ws, 450, timeout=DEADLINE)
        assert [(m["seq"], m["id"]) for m in got] == expected
        assert await unread_messages(ws) == []
    assert await history(on(b), bob, room, limit=100) == expected


async def test_a_redis_restart_on_its_append_only_file_loses_and_repeats_nothing(
    backends: Backends, on: Callable[[ServerProcess], Api], ws_to: Any
) -> None:
    _, b = backends.nodes
    room, bob, sender, reader = await two_users_in_a_room(backends, on, ws_to)
    acked = await send_all(sender, room, [f"before{i}" for i in range(10)])
    for ws in (sender, reader):
        assert [m["seq"] for m in await messages(ws, 10)] == list(range(1, 11))

    backends.redis.kill()
    refused = await send(sender, room, "during", "body of during")
    assert (refused["type"], refused["code"]) == ("error", "unavailable"), refused
    backends.redis.start()  # same port and directory: the AOF brings every ack back
    acked["during"] = (await send_until_acked(sender, room, "during"))["seq"]
    # Sent while node b's pub/sub is still reconnecting: b must fill what it missed.
    acked.update(await send_all(sender, room, [f"after{i}" for i in range(30)]))
    expected = sorted((seq, msg_id) for msg_id, seq in acked.items())
    assert [seq for seq, _ in expected] == list(range(1, 42))

    for ws in (sender, reader):
        got = await messages(ws, 31, timeout=DEADLINE)
        assert [(m["seq"], m["id"]) for m in got] == expected[10:]
        assert await unread_messages(ws) == []
    assert await stored(backends.postgres, room, 41) == expected
    assert await history(on(b), bob, room, limit=15) == expected
