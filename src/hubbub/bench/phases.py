"""What the scenarios of `hubbub bench` share: settings, connecting, measured windows, health.

A `Scenario` owns a fresh `LoadPool` on the target's endpoint; it opens
connections in slices (so progress shows), measures in windows of about a
second (so every scenario has its figures over time), and sums up errors and
whether the client side was the bottleneck.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hubbub.bench.accounts import Answer
from hubbub.bench.loadgen import ConnSpec
from hubbub.bench.measure import SATURATED, Window, measure
from hubbub.bench.pool import LoadPool
from hubbub.bench.remote import Observed

TICK = 1.0  # seconds per measured window
OUR_SHARE = 0.5  # our load processes' share of busy load CPUs that makes them the limit
STALL_SECONDS = 5.0  # a phase without progress this long is explained (then at 2x, 4x, ...)
SAMPLES_KEPT = 50_000  # latency samples kept per scenario for the plots


class Display(Protocol):
    """Where a scenario shows its progress (output.Display: bars, lines, or nothing) and
    the server's answers that would explain a stall."""

    def start(self, description: str, total: float, unit: str = "", waiting: str = "") -> None: ...

    def advance(self, amount: float, status: str = "") -> None: ...

    def answered(self, answer: Answer) -> None: ...

    def note(self, text: str) -> None: ...


@dataclass(frozen=True)
class Settings:
    """Sizes and durations (the command-line flags)."""

    workers: int
    load_cpus: list[int]
    rooms: int
    members: int
    room_senders: int
    senders: int
    window: int | None
    rate: float | None
    duration: float
    start_rate: float
    step: float
    step_seconds: float
    max_steps: int
    body_size: int
    latency_sample: float
    connections: int
    concurrency: int
    churners: int
    room_prefix: str


@dataclass
class Outcome:
    """A scenario's figures, and the raw latencies (ms) for the plots."""

    figures: dict[str, Any]
    latencies_ms: list[float] = field(default_factory=list)
    latency_label: str = ""


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


def latency_figures(prefix: str, samples_ns: Any) -> dict[str, float | None]:
    ordered = sorted(v / 1e6 for v in samples_ns)
    return {
        f"{prefix}_p50_ms": percentile(ordered, 0.50),
        f"{prefix}_p99_ms": percentile(ordered, 0.99),
        f"{prefix}_p999_ms": percentile(ordered, 0.999),
        f"{prefix}_samples": len(ordered),
    }


