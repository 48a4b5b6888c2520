"""The chaos suite's workload and its audit: clients that keep chatting through faults, and the
count of everything that must never happen (tests/chaos/).

Each `ChaosClient` is one user in every room of the run, on one WebSocket through the load
balancer, as a careful real client behaves: it sends at a steady pace, keeps every message
until its ack and sends it again with the same id after a reconnect, an `unavailable` or an
ack that does not come, and rejoins each room with `since` = the last `seq` it saw. It writes
down every frame that matters, raw: no deduplication, so that the audit sees what the node
sent.

`audit` then compares what the clients saw with the rooms' history (read once the cluster has
healed and the worker has drained) and counts, for the run's report:

- acked lost: an ack whose (room, seq, id) is not in the history;
- phantom deliveries: a delivered message that is not in the history as delivered;
- a seq with two ids: one (room, seq) seen with different ids anywhere (deliveries, acks,
  history);
- gaps: seqs a client never got between its first join and the room's end;
- duplicates: the same seq delivered twice to one client;
- order violations: a seq delivered after a higher one on one connection;
and, as figures: acks, errors by code, ack timeouts, the time from the fault to the first ack
of a message sent after it, and the p99 of reconnect times (disconnect to every room
rejoined).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from support.api import Api

SEND_EVERY = 0.2  # seconds between two new messages of one client
ACK_TIMEOUT = 10.0  # seconds before an unacked message is counted as timed out and resent
MAX_UNACKED = 20  # a client stops writing new messages while this many wait for acks
FRAMES_PER_TICK = 3  # sends and resends together: 15/s, under the spec's 20/s send limit
RETRY_FIRST, RETRY_MOST = 0.5, 5.0  # seconds before a refused message goes again (doubling)
CONNECT_TIMEOUT = 5.0


@dataclass
class Delivery:
    room: str
    seq: int
    id: str
    connection: int  # which of the client's connections it came on


@dataclass
class Pending:
    room: str
    body: str
    sent_at: float = 0.0
    first_sent: float = 0.0
    resend: bool = False  # answered `unavailable` (or timed out): send again...
    not_before: float = 0.0  # ...from then on
    backoff: float = 0.0


@dataclass
class ChaosClient:
    """One user chatting in `rooms` through `ws_url` until cancelled."""

    name: str
    token: str
    rooms: list[str]
    ws_url: str
    deliveries: list[Delivery] = field(default_factory=list)
    acks: dict[str, tuple[str, int, float]] = field(default_factory=dict)  # id -> room, seq, t
    sent: dict[str, float] = field(default_factory=dict)  # id -> when first sent, once acked
    acked_twice: list[tuple[str, int, int]] = field(default_factory=list)  # id, seq, other seq
    errors: Counter[str] = field(default_factory=Counter)
    timeouts: int = 0
    reconnects: list[float] = field(default_factory=list)  # seconds from loss to rejoined
    order_violations: int = 0
    duplicates: int = 0
    first_join: dict[str, int] = field(default_factory=dict)  # room -> seq at the first join
    last_seen: dict[str, int] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)
    connections: int = 0
    quiet: bool = False  # set at the end of a run: no new messages, the unacked still go
    seen: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def run(self, http: aiohttp.ClientSession) -> None:
        """Connect, chat, and reconnect after every loss, until cancelled."""
        lost_at: float | None = None
        while True:
            try:
                ws = await asyncio.wait_for(
                    http.ws_connect(self.ws_url, heartbeat=None), CONNECT_TIMEOUT
                )
            except (aiohttp.ClientError, OSError, TimeoutError):
                lost_at = lost_at if lost_at is not None else time.monotonic()
                await asyncio.sleep(0.2)
                continue
            self.connections += 1
            try:
                if await self._rejoin(ws) and lost_at is not None:
                    self.reconnects.append(time.monotonic() - lost_at)
                lost_at = None
                await self._chat(ws)
            except (aiohttp.ClientError, OSError, TimeoutError, ConnectionError):
                pass
            finally:
                await ws.close()
            lost_at = lost_at if lost_at is not None else time.monotonic()
            await asyncio.sleep(0.1)

    async def _rejoin(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """hello, then join every room (with `since` once seen); True when all are joined."""
        await ws.send_json({"type": "hello", "token": self.token, "ref": "hello"})
        for room in self.rooms:
            join: dict[str, Any] = {"type": "join", "room": room, "ref": f"join-{room}"}
            if room in self.last_seen:
                join["since"] = self.last_seen[room]
            await ws.send_json(join)
        waiting = {f"join-{room}" for room in self.rooms}
        async with asyncio.timeout(CONNECT_TIMEOUT * 2):
            while waiting:
                frame = await self._next(ws)
                if frame is None:
                    raise ConnectionError("closed while joining")
                if frame.get("type") == "joined":
                    room = frame["room"]
                    self.first_join.setdefault(room, frame["seq"])
                    self.last_seen.setdefault(room, frame["seq"])
                    waiting.discard(f"join-{room}")
                elif frame.get("type") == "error" and frame.get("ref") in waiting | {"hello"}:
                    self.errors[frame["code"]] += 1
                    raise ConnectionError(f"refused: {frame}")
                else:
                    self._take(frame)
        return True

    async def _chat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        for msg_id in self.pending:  # everything unacked goes again, with its id
            self.pending[msg_id].resend = True
        sender = asyncio.create_task(self._send_loop(ws))
        try:
            while True:
                frame = await self._next(ws)
                if frame is None:
                    return
                self._take(frame)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _send_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        rooms = itertools.cycle(self.rooms)
        while True:
            now = time.monotonic()
            budget = FRAMES_PER_TICK
            for msg_id, p in list(self.pending.items()):
                if budget == 0:
                    break
                if p.resend and now < p.not_before:
                    continue
                if p.resend or now - p.sent_at > ACK_TIMEOUT:
                    if not p.resend:
                        self.timeouts += 1
                    await self._send(ws, msg_id, p, now)
                    budget -= 1
            if budget and not self.quiet and len(self.pending) < MAX_UNACKED:
                msg_id = f"{self.name}-{next(self._ids)}"
                room = next(rooms)
                p = self.pending[msg_id] = Pending(room, f"chaos {msg_id}")
                await self._send(ws, msg_id, p, now)
            await asyncio.sleep(SEND_EVERY)

    async def _send(
        self, ws: aiohttp.ClientWebSocketResponse, msg_id: str, p: Pending, now: float
    ) -> None:
        p.sent_at, p.resend = now, False
        p.first_sent = p.first_sent or now
        frame = {"type": "send", "room": p.room, "id": msg_id, "body": p.body, "ref": msg_id}
        await ws.send_json(frame)

    async def _next(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any] | None:
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        frame: dict[str, Any] = orjson.loads(msg.data)
        return frame

    def _take(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            self._delivered(frame["room"], frame["seq"], frame["id"])
        elif kind == "ack":
            self._acked(frame["id"], frame["room"], frame["seq"])
        elif kind == "error":
            self.errors[frame["code"]] += 1
            pending = self.pending.get(frame.get("ref") or "")
            if pending is not None and frame["code"] in ("unavailable", "rate_limited"):
                pending.backoff = min(max(pending.backoff * 2, RETRY_FIRST), RETRY_MOST)
                wait = max(pending.backoff, float(frame.get("retry_after") or 0))
                pending.resend, pending.not_before = True, time.monotonic() + wait

    def _delivered(self, room: str, seq: int, msg_id: str) -> None:
        last = self.last_seen.get(room, 0)
        seen = self.seen[room]
        if seq in seen:
            self.duplicates += 1
        elif seq < last:
            self.order_violations += 1
        seen.add(seq)
        self.deliveries.append(Delivery(room, seq, msg_id, self.connections))
        self.last_seen[room] = max(last, seq)

    def settled(self, ends: dict[str, int]) -> bool:
        """Every message acked, and every room seen to its end (`ends`: room -> last seq)."""
        return not self.pending and all(self.last_seen.get(r, 0) >= ends[r] for r in self.rooms)

    def _acked(self, msg_id: str, room: str, seq: int) -> None:
        earlier = self.acks.get(msg_id)
        if earlier is not None and earlier[1] != seq:
            self.acked_twice.append((msg_id, seq, earlier[1]))
        self.acks.setdefault(msg_id, (room, seq, time.monotonic()))
        pending = self.pending.pop(msg_id, None)
        if pending is not None:
            self.sent[msg_id] = pending.first_sent


async def history(api: Api, token: str, room: str, patience: float = 30.0) -> dict[int, str]:
    """The room's whole history as seq -> id, read oldest first in pages. A page refused
    for a while (`rate_limited`: the audit reads every room again and again; `unavailable`:
    a node's connection to Redis reset by a failover) is asked again, as a client would,
    for up to `patience` seconds."""
    found: dict[int, str] = {}
    after = 0
    deadline = time.monotonic() + patience
    while True:
        status, body = await api.call(
            "GET", f"/api/v1/rooms/{room}/messages?after={after}&limit=200", token
        )
        if status in (429, 503) and time.monotonic() < deadline:
            await asyncio.sleep(max(float(body["error"].get("retry_after") or 0), 0.2))
            continue
        assert status == 200, (status, body)
        for m in body["messages"]:
            found[m["seq"]] = m["id"]
            after = max(after, m["seq"])
        if not body["more"]:
            return found


@dataclass
class Report:
    """What a chaos run counted (the must-be-zero counts first)."""

    acked: int
    acked_lost: int
    phantoms: int
    seq_two_ids: int
    gaps: int
    duplicates: int
    order_violations: int
    errors: dict[str, int]
    timeouts: int
    fault_to_ack: float | None  # seconds from the fault to the first ack of a message sent after it
    reconnect_p99: float | None
    reconnects: int
    examples: list[str]

    def line(self, scenario: str) -> str:
        fault = "-" if self.fault_to_ack is None else f"{self.fault_to_ack:.2f} s"
        p99 = "-" if self.reconnect_p99 is None else f"{self.reconnect_p99:.2f} s"
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"chaos {scenario}: acked {self.acked}, acked lost {self.acked_lost}, "
            f"phantoms {self.phantoms}, gaps {self.gaps}, duplicates {self.duplicates}, "
            f"order violations {self.order_violations}, seq with two ids {self.seq_two_ids}; "
            f"errors {errors}; ack timeouts {self.timeouts}; fault to first ack {fault}; "
            f"reconnects {self.reconnects}, p99 {p99}"
        )

    @property
    def clean(self) -> bool:
        return not (
            self.acked_lost
            or self.phantoms
            or self.seq_two_ids
            or self.gaps
            or self.duplicates
            or self.order_violations
        )


def audit(
    clients: list[ChaosClient], stored: dict[str, dict[int, str]], fault_at: float | None
) -> Report:
    """Count what went wrong, comparing the clients' records with the stored history."""
    examples: list[str] = []

    def note(text: str) -> None:
        if len(examples) < 10:
            examples.append(text)

    ids: dict[tuple[str, int], set[str]] = defaultdict(set)
    for room, messages in stored.items():
        for seq, msg_id in messages.items():
            ids[room, seq].add(msg_id)
    acked = lost = phantoms = gaps = 0
    ack_times: list[float] = []  # of messages first sent after the fault
    for c in clients:
        for msg_id, (room, seq, at) in c.acks.items():
            acked += 1
            if fault_at is not None and c.sent.get(msg_id, 0.0) >= fault_at:
                ack_times.append(at)
            ids[room, seq].add(msg_id)
            if stored[room].get(seq) != msg_id:
                lost += 1
                note(f"acked {room}#{seq} {msg_id}, stored {stored[room].get(seq)}")
        for msg_id, seq, other in c.acked_twice:
            note(f"{msg_id} acked as #{other} and as #{seq}")
        for d in c.deliveries:
            ids[d.room, d.seq].add(d.id)
            if stored[d.room].get(d.seq) != d.id:
                phantoms += 1
                note(f"{c.name} got {d.room}#{d.seq} {d.id}, stored {stored[d.room].get(d.seq)}")
        for room, first in c.first_join.items():
            end = max(stored[room], default=0)
            missing = set(range(first + 1, end + 1)) - c.seen[room]
            gaps += len(missing)
            if missing:
                note(f"{c.name} missed {room} seqs {sorted(missing)[:5]}")
    two_ids = [key for key, found in ids.items() if len(found) > 1]
    two_ids_count = len(two_ids) + sum(len(c.acked_twice) for c in clients)
    for room, seq in two_ids[:3]:
        note(f"{room}#{seq} seen as {sorted(ids[room, seq])}")
    after = sorted(ack_times)
    reconnects = [r for c in clients for r in c.reconnects]
    return Report(
        acked=acked,
        acked_lost=lost,
        phantoms=phantoms,
        seq_two_ids=two_ids_count,
        gaps=gaps,
        duplicates=sum(c.duplicates for c in clients),
        order_violations=sum(c.order_violations for c in clients),
        errors=dict(sum((c.errors for c in clients), Counter())),
        timeouts=sum(c.timeouts for c in clients),
        fault_to_ack=(after[0] - fault_at) if after and fault_at is not None else None,
        reconnect_p99=_p99(reconnects),
        reconnects=len(reconnects),
        examples=examples,
    )


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[98]
