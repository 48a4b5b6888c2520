"""The distributed engine's backends as a test drives them: a PostgreSQL of its own that it
can stop and start (`OwnPostgres`), a `hubbub worker` process, and nodes a and b on both
(`running_backends`), with the waits and reads the outage tests check their end state with
(tests/integration/test_distributed_outages.py, test_distributed_metrics.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from hubbub.ops.processes import PrivatePostgres
from support.api import Api
from support.multinode import Client, send
from support.needs import executable
from support.redis_server import REDIS_DURABLE, RedisServer, free_port
from support.server import ServerProcess

HEARTBEAT = 1.0
DEADLINE = 30.0  # seconds any recovery may take before the test fails


# --- a PostgreSQL the test can stop and start -----------------------------------------------


def require_pg_ctl() -> None:
    """PostgreSQL's server binaries; without them skip, or fail when CI is set."""
    if any(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        return
    executable("pg_ctl", "PostgreSQL's server binaries: apt-get install postgresql")


class OwnPostgres:
    """`PrivatePostgres` (initdb, trust auth, a free port) plus stop/start by pg_ctl on the
    same data directory: an outage that loses nothing PostgreSQL committed."""

    def __init__(self) -> None:
        require_pg_ctl()
        self.server = PrivatePostgres()
        self.data = self.server.directory / "data"
        # PrivatePostgres's own log was created by this process; pg_ctl's runs as the server.
        self.log_path = self.server.directory / "pg_ctl.log"
        self.running = False
        self.restarted = False  # the postmaster runs under pg_ctl, not as our child

    @property
    def url(self) -> str:
        return self.server.url

    def start_first(self) -> None:
        self.server.start(60.0)
        self.running = True

    def pg_ctl(self, *args: str) -> None:
        pg_ctl = self.server.bindir() / "pg_ctl"
        result = subprocess.run(
            [str(pg_ctl), "-D", str(self.data), *args],
            user=self.server.user,
            capture_output=True,
            timeout=60,
        )
        assert result.returncode == 0, (result.stdout + result.stderr).decode(errors="replace")

    def stop_immediate(self) -> None:
        """`pg_ctl stop -m immediate`: every backend is killed, nothing is shut down cleanly."""
        self.pg_ctl("stop", "-m", "immediate", "-w")
        self.running = False
        if self.server.proc is not None:
            self.server.proc.wait(10)  # the first postmaster is our child: reap it

    def start(self) -> None:
        """`pg_ctl start` on the same data, port and socket directory (crash recovery runs)."""
        options = f"-p {self.server.port} -c listen_addresses=127.0.0.1"
        options += f" -c unix_socket_directories={self.data}"
        self.pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_path), "-o", options)
        self.running = self.restarted = True

    def close(self) -> None:
        try:
            if self.running and self.restarted:
                self.pg_ctl("stop", "-m", "fast", "-w")  # the postmaster pg_ctl started
                self.running = False
        finally:
            self.server.stop()  # our own child (if still running), then the directory

    def rows(self, room: str) -> list[tuple[int, str]]:
        """(seq, id) of every message PostgreSQL holds for `room`, by seq."""
        with psycopg.connect(self.url, connect_timeout=5) as conn:
            cur = conn.execute(
                "SELECT seq, client_id FROM messages WHERE room = %s ORDER BY seq", (room,)
            )
            return [(int(seq), str(msg_id)) for seq, msg_id in cur.fetchall()]


# --- the worker -----------------------------------------------------------------------------


