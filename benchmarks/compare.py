"""hubbub and its peers side by side: one fan-out workload on every server, in one run.

Every server (hubbub on its embedded default and on PostgreSQL + Redis, and
each peer in peers/) runs the same workload with the same load generator
(`hubbub.bench`): 10 rooms x 100 members, 2 senders per room, ~150-byte
bodies, the server pinned to CPU 0 and the load generator to CPU 1. For each:

- delivered messages/s at saturation (a send-rate ramp; deliveries are
  messages x members received) and the server's CPU per delivery there;
- end-to-end latency p50/p99 (send to each receipt) at a light, fixed
  5,000 deliveries/s, the same offered load for every server;
- resident memory per idle connection (hello + join).

Each figure is the median of `--repeat` runs (default 3; the servers take
turns inside each run, so all see the same machine noise), each run on a fresh
server process. The table shows hubbub's rows as ratios of raw aiohttp and of
python-socketio measured in the same run; the JSON goes to results/.

The peer libraries are in peers/requirements.txt (`--install` installs them
into this interpreter's environment with pip).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from target import (
    HUBBUB,
    HUBBUB_REDIS,
    RAW_AIOHTTP,
    Server,
    Target,
    cpu_list,
    git_commit,
    reset_backends,
    stop_on_sigterm,
)

from hubbub.bench import accounts, suite
from hubbub.bench.loadgen import raise_nofile_limit
from hubbub.bench.remote import Observed
from hubbub.bench.remote import Target as Endpoints
from hubbub.bench.wsclient import Dialect

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
REQUIREMENTS = PEERS / "requirements.txt"
USER_PREFIX = "bench"
PASSWORD = "benchmark-password"
# A database and a Redis database of this script's own (emptied before each run), so that
# a `benchmarks/run.py` running at the same time does not reset them under it.
DATABASE = os.environ.get(
    "HUBBUB_COMPARE_DATABASE", "postgresql://postgres@127.0.0.1:5432/hubbub_compare"
)
REDIS = os.environ.get("HUBBUB_COMPARE_REDIS", "redis://127.0.0.1:6379/14")


def reset_distributed() -> None:
    """A fresh database and an empty Redis database for the targets on PostgreSQL and Redis."""
    reset_backends(DATABASE, REDIS)


HUBBUB_DISTRIBUTED = dataclasses.replace(
    HUBBUB_REDIS,
    env=HUBBUB_REDIS.env | {"HUBBUB_DATABASE": DATABASE, "HUBBUB_REDIS": REDIS},
    reset=reset_distributed,
)


def peer(name: str, script: str, *args: str) -> Target:
    argv = (str(PEERS / script), "--host", "127.0.0.1", "--port", "{port}", *args)
    return Target(name, argv, has_accounts=False)


@dataclass(frozen=True)
class Contender:
    """One row of the table: how to start the server, how to speak to it, what it needs."""

    target: Target
    label: str
    dialect: Dialect = "hubbub"
    modules: tuple[str, ...] = ()  # importable for the server to run
    needs: tuple[str, ...] = ()  # services: "postgres", "redis"


CONTENDERS = [
    Contender(HUBBUB, "hubbub (SQLite, one node)"),
    Contender(HUBBUB_DISTRIBUTED, "hubbub (PostgreSQL + Redis)", needs=("postgres", "redis")),
    Contender(RAW_AIOHTTP, "raw aiohttp", modules=("aiohttp",)),
    Contender(peer("raw-picows", "raw_picows.py"), "raw picows", modules=("picows",)),
    Contender(
        peer("raw-picows-batched", "raw_picows_batched.py"),
        "raw picows, batched writes",
        modules=("picows",),
    ),
    Contender(
        peer("raw-websockets", "raw_websockets.py", "--uvloop"),
        "raw websockets (uvloop)",
        modules=("websockets", "uvloop"),
    ),
    Contender(
        peer("raw-starlette", "raw_starlette.py"),
        "Starlette + uvicorn",
        modules=("starlette", "uvicorn"),
    ),
    Contender(
        peer("socketio", "socketio_server.py"),
        "python-socketio",
        dialect="socketio",
        modules=("socketio",),
    ),
    Contender(
        peer("socketio-redis", "socketio_server.py", "--redis", REDIS),
        "python-socketio (Redis manager)",
        dialect="socketio",
        modules=("socketio",),
        needs=("redis",),
    ),
    Contender(
        peer("channels", "channels_server.py", "--layer", "memory"),
        "Django Channels (in-memory layer)",
        modules=("channels", "django", "uvicorn"),
    ),
    Contender(
        peer("channels-redis", "channels_server.py", "--layer", "redis", "--redis", REDIS),
        "Django Channels (Redis layer)",
        modules=("channels_redis", "channels", "django", "uvicorn"),
        needs=("redis",),
    ),
]
BY_NAME = {c.target.name: c for c in CONTENDERS}
HUBBUBS = ("hubbub", "hubbub-redis")
BASELINES = ("raw-aiohttp", "socketio")
LIBRARIES = (
    "hubbub",
    "aiohttp",
    "uvloop",
    "orjson",
    "picows",
    "websockets",
    "uvicorn",
    "httptools",
    "starlette",
    "python-socketio",
    "python-engineio",
    "Django",
    "channels",
    "channels-redis",
    "redis",
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Quiet:
    """A `suite.Display` that only logs the start of each phase."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def start(self, description: str, total: float, unit: str = "", waiting: str = "") -> None:
        log(f"{self.prefix}: {description}")

    def advance(self, amount: float, status: str = "") -> None:
        pass

    def answered(self, answer: accounts.Answer) -> None:
        pass

    def note(self, text: str) -> None:
        log(f"{self.prefix}: {text}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = p.add_argument
    add("--targets", default=",".join(BY_NAME), help=f"comma-separated, of {', '.join(BY_NAME)}")
    add("--repeat", type=int, default=3, help="runs per server; the median is reported")
    add("--quick", action="store_true", help="one short run on small sizes (a smoke test)")
    add("--install", action="store_true", help="pip install peers/requirements.txt first")
    add("--server-cpus", type=cpu_list, default=[0], help="CPUs for the server")
    add("--load-cpus", type=cpu_list, default=[1], help="CPUs for the load generator")
    add("--workers", type=int, default=2, help="load generator processes")
    add("--users", type=int, default=100, help="accounts the connections share")
    add("--rooms", type=int, default=10, help="rooms")
    add("--members", type=int, default=100, help="connections per room")
    add("--room-senders", type=int, default=2, help="sending members per room")
    add("--body-size", type=int, default=150, help="message body length")
    add("--start-rate", type=float, default=100.0, help="ramp: first rate, msgs/s")
    add("--step", type=float, default=1.5, help="ramp: rate factor per step")
    add("--step-seconds", type=float, default=1.5, help="ramp: measured seconds per step")
    add("--light-deliveries", type=float, default=5000.0, help="latency at this deliveries/s")
    add("--latency-seconds", type=float, default=5.0, help="measured seconds of latency")
    add("--latency-sample", type=float, default=0.1, help="share of connections timing e2e")
    add("--connections", type=int, default=5000, help="idle connections for the memory")
    add("--output", type=Path, default=HERE / "results", help="directory for the JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.repeat, args.members, args.rooms, args.connections = 1, 20, 5, 500
        args.step, args.step_seconds, args.latency_seconds, args.users = 2.0, 1.0, 2.0, 20
        args.light_deliveries = min(args.light_deliveries, 1000.0)
    args.users = max(1, min(args.users, args.members))
    return args


def settings_from(args: argparse.Namespace) -> suite.Settings:
    return suite.Settings(
        workers=args.workers,
        load_cpus=args.load_cpus,
        rooms=args.rooms,
        members=args.members,
        room_senders=min(args.room_senders, args.members),
        senders=args.room_senders * args.rooms,
        window=64,
        rate=None,
        duration=args.latency_seconds,
        start_rate=args.start_rate,
        step=args.step,
        step_seconds=args.step_seconds,
        max_steps=40,
        body_size=args.body_size,
        latency_sample=args.latency_sample,
        connections=args.connections,
        concurrency=100,  # handshakes in flight (Channels drops some at 1,000)
        churners=1,
        room_prefix="cmp-",
    )


# --- running one server ------------------------------------------------------------------------


def missing_modules(contender: Contender) -> list[str]:
    return [m for m in contender.modules if importlib.util.find_spec(m) is None]


def services_down(contender: Contender) -> list[str]:
    import socket

    down = []
    for service, port in (("postgres", 5432), ("redis", 6379)):
        if service in contender.needs:
            try:
                socket.create_connection(("127.0.0.1", port), 2).close()
            except OSError:
                down.append(service)
    return down


def prepare(
    contender: Contender, data: Path, s: suite.Settings, users: int, cpus: list[int]
) -> list[str]:
    """Accounts and rooms on hubbub (its server unpinned: hashing is slow); names elsewhere."""
    data.mkdir(parents=True, exist_ok=True)
    names = accounts.user_names(USER_PREFIX, users)
    if not contender.target.has_accounts:
        return names
    if contender.target.reset is not None:
        contender.target.reset()
    server = Server(contender.target, data, cpus)
    try:
        server.start()
        pairs = {
            (int(spec.token), spec.room)
            for scenario in ("fanout", "connections")
            for spec in suite.plan(scenario, s, users)
        }
        log(f"{contender.target.name}: {users} accounts, rooms and memberships")
        return accounts.api_tokens(server.url, names, PASSWORD, accounts.memberships(pairs))
    finally:
        server.stop()


Measurement = Callable[[Observed, list[str], suite.Settings], dict[str, Any]]


def on_fresh_server(
    contender: Contender,
    data: Path,
    cpus: list[int],
    measure: Measurement,
    tokens: list[str],
    s: suite.Settings,
) -> dict[str, Any]:
    """Start the server pinned, measure it, stop it; a failure is a result, not an exception."""
    server = Server(contender.target, data, cpus)
    try:
        server.start()
        observed = Observed(Endpoints.parse(server.url, contender.dialect), server.pid)
        figures = measure(observed, tokens, s)
        if not server.alive():
            raise RuntimeError("the server died")
        return figures
    except Exception as exc:
        log(f"{contender.target.name} FAILED: {exc}")
        return {
            "failed": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            "server_log_tail": server.log_tail(),
        }
    finally:
        server.stop()


def saturation(observed: Observed, tokens: list[str], s: suite.Settings) -> dict[str, Any]:
    out = suite.fanout(observed, tokens, s, Quiet(observed.target.base)).figures
    top = max(out["steps"], key=lambda st: st["delivered_per_s"])
    delivered = top["delivered_per_s"]
    return {
        "delivered_per_s": delivered,
        "msgs_per_s": round(delivered / s.members, 1),
        "server_cpu": top["server_cpu"],
        "cpu_us_per_delivery": round(top["server_cpu"] / delivered * 1e6, 2) if delivered else None,
        "client_bound": top["client_bound"],
        "cpus_saturated": top["cpus_saturated"],
        "saturated": out["saturated"],
        "errors": out["health"]["error_frames"],
        "closed_connections": out["health"]["closed_connections"],
        "steps": out["steps"],
    }


def light_latency(observed: Observed, tokens: list[str], s: suite.Settings) -> dict[str, Any]:
    out = suite.fanout(observed, tokens, s, Quiet(observed.target.base)).figures
    cpu = statistics.fmean(st["server_cpu"] for st in out["steps"]) if out["steps"] else None
    delivered = out["delivered_per_s"]
    return {
        "rate_msgs_per_s": out["rate_msgs_per_s"],
        "delivered_per_s": out["delivered_per_s"],
        "e2e_p50_ms": out["e2e_p50_ms"],
        "e2e_p99_ms": out["e2e_p99_ms"],
        "e2e_samples": out["e2e_samples"],
        "server_cpu": round(cpu, 3) if cpu is not None else None,
        "cpu_us_per_delivery": round(cpu / delivered * 1e6, 2) if cpu and delivered else None,
        "errors": out["health"]["error_frames"],
        "expected_deliveries": out["expected_deliveries"],
        "deliveries": out["deliveries"],
    }


def idle_memory(observed: Observed, tokens: list[str], s: suite.Settings) -> dict[str, Any]:
    return suite.connections(observed, tokens, s, Quiet(observed.target.base)).figures


# --- the table ---------------------------------------------------------------------------------


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if "failed" not in r and r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    sat, light, idle = runs["saturation"], runs["latency"], runs["memory"]
    failed = [r["failed"] for group in (sat, light, idle) for r in group if "failed" in r]
    return {
        "delivered_per_s": median(sat, "delivered_per_s"),
        "cpu_us_per_delivery": median(sat, "cpu_us_per_delivery"),
        "e2e_p50_ms": median(light, "e2e_p50_ms"),
        "e2e_p99_ms": median(light, "e2e_p99_ms"),
        "kib_per_connection": median(idle, "kib_per_connection"),
        "client_bound_runs": sum(1 for r in sat if r.get("client_bound")),
        "busy_runs": sum(1 for r in sat if r.get("cpus_saturated")),
        "light_delivered_per_s": median(light, "delivered_per_s"),
        "runs": len(sat),
        "failures": failed,
    }


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


COLUMNS = (
    ("delivered/s", "delivered_per_s", ",.0f"),
    ("CPU us/deliv", "cpu_us_per_delivery", ".2f"),
    ("p50 ms", "e2e_p50_ms", ".2f"),
    ("p99 ms", "e2e_p99_ms", ".2f"),
    ("KiB/conn", "kib_per_connection", ".1f"),
)


def render(summary: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    names = list(summary)
    pairs = [
        (h, base)
        for h in names
        if h in HUBBUBS
        for base in BASELINES
        if base in summary and base != h
    ]
    labels = [BY_NAME[n].label for n in names]
    labels += [f"{BY_NAME[h].label} / {BY_NAME[b].label}" for h, b in pairs]
    width = max(len(label) for label in labels) + 2
    head = f"{'server':<{width}}" + "".join(f"{title:>14}" for title, _, _ in COLUMNS)
    lines = [
        f"fan-out: {args.rooms} rooms x {args.members} members, {args.room_senders} senders "
        f"per room, {args.body_size}-byte bodies; server on CPUs {args.server_cpus}, load on "
        f"{args.load_cpus}; median of {args.repeat} run(s)",
        f"delivered/s and server CPU per delivery at saturation; latency (send to each "
        f"receipt) at {args.light_deliveries:,.0f} deliveries/s; RSS per idle connection",
        "",
        head,
        "-" * len(head),
    ]
    for n in names:
        row = summary[n]
        cells = "".join(f"{fmt(row[key], spec):>14}" for _, key, spec in COLUMNS)
        marks = []
        if row["client_bound_runs"]:
            marks.append(f"client-bound in {row['client_bound_runs']}/{row['runs']}")
        if row["busy_runs"]:
            marks.append(f"load CPU busy with other work in {row['busy_runs']}/{row['runs']}")
        light = row.get("light_delivered_per_s")
        if light is not None and light < 0.9 * args.light_deliveries:
            marks.append(f"latency over a backlog: {light:,.0f} delivered/s at the light rate")
        if row["failures"]:
            marks.append(f"{len(row['failures'])} failed")
        lines.append(f"{BY_NAME[n].label:<{width}}{cells}  {'; '.join(marks)}".rstrip())
    if pairs:
        lines.append("")
    for h, base in pairs:
        label = f"{BY_NAME[h].label} / {BY_NAME[base].label}"
        cells = "".join(
            f"{ratio(summary[h][key], summary[base][key]):>14}" for _, key, _ in COLUMNS
        )
        lines.append(f"{label:<{width}}{cells}")
    return "\n".join(lines)


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for lib in LIBRARIES:
        try:
            found[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            found[lib] = None
    found["python"] = sys.version.split()[0]
    return found


def main(argv: list[str] | None = None) -> int:
    stop_on_sigterm()
    args = parse_args(argv)
    if args.install:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True
        )
        importlib.invalidate_caches()
    names = [n for n in args.targets.split(",") if n]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        sys.exit(f"unknown target: {', '.join(unknown)} (have {', '.join(BY_NAME)})")
    skipped: dict[str, str] = {}
    for n in names:
        if missing := missing_modules(BY_NAME[n]):
            skipped[n] = f"not installed: {', '.join(missing)} (--install, or {REQUIREMENTS})"
        elif down := services_down(BY_NAME[n]):
            skipped[n] = f"not reachable: {', '.join(down)}"
    for n, why in skipped.items():
        log(f"skipping {n}: {why}")
    names = [n for n in names if n not in skipped]
    if not names:
        sys.exit("nothing to run")
    if set(args.server_cpus) & set(args.load_cpus):
        log("warning: the server and the load generator share CPUs; figures will be skewed")
    all_cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, args.load_cpus)
    raise_nofile_limit()
    s = settings_from(args)
    light = dataclasses.replace(s, rate=args.light_deliveries / args.members)
    idle = dataclasses.replace(s, concurrency=100)

    started = datetime.datetime.now(datetime.UTC)
    workdir = Path(tempfile.mkdtemp(prefix="hubbub-compare-"))
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        n: {"saturation": [], "latency": [], "memory": []} for n in names
    }
    tokens: dict[str, list[str] | str] = {}
    try:
        for n in names:
            try:
                tokens[n] = prepare(BY_NAME[n], workdir / n, s, args.users, all_cpus)
            except Exception as exc:
                log(f"{n}: setup FAILED: {exc}")
                tokens[n] = f"setup failed: {type(exc).__name__}: {exc}"
        measurements: list[tuple[str, Measurement, suite.Settings]] = [
            ("saturation", saturation, s),
            ("latency", light_latency, light),
            ("memory", idle_memory, idle),
        ]
        # The servers take turns inside each run and each measurement: all see the same noise.
        for attempt in range(1, args.repeat + 1):
            for kind, fn, settings in measurements:
                for n in names:
                    got = tokens[n]
                    if isinstance(got, str):
                        runs[n][kind].append({"failed": got})
                        continue
                    log(f"{n}: {kind} (run {attempt} of {args.repeat})")
                    runs[n][kind].append(
                        on_fresh_server(
                            BY_NAME[n],
                            workdir / n,
                            args.server_cpus,
                            fn,
                            got,
                            settings,
                        )
                    )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    summary = {n: summarize(runs[n]) for n in names}
    table = render(summary, args)
    libs = versions()
    report = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.datetime.now(datetime.UTC) - started).total_seconds(), 1),
        "commit": git_commit(),
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "settings": dataclasses.asdict(s)
        | {"server_cpus": args.server_cpus, "light_deliveries_per_s": args.light_deliveries},
        "versions": libs,
        "labels": {n: BY_NAME[n].label for n in names},
        "skipped": skipped,
        "summary": summary,
        "table": table,
        "runs": runs,
    }
    print(table)
    print("\n" + ", ".join(f"{k} {v}" for k, v in libs.items() if v))
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"compare-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nJSON: {path}")
    return 1 if any(row["failures"] for row in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
