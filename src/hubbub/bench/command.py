"""`hubbub bench URL [SCENARIO ...]`: load any hubbub server (or a Socket.IO one) and measure it.

The load runs in worker processes; the parent shows progress, then prints a
summary table and says when the client side was the bottleneck. `--json`
keeps every figure, `--plot` draws them (matplotlib: `pip install 'hubbub[bench]'`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from hubbub import __version__
from hubbub.bench import accounts, suite
from hubbub.bench.loadgen import raise_nofile_limit
from hubbub.bench.remote import BadTarget, Observed, Target
from hubbub.bench.wsclient import DIALECTS

EXAMPLES = """\
scenarios (default: all four, in this order):
  connections  N idle connections (hello + join): connects/s, errors, the server's RSS
               (from its /metrics, or /proc with --server-pid)
  send         S senders, each keeping W sends in flight: acked/s, ack latency
  fanout       R rooms x M members: delivered/s and end-to-end latency at --rate
               msgs/s, or ramped until deliveries stop following (default)
  churn        C churners: connect, hello, join, leave, disconnect: cycles/s, errors

examples:
  hubbub bench http://127.0.0.1:8080 fanout --rooms 10 --members 100
  hubbub bench https://chat.example.com send --senders 200 --window 16
  hubbub bench http://127.0.0.1:8000 connections --connections 20000 --workers 3
  hubbub bench http://127.0.0.1:9000 --dialect socketio --accounts names fanout --rate 500

