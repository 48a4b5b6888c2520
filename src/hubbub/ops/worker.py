"""`hubbub worker`: the process around `engine.redis.worker.Worker` (flags, logs, signals)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from typing import Any, Final

from hubbub import metrics
from hubbub.engine.postgres.database import PostgresDatabase
from hubbub.engine.redis.client import check_url, connect
from hubbub.engine.redis.worker import MAX_BACKOFF, Worker, WorkerSettings
from hubbub.protocol.errors import Unavailable
from hubbub.server import config, logs

log = logging.getLogger(__name__)


async def open_database(db: PostgresDatabase, stopping: asyncio.Event) -> bool:
    """Open (and migrate) the database, retrying with backoff; False if stopped first."""
    backoff = 0.0
    while not stopping.is_set():
        try:
            await db.open()
        except Unavailable as exc:
            backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF)
            log.warning("database unavailable, retrying in %.1fs: %s", backoff, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), backoff)
            continue
        return True
    return False


async def serve(
    database: str, redis: str, settings: WorkerSettings, stopping: asyncio.Event | None = None
) -> None:
    """Run a worker until `stopping` is set (or SIGTERM/SIGINT when none is given)."""
    if stopping is None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
    db = PostgresDatabase(database, min_size=1, max_size=2)
    client = connect(redis, socket_timeout=10.0)
    try:
        if not await open_database(db, stopping):
            return
        log.info("worker ready: the database is open and at the schema's head")
        await Worker(db, client, settings, stopping).run()
    finally:
        await client.aclose()
        await db.close()


# Command line

_FLAGS: Final[dict[str, tuple[type, Any, str]]] = {
    "batch": (int, 1000, "most messages moved per room per transaction"),
    "poll_interval": (float, 0.1, "seconds between passes when there is nothing to move"),
    "keep": (int, 1000, "most recent persisted entries kept in each stream (the cache)"),
    "idempotency_ttl": (int, 86400, "seconds an id stays in Redis after its message is stored"),
    "scan_interval": (float, 10.0, "seconds between full scans of all rooms"),
    "metrics_port": (int, 0, "serve Prometheus /metrics on this port (0: off)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The worker's flags, each with a `HUBBUB_<FLAG>` environment twin."""
    config.add_arguments(parser, only={"database", "redis", "node_id", "log_level", "host"})
    for name, (kind, default, text) in _FLAGS.items():
        env = "HUBBUB_" + name.upper()
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=os.environ.get(env, default),  # argparse converts a string from env
            help=f"{text} [env {env}]",
        )


def main(args: argparse.Namespace) -> int:
    """`hubbub worker`: returns the exit status (0 after SIGTERM/SIGINT, 2 on bad flags)."""
    cfg = config.from_namespace(args)
    logs.setup(cfg.log_level, cfg.node_id)
    if not cfg.database or not cfg.redis:
        log.error("hubbub worker needs --database postgresql://... and --redis redis://...")
        return 2
    check_url(cfg.redis)  # a ValueError in sentences, before anything starts
    settings = WorkerSettings(
        batch=args.batch,
        poll_interval=args.poll_interval,
        keep=args.keep,
        idempotency_ttl=args.idempotency_ttl,
        scan_interval=args.scan_interval,
    )
    metrics.set_build_info(cfg.node_id)
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=cfg.host)
    log.info("worker started", extra={"batch": settings.batch, "keep": settings.keep})
    asyncio.run(serve(cfg.database, cfg.redis, settings))
    log.info("worker stopped")
    return 0
