"""Alembic environment: runs the migrations on the URL the caller configured, one process at a time.

Any number of nodes and workers may start together on an empty database (docker-compose and
Kubernetes do): each one migrates on open, so the migrations run under a lock that the others
wait for. They then find the schema at head and do nothing. On PostgreSQL that is a
transaction-scoped advisory lock (PostgreSQL runs DDL in transactions, so the whole upgrade is
one transaction and the lock goes with its commit or rollback); on SQLite, an exclusive
`flock` on the database file itself (SQLite's own locks are POSIX record locks, which `flock`
does not interact with on Linux, so this waits for other migrators only, never for readers
or writers of the database).
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text

from hubbub.engine.migrations import MIGRATION_LOCK


@contextlib.contextmanager
def sqlite_file_lock(database: str | None) -> Iterator[None]:
    """Hold an exclusive flock on the SQLite file (created empty if new: a valid database)."""
    if not database or database == ":memory:":
        yield
        return
    with open(database, "ab") as file:
        fcntl.flock(file, fcntl.LOCK_EX)  # released when the file closes
        yield


def run(connection: Connection) -> None:
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


url = context.config.get_main_option("sqlalchemy.url")
assert url is not None
engine = create_engine(url, poolclass=pool.NullPool)
lock = sqlite_file_lock(engine.url.database) if engine.dialect.name == "sqlite" else None
with lock or contextlib.nullcontext(), engine.connect() as connection:
    run(connection)
engine.dispose()
