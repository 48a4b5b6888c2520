"""Benchmark a single hubbub node against a raw aiohttp broadcast server, side by side.

Runs the scenarios (send->ack, fan-out, idle connections) against each
target in turn, the server pinned to one CPU and the load generator
processes to another, prints a table of figures with hubbub as a ratio of
the raw aiohttp peer measured in the same run, and writes everything as JSON
to benchmarks/results/. `make bench` runs it with the defaults; see --help.

`--baseline REV` adds hubbub at another git revision as a target (its tree checked
out in a temporary worktree and run from there), alternating with this tree inside
each scenario, and prints this tree as a ratio of it: how a change moved the figures,
measured side by side on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from target import (
    DEFAULT_TARGETS,
    HUBBUB,
    TARGETS,
    Server,
    cpu_list,
    create_accounts,
    git_commit,
    stop_on_sigterm,
)

from hubbub.bench.loadgen import raise_nofile_limit
from hubbub.bench.report import render
from hubbub.bench.scenarios import SCENARIOS, Settings, best_run, rooms_needed

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = p.add_argument
    add("--scenarios", default=",".join(SCENARIOS), help="comma-separated subset")
    add(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help=f"comma-separated, of {', '.join(TARGETS)}",
    )
    add("--quick", action="store_true", help="small sizes and short windows (a smoke test)")
    add("--server-cpus", type=cpu_list, default=[0], help="CPUs for the server, e.g. 0 or 0,1")
    add("--load-cpus", type=cpu_list, default=[1], help="CPUs for the load generator")
    add("--workers", type=int, default=2, help="load generator processes")
    add("--users", type=int, default=100, help="accounts registered (reused by connections)")
    add("--body-size", type=int, default=150, help="message body length in characters")
    add("--ack-senders", type=int, default=50, help="send->ack: connections sending")
    add("--ack-rooms", type=int, default=5, help="send->ack: rooms they share")
    add("--ack-window", type=int, default=8, help="outstanding sends per sender")
    add("--ack-seconds", type=float, default=10.0, help="send->ack: measured seconds")
    add("--fan-rooms", type=int, default=10, help="fan-out: rooms")
    add("--fan-members", type=int, default=100, help="fan-out: connections per room")
    add("--fan-senders", type=int, default=2, help="sending members per room")
    add("--fan-window", type=int, default=64, help="most unacked sends per sender")
    add("--fan-start-rate", type=float, default=100.0, help="first ramp step, messages/s")
    add("--fan-step", type=float, default=1.5, help="ramp factor between steps")
    add("--fan-step-seconds", type=float, default=1.5, help="measured seconds per ramp step")
    add("--fan-latency-seconds", type=float, default=5.0, help="measured seconds per latency")
    add("--fan-fixed-rate", type=float, default=500.0, help="latency at this msgs/s too (0: no)")
    add("--slo-p99-ms", type=float, default=50.0, help="fan-out capacity within this e2e p99")
    add("--latency-sample", type=float, default=0.1, help="share of connections timing e2e")
    add("--connections", type=int, default=5000, help="idle connections")
    add("--idle-rooms", type=int, default=10, help="rooms the idle connections join")
    add("--connect-concurrency", type=int, default=100, help="handshakes in flight")
    add(
        "--baseline",
        metavar="REV",
        help="also run hubbub at this git revision and print this tree as a ratio of it",
    )
    add("--repeat", type=int, default=1, help="runs per scenario and target; best is reported")
    add("--output", type=Path, default=HERE / "results", help="directory for the JSON")
    add("--keep-data", action="store_true", help="keep the servers' data directories")
    args = p.parse_args(argv)
    if args.quick:
        args.ack_seconds, args.fan_members, args.fan_rooms = 3.0, 20, 5
        args.fan_step_seconds, args.fan_latency_seconds, args.connections = 1.0, 2.0, 500
        args.fan_step, args.users = 2.0, 20
    args.users = max(args.users, args.fan_members, args.ack_senders)
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    names = {f.name for f in dataclasses.fields(Settings)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values["idle_connections"] = args.connections
    return Settings(**values)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_one(
    name: str, target_name: str, data: Path, tokens: list[str], s: Settings, cpus: list[int]
) -> dict[str, Any]:
    """Start a fresh server process on the target's data, run one scenario, stop it."""
    server = Server(TARGETS[target_name], data, cpus)
    try:
        server.start()
        figures = SCENARIOS[name](server, tokens, s)
    except Exception as exc:
        log(f"{target_name} {name} FAILED: {exc}")
        tail = server.log_tail()
        return {"failed": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()} | (
            {"server_log_tail": tail} if tail else {}
        )
    finally:
        code = server.stop()
    figures["server_exit_code"] = code
    return figures


