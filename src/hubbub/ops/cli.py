"""The `hubbub` command: serve, worker, cluster, bench and chat."""

from __future__ import annotations

import argparse
import sys

from hubbub import __version__
from hubbub.protocol.errors import Unavailable
from hubbub.server import config, logs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hubbub", description="hubbub chat server")
    parser.add_argument("--version", action="version", version=f"hubbub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run one node (HTTP and WebSocket on one port)")
    config.add_arguments(serve)
    from hubbub.ops import worker

    worker.add_arguments(
        commands.add_parser("worker", help="move the Redis log into PostgreSQL (runs beside nodes)")
    )
    from hubbub.ops import cluster

    cluster.add_arguments(
        commands.add_parser("cluster", help="N nodes, the worker and HAProxy on this machine")
    )
    from hubbub.bench import command as bench

    bench.add_arguments(
        commands.add_parser(
            "bench", help="load a hubbub URL (a node, HAProxy, a cluster) and measure it"
        )
    )
    from hubbub import tui

    tui.add_arguments(commands.add_parser("chat", help="the terminal client (log in and chat)"))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        # Straight to the bench: it needs none of the server's modules (the worker's
        # SQLAlchemy alone takes most of a second to import), and its parser takes
        # scenarios anywhere among the options.
        from hubbub.bench.command import main as bench

        return bench(argv[1:])
    if argv[:1] == ["chat"]:
        # Straight to the client too: it needs none of the server's modules.
        from hubbub.tui import main as chat

        return chat(argv[1:])
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from hubbub.server.node import serve

        cfg = config.from_namespace(args)
        logs.setup(cfg.log_level, cfg.node_id)
        try:
            serve(cfg)
        except (ValueError, OSError, Unavailable) as exc:
            print(f"hubbub: {exc}", file=sys.stderr)
            return 2
    if args.command == "worker":
        from hubbub.ops.worker import main as run_worker

        try:
            return run_worker(args)
        except ValueError as exc:
            print(f"hubbub worker: {exc}", file=sys.stderr)
            return 2
    if args.command == "cluster":
        from hubbub.ops.cluster import run

        try:
            return run(args)
        except (ValueError, RuntimeError, OSError) as exc:
            print(f"hubbub cluster: {exc}", file=sys.stderr)
            return 2
    if args.command == "bench":
        from hubbub.bench.command import run as run_bench

        return run_bench(args)
    if args.command == "chat":
        from hubbub.tui import run as run_chat

        return run_chat(args)
    return 0
