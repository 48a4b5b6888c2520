"""Measurement windows: what the load processes and the server did between two snapshots.

Besides counts and latencies, a window records how busy the server's and the
load generator's CPUs were (every process counted, from /proc/stat) and how
much of that was our own processes: on a shared machine these say whether a
figure is the server's, the client's, or the neighbours'.
"""

from __future__ import annotations

import statistics
import time
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hubbub.bench import procstat
from hubbub.bench.pool import LoadPool


class Server(Protocol):
    """What a measurement reads of the server under test (its process, when it is local)."""

    @property
    def cpus(self) -> list[int]:
        """The CPUs the server runs on (empty: unknown, e.g. a remote server)."""
        ...

    def alive(self) -> bool: ...

    def cpu_seconds(self) -> float: ...

    def wait_seconds(self) -> float: ...


SATURATED = 0.95  # a CPU busier than this (any process) had nothing left to give
CONTENDED = 0.15  # other work took this share of the server's CPU: a noisy figure


def percentile_ms(values: array[int], q: float) -> float | None:
    """Nearest-rank percentile of nanosecond samples, in milliseconds."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


@dataclass
class Window:
    """What every worker did between two snapshots, summed, and the CPUs' state."""

    seconds: float
    deliveries: int
    acks: int
    sent: int
    errors: int
    throttled: int
    load_cpu: float  # our load processes' CPU time, as a share of the load CPUs
    worker_cpu_max: float  # the busiest load process's CPU time, as a share of one CPU
    load_cpus_busy: float  # the load CPUs' busy share, every process counted
    server_cpu: float  # the server process's CPU time, as a share of one CPU
    server_cpus_busy: float  # the server CPUs' busy share, every process counted
    server_wait: float  # server threads' time waiting for a CPU (for each other too)
    server_cpu_count: int
    latencies: array[int]
    ack_latencies: array[int]
    error_samples: Counter[str]
    closed: Counter[str]
    cycles: int = 0  # churn cycles completed
    cycle_errors: int = 0
    cycle_latencies: array[int] = field(default_factory=lambda: array("q"))

    def rate(self, count: int) -> float:
        return count / self.seconds if self.seconds > 0 else 0.0

    @property
    def client_bound(self) -> bool:
        """The client may have been the limit: the load CPUs were saturated, or one load
        process (one event loop: one CPU at most) was."""
        return self.load_cpus_busy >= SATURATED or self.worker_cpu_max >= SATURATED

    @property
    def server_cpus_others(self) -> float:
        """Share of the server's CPUs taken by other processes and interrupts."""
        return max(0.0, self.server_cpus_busy - self.server_cpu / self.server_cpu_count)

    def health(self, server: Server) -> dict[str, Any]:
        """Errors, closed connections and CPU figures worth keeping with a result."""
        return {
            "errors": self.errors,
            "error_samples": dict(self.error_samples.most_common(5)),
            "closed_connections": dict(self.closed),
            "server_alive": server.alive(),
            "load_cpu": round(self.load_cpu, 3),
            "worker_cpu_max": round(self.worker_cpu_max, 3),
            "load_cpus_busy": round(self.load_cpus_busy, 3),
            "server_cpu": round(self.server_cpu, 3),
            "server_cpus_busy": round(self.server_cpus_busy, 3),
            "server_cpus_others": round(self.server_cpus_others, 3),
            "server_wait": round(self.server_wait, 3),
            "client_bound": self.client_bound,
        }


def _busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    busy, total = after[0] - before[0], after[1] - before[1]
    return busy / total if total else 0.0


def measure(
    pool: LoadPool,
    server: Server,
    seconds: float,
    load_cpus: list[int],
    action: Callable[[], object] | None = None,
) -> Window:
    """Snapshot, wait (or do `action`), snapshot: the load and the server's work in between."""
    before = pool.broadcast("snapshot")
    cpu0, wait0 = server.cpu_seconds(), server.wait_seconds()
    load0, srv0 = procstat.cpu_jiffies(load_cpus), procstat.cpu_jiffies(server.cpus)
    if action is None:
        time.sleep(seconds)
    else:
        action()
    after = pool.broadcast("snapshot")
    cpu1, wait1 = server.cpu_seconds(), server.wait_seconds()
    load1, srv1 = procstat.cpu_jiffies(load_cpus), procstat.cpu_jiffies(server.cpus)
    pairs = list(zip(before, after, strict=True))
    elapsed = statistics.fmean(b["t"] - a["t"] for a, b in pairs)
    lat, ack_lat, cycle_lat = array("q"), array("q"), array("q")
    samples: Counter[str] = Counter()
    closed: Counter[str] = Counter()
    for b in after:
        lat.frombytes(b["latencies"])
        ack_lat.frombytes(b["ack_latencies"])
        cycle_lat.frombytes(b["cycle_latencies"])
        samples.update(b["error_samples"])
        closed.update(b["closed"])

    def delta(key: str) -> Any:
        return sum(b[key] - a[key] for a, b in pairs)

    return Window(
        seconds=elapsed,
        deliveries=delta("deliveries"),
        acks=delta("acks"),
        sent=delta("sent"),
        errors=delta("errors"),
        throttled=delta("throttled"),
        load_cpu=delta("cpu") / (elapsed * max(1, len(load_cpus))),
        worker_cpu_max=max((b["cpu"] - a["cpu"]) / elapsed for a, b in pairs) if elapsed else 0.0,
        load_cpus_busy=_busy_share(load0, load1),
        server_cpu=(cpu1 - cpu0) / elapsed,
        server_cpus_busy=_busy_share(srv0, srv1),
        server_wait=(wait1 - wait0) / elapsed,
        server_cpu_count=max(1, len(server.cpus)),
        latencies=lat,
        ack_latencies=ack_lat,
        error_samples=samples,
        closed=closed,
        cycles=delta("cycles"),
        cycle_errors=delta("cycle_errors"),
        cycle_latencies=cycle_lat,
    )


def drain(pool: LoadPool, quiet: float = 0.5, limit: float = 15.0) -> None:
    """Wait until no more deliveries arrive (the server's backlog is gone)."""
    deadline, last = time.monotonic() + limit, -1
    while time.monotonic() < deadline:
        count = sum(r["deliveries"] for r in pool.broadcast("snapshot"))
        if count == last:
            return
        last = count
        time.sleep(quiet)
