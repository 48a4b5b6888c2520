"""Nodes behind a real HAProxy: `hubbub cluster`, deploy/haproxy.cfg, and draining through it.

The cluster runs two `hubbub serve` nodes on a throwaway PostgreSQL database (they share
history and replay) and, for the `redis` engine, a private redis-server as `--redis` (they
also share live fan-out). Every assertion holds on both. HAProxy is required: without it these
tests skip, or fail when CI is set.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.api import Api
from support.pgutil import TestDatabase
from support.redis_server import REDIS_DURABLE, RedisServer
from support.server import free_port
from support.tools import haproxy_check, require
from support.ws import WS
from support.wsutil import barrier, join, messages, recv_until, uid

from hubbub.ops.cluster import Cluster
from hubbub.ops.haproxy import (
    DRAIN_GRACE,
    HAProxyLayout,
    production_haproxy_config,
    render_haproxy_config,
)

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ("postgres", "redis")


@pytest.fixture(params=ENGINES)
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """Two nodes (node1, node2) behind HAProxy, on PostgreSQL and, for `redis`, Redis."""
    require("haproxy")
    database = TestDatabase(migrate=False)
    redis: RedisServer | None = None
    if request.param == "redis":
        (tmp_path / "redis").mkdir()
        redis = RedisServer(tmp_path / "redis", *REDIS_DURABLE)
        redis.start()
    running = Cluster(
        2,
        database=database.ensure(),
        redis=redis.url if redis else None,
        data=tmp_path / "cluster",
        node_args=["--rate-limit", "0"],
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()
        if redis is not None:
            redis.stop()
        database.drop()


async def connect(http: aiohttp.ClientSession, cluster: Cluster, token: str) -> tuple[WS, str]:
    """A WebSocket through HAProxy after hello; returns it with the node that welcomed it."""
    ws = WS(await http.ws_connect(cluster.ws_url, max_msg_size=0))
    welcome = await ws.hello(token)
    return ws, str(welcome["node"])


async def send(ws: WS, room: str, seen: list[dict[str, Any]]) -> dict[str, Any]:
    """Send one message and return its ack; `message` frames read meanwhile go to `seen`."""
    msg_id = uid("m")
    await ws.send({"type": "send", "room": room, "id": msg_id, "body": msg_id, "ref": msg_id})
    ack, before = await recv_until(ws, lambda f: f.get("ref") == msg_id, 10.0)
    seen.extend(f for f in before if f["type"] == "message")
    assert ack["type"] == "ack", ack
    return ack


async def read_until_closed(ws: WS, seen: list[dict[str, Any]], within: float) -> int | None:
    """Read until the server's Close frame (its code), keeping the `message` frames."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        msg = await asyncio.wait_for(ws.ws.receive(), max(deadline - loop.time(), 0.01))
        if msg.type == aiohttp.WSMsgType.TEXT:
            frame = msg.json()
            if frame["type"] == "message":
                seen.append(frame)
        elif msg.type == aiohttp.WSMsgType.CLOSE:
            return int(msg.data)
        else:
            return None


async def readyz(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url + "/readyz") as response:
        return response.status


def test_deploy_haproxy_cfg_is_the_template_and_haproxy_accepts_it() -> None:
    deployed = ROOT / "deploy" / "haproxy.cfg"
    assert deployed.read_text() == production_haproxy_config(), (
        "deploy/haproxy.cfg differs from the template: "
        "hubbub cluster --print-haproxy-config > deploy/haproxy.cfg"
    )
    result = haproxy_check(deployed)
    assert result.returncode == 0, result.stderr
    text = deployed.read_text()
    for line in (
        "balance leastconn",
        "option httpchk GET /readyz",
        "http-check expect status 200",
        "timeout tunnel 1h",
        "option forwardfor",
        "# bind :443 ssl crt /etc/haproxy/certs/hubbub.pem alpn http/1.1",
    ):
        assert line in text, line
    assert [ln.split()[1] for ln in text.splitlines() if ln.startswith("    server ")] == [
        "node1",
        "node2",
        "node3",
    ]