def prepare(target_name: str, data: Path, s: Settings, cpus: list[int]) -> list[str] | str:
    """Create the accounts and rooms on the target's data; the tokens, or why it failed."""
    data.mkdir()
    reset = TARGETS[target_name].reset
    if reset is not None:
        reset()
    log(f"{target_name}: creating {s.users} accounts and {len(rooms_needed(s))} rooms")
    server = Server(TARGETS[target_name], data, cpus)
    try:
        server.start()
        return create_accounts(server, s.users, rooms_needed(s), parallel=8)
    except Exception as exc:
        log(f"{target_name} setup FAILED: {exc}\n{server.log_tail()}")
        return f"setup failed: {type(exc).__name__}: {exc}"
    finally:
        server.stop()


@contextlib.contextmanager
def revision_target(rev: str) -> Iterator[str]:
    """hubbub at git revision `rev` as a target: its tree in a temporary worktree, run
    from its own `src` (ahead of this checkout's on the path); the target's name."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", f"{rev}^{{commit}}"],
        cwd=HERE,
        capture_output=True,
        text=True,
    )
    if commit.returncode != 0:
        sys.exit(f"--baseline: no such revision: {rev}")
    tree = Path(tempfile.mkdtemp(prefix="hubbub-baseline-")) / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--quiet", "--detach", str(tree), commit.stdout.strip()],
        cwd=HERE,
        check=True,
    )
    name = f"hubbub@{commit.stdout.strip()}"
    TARGETS[name] = dataclasses.replace(
        HUBBUB, name=name, env={**HUBBUB.env, "PYTHONPATH": str(tree / "src")}
    )
    try:
        yield name
    finally:
        del TARGETS[name]
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=HERE, check=False)
        shutil.rmtree(tree.parent, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    stop_on_sigterm()
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        return run(args, stack)


def run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    settings = settings_from(args)
    scenarios = [n for n in args.scenarios.split(",") if n]
    targets = [t for t in args.targets.split(",") if t]
    unknown = [n for n in scenarios if n not in SCENARIOS] + [
        t for t in targets if t not in TARGETS
    ]
    if unknown:
        sys.exit(f"unknown scenario or target: {', '.join(unknown)}")
    all_cpus = os.sched_getaffinity(0)
    pinned = set(args.server_cpus) | set(settings.load_cpus)
    if not pinned <= all_cpus:
        sys.exit(f"CPUs {sorted(pinned - all_cpus)} are not available (have {sorted(all_cpus)})")
    if set(args.server_cpus) & set(settings.load_cpus):
        log("warning: the server and the load generator share CPUs; figures will be skewed")
    os.sched_setaffinity(0, settings.load_cpus)
    raise_nofile_limit()

    started = datetime.datetime.now(datetime.UTC)
    workdir = Path(tempfile.mkdtemp(prefix="hubbub-bench-"))
    earlier = None
    if args.baseline:
        earlier = stack.enter_context(revision_target(args.baseline))
        # Right after hubbub: the two trees take turns with nothing in between.
        at = targets.index("hubbub") + 1 if "hubbub" in targets else 0
        targets.insert(at, earlier)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        n: {t: [] for t in targets} for n in scenarios
    }
    try:
        # Not pinned: password hashing is slow and this part is not measured.
        tokens = {t: prepare(t, workdir / t, settings, sorted(all_cpus)) for t in targets}
        # Targets alternate inside each scenario so both see the same machine noise.
        for name in scenarios:
            for attempt in range(1, args.repeat + 1):
                for t in targets:
                    got = tokens[t]
                    if isinstance(got, str):
                        runs[name][t].append({"failed": got})
                        continue
                    log(f"{t}: {name} (run {attempt} of {args.repeat})")
                    figures = run_one(name, t, workdir / t, got, settings, args.server_cpus)
                    runs[name][t].append(figures)
    finally:
        if args.keep_data:
            log(f"data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    results = {n: {t: best_run(n, runs[n][t]) for t in targets} for n in scenarios}
    report = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.datetime.now(datetime.UTC) - started).total_seconds(), 1),
        "commit": git_commit(),
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
        "settings": dataclasses.asdict(settings) | {"server_cpus": args.server_cpus},
        "results": results,
        "runs": runs if args.repeat > 1 else None,
    }
    if args.repeat > 1:
        print(f"best of {args.repeat} runs per scenario and target")
    print(render(results, targets, settings, earlier))
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nJSON: {path}")
    failed = any("failed" in r for per_target in results.values() for r in per_target.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
