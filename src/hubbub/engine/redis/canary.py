"""A canary through the node's own subscription: fan-out that proves it still delivers.

A pub/sub connection can look alive (its socket open, its pings written) and deliver
nothing: a stuck proxy or load balancer, a half-open TCP connection after a failover, a
server that unsubscribed the node without telling it. Nothing fails, so nothing
reconnects, and rooms go silent while health checks stay green.

So every `interval` seconds the node publishes a small canary on a sharded channel of its
own (`canary_channel`), which it subscribes on the same pub/sub connection, with the same
SSUBSCRIBE, that carries its rooms; the publish goes the way room events go. On a Redis
Cluster there is one such channel per master (`canary_channels`), so every shard's
connection is proven. When, on any channel, none of the last `MISSES` canaries came back,
and none for `MISSES` intervals:

- `problem` says so in a sentence, and `/readyz` answers 503 with it (the load balancer
  sends the node no new clients);
- `hubbub_fanout_canary_failures_total` counts it, and `hubbub_fanout_canary_age_seconds`
  (read at each scrape) shows how long it has been;
- `stalled` is set: the bus tears the subscription down and builds a new one, which syncs
  every room from the log as after a lost connection. A new subscription (connecting
  included: a server may accept and never answer) gets `MISSES` canaries of its own
  before it is judged again.

Both conditions, not the time alone: a node whose event loop was blocked for a while (a
burst of work) has sent fewer canaries meanwhile, and the ones it sent are waiting in its
socket; that is not a stalled subscription. A canary publish that fails or hangs counts as
a miss: the bus cannot deliver then either. Canaries return again, and the node is ready.

Each process marks its canaries with a random token, so two nodes that were given the same
`--node-id` do not vouch for each other.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from hubbub import metrics

log = logging.getLogger(__name__)

MISSES = 3
"""Canaries in a row, and intervals, without one back before a subscription is stalled."""

_SEARCH = 200_000  # hash tags tried for a master's canary channel (enough for 1 slot)

Publish = Callable[[str, bytes], Awaitable[Any]]
"""Publishes a payload on a sharded channel (SPUBLISH), in order with the node's appends."""


def canary_channel(node_id: str, tag: str = "") -> str:
    """A canary channel of the node: its own hash tag, never the shape of a room's channel."""
    return f"hubbub:canary:{{{node_id}{tag}}}"


def canary_channels(client: Any, node_id: str) -> list[str]:
    """The node's canary channels: one, or on an (initialized) cluster one per master, each
    with a hash tag in a slot of that master."""
    if not isinstance(client, RedisCluster):
        return [canary_channel(node_id)]
    masters: dict[str, set[int]] = {}
    for slot, nodes in client.nodes_manager.slots_cache.items():
        if nodes:
            masters.setdefault(nodes[0].name, set()).add(slot)
    channels = []
    for name, slots in sorted(masters.items()):
        # About 16384 / len(slots) tries (a few, for masters of a share of the slots).
        for i in range(_SEARCH):
            channel = canary_channel(node_id, f"/{i}")
            if key_slot(channel.encode()) in slots:
                channels.append(channel)
                break
        else:
            log.warning("no canary channel found for a master", extra={"master": name})
    return channels or [canary_channel(node_id)]


class StalledSubscription(RedisConnectionError):
    """The subscription delivers nothing though its connection looks alive: handled as a
    lost connection (the bus reconnects and resyncs)."""


class _Probe:
    """One canary channel: what came back on it, what is in flight."""

    __slots__ = ("answered", "channel", "failing", "in_flight", "last_returned")

    def __init__(self, channel: str, ticks: int, last_returned: float) -> None:
        self.channel = channel
        self.answered = ticks  # the latest tick whose canary came back, or forgiven
        self.last_returned = last_returned
        self.failing = False  # judged stalled, and no canary came back on it since
        self.in_flight: asyncio.Task[None] | None = None


