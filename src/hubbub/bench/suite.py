"""The scenarios of `hubbub bench URL`: fanout, connections, send and churn.

Each drives a `phases.Scenario` and returns an `Outcome`: a JSON-ready dict of
figures (with a time series of about one point a second), plus the latency
samples (milliseconds) kept aside for the plots.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from hubbub.bench.loadgen import ConnSpec
from hubbub.bench.measure import Window
from hubbub.bench.phases import (
    Display,
    Outcome,
    Scenario,
    Settings,
    kept,
    latency_figures,
    merged,
    settle,
    totals,
)
from hubbub.bench.remote import Observed

__all__ = ["SCENARIOS", "Display", "Outcome", "Settings", "plan"]


def warmup(s: Settings) -> float:
    """Seconds of load before the first measured window (connections warm, pacers steady)."""
    return min(1.0, s.duration / 5)


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
    return Outcome(figures, kept(samples), "fanout: end-to-end (send to each receipt)")


def _fanout_fixed(sc: Scenario, s: Settings, window: int) -> tuple[dict[str, Any], list[int]]:
    assert s.rate is not None
    sc.pool.broadcast("record", share=s.latency_sample)
    sc.pool.set_rate(s.rate, window, s.body_size)
    time.sleep(warmup(s))
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
    samples = merged(windows, "latencies")
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
    sc.display.start(
        "fanout: ramp to saturation", s.max_steps, "steps", "the load workers' figures"
    )
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
        time.sleep(warmup(s))
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
    samples = merged(windows, "ack_latencies")
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
        kept(samples),
        "send: send to ack",
    )


def connections(server: Observed, tokens: list[str], s: Settings, display: Display) -> Outcome:
    """N idle connections (hello + join): connect rate, errors, the server's memory."""
    sc = Scenario(server, tokens, s, display)
    try:
        planned = plan("connections", s, len(tokens))
        # Warm the server's code paths so the first reading is not its cold start.
        warm = sc.pool.connect(sc.specs(planned[:20]), s.concurrency)
        time.sleep(0.2)
        rss_before, source = server.rss_kib()
        result = sc.connect(planned[20:], "connections")
        time.sleep(0.5)  # connections the server drops soon after their join count as closed
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
            "failures": dict(Counter(warm["failures"]) + Counter(result["failures"])),
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
    samples = merged(windows, "cycle_latencies")
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
        kept(samples),
        "churn: one connect-hello-join-leave-disconnect cycle",
    )


SCENARIOS: dict[str, Callable[[Observed, list[str], Settings, Display], Outcome]] = {
    "fanout": fanout,
    "connections": connections,
    "send": send,
    "churn": churn,
}
