"""The flags of `hubbub bench`, and the `Plan` they make once checked (with the URL).

Everything a run could refuse is refused here, before any load starts: a bad flag or
a URL where no usable server answers is a `UsageError` (exit code 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubbub.bench import accounts, suite
from hubbub.bench.phases import STALL_SECONDS
from hubbub.bench.remote import BadTarget, Target
from hubbub.bench.wsclient import DIALECTS
from hubbub.protocol.rules import ROOM_RE, USERNAME_RE

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

The server should run without its per-client limits (HUBBUB_RATE_LIMIT=0,
HUBBUB_MAX_CONNECTIONS_PER_USER=0, HUBBUB_MAX_CONNECTIONS_PER_ADDRESS=0): one machine
opens every connection, and rate-limited sends or refused connections show up as errors.
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
        help="users are PREFIX<run>-<n>, or PREFIX<n> with --no-cleanup (default: bench-)",
    )
    g.add_argument(
        "--room-prefix",
        metavar="PREFIX",
        default="bench-",
        help="rooms are PREFIX<run>-<scenario>-<n>, or PREFIX<scenario>-<n> with "
        "--no-cleanup (default: bench-)",
    )
    g.add_argument(
        "--cleanup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="at the end (also after a failure or Ctrl-C) delete the rooms and accounts "
        "this run created; the names carry a tag <run> of their own, as a deleted name is "
        "not given out again for a while. --no-cleanup keeps them, under names a later "
        "run reuses (default: clean up)",
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
    g.add_argument(
        "--quiet", action="store_true", help="no progress display (a stall is still explained)"
    )
    # Seconds without progress before a phase's stall is explained (tests shorten it).
    g.add_argument(
        "--stall-seconds", type=positive(float), default=STALL_SECONDS, help=argparse.SUPPRESS
    )


class UsageError(ValueError):
    """Bad flags, or a URL where no usable server answers: exit code 2."""


@dataclass(frozen=True)
class Plan:
    """What a run will do, checked before any load starts."""

    target: Target
    settings: suite.Settings
    scenarios: list[str]
    accounts: accounts.Accounts
    user_prefix: str  # with the run's tag when it cleans up
    cleanup: bool  # delete what it created at the end


def plan_from(args: argparse.Namespace) -> Plan:
    """Check the flags and the URL; raises UsageError."""
    scenarios = args.scenarios or list(suite.SCENARIOS)
    unknown = [n for n in scenarios if n not in suite.SCENARIOS]
    if unknown:
        raise UsageError(
            f"unknown scenario {', '.join(unknown)} (choose from {', '.join(suite.SCENARIOS)})"
        )
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib: pip install 'hubbub[bench]'")
    kind: accounts.Accounts = args.accounts or ("names" if args.dialect == "socketio" else "api")
    if kind == "api" and args.dialect == "socketio":
        raise UsageError("the socketio dialect has no account API: use --accounts names")
    # Names of their own to every run that deletes them: the server keeps a deleted
    # room's name, and never gives out a deleted account's again.
    cleanup = kind == "api" and args.cleanup
    tag = f"{os.urandom(3).hex()}-" if cleanup else ""
    room_prefix, user_prefix = args.room_prefix + tag, args.user_prefix + tag
    if not ROOM_RE.match(f"{room_prefix}fanout-0"):
        raise UsageError(f"--room-prefix {args.room_prefix!r}: lowercase letters, digits, - and _")
    if not USERNAME_RE.match(f"{user_prefix}{args.users - 1}"):
        raise UsageError(
            f"--user-prefix {args.user_prefix!r}: letters, digits, ., - and _, short enough "
            f"for {user_prefix}{args.users - 1}"
        )
    all_cpus = sorted(os.sched_getaffinity(0))
    load_cpus = args.load_cpus or all_cpus
    if not set(load_cpus) <= set(all_cpus):
        raise UsageError(f"--load-cpus {load_cpus}: this machine has {all_cpus}")
    try:
        target = Target.parse(args.url, args.dialect, verify=not args.insecure)
        target.check(api=kind == "api")
    except BadTarget as exc:
        raise UsageError(str(exc)) from None
    names = {f.name for f in dataclasses.fields(suite.Settings)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values |= {
        "load_cpus": load_cpus,
        "room_senders": min(args.room_senders, args.members),
        "room_prefix": room_prefix,
    }
    return Plan(target, suite.Settings(**values), scenarios, kind, user_prefix, cleanup)
