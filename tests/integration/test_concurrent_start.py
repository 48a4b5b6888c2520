"""Any number of nodes and workers can start together on an empty database.

What docker-compose and Kubernetes do: a worker and four nodes start at the same moment on a
new PostgreSQL database, each migrating it on open. Without the migration lock one run in
five failed (two processes creating `alembic_version` at once). Ten rounds, each on a fresh
database; in each the test holds the migration lock itself until all five processes wait for
it, so that they then race as closely as they can (and a process that did not wait for the
lock shows up as ready too early): every process becomes ready and the schema is at head,
once. Then the same for
the embedded engine's file: four processes migrating one new SQLite file at once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from alembic.script import ScriptDirectory
from support.backends import WorkerProcess, worker_args
from support.pgutil import TestDatabase
from support.redis_server import RedisServer
from support.server import ServerProcess

from hubbub.engine.migrations import MIGRATION_LOCK, alembic_config

ROUNDS = 10
NODES = 4
READY = 60.0  # seconds for five processes on two cores to import, migrate and bind


def head() -> str:
    revision = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert revision is not None
    return revision


def wait_worker_started(worker: WorkerProcess, deadline: float) -> None:
    while "worker ready" not in worker.log():
        assert worker.proc is not None
        assert worker.proc.poll() is None, f"the worker exited:\n{worker.log()}"
        assert time.monotonic() < deadline, f"the worker never started:\n{worker.log()}"
        time.sleep(0.05)


def wait_for_waiters(
    conn: psycopg.Connection, count: int, nodes: list[ServerProcess], worker: WorkerProcess
) -> None:
    """Until `count` processes wait for the migration lock; none may be ready meanwhile."""
    deadline = time.monotonic() + READY
    query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    while (row := conn.execute(query).fetchone()) is None or row[0] < count:
        for node in nodes:
            assert node.proc is not None and node.proc.poll() is None, node.log()
        assert "worker ready" not in worker.log(), "the worker did not wait for the lock"
        assert time.monotonic() < deadline, f"only {row} of {count} waited for the lock"
        time.sleep(0.05)


def start_together(
    tmp: Path, database: str, redis: RedisServer
) -> tuple[list[ServerProcess], WorkerProcess]:
    """Four nodes and a worker on `database` and `redis` (started here), not yet spawned."""
    redis.start()
    nodes = []
    for i in range(NODES):
        data = tmp / f"node{i}"
        data.mkdir()
        nodes.append(ServerProcess(data, args=["--database", database, "--redis", redis.url]))
    worker = WorkerProcess(tmp / "worker.log", worker_args(database, redis.url))
    return nodes, worker


def test_a_worker_and_four_nodes_start_at_once_on_an_empty_postgresql_database(
    tmp_path: Path,
) -> None:
    for round_ in range(ROUNDS):
        tmp = tmp_path / f"round{round_}"
        tmp.mkdir()
        redis = RedisServer(tmp)
        database = TestDatabase(migrate=False)
        nodes, worker = start_together(tmp, database.ensure(), redis)
        try:
            one_round(round_, database.ensure(), nodes, worker)
        finally:
            for node in nodes:
                node.stop()
            worker.stop()
            database.drop()
            redis.stop()


def one_round(round_: int, url: str, nodes: list[ServerProcess], worker: WorkerProcess) -> None:
    """Hold the lock until all five wait for it, let go; then all ready, the schema once."""
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        for node in nodes:
            node.spawn()
        worker.start()
        wait_for_waiters(holder, NODES + 1, nodes, worker)
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    deadline = time.monotonic() + READY
    for node in nodes:
        node.wait_ready(max(deadline - time.monotonic(), 0.1))
    wait_worker_started(worker, deadline)
    with psycopg.connect(url) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'messages'"
        ).fetchone()
    assert versions == [(head(),)], (round_, versions)
    assert tables == (1,), tables


MIGRATE = "import sys; from hubbub.engine.migrations import upgrade; upgrade(sys.argv[1])"


def test_four_processes_migrate_one_new_sqlite_file_at_once(tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        path = tmp_path / f"round{round_}.db"
        migrators = [
            subprocess.Popen(
                [sys.executable, "-c", MIGRATE, f"sqlite:///{path}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(NODES)
        ]
        outputs = [m.communicate(timeout=READY)[0].decode(errors="replace") for m in migrators]
        assert [m.returncode for m in migrators] == [0] * NODES, outputs
        with contextlib.closing(sqlite3.connect(path)) as conn:
            versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        assert versions == [(head(),)], (round_, versions)