The server should run without its per-connection rate limit (HUBBUB_RATE_LIMIT=0):
rate-limited sends show up as errors.
"""


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def cpu_list(text: str) -> list[int]:
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated CPU list: {text!r}") from None


def positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0: {text}")
        return value

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = textwrap.fill(
        "Load a hubbub server (one node, HAProxy in front of a cluster) or a Socket.IO "
        "server speaking the same objects, and measure it: throughput, latency "
        "percentiles, connections, churn. The load runs in worker processes on this "
        "machine; the bench says when they, not the server, were the limit.",
        78,
    )
    p.epilog = EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    add = p.add_argument
    add("url", help="the server's base URL: http(s)://host:port (a node, HAProxy, a cluster)")
    add(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"any of {', '.join(suite.SCENARIOS)} (default: all)",
    )
    g = p.add_argument_group("target")
    g.add_argument(
        "--dialect",
        choices=DIALECTS,
        default="hubbub",
        help="hubbub: JSON frames on /ws; socketio: the same objects as Socket.IO "
        "events on /socket.io/ (default: hubbub)",
    )
    g.add_argument(
        "--accounts",
        choices=accounts.ACCOUNTS,
        default=None,
        help="api: register or log in users through /api/v1 and create the rooms; "
        "names: the token is the user name (default: api for hubbub, names for "
        "socketio)",
    )
    g.add_argument(
        "--user-prefix",
        metavar="PREFIX",
        default="bench-",
        help="users are PREFIX<n> (default: bench-)",
    )
    g.add_argument(
        "--room-prefix",
        metavar="PREFIX",
        default="bench-",
        help="rooms are PREFIX<scenario>-<n> (default: bench-)",
    )
    g.add_argument("--password", default=accounts.DEFAULT_PASSWORD, help="the users' password")
    g.add_argument(
        "--users",
        type=positive(int),
        metavar="N",
        default=100,
        help="accounts the connections share (default: 100)",
    )
    g.add_argument(
        "--insecure", action="store_true", help="do not verify the server's TLS certificate"
    )
    g.add_argument(
        "--server-pid",
        metavar="PID",
        type=int,
        default=None,
        help="the server's process id when it runs on this machine: its CPU time, "
        "and its RSS when /metrics is not readable",
    )
    g = p.add_argument_group("load")
    g.add_argument(
        "--workers",
        type=positive(int),
        metavar="N",
        default=max(1, cpu_count() - 1),
        help="load generator processes (default: CPUs - 1, at least 1)",
    )
    g.add_argument(
        "--load-cpus",
        metavar="CPUS",
        type=cpu_list,
        default=None,
        help="pin the load generator to these CPUs, e.g. 1,2,3 (default: all)",
    )
    g.add_argument(
        "--rooms",
        type=positive(int),
        metavar="N",
        default=10,
        help="rooms per scenario (default: 10)",
    )
    g.add_argument(
        "--members",
        type=positive(int),
        metavar="N",
        default=100,
        help="fanout: connections per room (default: 100)",
    )
    g.add_argument(
        "--room-senders",
        type=positive(int),
        metavar="N",
        default=2,
        help="fanout: sending members per room (default: 2)",
    )
    g.add_argument(
        "--rate",
        type=positive(float),
        metavar="X",
        default=None,
        help="fanout: send this many msgs/s in total (default: ramp to saturation)",
    )
    g.add_argument(
        "--senders",
        type=positive(int),
        metavar="N",
        default=50,
        help="send: sending connections (default: 50)",
    )
    g.add_argument(
        "--window",
        type=positive(int),
        metavar="N",
        default=None,
        help="sends in flight per sender (default: 8 for send, 64 for fanout)",
    )
    g.add_argument(
        "--connections",
        type=positive(int),
        metavar="N",
        default=1000,
        help="connections: idle connections to open (default: 1000)",
    )
    g.add_argument(
        "--concurrency",
        type=positive(int),
        metavar="N",
        default=100,
        help="handshakes in flight while connecting (default: 100)",
    )
    g.add_argument(
        "--churners",
        type=positive(int),
        metavar="N",
        default=20,
        help="churn: concurrent churners (default: 20)",
    )
    g.add_argument(
        "--duration",
        type=positive(float),
        metavar="X",
        default=10.0,
        help="measured seconds of send, churn and fixed-rate fanout (default: 10)",
    )
    g.add_argument(
        "--start-rate",
        type=positive(float),
        metavar="X",
        default=100.0,
        help="fanout ramp: first rate, msgs/s (default: 100)",
    )
    g.add_argument(
        "--step",
        type=positive(float),
        metavar="X",
        default=1.5,
        help="fanout ramp: rate factor per step (default: 1.5)",
    )
    g.add_argument(
        "--step-seconds",
        type=positive(float),
        metavar="X",
        default=2.0,
        help="fanout ramp: measured seconds per step (default: 2)",
    )
    g.add_argument(
        "--max-steps",
        type=positive(int),
        metavar="N",
        default=30,
        help="fanout ramp: most steps (default: 30)",
    )
    g.add_argument(
        "--body-size",
        type=positive(int),
        metavar="N",
        default=150,
        help="message body length (default: 150)",
    )
    g.add_argument(
        "--latency-sample",
        metavar="SHARE",
        type=float,
        default=0.1,
        help="share of connections timing end-to-end latency (default: 0.1)",
    )
    g = p.add_argument_group("output")
    g.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="write every figure as JSON"
    )
    g.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="DIR",
        help="write PNG plots (latency CDF, throughput over time): needs matplotlib, "
        "pip install 'hubbub[bench]'",
    )
    g.add_argument("--quiet", action="store_true", help="no progress display")


def run(args: argparse.Namespace) -> int:
    """The `bench` subcommand: 0 when every scenario ran, 1 when one failed, 2 for bad usage."""
    from rich.console import Console

    from hubbub.bench.output import RichDisplay, plot, summary, warnings

    err = Console(stderr=True)
    out = Console()
    scenarios = args.scenarios or list(suite.SCENARIOS)
    unknown = [n for n in scenarios if n not in suite.SCENARIOS]
    if unknown:
        err.print(
            f"hubbub bench: unknown scenario {', '.join(unknown)} "
            f"(choose from {', '.join(suite.SCENARIOS)})",
            markup=False,
        )
        return 2
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            err.print(
                "hubbub bench: --plot needs matplotlib: pip install 'hubbub[bench]'", markup=False
            )
            return 2
    account_kind = args.accounts or ("names" if args.dialect == "socketio" else "api")
    if account_kind == "api" and args.dialect == "socketio":
        err.print(
            "hubbub bench: the socketio dialect has no account API: use --accounts names",
            markup=False,
        )
        return 2
    try:
        target = Target.parse(args.url, args.dialect, verify=not args.insecure)
        target.check(api=account_kind == "api")
        if not accounts_ok(args.room_prefix):
            raise BadTarget(
                f"--room-prefix {args.room_prefix!r}: rooms are lowercase letters, digits, - and _"
            )
    except BadTarget as exc:
        err.print(f"hubbub bench: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    all_cpus = sorted(os.sched_getaffinity(0))
    load_cpus = args.load_cpus or all_cpus
    if not set(load_cpus) <= set(all_cpus):
        err.print(f"hubbub bench: --load-cpus {load_cpus}: this machine has {all_cpus}")
        return 2
    settings = suite.Settings(
        workers=args.workers,
        load_cpus=load_cpus,
        rooms=args.rooms,
        members=args.members,
        room_senders=min(args.room_senders, args.members),
        senders=args.senders,
        window=args.window,
        rate=args.rate,
        duration=args.duration,
        start_rate=args.start_rate,
        step=args.step,
        step_seconds=args.step_seconds,
        max_steps=args.max_steps,
        body_size=args.body_size,
        latency_sample=args.latency_sample,
        connections=args.connections,
        concurrency=args.concurrency,
        churners=args.churners,
        room_prefix=args.room_prefix,
    )
    raise_nofile_limit()
    server = Observed(target, args.server_pid)
    started = datetime.datetime.now(datetime.UTC)
    results: dict[str, dict[str, Any]] = {}
    outcomes: dict[str, suite.Outcome] = {}
    interactive = not args.quiet and err.is_terminal
    with RichDisplay(err, interactive) as display:
        names = accounts.user_names(args.user_prefix, args.users)
        try:
            tokens = _tokens(args, account_kind, target, settings, scenarios, names, display)
        except (accounts.AccountError, OSError) as exc:
            err.print(f"hubbub bench: accounts: {exc}", markup=False)
            return 1
        for name in scenarios:
            begun = time.monotonic()
            try:
                outcome = suite.SCENARIOS[name](server, tokens, settings, display)
            except Exception as exc:  # reported, and the other scenarios still run
                results[name] = {"failed": f"{type(exc).__name__}: {exc}"}
                display.note(f"[red]{name} failed:[/red] {exc}")
                continue
            outcome.figures["seconds"] = round(time.monotonic() - begun, 1)
            results[name], outcomes[name] = outcome.figures, outcome
    out.print(summary(results))
    notes = warnings(results)
    for note in notes:
        out.print(f"WARNING {note}", markup=False, highlight=False, soft_wrap=True, style="yellow")
    if args.json is not None:
        report = {
            "hubbub": __version__,
            "url": args.url,
            "base": target.base,
            "websocket": target.endpoint.path,
            "dialect": args.dialect,
            "accounts": account_kind,
            "started": started.isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()},
            "settings": vars(settings) | {"users": args.users, "user_prefix": args.user_prefix},
            "results": results,
            "warnings": notes,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str))
        out.print(f"JSON: {args.json}", markup=False)
    if args.plot is not None and outcomes:
        for path in plot(args.plot, outcomes):
            out.print(f"plot: {path}", markup=False)
    return 1 if any("failed" in r for r in results.values()) else 0


def accounts_ok(room_prefix: str) -> bool:
    from hubbub.protocol import ROOM_RE

    return ROOM_RE.match(f"{room_prefix}fanout-0") is not None


def _tokens(
    args: argparse.Namespace,
    kind: str,
    target: Target,
    s: suite.Settings,
    scenarios: list[str],
    names: list[str],
    display: suite.Display,
) -> list[str]:
    if kind == "names":
        return names
    pairs = {
        (int(spec.token), spec.room) for n in scenarios for spec in suite.plan(n, s, len(names))
    }
    rooms = accounts.memberships(pairs)
    display.start(f"accounts: {len(names)} users, {len(rooms)} rooms", len(names) + len(rooms))
    return accounts.api_tokens(
        target.base,
        names,
        args.password,
        rooms,
        context=target.endpoint.ssl_context(),
        progress=lambda n: display.advance(max(n, 1)),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hubbub bench")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
