"""What `hubbub bench` shows: progress while it runs (bars on a terminal, plain lines
elsewhere) with stalls explained, then a summary table, warnings, plots."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from hubbub.bench import suite
from hubbub.bench.accounts import Answer
from hubbub.bench.phases import STALL_SECONDS

PLAIN_EVERY = 5.0  # seconds between the progress lines of a display that is no terminal


def _amount(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"


class Display:
    """Progress on stderr, phase by phase, and a watch that explains a stall: when a phase
    has not moved for `stall` seconds, a line says where it stands, what it waits for and
    the server's last answer (with the flag of the server's limit behind a refusal)."""

    def __init__(self, console: Console, stall: float = STALL_SECONDS) -> None:
        self.console = console
        self.stall = stall
        self.lock = threading.RLock()
        self.description, self.unit, self.waiting = "", "", ""
        self.total = self.done = 0.0
        self.status = ""
        self.phase = False
        self.moved = self.heard = 0.0  # monotonic times of the last progress and answer
        self.last: Answer | None = None
        self.explained = 0  # stall lines said since the phase last moved
        self.stopped = threading.Event()
        self.watch = threading.Thread(target=self._watch, name="bench-stall", daemon=True)

    def __enter__(self) -> Display:
        self.watch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()
        self.stopped.set()
        self.watch.join()

    def start(self, description: str, total: float, unit: str = "", waiting: str = "") -> None:
        """A new phase of `total` steps of `unit`; `waiting` names what its steps wait for."""
        with self.lock:
            self.finish()
            self.description, self.total, self.unit, self.waiting = (
                description,
                total,
                unit,
                waiting,
            )
            self.done, self.status, self.phase = 0.0, "", True
            self.moved, self.explained = time.monotonic(), 0
            self._started()

    def advance(self, amount: float, status: str = "") -> None:
        with self.lock:
            if not self.phase:
                return
            self.done += amount
            self.status = status or self.status
            if amount > 0:
                self.moved, self.explained = time.monotonic(), 0
            self._advanced(amount, status)

    def answered(self, answer: Answer) -> None:
        """The server's latest answer, for a stall's explanation."""
        with self.lock:
            self.last, self.heard = answer, time.monotonic()

    def finish(self) -> None:
        with self.lock:
            if self.phase:
                self.phase = False
                self._finished()

    def note(self, text: str) -> None:
        with self.lock:
            self.console.print(text, soft_wrap=True, highlight=False)

    def position(self) -> str:
        """Where the phase stands: "fanout: connecting: 37/100 connections (35 open)"."""
        unit = f" {self.unit}" if self.unit else ""
        status = f" ({self.status})" if self.status else ""
        return f"{self.description}: {_amount(self.done)}/{_amount(self.total)}{unit}{status}"

    def stalled(self, now: float) -> str:
        """The explanation of a phase that has not moved since `self.moved`."""
        waiting = f", waiting for {self.waiting}" if self.waiting else ""
        line = f"{self.position()} for {now - self.moved:.0f} s{waiting}; "
        if self.last is None:
            return line + "no answer from the server yet"
        line += f"the server's last answer ({now - self.heard:.0f} s ago): {self.last.text}"
        return line + (f"; {self.last.hint}" if self.last.hint else "")

    def _watch(self) -> None:
        while not self.stopped.wait(min(0.25, self.stall / 4)):
            with self.lock:
                now = time.monotonic()
                if self.phase and now - self.moved >= self.stall * 2**self.explained:
                    self.explained += 1
                    self.console.print(
                        self.stalled(now), markup=False, soft_wrap=True, highlight=False
                    )

    def _started(self) -> None: ...

    def _advanced(self, amount: float, status: str) -> None: ...

    def _finished(self) -> None: ...


class RichDisplay(Display):
    """Progress bars on a terminal: one per phase, the current figure beside it."""

    def __init__(self, console: Console, enabled: bool, stall: float = STALL_SECONDS) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
            transient=False,
        )
        super().__init__(self.progress.console, stall)
        self.task: TaskID | None = None

    def __enter__(self) -> RichDisplay:
        self.progress.start()
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self.progress.stop()

    def _started(self) -> None:
        self.task = self.progress.add_task(self.description, total=self.total, status="")

    def _advanced(self, amount: float, status: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=amount, status=status)

    def _finished(self) -> None:
        if self.task is not None:
            task = self.progress.tasks[self.task]
            self.progress.update(self.task, completed=task.total)
            self.task = None


class PlainDisplay(Display):
    """Progress for a log or a pipe: plain lines, one when a phase starts, then at most one
    every PLAIN_EVERY seconds, and one when it ends; no control characters."""

    def __init__(self, console: Console, enabled: bool, stall: float = STALL_SECONDS) -> None:
        super().__init__(console, stall)
        self.enabled = enabled
        self.shown = 0.0  # monotonic time of the last line
        self.begun = 0.0

    def _line(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, markup=False, soft_wrap=True, highlight=False)
            self.shown = time.monotonic()

    def _started(self) -> None:
        self.begun = time.monotonic()
        self._line(self.position())

    def _advanced(self, amount: float, status: str) -> None:
        if time.monotonic() - self.shown >= PLAIN_EVERY:
            self._line(self.position())

    def _finished(self) -> None:
        self._line(f"{self.position()}, {time.monotonic() - self.begun:.1f} s")


def display(console: Console, quiet: bool, stall: float = STALL_SECONDS) -> Display:
    """Progress bars on a terminal, plain lines elsewhere, none with `quiet` (a stall is
    explained either way)."""
    if console.is_terminal:
        return RichDisplay(console, not quiet, stall)
    return PlainDisplay(console, not quiet, stall)


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


ROWS: dict[str, list[tuple[str, str, int]]] = {
    "connections": [
        ("connections open at the end", "open_at_end", 0),
        ("failed to connect", "failed_connections", 0),
        ("connects/s (hello + join)", "connects_per_s", 0),
        ("server RSS before (KiB)", "rss_before_kib", 0),
        ("server RSS after (KiB)", "rss_after_kib", 0),
        ("KiB per connection", "kib_per_connection", 1),
        ("RSS read from", "rss_source", 0),
    ],
    "send": [
        ("acked msgs/s", "acked_per_s", 0),
        ("ack latency p50 (ms)", "ack_p50_ms", 2),
        ("ack latency p99 (ms)", "ack_p99_ms", 2),
        ("ack latency p99.9 (ms)", "ack_p999_ms", 2),
        ("deliveries/s", "delivered_per_s", 0),
        ("sent / acked", "sent", 0),
    ],
    "fanout": [
        ("delivered msgs/s", "delivered_per_s", 0),
        ("sent msgs/s", "rate_msgs_per_s", 1),
        ("e2e latency p50 (ms)", "e2e_p50_ms", 2),
        ("e2e latency p99 (ms)", "e2e_p99_ms", 2),
        ("e2e latency p99.9 (ms)", "e2e_p999_ms", 2),
        ("deliveries (expected: acked x members)", "deliveries", 0),
    ],
    "churn": [
        ("cycles/s", "cycles_per_s", 1),
        ("cycles", "cycles", 0),
        ("errors", "errors", 0),
        ("cycle latency p50 (ms)", "cycle_p50_ms", 2),
        ("cycle latency p99 (ms)", "cycle_p99_ms", 2),
    ],
}


def summary(results: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="hubbub bench")
    table.add_column("scenario")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, r in results.items():
        if "failed" in r:
            table.add_row(name, "FAILED", r["failed"])
            continue
        if name == "fanout":
            mode = f"at {r['rate_msgs_per_s']:g} msgs/s" if r["mode"] == "fixed" else "saturation"
            table.add_row(name, f"{r['rooms']} rooms x {r['members']} members, {mode}", "")
        for label, key, digits in ROWS[name]:
            value = _fmt(r.get(key), digits)
            if key == "sent":
                value = f"{_fmt(r.get('sent'))} / {_fmt(r.get('acked'))}"
            if key == "deliveries":
                value = f"{_fmt(r.get('deliveries'))} ({_fmt(r.get('expected_deliveries'))})"
            table.add_row(name, label, value)
        health = r.get("health", {})
        if health:
            table.add_row(name, "error frames", _fmt(health.get("error_frames")))
            bound = health.get("client_bound_windows", 0)
            table.add_row(name, "client-bound windows", f"{bound} of {health.get('windows')}")
        table.add_section()
    return table


def warnings(results: dict[str, dict[str, Any]]) -> list[str]:
    """What the figures cannot be trusted for: a client-side limit, errors, a dead server."""
    notes: list[str] = []
    for name, r in results.items():
        health = r.get("health", {})
        if health.get("client_bound_windows"):
            notes.append(
                f"{name}: the CLIENT side was the bottleneck in {health['client_bound_windows']} "
                f"of {health['windows']} measured windows (busiest load process "
                f"{health['worker_cpu_max']:.0%} of a CPU, load CPUs up to "
                f"{health['load_cpus_busy_max']:.0%} busy): the figures are the load "
                "generator's limit, a lower bound for the server. Add --workers, or run the "
                "bench from more machines."
            )
        if health.get("cpus_saturated_windows"):
            notes.append(
                f"{name}: this machine's CPUs were saturated in "
                f"{health['cpus_saturated_windows']} of {health['windows']} measured windows, "
                "mostly not by the load generator (a server on this machine, or other "
                "processes): the load and the server competed for CPU."
            )
        if health.get("error_frames"):
            notes.append(
                f"{name}: {health['error_frames']} error frames: {health['error_samples']}"
            )
        if health.get("closed_connections"):
            notes.append(
                f"{name}: connections closed by the server: {health['closed_connections']}"
            )
        if health.get("server_alive") is False:
            notes.append(f"{name}: the server process died")
        if r.get("failed_connections") or r.get("failures"):
            note = f"{name}: connection failures: {r.get('failures')}"
            if "429" in str(r.get("failures")):
                note += f" ({CONNECTION_LIMITS})"
            notes.append(note)
        if r.get("errors"):
            notes.append(f"{name}: {r['errors']} churn cycles failed")
        if name == "fanout" and r.get("mode") == "ramp" and not r.get("saturated"):
            notes.append("fanout: the ramp ended before saturation (raise --max-steps)")
    return notes


CONNECTION_LIMITS = (
    "a WebSocket handshake answered 429 hit the server's --max-connections-per-address or "
    "--max-connections-per-user (0 = no limit; HUBBUB_MAX_CONNECTIONS_PER_ADDRESS=0 on the "
    "server, or spread the load over more client addresses)"
)


def plot(directory: Path, outcomes: dict[str, suite.Outcome]) -> list[Path]:
    """A latency CDF and throughput over time, one line per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = False
    for outcome in outcomes.values():
        values = sorted(outcome.latencies_ms)
        if values:
            ax.plot(
                values,
                [(i + 1) / len(values) for i in range(len(values))],
                label=outcome.latency_label,
            )
            drawn = True
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("share of samples at or below")
    ax.set_title("latency CDF")
    ax.grid(True, which="both", alpha=0.3)
    if drawn:
        ax.legend()
    written.append(directory / "latency_cdf.png")
    fig.savefig(written[-1], dpi=100, bbox_inches="tight")
    plt.close(fig)

    per_second = {"fanout": "delivered_per_s", "send": "acked_per_s", "churn": "cycles_per_s"}
    series = {
        name: outcome.figures["steps"]
        for name, outcome in outcomes.items()
        if name in per_second and outcome.figures.get("steps")
    }
    if series:  # one panel per scenario: their units differ
        fig, axes = plt.subplots(len(series), 1, figsize=(8, 3 * len(series)), squeeze=False)
        for ax, (name, steps) in zip(axes[:, 0], series.items(), strict=True):
            key = per_second[name]
            ax.plot([st["t"] for st in steps], [st[key] for st in steps], marker="o")
            ax.set_title(f"{name}: {key.replace('_per_s', '').replace('_', ' ')} per second")
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
        axes[-1, 0].set_xlabel("seconds since the scenario started")
        fig.tight_layout()
        written.append(directory / "throughput.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    return written
