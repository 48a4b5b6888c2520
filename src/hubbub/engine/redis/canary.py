"""A canary through the node's own subscription: fan-out that proves it still delivers.

A pub/sub connection can look alive (its socket open, its pings written) and deliver
nothing: a stuck proxy or load balancer, a half-open TCP connection after a failover, a
server that unsubscribed the node without telling it. Nothing fails, so nothing
reconnects, and rooms go silent while health checks stay green.

So every `interval` seconds the node publishes a small canary on a sharded channel of its
own (`canary_channel`), which it subscribes on the same pub/sub connection, with the same
SSUBSCRIBE, that carries its rooms; the publish goes the way room events go. When none of
its last `MISSES` canaries came back, and none for `MISSES` intervals:

- `problem` says so in a sentence, and `/readyz` answers 503 with it (the load balancer
  sends the node no new clients);
- `hubbub_fanout_canary_failures_total` counts it, and `hubbub_fanout_canary_age_seconds`
  (read at each scrape) shows how long it has been;
- `stalled` is set: the bus tears the subscription down and builds a new one, which syncs
  every room from the log as after a lost connection. A new subscription gets `MISSES`
  canaries of its own before it is judged again.

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
from collections.abc import Awaitable, Callable
from typing import Any

from hubbub import metrics

log = logging.getLogger(__name__)

MISSES = 3
"""Intervals without a returned canary before the subscription is judged stalled."""

Publish = Callable[[str, bytes], Awaitable[Any]]
"""Publishes a payload on a sharded channel (SPUBLISH), in order with the node's appends."""


def canary_channel(node_id: str) -> str:
    """The node's canary channel: its own hash tag, never the shape of a room's channel."""
    return f"hubbub:canary:{{{node_id}}}"


class Canary:
    """Publishes canaries, hears them come back, and judges the subscription (see above)."""

    def __init__(
        self,
        node_id: str,
        interval: float,
        publish: Publish,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel = canary_channel(node_id)
        self.channel_bytes = self.channel.encode()
        self.interval = interval
        self.publish = publish
        self.clock = clock
        self.token = secrets.token_bytes(8)
        self.ticks = 0  # canaries due so far (sent, or skipped while one is still in flight)
        self.answered = 0  # the latest tick whose canary came back, or forgiven (`subscribed`)
        self.returned = 0
        self.failing = False  # judged stalled, and no canary came back since
        self.last_returned = clock()  # a node just started gets MISSES intervals to prove itself
        self.stalled = asyncio.Event()  # the bus rebuilds its subscription when set
        self._task: asyncio.Task[None] | None = None
        self._in_flight: asyncio.Task[None] | None = None

    @property
    def deadline(self) -> float:
        return MISSES * self.interval

    def start(self) -> None:
        metrics.CANARY_AGE.set_function(self.age)
        self._task = asyncio.create_task(self._run(), name="hubbub-fanout-canary")

    async def close(self) -> None:
        metrics.CANARY_AGE.set_function(lambda: 0.0)
        tasks = [t for t in (self._task, self._in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def age(self) -> float:
        """Seconds since a canary of this process last came back."""
        return max(0.0, self.clock() - self.last_returned)

    def problem(self) -> str | None:
        """Why fan-out cannot be trusted now, in a sentence; None while canaries return."""
        if not self.failing:
            return None
        return f"fan-out through Redis delivered no canary for {self.age():.0f} s"

    def subscribed(self) -> None:
        """The bus (re)subscribed: judge the new subscription on its own canaries (those
        on their way may have been published before it was in place)."""
        self.answered = self.ticks
        self.stalled.clear()

    def heard(self, data: bytes) -> None:
        """A payload arrived on `channel`: one of ours proves the subscription delivers."""
        if not data.startswith(self.token):
            return
        try:
            tick = int(data[len(self.token) :])
        except ValueError:
            return
        self.returned += 1
        self.answered = max(self.answered, tick)
        self.last_returned = self.clock()
        self.failing = False

    async def _run(self) -> None:
        while True:
            self._judge()
            self.ticks += 1
            if self._in_flight is None or self._in_flight.done():
                # At most one publish in flight: a hung Redis does not pile them up.
                self._in_flight = asyncio.create_task(self._publish(self.ticks))
            await asyncio.sleep(self.interval)

    def _judge(self) -> None:
        missed = self.ticks - self.answered
        if missed < MISSES or self.age() <= self.deadline or self.stalled.is_set():
            return
        self.failing = True
        metrics.CANARY_FAILURES.inc()
        log.error(
            "fan-out through Redis delivered no canary; rebuilding the subscription",
            extra={"seconds": round(self.age(), 1), "missed": missed, "channel": self.channel},
        )
        self.stalled.set()

    async def _publish(self, tick: int) -> None:
        try:
            await self.publish(self.channel, self.token + str(tick).encode())
        except Exception as exc:  # Redis down: the missing canary says it; so do the logs
            metrics.BACKEND_ERRORS.labels("redis").inc()
            log.debug("canary publish failed", extra={"error": str(exc)})
