"""The scenarios of `hubbub bench URL`: fanout, connections, send and churn.

Each opens its connections through a fresh `LoadPool`, measures in windows of
about a second (so every scenario has its figures over time), and returns a
JSON-ready dict, plus the latency samples (milliseconds) kept aside for the
plots. Every window records whether the client side was the bottleneck
(`measure.Window.client_bound`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hubbub.bench.loadgen import ConnSpec
from hubbub.bench.measure import SATURATED, Window, measure
from hubbub.bench.pool import LoadPool
from hubbub.bench.remote import Observed

TICK = 1.0  # seconds per measured window
OUR_SHARE = 0.5  # our load processes' share of busy load CPUs that makes them the limit
SAMPLES_KEPT = 50_000  # latency samples kept per scenario for the plots


class Display(Protocol):
    """Where a scenario shows its progress (a rich progress display, or nothing)."""

    def start(self, description: str, total: float) -> None: ...

    def advance(self, amount: float, status: str = "") -> None: ...

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


def room_names(scenario: str, s: Settings, count: int) -> list[str]:
    return [f"{s.room_prefix}{scenario}-{r}" for r in range(count)]


def plan(scenario: str, s: Settings, users: int) -> list[ConnSpec]:
    """The connections (user index as token placeholder) a scenario opens."""
    if scenario == "fanout":
        rooms = room_names("fanout", s, s.rooms)
        # Member-major order spreads the senders over the workers.
        return [
            ConnSpec(str(m % users), room, sender=m < s.room_senders)
            for m in range(s.members)
            for room in rooms
        ]
    if scenario == "send":
        rooms = room_names("send", s, s.rooms)
        return [ConnSpec(str(i % users), rooms[i % len(rooms)], True) for i in range(s.senders)]
    if scenario == "connections":
        rooms = room_names("idle", s, s.rooms)
        return [ConnSpec(str(i % users), rooms[i % len(rooms)]) for i in range(s.connections)]
    if scenario == "churn":
        rooms = room_names("churn", s, s.rooms)
        return [ConnSpec(str(i % users), rooms[i % len(rooms)]) for i in range(s.churners)]
    raise ValueError(f"unknown scenario {scenario!r}")


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


def _kept(samples_ns: list[int]) -> list[float]:
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
        self.display.start(f"{what}: connecting", len(specs))
        size = max(self.s.concurrency, len(specs) // 20, 1)
        opened, seconds, failures = 0, 0.0, Counter[str]()
        for i in range(0, len(specs), size):
            part = self.pool.connect(specs[i : i + size], self.s.concurrency)
            opened += part["opened"]
            seconds += part["s"]
            failures.update(part["failures"])
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
        self.display.start(what, seconds)
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


def _merged(windows: list[Window], attribute: str) -> list[int]:
    merged: list[int] = []
    for w in windows:
        merged.extend(getattr(w, attribute))
    return merged


def fanout(server: Observed, tokens: list[str], s: Settings, display: Display) -> Outcome:
    """R rooms x M members: a fixed send rate, or a rate ramp to saturation."""
    sc = Scenario(server, tokens, s, display)
    window = s.window or 64
    try:
        connected = sc.connect(plan("fanout", s, len(tokens)), "fanout")
        if connected["failed"]:
            raise RuntimeError(f"{connected['failed']} connections failed: {connected['failures']}")
        before = totals(sc.pool)
        if s.rate is not None:
            figures, samples = _fanout_fixed(sc, s, window)
        else:
            figures, samples = _fanout_ramp(sc, s, window)
        sc.pool.set_rate(0, window, s.body_size)
        after = settle(sc.pool)
        sent, acked = after["sent"] - before["sent"], after["acks"] - before["acks"]
        figures |= {
            "rooms": s.rooms,
            "members": s.members,
            "senders_per_room": s.room_senders,
            "connections": connected["opened"],
            "sent": sent,
            "acked": acked,
            "deliveries": after["deliveries"] - before["deliveries"],
            "expected_deliveries": acked * s.members,
            "health": sc.health(),
        }
    finally:
        sc.close()
    return Outcome(figures, _kept(samples), "fanout: end-to-end (send to each receipt)")


def _fanout_fixed(sc: Scenario, s: Settings, window: int) -> tuple[dict[str, Any], list[int]]:
    assert s.rate is not None
    sc.pool.broadcast("record", share=s.latency_sample)
    sc.pool.set_rate(s.rate, window, s.body_size)
    series: list[dict[str, Any]] = []

    def status(w: Window) -> str:
        series.append(
            sc.step(
                w,
                rate_msgs_per_s=s.rate,
                delivered_per_s=round(w.rate(w.deliveries)),
                **latency_figures("e2e", w.latencies),
            )
        )
        return f"{w.rate(w.deliveries):,.0f} delivered/s"

    windows = sc.run_for(s.duration, f"fanout at {s.rate:g} msgs/s", status)
    sc.pool.broadcast("record", share=0.0)
    samples = _merged(windows, "latencies")
    seconds = sum(w.seconds for w in windows)
    figures = {
        "mode": "fixed",
        "rate_msgs_per_s": s.rate,
        "delivered_per_s": round(sum(w.deliveries for w in windows) / seconds) if seconds else 0,
        "throttled": sum(w.throttled for w in windows),
        **latency_figures("e2e", samples),
        "steps": series,
    }
    return figures, samples


def _fanout_ramp(sc: Scenario, s: Settings, window: int) -> tuple[dict[str, Any], list[int]]:
    steps: list[dict[str, Any]] = []
    best_samples: list[int] = []
    rate, best, flat = s.start_rate, 0.0, 0
    sc.pool.broadcast("record", share=s.latency_sample)
    sc.display.start("fanout: ramp to saturation", s.max_steps)
    # Saturated: short of the offered load and no longer growing; two such steps end it.
    while flat < 2 and len(steps) < s.max_steps:
        sc.pool.set_rate(rate, window, s.body_size)
        time.sleep(min(0.5, s.step_seconds / 3))
        w = sc.window(s.step_seconds)
        offered, delivered = rate * s.members, w.rate(w.deliveries)
        steps.append(
            sc.step(
                w,
                rate_msgs_per_s=round(rate, 1),
                offered_per_s=round(offered),
                delivered_per_s=round(delivered),
                throttled=w.throttled,
                **latency_figures("e2e", w.latencies),
            )
        )
        if delivered > best:
            best_samples = list(w.latencies)
        saturated = delivered < 0.9 * offered and delivered < 1.1 * best
        flat = flat + 1 if saturated else 0
        best = max(best, delivered)
        sc.display.advance(1, f"{rate:,.0f} msgs/s -> {delivered:,.0f} delivered/s")
        if not sc.server.alive():
            raise RuntimeError("the server died during the ramp")
        rate *= s.step
    sc.pool.broadcast("record", share=0.0)
    top = max(steps, key=lambda st: st["delivered_per_s"])
    figures = {
        "mode": "ramp",
        "delivered_per_s": top["delivered_per_s"],
        "rate_msgs_per_s": top["rate_msgs_per_s"],
        "e2e_p50_ms": top["e2e_p50_ms"],
        "e2e_p99_ms": top["e2e_p99_ms"],
        "e2e_p999_ms": top["e2e_p999_ms"],
        "saturated": flat >= 2,
        "client_bound_at_saturation": top["client_bound"],
        "steps": steps,
    }
    return figures, best_samples


def send(server: Observed, tokens: list[str], s: Settings, display: Display) -> Outcome:
    """S senders, each keeping a window of W sends in flight: send->ack throughput and latency."""
    sc = Scenario(server, tokens, s, display)
    window = s.window or 8
    try:
        connected = sc.connect(plan("send", s, len(tokens)), "send")
        if connected["failed"]:
            raise RuntimeError(f"{connected['failed']} connections failed: {connected['failures']}")
        before = totals(sc.pool)
        sc.pool.broadcast("pipeline", window=window, body_size=s.body_size)
        series: list[dict[str, Any]] = []

        def status(w: Window) -> str:
            series.append(
                sc.step(
                    w, acked_per_s=round(w.rate(w.acks)), **latency_figures("ack", w.ack_latencies)
                )
            )
            return f"{w.rate(w.acks):,.0f} acked/s"

        windows = sc.run_for(s.duration, f"send: {s.senders} senders, window {window}", status)
        sc.pool.broadcast("stop")
        after = settle(sc.pool)
    finally:
        sc.close()
    samples = _merged(windows, "ack_latencies")
    seconds = sum(w.seconds for w in windows)
    return Outcome(
        {
            "senders": s.senders,
            "rooms": s.rooms,
            "window": window,
            "acked_per_s": round(sum(w.acks for w in windows) / seconds) if seconds else 0,
            **latency_figures("ack", samples),
            "delivered_per_s": round(sum(w.deliveries for w in windows) / seconds)
            if seconds
            else 0,
            "sent": after["sent"] - before["sent"],
            "acked": after["acks"] - before["acks"],
            "steps": series,
            "health": sc.health(),
        },
        _kept(samples),
        "send: send to ack",
    )


def connections(server: Observed, tokens: list[str], s: Settings, display: Display) -> Outcome:
    """N idle connections (hello + join): connect rate, errors, the server's memory."""
    sc = Scenario(server, tokens, s, display)
    try:
        planned = plan("connections", s, len(tokens))
        # Warm the server's code paths so the first reading is not its cold start.
        warm = sc.pool.connect(sc.specs(planned[:20]), s.concurrency)
        time.sleep(0.5)
        rss_before, source = server.rss_kib()
        result = sc.connect(planned[20:], "connections")
        time.sleep(1.0)
        rss_after, _ = server.rss_kib()
        closed: Counter[str] = Counter()
        for snap in sc.pool.broadcast("snapshot"):
            closed.update(snap["closed"])
    finally:
        sc.close()
    opened = result["opened"]
    grown = rss_after - rss_before if rss_after is not None and rss_before is not None else None
    return Outcome(
        {
            "requested": s.connections,
            "opened": opened + warm["opened"],
            "failed_connections": result["failed"] + len(planned[:20]) - warm["opened"],
            "failures": result["failures"],
            "open_at_end": opened + warm["opened"] - closed.total(),
            "closed_by_server": dict(closed),
            "connects_per_s": round(opened / result["s"]) if result["s"] else None,
            "rss_source": source,
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "kib_per_connection": round(grown / opened, 2)
            if grown is not None and opened
            else None,
        }
    )


