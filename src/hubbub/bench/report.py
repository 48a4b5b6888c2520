"""The printed report: one table of figures per target, hubbub as a ratio of the peer, warnings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hubbub.bench.measure import CONTENDED, SATURATED
from hubbub.bench.scenarios import Settings, lookup

BASELINE = "raw-aiohttp"
SUBJECT = "hubbub"
PHASES = ("window", "saturation", "slo", "half", "fixed")  # measured windows inside a result


@dataclass(frozen=True)
class Row:
    """One figure of the table and, optionally, its target."""

    scenario: str
    label: str
    key: str  # dotted path into the scenario's result
    digits: int = 0
    scale: float = 1.0
    goal: str = ""
    check: Callable[[float, float | None], bool] | None = None  # (value, ratio) -> met


def _rows(s: Settings) -> list[Row]:
    fan = f"{s.fan_rooms}x{s.fan_members}"
    fixed = f"{s.fan_fixed_rate:g} msgs/s"
    return [
        Row(
            "send-ack",
            f"acked msgs/s ({s.ack_senders} senders, window {s.ack_window})",
            "acked_per_s",
            goal=">= 5,000",
            check=lambda v, r: v >= 5000,
        ),
        Row("send-ack", "ack latency p50 (ms)", "ack_p50_ms", 2),
        Row("send-ack", "ack latency p99 (ms)", "ack_p99_ms", 2),
        Row("send-ack", f"deliveries/s ({s.ack_rooms} rooms)", "delivered_per_s"),
        Row("send-ack", "server process CPU %", "window.server_cpu", 0, 100),
        Row("send-ack", "load processes CPU %", "window.load_cpu", 0, 100),
        Row(
            "fanout",
            f"delivered msgs/s at saturation ({fan})",
            "saturation.delivered_per_s",
            goal=">= 65% of raw",
            check=lambda v, r: r is not None and r >= 0.65,
        ),
        Row("fanout", "sent msgs/s at saturation", "saturation.msgs_per_s", 1),
        Row(
            "fanout",
            f"delivered msgs/s with e2e p99 <= {s.slo_p99_ms:g} ms",
            "slo.delivered_per_s",
        ),
        Row("fanout", "  its e2e p99 (ms)", "slo.e2e_p99_ms", 2),
        Row("fanout", "server process CPU % at saturation", "saturation.server_cpu", 0, 100),
        Row("fanout", "load processes CPU % at saturation", "saturation.load_cpu", 0, 100),
        Row("fanout", "half saturation: sent msgs/s", "half.rate_msgs_per_s", 1),
        Row("fanout", "half saturation: e2e p50 (ms)", "half.e2e_p50_ms", 2),
        Row("fanout", "half saturation: e2e p99 (ms)", "half.e2e_p99_ms", 2),
        Row("fanout", f"at {fixed}: e2e p50 (ms)", "fixed.e2e_p50_ms", 2),
        Row("fanout", f"at {fixed}: e2e p99 (ms)", "fixed.e2e_p99_ms", 2),
        Row("fanout", f"at {fixed}: server process CPU %", "fixed.server_cpu", 0, 100),
        Row("connections", "idle connections open", "connections"),
        Row("connections", "RSS before (MiB)", "rss_before_kib", 1, 1 / 1024),
        Row("connections", "RSS after (MiB)", "rss_after_kib", 1, 1 / 1024),
        Row(
            "connections",
            "KiB per connection",
            "kib_per_connection",
            1,
            goal="< 25",
            check=lambda v, r: v < 25,
        ),
        Row("connections", "connects/s (hello + join)", "connects_per_s"),
    ]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _fmt(value: Any, row: Row) -> str:
    number = _number(value)
    return "-" if number is None else f"{number * row.scale:,.{row.digits}f}"


def _ms(value: Any) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:,.0f}" if number >= 10 else f"{number:.1f}"


def _table(header: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    rule = "  ".join("-" * w for w in widths)

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines)])


def _ratio(mine: float | None, base: float | None) -> float | None:
    return mine / base if mine is not None and base else None


def render(
    results: dict[str, dict[str, Any]],
    targets: list[str],
    s: Settings,
    earlier: str | None = None,
) -> str:
    """The table of figures, then notes and warnings.

    `earlier` names a target that is hubbub at another revision (`run.py --baseline`):
    the table then has a column with hubbub as a ratio of it too.
    """
    compare = SUBJECT in targets and BASELINE in targets
    versus = earlier if earlier in targets and SUBJECT in targets else None
    header = [
        "scenario",
        "metric",
        *targets,
        *(["hubbub/raw"] if compare else []),
        *([f"hubbub/{versus}"] if versus else []),
        "target",
        "met",
    ]
    lines: list[list[str]] = []
    for row in _rows(s):
        if row.scenario not in results:
            continue
        figures = {t: _number(lookup(results[row.scenario].get(t, {}), row.key)) for t in targets}
        cells = [row.scenario, row.label, *(_fmt(figures[t], row) for t in targets)]
        mine = figures.get(SUBJECT)
        ratio = _ratio(mine, figures.get(BASELINE))
        if compare:
            cells.append("-" if ratio is None else f"{ratio:.0%}")
        if versus:
            then = _ratio(mine, figures.get(versus))
            cells.append("-" if then is None else f"{then:.1%}")
        met = ""
        if row.check is not None and mine is not None:
            met = "yes" if row.check(mine, ratio) else "NO"
        lines.append([*cells, row.goal, met])
    return "\n".join([_table(header, lines), *_notes(results, targets)])


def _phase_notes(where: str, phase: dict[str, Any]) -> list[str]:
    notes = []
    if phase.get("client_bound"):
        server_too = phase.get("server_cpus_busy", 0) >= SATURATED
        notes.append(
            f"WARNING {where}: the load CPU was saturated (busy {phase['load_cpus_busy']:.0%}, "
            f"our load processes {phase['load_cpu']:.0%}, the busiest one "
            f"{phase.get('worker_cpu_max', 0):.0%} of a CPU): the figure may be client-bound"
            + (" (the server's CPU was saturated too)" if server_too else "")
        )
    if phase.get("server_cpus_others", 0) > CONTENDED:
        notes.append(
            f"NOTE {where}: other processes and interrupts took "
            f"{phase['server_cpus_others']:.0%} of the server's CPU: the figure is noisy"
        )
    if phase.get("errors"):
        notes.append(f"WARNING {where}: {phase['errors']} error frames: {phase['error_samples']}")
    if phase.get("closed_connections"):
        notes.append(
            f"WARNING {where}: connections closed by the server (close code: count) "
            f"{phase['closed_connections']}"
        )
    if phase.get("server_alive") is False:
        notes.append(f"WARNING {where}: the server process died")
    return notes


def _notes(results: dict[str, dict[str, Any]], targets: list[str]) -> list[str]:
    notes: list[str] = []
    for scenario, per_target in results.items():
        for t in targets:
            r = per_target.get(t, {})
            where = f"{t} {scenario}"
            if "failed" in r:
                notes.append(f"FAILED {where}: {r['failed']}")
                if r.get("server_log_tail"):
                    tail = r["server_log_tail"].replace("\n", "\n    ")
                    notes.append(f"  server log tail:\n    {tail}")
                continue
            for phase in PHASES:
                if isinstance(r.get(phase), dict):
                    label = where if phase == "window" else f"{where} ({phase})"
                    notes.extend(_phase_notes(label, r[phase]))
            if r.get("server_exit_code") not in (0, None):
                notes.append(f"NOTE {where}: server exit code {r['server_exit_code']} on SIGTERM")
            if "steps" in r:
                ramp = ", ".join(
                    f"{st['rate_msgs_per_s']:g}->{st['delivered_per_s']:,}"
                    f" ({_ms(st['e2e_p99_ms'])})"
                    for st in r["steps"]
                )
                notes.append(f"ramp {t}, sent msgs/s offered -> delivered/s (e2e p99 ms): {ramp}")
    return notes