def kept(samples_ns: list[int]) -> list[float]:
    step = max(1, len(samples_ns) // SAMPLES_KEPT)
    return [v / 1e6 for v in samples_ns[::step]]


def totals(pool: LoadPool) -> Counter[str]:
    """Cumulative counts of every worker (snapshots also hand over latency samples)."""
    keys = ("deliveries", "acks", "sent", "errors", "cycles", "cycle_errors", "outstanding")
    count: Counter[str] = Counter()
    for snap in pool.broadcast("snapshot"):
        for key in keys:
            count[key] += snap[key]
    return count


def settle(pool: LoadPool, quiet: float = 0.25, limit: float = 30.0) -> Counter[str]:
    """Wait until every send is acked and deliveries stopped: the final totals."""
    deadline, last = time.monotonic() + limit, Counter[str]()
    while True:
        now = totals(pool)
        if (now["outstanding"] == 0 and now == last) or time.monotonic() > deadline:
            return now
        last = now
        time.sleep(quiet)


class Scenario:
    """What every scenario shares: the pool, the server, the settings, the display."""

    def __init__(self, server: Observed, tokens: list[str], s: Settings, display: Display) -> None:
        self.server, self.tokens, self.s, self.display = server, tokens, s, display
        self.pool = LoadPool(server.target.endpoint, s.workers, s.load_cpus)
        self.windows: list[Window] = []
        self.started = time.monotonic()

    def close(self) -> None:
        self.pool.close()

    def specs(self, planned: list[ConnSpec]) -> list[ConnSpec]:
        return [spec._replace(token=self.tokens[int(spec.token)]) for spec in planned]

    def connect(self, planned: list[ConnSpec], what: str) -> dict[str, Any]:
        """Open the connections in slices (so progress shows); count failures, do not raise."""
        specs = self.specs(planned)
        self.display.start(
            f"{what}: connecting",
            len(specs),
            "connections",
            "the server's answers to handshakes, hellos and joins",
        )
        size = max(self.s.concurrency, len(specs) // 20, 1)
        opened, seconds, failures = 0, 0.0, Counter[str]()
        for i in range(0, len(specs), size):
            part = self.pool.connect(specs[i : i + size], self.s.concurrency)
            opened += part["opened"]
            seconds += part["s"]
            failures.update(part["failures"])
            for failure, _ in Counter(part["failures"]).most_common(1):
                self.display.answered(Answer(failure))
            self.display.advance(len(specs[i : i + size]), f"{opened:,} open")
        return {
            "opened": opened,
            "failed": failures.total(),
            "failures": dict(failures),
            "s": seconds,
        }

    def window(self, seconds: float) -> Window:
        w = measure(self.pool, self.server, seconds, self.s.load_cpus)
        self.windows.append(w)
        return w

    def step(self, w: Window, **figures: Any) -> dict[str, Any]:
        """One point of a time series."""
        return {
            "t": round(time.monotonic() - self.started, 2),
            **figures,
            "errors": w.errors,
            "load_cpus_busy": round(w.load_cpus_busy, 3),
            "worker_cpu_max": round(w.worker_cpu_max, 3),
            "server_cpu": round(w.server_cpu, 3),
            "client_bound": client_bound(w),
            "cpus_saturated": cpus_saturated(w),
        }

    def health(self) -> dict[str, Any]:
        """Errors over every window, and whether (and how often) the client was the limit."""
        errors: Counter[str] = Counter()
        closed: Counter[str] = Counter()
        for w in self.windows:
            errors.update(w.error_samples)
            closed.update(w.closed)
        bound = [w for w in self.windows if client_bound(w)]
        return {
            "error_frames": sum(w.errors for w in self.windows),
            "error_samples": dict(errors.most_common(5)),
            "closed_connections": dict(closed),
            "windows": len(self.windows),
            "client_bound_windows": len(bound),
            "cpus_saturated_windows": sum(cpus_saturated(w) for w in self.windows),
            "worker_cpu_max": round(max((w.worker_cpu_max for w in self.windows), default=0), 3),
            "load_cpus_busy_max": round(
                max((w.load_cpus_busy for w in self.windows), default=0), 3
            ),
            "server_alive": self.server.alive(),
        }

    def run_for(self, seconds: float, what: str, each: Callable[[Window], str]) -> list[Window]:
        """Measure `seconds` in windows of TICK, showing `each(window)` as the status."""
        self.display.start(what, seconds, "s", "the load workers' figures")
        done, windows = 0.0, []
        while done < seconds - 1e-9:
            tick = min(TICK, seconds - done)
            w = self.window(tick)
            windows.append(w)
            done += tick
            self.display.advance(tick, each(w))
        return windows


def client_bound(w: Window) -> bool:
    """The load generator was the limit: one of its processes (one event loop) filled its
    CPU, or the load CPUs were saturated mostly by its processes."""
    return w.worker_cpu_max >= SATURATED or (
        w.load_cpus_busy >= SATURATED and w.load_cpu >= OUR_SHARE
    )


def cpus_saturated(w: Window) -> bool:
    """The load CPUs were saturated by something else (a local server, other processes)."""
    return w.load_cpus_busy >= SATURATED and not client_bound(w)


def merged(windows: list[Window], attribute: str) -> list[int]:
    merged: list[int] = []
    for w in windows:
        merged.extend(getattr(w, attribute))
    return merged