def churn(server: Observed, tokens: list[str], s: Settings, display: Display) -> Outcome:
    """C churners: connect, hello, join, leave, disconnect, again; cycles/s and errors."""
    sc = Scenario(server, tokens, s, display)
    try:
        before = totals(sc.pool)
        sc.pool.churn(sc.specs(plan("churn", s, len(tokens))))
        series: list[dict[str, Any]] = []

        def status(w: Window) -> str:
            series.append(
                sc.step(
                    w,
                    cycles_per_s=round(w.rate(w.cycles), 1),
                    cycle_errors=w.cycle_errors,
                    **latency_figures("cycle", w.cycle_latencies),
                )
            )
            return f"{w.rate(w.cycles):,.0f} cycles/s, {w.cycle_errors} errors"

        windows = sc.run_for(s.duration, f"churn: {s.churners} churners", status)
        sc.pool.broadcast("stop")
        after = totals(sc.pool)
    finally:
        sc.close()
    samples = _merged(windows, "cycle_latencies")
    seconds = sum(w.seconds for w in windows)
    return Outcome(
        {
            "churners": s.churners,
            "cycles": sum(w.cycles for w in windows),
            "cycles_per_s": round(sum(w.cycles for w in windows) / seconds, 1) if seconds else 0,
            "errors": sum(w.cycle_errors for w in windows),
            "cycles_total": after["cycles"] - before["cycles"],
            "errors_total": after["cycle_errors"] - before["cycle_errors"],
            **latency_figures("cycle", samples),
            "steps": series,
            "health": sc.health(),
        },
        _kept(samples),
        "churn: one connect-hello-join-leave-disconnect cycle",
    )


SCENARIOS: dict[str, Callable[[Observed, list[str], Settings, Display], Outcome]] = {
    "fanout": fanout,
    "connections": connections,
    "send": send,
    "churn": churn,
}
