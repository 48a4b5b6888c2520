"""One node per core: two `hubbub serve --reuse-port` processes on one port.

Both processes listen on the same port (SO_REUSEPORT) and share a private redis-server and
a throwaway PostgreSQL database; the kernel spreads the connections over them. The tests
check that connections land on both, that messages cross from one process's clients to
the other's in one order, and that the embedded engine refuses the flag.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from support.api import Api
from support.multinode import Client, messages
from support.pgutil import TestDatabase
from support.redis_server import RedisServer
from support.server import ServerProcess

CONNECTIONS = 24  # the chance that the kernel puts all of them on one process is 2 ** -23


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Two nodes on one port, node-a and node-b, on one Redis and one PostgreSQL."""
    (tmp_path / "redis-data").mkdir()
    redis = RedisServer(tmp_path / "redis-data")
    redis.start()
    database = TestDatabase(migrate=False)
    url = database.ensure()
    nodes: list[ServerProcess] = []
    try:
        for name in ("node-a", "node-b"):
            data = tmp_path / name
            data.mkdir()
            args = ["--database", url, "--redis", redis.url, "--node-id", name]
            node = ServerProcess(data, args=[*args, "--rate-limit", "0", "--reuse-port"])
            if nodes:
                node.port = nodes[0].port
            nodes.append(node)
            node.start()
            # Readiness on the shared port may be answered by the other process: wait for
            # this one's own word that it listens.
            _wait_listening(node)
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        redis.stop()
        database.drop()


def _wait_listening(node: ServerProcess, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while '"msg":"listening"' not in node.log():
        assert node.proc is not None and node.proc.poll() is None, node.log()
        assert time.monotonic() < end, f"{node.data.name} never listened:\n{node.log()}"
        time.sleep(0.05)


async def test_connections_spread_over_both_processes_and_messages_cross_in_order(
    pair: list[ServerProcess], http: aiohttp.ClientSession
) -> None:
    a, b = pair
    assert a.port == b.port
    api = Api(http, a.url)
    _, token = await api.user()
    room = await api.room(token)

    by_node: dict[str, list[Client]] = {"node-a": [], "node-b": []}
    opened: list[Client] = []
    try:
        for _ in range(CONNECTIONS):
            ws = Client(await http.ws_connect(a.ws_url, max_msg_size=0))
            opened.append(ws)
            welcome = await ws.hello(token)
            by_node[welcome["node"]].append(ws)
        assert by_node["node-a"] and by_node["node-b"], {k: len(v) for k, v in by_node.items()}
        for ws in opened:
            await ws.join(room)

        # Two writers, one per process, each pipelining its sends; every connection on both
        # processes then sees the same messages in one gapless order, and each writer's
        # messages in the order it sent them.
        writers = [by_node["node-a"][0], by_node["node-b"][0]]
        count = 40
        for prefix, ws in zip("ab", writers, strict=True):
            for i in range(count):
                frame = {"type": "send", "room": room, "id": f"{prefix}{i}", "body": f"{i}"}
                await ws.send(frame)
        seen = [await messages(ws, 2 * count) for ws in opened]
        first = seen[0]
        assert [m["seq"] for m in first] == list(range(1, 2 * count + 1))
        assert all(other == first for other in seen[1:])
        for prefix in "ab":
            ids = [m["id"] for m in first if m["id"].startswith(prefix)]
            assert ids == [f"{prefix}{i}" for i in range(count)]
    finally:
        for ws in opened:
            await ws.close()


def test_the_embedded_engine_refuses_reuse_port(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hubbub", "serve", "--reuse-port", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--reuse-port needs --redis" in done.stderr