class WorkerProcess:
    """One `hubbub worker` subprocess with its /metrics on a free port; restartable."""

    def __init__(self, log_path: Path, args: list[str]) -> None:
        self.log_path = log_path
        self.args = args
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "hubbub", "worker", *self.args]
        cmd += ["--host", "127.0.0.1", "--metrics-port", str(self.metrics_port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> str:
        """The worker's /metrics text ("" while it does not answer yet)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return ""

    def kill(self) -> None:
        """kill -9: a batch in flight is neither committed nor settled."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def worker_args(database: str, redis: str) -> list[str]:
    """Small batches and a short keep, so history crosses PostgreSQL and the stream."""
    backends = ["--database", database, "--redis", redis, "--node-id", "worker"]
    return [*backends, "--batch", "20", "--keep", "10", "--poll-interval", "0.02"]


# --- the cluster under test -----------------------------------------------------------------


@dataclass
class Backends:
    postgres: OwnPostgres
    redis: RedisServer
    nodes: list[ServerProcess]
    worker: WorkerProcess


@contextlib.contextmanager
def running_backends(tmp_path: Path, server_factory: Any) -> Iterator[Backends]:
    """A private PostgreSQL and redis-server, nodes a and b, and a running worker; all
    stopped at exit (the nodes first, before their backends go away)."""
    postgres = OwnPostgres()
    (tmp_path / "redis-data").mkdir()
    redis = RedisServer(tmp_path / "redis-data", *REDIS_DURABLE)
    worker: WorkerProcess | None = None
    started: list[ServerProcess] = []
    try:
        postgres.start_first()
        redis.start()
        for name in ("node-a", "node-b"):  # one at a time: the first migrates the database
            args = ["--database", postgres.url, "--redis", redis.url, "--node-id", name]
            args += ["--heartbeat", str(HEARTBEAT), "--rate-limit", "0"]
            started.append(server_factory(args=args))
        worker = WorkerProcess(tmp_path / "worker.log", worker_args(postgres.url, redis.url))
        worker.start()
        yield Backends(postgres, redis, started, worker)
    finally:
        for node in started:
            node.stop()
        if worker is not None:
            worker.stop()
        redis.stop()
        postgres.close()


# --- helpers --------------------------------------------------------------------------------


async def wait_until(
    condition: Callable[[], Awaitable[bool]], what: str, timeout: float = DEADLINE
) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


async def send_until_acked(ws: Client, room: str, msg_id: str) -> dict[str, Any]:
    """Resend one message until it is acked; every refusal meanwhile must be `unavailable`."""
    deadline = time.monotonic() + DEADLINE
    while True:
        reply = await send(ws, room, msg_id, f"body of {msg_id}")
        if reply["type"] == "ack":
            return reply
        assert (reply["type"], reply["code"]) == ("error", "unavailable"), reply
        assert time.monotonic() < deadline, f"{msg_id} still unavailable after {DEADLINE:g}s"
        await asyncio.sleep(0.1)


async def send_all(ws: Client, room: str, ids: list[str]) -> dict[str, int]:
    """Pipeline sends of `ids`, then read their acks: id -> seq."""
    for msg_id in ids:
        frame = {"type": "send", "room": room, "id": msg_id, "body": f"body of {msg_id}"}
        await ws.send({**frame, "ref": msg_id})
    acked: dict[str, int] = {}
    for msg_id in ids:
        reply = await ws.reply(msg_id)
        assert reply["type"] == "ack", reply
        acked[msg_id] = reply["seq"]
    return acked


async def unread_messages(ws: Client) -> list[dict[str, Any]]:
    """The message frames this connection received and nobody read yet, up to a pong."""
    await ws.send({"type": "ping", "ref": "quiet"})
    assert (await ws.reply("quiet"))["type"] == "pong"
    unread = [frame for frame in ws.stash if frame["type"] == "message"]
    ws.stash = [frame for frame in ws.stash if frame["type"] != "message"]
    return unread


async def history(api: Api, token: str, room: str, limit: int = 7) -> list[tuple[int, str]]:
    """Every message of the room through HTTP history, oldest first, `limit` per page."""
    got: list[tuple[int, str]] = []
    more = True
    while more:
        after = got[-1][0] if got else 0
        status, body = await api.call(
            "GET", f"/api/v1/rooms/{room}/messages?after={after}&limit={limit}", token
        )
        assert status == 200, body
        got += [(m["seq"], m["id"]) for m in body["messages"]]
        more = body["more"]
    return got


async def stored(postgres: OwnPostgres, room: str, count: int) -> list[tuple[int, str]]:
    """PostgreSQL's rows of the room once the worker moved `count` of them."""
    rows: list[tuple[int, str]] = []

    async def moved() -> bool:
        nonlocal rows
        rows = await asyncio.to_thread(postgres.rows, room)
        return len(rows) >= count

    await wait_until(moved, f"the worker to store {count} messages of {room}")
    return rows


async def two_users_in_a_room(
    backends: Backends, on: Callable[[ServerProcess], Api], ws_to: Any
) -> tuple[str, str, Client, Client]:
    """A room, a sender joined on node a and a reader joined on node b."""
    a, b = backends.nodes
    _, alice = await on(a).user()
    _, bob = await on(b).user()
    room = await on(a).room(alice)
    sender: Client = await ws_to(a, alice)
    await sender.join(room)
    reader: Client = await ws_to(b, bob)
    await reader.join(room)
    return room, bob, sender, reader