def test_haproxy_accepts_the_tls_termination_lines_once_enabled(tmp_path: Path) -> None:
    pem = tmp_path / "hubbub.pem"
    subprocess.run(
        [
            *(require("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-keyout", str(pem), "-out", str(pem)),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    layout = HAProxyLayout(
        bind=":80",
        servers=(("node1", "127.0.0.1:8081"),),
        stats_bind="127.0.0.1:8404",
        production=True,
        tls_cert=str(pem),
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(render_haproxy_config(layout))
    text = config.read_text()
    assert f"\n    bind :443 ssl crt {pem} alpn http/1.1\n" in text
    assert "\n    http-request redirect scheme https code 301 unless { ssl_fc }\n" in text
    result = haproxy_check(config)
    assert result.returncode == 0, result.stderr


async def test_http_and_websockets_through_haproxy_reach_both_nodes(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    api = Api(http, cluster.url)
    _, token = await api.user()
    room = await api.room(token)
    conns = [await connect(http, cluster, token) for _ in range(4)]
    # leastconn: each new connection goes to the node holding fewer, so 2 and 2.
    assert sorted(node for _, node in conns) == ["node1", "node1", "node2", "node2"]
    seen: list[dict[str, Any]] = []
    acks = []
    for ws, _ in conns:
        await join(ws, room)
        acks.append(await send(ws, room, seen))
    assert sorted(a["seq"] for a in acks) == [1, 2, 3, 4]
    status, body = await api.call("GET", f"/api/v1/rooms/{room}/messages?after=0", token)
    assert status == 200, body
    assert [m["id"] for m in body["messages"]] == [a["id"] for a in acks]
    for ws, _ in conns:
        await ws.close()


async def test_sigterm_drains_a_node_out_of_haproxy_and_its_client_resumes_on_the_other(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    api = Api(http, cluster.url)
    _, token = await api.user()
    room = await api.room(token)
    a, victim = await connect(http, cluster, token)
    b, survivor = await connect(http, cluster, token)
    assert {victim, survivor} == {"node1", "node2"}
    await join(a, room)
    await join(b, room)
    seen_by_a: list[dict[str, Any]] = []
    acks = [await send(a, room, seen_by_a) for _ in range(5)]

    started = time.monotonic()
    cluster.kill(victim, signal.SIGTERM)
    direct = cluster.node(victim).url
    deadline = started + DRAIN_GRACE
    while await readyz(http, direct) != 503:
        assert time.monotonic() < deadline, "readyz did not turn 503 after SIGTERM"
        await asyncio.sleep(0.02)
    # Within the grace the node still serves its clients: sends are acked, not refused.
    acks += [await send(a, room, seen_by_a) for _ in range(3)]
    await asyncio.to_thread(cluster.wait_rotation, victim, False, DRAIN_GRACE)
    assert time.monotonic() - started < DRAIN_GRACE, "HAProxy kept the node past the grace"
    # HAProxy routes new clients to the survivor only, though the victim still accepts.
    newcomer, node = await connect(http, cluster, token)
    assert node == survivor
    await newcomer.close()

    seen_by_b: list[dict[str, Any]] = []
    acks += [await send(b, room, seen_by_b) for _ in range(4)]
    assert await read_until_closed(a, seen_by_a, DRAIN_GRACE + 10) == 1001
    assert await asyncio.to_thread(cluster.wait_exit, victim, 30) == 0

    # Reconnect through HAProxy, rejoin with `since`: every acked message exactly once.
    a, node = await connect(http, cluster, token)
    assert node == survivor
    since = max(f["seq"] for f in seen_by_a)
    joined = await join(a, room, since=since)
    assert joined["recovered"] is True, joined
    seen_by_a += await messages(a, room, joined["seq"] - since)
    seen_by_a += [f for f in await barrier(a) if f["type"] == "message"]
    seqs = [f["seq"] for f in seen_by_a]
    assert seqs == list(range(1, len(acks) + 1)), seqs
    assert {f["id"]: f["seq"] for f in seen_by_a} == {x["id"]: x["seq"] for x in acks}

    # Restarted, the node is back in rotation and, holding no client, gets the next one.
    await asyncio.to_thread(cluster.restart, victim)
    await asyncio.to_thread(cluster.wait_rotation, victim, True, 10)
    c, node = await connect(http, cluster, token)
    assert node == victim
    joined = await join(c, room, since=0)
    assert [f["id"] for f in await messages(c, room, joined["seq"])] == [x["id"] for x in acks]
    for ws in (a, b, c):
        await ws.close()


def test_cluster_command_runs_private_servers_and_stops_everything(tmp_path: Path) -> None:
    require("haproxy")
    require("redis-server")
    port = free_port()
    cmd = [sys.executable, "-m", "hubbub", "cluster", "--private", "--nodes", "2"]
    cmd += ["--port", str(port), "--data", str(tmp_path / "cluster")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = _read_until(proc, "Ctrl-C stops everything", within=120)
        pids = [int(p) for p in re.findall(r"pid (\d+)", "\n".join(lines))]
        dirs = [Path(d) for d in re.findall(r"data (\S+)", "\n".join(lines))]
        assert len(pids) >= 5 and len(dirs) == 2, lines  # 2 nodes, HAProxy, PostgreSQL, Redis
        assert all(d.is_dir() for d in dirs)
        asyncio.run(_chat_through(f"http://127.0.0.1:{port}"))
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "stopped" in out
    assert not [pid for pid in pids if _alive(pid)], f"left running: {pids}"
    assert not [d for d in dirs if d.exists()]


def _read_until(proc: subprocess.Popen[str], marker: str, within: float) -> list[str]:
    """The command's output lines up to `marker` (fails if it exits or time runs out)."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # the command prints and flushes line by line
        if not line:
            raise AssertionError(f"hubbub cluster exited early:\n{''.join(lines)}")
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(f"no {marker!r} within {within}s:\n{''.join(lines)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _chat_through(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        api = Api(http, url)
        _, token = await api.user()
        room = await api.room(token)
        ws = WS(await http.ws_connect(url.replace("http", "ws") + "/ws"))
        welcome = await ws.hello(token)
        assert welcome["node"] in ("node1", "node2")
        await join(ws, room)
        ack = await send(ws, room, [])
        assert ack["seq"] == 1
        await ws.close()


def test_cluster_ha_runs_a_data_tier_with_no_single_point_of_failure(tmp_path: Path) -> None:
    require("haproxy")
    require("redis-server")
    port = free_port()
    cmd = [sys.executable, "-m", "hubbub", "cluster", "--ha", "--nodes", "2"]
    cmd += ["--port", str(port), "--data", str(tmp_path / "cluster")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = _read_until(proc, "Ctrl-C stops everything", within=180)
        text = "".join(lines)
        tier = re.search(r"data tier pids: (.*)", text)
        assert tier is not None, text
        named = dict(re.findall(r"(\w+) (\d+)", tier.group(1)))
        expected = {"redis0", "redis1", "redis2", "sentinel0", "sentinel1", "sentinel2"}
        assert expected | {"postgres", "standby"} <= set(named), named
        assert "redis+sentinel://" in text and "target_session_attrs=read-write" in text, text
        pids = [int(p) for p in re.findall(r"pid (\d+)", text)]
        pids += [int(p) for p in named.values()]
        asyncio.run(_chat_through(f"http://127.0.0.1:{port}"))
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert not [pid for pid in pids if _alive(pid)], f"left running: {pids}"
