"""A load generator process: many WebSocket clients on one event loop, driven over pipes.

`pool.LoadPool` (in the parent) starts these worker processes pinned to the
load CPUs. Each worker runs its own event loop (uvloop when installed), opens the
connections it is given (hello, then join one room), and on command sends
messages: pipelined behind a window of unacked sends (`pipeline`) or paced at
a rate (`rate`). It counts deliveries (`message` frames received) and acks,
and records latencies: ack latency (send -> ack on the same connection) and
end-to-end latency (the sender's `time.monotonic_ns()` is the first word of
the body; CLOCK_MONOTONIC is shared by every process of the machine). It
can also churn: connections that connect, hello, join, leave and disconnect
over and over (`churn`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import resource
import signal
import time
import traceback
from array import array
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

import orjson

from hubbub.bench import procstat
from hubbub.bench.wsclient import Endpoint, WebSocketClient

_MESSAGE = (b'"type":"message"', b'"type": "message"')
_BODY = b'"body":'
SETUP_TIMEOUT = 30.0  # per connection, for each of connect, welcome and joined
CONNECT_PHASE_TIMEOUT = 240.0  # for all of one worker's connections


class ConnSpec(NamedTuple):
    """One connection to open: whose token, which room to join, whether it sends."""

    token: str
    room: str
    sender: bool = False


@dataclass(eq=False)
class Conn:
    """One open connection and its send bookkeeping."""

    client: WebSocketClient
    room: str
    name: str
    sender: bool
    pending: dict[str, int] = field(default_factory=dict)  # message id -> send time (ns)
    counter: int = 0
    waiter: asyncio.Future[dict[str, Any]] | None = None
    wait_for: str = ""


def raise_nofile_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def body_timestamp(payload: bytes) -> int:
    """The send time a benchmark message carries as the first word of its body."""
    i = payload.find(b'"body":"') + 8
    if i < 8:  # an encoder that puts spaces after colons
        i = payload.find(_BODY) + len(_BODY)
        while payload[i] in b' "':
            i += 1
    return int(payload[i : payload.index(b" ", i)])


class Worker:
    """The event-loop side of one load generator process."""

    def __init__(
        self, commands: Connection, replies: Connection, endpoint: Endpoint, index: int, run: str
    ) -> None:
        # Two one-way pipes: the event loop makes the command end non-blocking, and
        # replies (latency samples can be megabytes) must be written in full.
        self.commands, self.replies = commands, replies
        self.endpoint, self.index, self.run = endpoint, index, run
        self.ssl = endpoint.ssl_context()
        self.conns: list[Conn] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tasks: set[asyncio.Task[None]] = set()
        self.deliveries = self.acks = self.sent = self.errors = self.throttled = 0
        self.error_samples: Counter[str] = Counter()
        self.latencies = array("q")  # end-to-end, ns, only while recording
        self.ack_latencies = array("q")
        self.record_share = 0.0  # share of connections timing end-to-end latency
        self.pipelining = False
        self.window = 8
        self.body_size = 150
        self.rate = 0.0
        self.pacer: asyncio.Task[None] | None = None
        self.churning = False
        self.churners: list[asyncio.Task[None]] = []
        self.cycles = self.cycle_errors = 0
        self.cycle_latencies = array("q")  # one connect-hello-join-leave-disconnect, ns

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.commands.fileno(), self._on_command)
        # The loop made the pipe non-blocking; a command bigger than the pipe's buffer
        # (thousands of connection specs) must still be read whole once it starts.
        os.set_blocking(self.commands.fileno(), True)
        await self.done
        loop.remove_reader(self.commands.fileno())

    # commands from the parent

    def _on_command(self) -> None:
        while self.commands.poll():
            name, args = self.commands.recv()
            if name == "connect":
                task = asyncio.ensure_future(self._connect(**args))
                self.tasks.add(task)
                task.add_done_callback(self._connect_done)
                continue
            try:
                reply = getattr(self, f"cmd_{name}")(**args)
            except Exception:
                reply = {"error": traceback.format_exc()}
            self.replies.send(reply)

    def _connect_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.replies.send({"error": "".join(traceback.format_exception(exc))})

    async def _connect(self, specs: list[ConnSpec], concurrency: int) -> None:
        gate = asyncio.Semaphore(concurrency)
        failures: Counter[str] = Counter()

        async def open_one(n: int, spec: ConnSpec) -> None:
            async with gate:
                try:
                    self.conns.append(await self._open(n, spec))
                except Exception as exc:  # reported to the parent, not raised
                    failures[f"{type(exc).__name__}: {exc}"[:200]] += 1

        start = time.monotonic()
        base = len(self.conns)
        opening = [asyncio.ensure_future(open_one(base + n, s)) for n, s in enumerate(specs)]
        _, late = await asyncio.wait(opening, timeout=CONNECT_PHASE_TIMEOUT)
        for task in late:
            task.cancel()
        if late:
            failures[f"not connected within {CONNECT_PHASE_TIMEOUT:.0f}s"] += len(late)
        seconds = time.monotonic() - start
        self.replies.send(
            {"opened": len(self.conns) - base, "failures": dict(failures), "s": seconds}
        )

    async def _open(self, n: int, spec: ConnSpec) -> Conn:
        connecting = WebSocketClient.connect(self.endpoint, self.ssl)
        client = await asyncio.wait_for(connecting, SETUP_TIMEOUT)
        # Message ids are unique per run, so a server that deduplicates ids stores every send.
        conn = Conn(client, spec.room, f"{self.run}w{self.index}c{n}n", spec.sender)
        client.on_text = functools.partial(self._on_text, conn)
        # Compact JSON with `type` first is what both servers send; others take the slow path.
        client.fast_prefix = self.endpoint.message_prefix
        client.on_fast = self._on_delivery if self._sampled(n) else None
        await self._request(conn, {"type": "hello", "token": spec.token, "ref": "h"}, "welcome")
        await self._request(conn, {"type": "join", "room": spec.room, "ref": "j"}, "joined")
        return conn

    async def _request(self, conn: Conn, frame: dict[str, Any], answer: str) -> dict[str, Any]:
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        conn.waiter, conn.wait_for = waiter, answer
        conn.client.send_object(frame["type"], orjson.dumps(frame))
        lost = conn.client.lost
        watch: list[asyncio.Future[Any]] = [waiter, lost]
        await asyncio.wait(watch, timeout=SETUP_TIMEOUT, return_when="FIRST_COMPLETED")
        if not waiter.done():
            conn.client.close()
            why = f"closed {conn.client.close_code}" if lost.done() else "timed out"
            raise ConnectionError(f"no {answer} to {frame['type']}: {why}")
        return waiter.result()

    def cmd_pipeline(self, window: int, body_size: int) -> dict[str, Any]:
        """Keep `window` sends outstanding on every sender connection."""
        self.window, self.body_size, self.pipelining = window, body_size, True
        for conn in self.conns:
            if conn.sender:
                conn.client.send_raw(b"".join(self._send_frame(conn) for _ in range(window)))
        return {}

    def cmd_rate(self, rate: float, window: int, body_size: int) -> dict[str, Any]:
        """Send `rate` messages a second in total, spread over the sender connections."""
        self.rate, self.window, self.body_size, self.pipelining = rate, window, body_size, False
        if rate > 0 and (self.pacer is None or self.pacer.done()):
            self.pacer = asyncio.ensure_future(self._pace())
        return {}

    def cmd_stop(self) -> dict[str, Any]:
        self.rate, self.pipelining, self.churning = 0.0, False, False
        return {}

    def cmd_churn(self, specs: list[ConnSpec]) -> dict[str, Any]:
        """One churner per spec: connect, hello, join, leave, disconnect, again, until `stop`."""
        self.churning = True
        self.churners = [
            asyncio.ensure_future(self._churn(n, spec)) for n, spec in enumerate(specs)
        ]
        return {}

    async def _churn(self, n: int, spec: ConnSpec) -> None:
        while self.churning:
            start = time.monotonic_ns()
            conn: Conn | None = None
            try:
                conn = await self._open(n, spec)
                await self._request(conn, {"type": "leave", "room": spec.room, "ref": "l"}, "left")
                conn.client.close()
                await asyncio.wait_for(asyncio.shield(conn.client.lost), SETUP_TIMEOUT)
            except Exception as exc:  # counted, and the churner goes on
                self.cycle_errors += 1
                self.error_samples[f"churn: {type(exc).__name__}: {exc}"[:200]] += 1
                if conn is not None:
                    conn.client.close()
                await asyncio.sleep(0.05)  # a refusing server is not hammered in a tight loop
                continue
            self.cycles += 1
            self.cycle_latencies.append(time.monotonic_ns() - start)

    def cmd_record(self, share: float) -> dict[str, Any]:
        """Time end-to-end latency on this share of the connections (0: none)."""
        self.record_share = share
        for n, conn in enumerate(self.conns):
            conn.client.on_fast = self._on_delivery if self._sampled(n) else None
        return {}

    def _sampled(self, n: int) -> bool:
        # A fixed pseudo-random pick spreads the sample over rooms and member positions.
        return random.Random(f"{self.index}/{n}").random() < self.record_share

    def cmd_snapshot(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        closed = Counter(str(c.client.close_code) for c in self.conns if not c.client.is_open)
        snap = {
            "t": time.monotonic(),
            "cpu": usage.ru_utime + usage.ru_stime,
            "wait": procstat.run_queue_wait_seconds(),
            "deliveries": self.deliveries + sum(c.client.fast_count for c in self.conns),
            "acks": self.acks,
            "sent": self.sent,
            "errors": self.errors,
            "cycles": self.cycles,
            "cycle_errors": self.cycle_errors,
            "throttled": self.throttled,
            "error_samples": dict(self.error_samples),
            "closed": dict(closed),
            "outstanding": sum(len(c.pending) for c in self.conns),
            "latencies": self.latencies.tobytes(),
            "ack_latencies": self.ack_latencies.tobytes(),
            "cycle_latencies": self.cycle_latencies.tobytes(),
        }
        self.latencies, self.ack_latencies = array("q"), array("q")
        self.cycle_latencies = array("q")
        return snap

    def cmd_close(self) -> dict[str, Any]:
        self.cmd_stop()
        for conn in self.conns:
            conn.client.close()
        # Give the closing handshakes a moment to reach the server before the loop ends.
        asyncio.get_running_loop().call_later(0.2, self._finish)
        return {}

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    # sending

    def _send_frame(self, conn: Conn) -> bytes:
        conn.counter += 1
        message_id = f"{conn.name}{conn.counter}"
        now = time.monotonic_ns()
        stamp = f"{now} "
        body = stamp + "x" * max(self.body_size - len(stamp), 1)
        conn.pending[message_id] = now
        self.sent += 1
        payload = orjson.dumps({"type": "send", "room": conn.room, "id": message_id, "body": body})
        # Build the frame here so a batch of sends goes out in one write.
        return conn.client.frame("send", payload)

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        senders = [c for c in self.conns if c.sender and c.client.is_open]
        credit, last, turn = 0.0, loop.time(), 0
        while self.rate > 0 and senders:
            await asyncio.sleep(0.005)
            now = loop.time()
            credit = min(credit + self.rate * (now - last), self.rate * 0.05 + 1)
            last = now
            batches: dict[int, list[bytes]] = {}
            blocked = 0
            while credit >= 1 and blocked < len(senders):
                turn = (turn + 1) % len(senders)
                conn = senders[turn]
                if len(conn.pending) >= self.window:
                    blocked += 1
                    continue
                blocked = 0
                credit -= 1
                batches.setdefault(turn, []).append(self._send_frame(conn))
            if credit >= 1:  # every window is full: the server is not keeping up
                self.throttled += int(credit)
                credit = 0.0
            for i, frames in batches.items():
                senders[i].client.send_raw(b"".join(frames))

    # receiving

    def _on_delivery(self, payload: bytes) -> None:
        self.latencies.append(time.monotonic_ns() - body_timestamp(payload))

    def _on_text(self, conn: Conn, payload: bytes) -> None:
        if _MESSAGE[0] in payload or _MESSAGE[1] in payload:
            self.deliveries += 1
            if conn.client.on_fast is not None:
                self._on_delivery(payload)
            return
        frame = orjson.loads(payload)
        kind = frame.get("type")
        if kind == "ack":
            self._on_ack(conn, frame)
        elif conn.waiter is not None and not conn.waiter.done() and kind == conn.wait_for:
            conn.waiter.set_result(frame)
        elif kind == "error":
            self.errors += 1
            self.error_samples[f"{frame.get('code')}: {frame.get('message')}"[:200]] += 1
            if conn.waiter is not None and not conn.waiter.done():
                conn.waiter.set_exception(ConnectionError(f"error frame: {frame}"))

    def _on_ack(self, conn: Conn, frame: dict[str, Any]) -> None:
        sent_at = conn.pending.pop(frame.get("id", ""), None)
        if sent_at is None:
            return
        self.acks += 1
        self.ack_latencies.append(time.monotonic_ns() - sent_at)
        if self.pipelining and len(conn.pending) < self.window:
            conn.client.send_raw(self._send_frame(conn))


def worker_main(
    commands: Connection,
    replies: Connection,
    endpoint: Endpoint,
    cpus: list[int],
    index: int,
    run: str = "",
) -> None:
    """Entry point of a load generator process."""
    # Ctrl-C reaches the whole process group: the parent, not the signal, ends the workers
    # (after its cleanup), so they do not die mid-command with a traceback each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, cpus)
    raise_nofile_limit()
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    async def main() -> None:
        await Worker(commands, replies, endpoint, index, run).serve()

    asyncio.run(main())
