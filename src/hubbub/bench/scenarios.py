"""The three benchmark scenarios: send->ack, fan-out and idle connections.

Each takes a running server, the account tokens and the settings, drives a
fresh `LoadPool` and returns plain figures (a JSON-ready dict); the CPU and
error state of each measured window is kept beside its figures.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from hubbub.bench import measure as measuring
from hubbub.bench.loadgen import ConnSpec
from hubbub.bench.measure import drain, measure, percentile_ms
from hubbub.bench.pool import LoadPool
from hubbub.bench.wsclient import Endpoint


class Server(measuring.Server, Protocol):
    """A local server process on 127.0.0.1 (benchmarks/target.py's `Server`)."""

    @property
    def port(self) -> int: ...

    def rss_kib(self) -> int: ...


RAMP_LATENCY_SAMPLE = 0.02  # share of connections timing latency during the ramp


@dataclass(frozen=True)
class Settings:
    """Sizes and durations of every scenario (the command-line flags)."""

    workers: int
    load_cpus: list[int]
    users: int
    body_size: int
    ack_senders: int
    ack_rooms: int
    ack_window: int
    ack_seconds: float
    fan_rooms: int
    fan_members: int
    fan_senders: int
    fan_window: int
    fan_start_rate: float
    fan_step: float
    fan_step_seconds: float
    fan_latency_seconds: float
    fan_fixed_rate: float
    slo_p99_ms: float
    latency_sample: float
    idle_connections: int
    idle_rooms: int
    connect_concurrency: int
    warmup: float = 2.0


def rooms_needed(s: Settings) -> list[str]:
    return (
        [f"ack-{i}" for i in range(s.ack_rooms)]
        + [f"fan-{i}" for i in range(s.fan_rooms)]
        + [f"idle-{i}" for i in range(s.idle_rooms)]
    )


def _connect(pool: LoadPool, specs: list[ConnSpec], s: Settings) -> dict[str, Any]:
    result = pool.connect(specs, s.connect_concurrency)
    if result["failures"]:
        raise RuntimeError(f"{len(specs) - result['opened']} connections failed: {result}")
    return result


def send_ack(server: Server, tokens: list[str], s: Settings) -> dict[str, Any]:
    """N senders in a few rooms, each keeping a window of sends outstanding."""
    pool = LoadPool(Endpoint.local(server.port), s.workers, s.load_cpus)
    try:
        specs = [
            ConnSpec(tokens[i % len(tokens)], f"ack-{i % s.ack_rooms}", sender=True)
            for i in range(s.ack_senders)
        ]
        _connect(pool, specs, s)
        pool.broadcast("pipeline", window=s.ack_window, body_size=s.body_size)
        time.sleep(s.warmup)
        w = measure(pool, server, s.ack_seconds, s.load_cpus)
        pool.broadcast("stop")
    finally:
        pool.close()
    return {
        "acked_per_s": w.rate(w.acks),
        "ack_p50_ms": percentile_ms(w.ack_latencies, 0.50),
        "ack_p99_ms": percentile_ms(w.ack_latencies, 0.99),
        "delivered_per_s": w.rate(w.deliveries),
        "window": w.health(server),
    }


def _ramp(pool: LoadPool, server: Server, s: Settings) -> list[dict[str, Any]]:
    """Raise the send rate step by step until deliveries stop following it."""
    steps: list[dict[str, Any]] = []
    rate, best, flat = s.fan_start_rate, 0.0, 0
    pool.broadcast("record", share=RAMP_LATENCY_SAMPLE)
    # Saturated: short of the offered load and no longer growing. Two such steps in a
    # row end the ramp (one can be a hiccup of a noisy machine).
    while flat < 2 and len(steps) < 40:
        pool.set_rate(rate, s.fan_window, s.body_size)
        time.sleep(min(0.5, s.fan_step_seconds / 3))
        w = measure(pool, server, s.fan_step_seconds, s.load_cpus)
        offered, delivered = rate * s.fan_members, w.rate(w.deliveries)
        steps.append(
            {
                "rate_msgs_per_s": round(rate, 1),
                "offered_per_s": round(offered),
                "delivered_per_s": round(delivered),
                "msgs_per_s": round(delivered / s.fan_members, 1),
                "throttled": w.throttled,
                "e2e_p50_ms": percentile_ms(w.latencies, 0.50),
                "e2e_p99_ms": percentile_ms(w.latencies, 0.99),
                **w.health(server),
            }
        )
        saturated = delivered < 0.9 * offered and delivered < 1.1 * best
        flat = flat + 1 if saturated else 0
        best = max(best, delivered)
        if not server.alive():
            raise RuntimeError("server died during the fan-out ramp")
        rate *= s.fan_step
    pool.broadcast("record", share=0.0)
    pool.set_rate(0, s.fan_window, s.body_size)
    drain(pool)
    return steps


def _latency_at(pool: LoadPool, server: Server, rate: float, s: Settings) -> dict[str, Any]:
    """End-to-end latency (send to each receipt) at a steady send rate."""
    pool.set_rate(rate, s.fan_window, s.body_size)
    time.sleep(1.0)
    # Sampling a share of the connections keeps the client's cost of timing low.
    pool.broadcast("record", share=s.latency_sample)
    w = measure(pool, server, s.fan_latency_seconds, s.load_cpus)
    pool.broadcast("record", share=0.0)
    pool.set_rate(0, s.fan_window, s.body_size)
    drain(pool)
    return {
        "rate_msgs_per_s": round(rate, 1),
        "delivered_per_s": round(w.rate(w.deliveries)),
        "e2e_p50_ms": percentile_ms(w.latencies, 0.50),
        "e2e_p99_ms": percentile_ms(w.latencies, 0.99),
        "samples": len(w.latencies),
        **w.health(server),
    }


def fanout(server: Server, tokens: list[str], s: Settings) -> dict[str, Any]:
    """Rooms of many members: saturation by a rate ramp, then latency at two rates."""
    pool = LoadPool(Endpoint.local(server.port), s.workers, s.load_cpus)
    try:
        # Member-major order spreads the senders over the workers.
        specs = [
            ConnSpec(tokens[m % len(tokens)], f"fan-{r}", sender=m < s.fan_senders)
            for m in range(s.fan_members)
            for r in range(s.fan_rooms)
        ]
        connected = _connect(pool, specs, s)
        steps = _ramp(pool, server, s)
        saturation = max(steps, key=lambda step: step["delivered_per_s"])
        within_slo = [
            st for st in steps if st["e2e_p99_ms"] is not None and st["e2e_p99_ms"] <= s.slo_p99_ms
        ]
        slo = max(within_slo, key=lambda step: step["delivered_per_s"], default=None)
        half = _latency_at(pool, server, saturation["msgs_per_s"] / 2, s)
        fixed = _latency_at(pool, server, s.fan_fixed_rate, s) if s.fan_fixed_rate else None
    finally:
        pool.close()
    return {
        "connections": connected["opened"],
        "saturation": saturation,
        "slo": slo,
        "half": half,
        "fixed": fixed,
        "steps": steps,
    }


def idle_connections(server: Server, tokens: list[str], s: Settings) -> dict[str, Any]:
    """Many idle authenticated connections, each joined to one room: memory and connect rate."""
    pool = LoadPool(Endpoint.local(server.port), s.workers, s.load_cpus)
    try:
        # Warm the server's code paths so the baseline RSS is not its cold start.
        warm = [ConnSpec(tokens[i % len(tokens)], "idle-0") for i in range(20)]
        _connect(pool, warm, s)
        time.sleep(0.5)
        rss_before = server.rss_kib()
        specs = [
            ConnSpec(tokens[i % len(tokens)], f"idle-{i % s.idle_rooms}")
            for i in range(s.idle_connections)
        ]
        result: dict[str, Any] = {}
        w = measure(pool, server, 0, s.load_cpus, lambda: result.update(_connect(pool, specs, s)))
        time.sleep(2.0)
        rss_after = server.rss_kib()
        closed: Counter[str] = Counter()  # still all open?
        for snapshot in pool.broadcast("snapshot"):
            closed.update(snapshot["closed"])
    finally:
        pool.close()
    opened = result["opened"]
    return {
        "connections": opened - closed.total(),
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "kib_per_connection": (rss_after - rss_before) / opened if opened else None,
        "connects_per_s": opened / result["s"] if result["s"] else None,
        "window": w.health(server) | {"closed_connections": dict(closed)},
    }


SCENARIOS = {"send-ack": send_ack, "fanout": fanout, "connections": idle_connections}
# The figure that picks the best of repeated runs (noise from other processes only slows).
PRIMARY = {
    "send-ack": "acked_per_s",
    "fanout": "saturation.delivered_per_s",
    "connections": "connects_per_s",
}


def lookup(result: dict[str, Any], key: str) -> Any:
    """A figure by dotted path (`saturation.delivered_per_s`); None when absent."""
    value: Any = result
    for part in key.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def best_run(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the highest primary figure; a failure only if every run failed."""
    good = [r for r in runs if "failed" not in r]
    if not good:
        return runs[-1]
    return max(good, key=lambda r: lookup(r, PRIMARY[name]) or 0)