class Canary:
    """Publishes canaries, hears them come back, and judges the subscription (see above)."""

    def __init__(
        self,
        node_id: str,
        interval: float,
        publish: Publish,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id
        self.interval = interval
        self.publish = publish
        self.clock = clock
        self.token = secrets.token_bytes(8)
        self.ticks = 0  # canaries due so far (sent, or skipped while one is still in flight)
        self.returned = 0
        self.started = clock()  # a node just started gets MISSES intervals to prove itself
        self.probes: dict[bytes, _Probe] = {}
        self.use([canary_channel(node_id)])
        self.stalled = asyncio.Event()  # the bus rebuilds its subscription when set
        self._task: asyncio.Task[None] | None = None

    @property
    def deadline(self) -> float:
        return MISSES * self.interval

    @property
    def channels(self) -> list[str]:
        return [probe.channel for probe in self.probes.values()]

    def start(self) -> None:
        metrics.CANARY_AGE.set_function(self.age)
        self._task = asyncio.create_task(self._run(), name="hubbub-fanout-canary")

    async def close(self) -> None:
        metrics.CANARY_AGE.set_function(lambda: 0.0)
        tasks = [self._task, *(probe.in_flight for probe in self.probes.values())]
        running = [task for task in tasks if task is not None]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def use(self, channels: Sequence[str]) -> None:
        """Send on these channels from now on; a new one starts as old as the oldest."""
        oldest = min((p.last_returned for p in self.probes.values()), default=self.started)
        probes = {}
        for channel in channels:
            key = channel.encode()
            probes[key] = self.probes.get(key) or _Probe(channel, self.ticks, oldest)
        self.probes = probes

    def age(self) -> float:
        """Seconds since a canary last came back, on the channel that has waited longest."""
        oldest = min(probe.last_returned for probe in self.probes.values())
        return max(0.0, self.clock() - oldest)

    def problem(self) -> str | None:
        """Why fan-out cannot be trusted now, in a sentence; None while canaries return."""
        if not any(probe.failing for probe in self.probes.values()):
            return None
        return f"fan-out through Redis delivered no canary for {self.age():.0f} s"

    async def watch(self, session: Coroutine[Any, Any, None]) -> None:
        """Run the bus's `session` (connect, subscribe, listen) until it fails, or until
        it is found stalled (StalledSubscription): connecting to a server that accepts and
        never answers stalls too, before any listening."""
        self.renewed()
        work = asyncio.create_task(session, name="hubbub-redis-session")
        stalled = asyncio.create_task(self.stalled.wait())
        try:
            await asyncio.wait((work, stalled), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, stalled):
                task.cancel()
            await asyncio.gather(work, stalled, return_exceptions=True)
        if work.done() and not work.cancelled() and (error := work.exception()):
            raise error  # the connection failed by itself
        raise StalledSubscription(self.problem() or "the fan-out canary stopped")

    def renewed(self) -> None:
        """The bus starts a new subscription: judge it on its own canaries (those on their
        way may have been published before it was in place)."""
        for probe in self.probes.values():
            probe.answered = self.ticks
        self.stalled.clear()

    def heard(self, probe: _Probe, data: bytes) -> None:
        """A payload arrived on `probe`'s channel: one of ours proves that it delivers."""
        if not data.startswith(self.token):
            return
        try:
            tick = int(data[len(self.token) :])
        except ValueError:
            return
        self.returned += 1
        probe.answered = max(probe.answered, tick)
        probe.last_returned = self.clock()
        probe.failing = False

    async def _run(self) -> None:
        while True:
            self._judge()
            self.ticks += 1
            for probe in self.probes.values():
                if probe.in_flight is None or probe.in_flight.done():
                    # At most one publish in flight: a hung Redis does not pile them up.
                    probe.in_flight = asyncio.create_task(self._publish(probe, self.ticks))
            await asyncio.sleep(self.interval)

    def _judge(self) -> None:
        now = self.clock()
        stalled = [
            probe
            for probe in self.probes.values()
            if self.ticks - probe.answered >= MISSES and now - probe.last_returned > self.deadline
        ]
        if not stalled or self.stalled.is_set():
            return
        for probe in stalled:
            probe.failing = True
        metrics.CANARY_FAILURES.inc()
        log.error(
            "fan-out through Redis delivered no canary; rebuilding the subscription",
            extra={
                "seconds": round(self.age(), 1),
                "channels": [probe.channel for probe in stalled],
            },
        )
        self.stalled.set()

    async def _publish(self, probe: _Probe, tick: int) -> None:
        try:
            await self.publish(probe.channel, self.token + str(tick).encode())
        except Exception as exc:  # Redis down: the missing canary says it; so do the logs
            metrics.BACKEND_ERRORS.labels("redis").inc()
            log.debug("canary publish failed", extra={"error": str(exc)})
