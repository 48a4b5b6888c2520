"""An asyncpg pool, migrated on open, whose server failures reach callers as `unavailable`;
and `PostgresAdapter`, the pool as `engine.sql.Database`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import sqlalchemy.exc

from hubbub import metrics
from hubbub.engine.migrations import upgrade
from hubbub.engine.postgres.urls import asyncpg_dsn as asyncpg_dsn
from hubbub.engine.postgres.watch import DatabaseWatch
from hubbub.engine.sql import Row, numbered
from hubbub.protocol.errors import Unavailable

T = TypeVar("T")

# Failures that may leave the connection itself broken: its server or network gone, or
# (InternalClientError) the connection still consuming the error of a server that died, as
# asyncpg reports a statement sent on it before it noticed the socket closed.
BROKEN_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # includes TargetServerAttributeNotMatched: no writable host
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
)

# Failures of the server or the network, as opposed to errors of the statement itself.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    *BROKEN_CONNECTION_ERRORS,
    asyncpg.InsufficientResourcesError,
    asyncpg.TransactionRollbackError,  # serialization failure, deadlock: retry later
    asyncpg.QueryCanceledError,
    asyncpg.ReadOnlySQLTransactionError,  # a session on a host that is (now) a standby
)


class PostgresDatabase:
    """A pool of asyncpg connections to one database, migrated to the head revision on open."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        migrate: bool = True,
        watch: bool = False,
    ) -> None:
        self.url = url
        self.min_size = min_size
        self.max_size = max_size
        self.migrate = migrate
        # A node's pool: probed on a connection of its own, calls refused at once while the
        # database does not answer (engine.postgres.watch).
        self.watch = DatabaseWatch(asyncpg_dsn(url)) if watch else None
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        try:
            if self.migrate:
                await asyncio.to_thread(upgrade, self.url)
            self._pool = await asyncpg.create_pool(
                asyncpg_dsn(self.url),
                min_size=self.min_size,
                max_size=self.max_size,
                command_timeout=30,
                timeout=10,  # to connect, every listed host tried within it: never a hang
                reset=_keep_session,
            )
        except sqlalchemy.exc.OperationalError as exc:  # from the migration (psycopg)
            raise _unavailable(exc.orig or exc) from exc
        except UNAVAILABLE_ERRORS as exc:
            raise _unavailable(exc) from exc
        if self.watch is not None:
            self.watch.start()

    def problem(self) -> str | None:
        """Why this node cannot use the database now, in a sentence, or None."""
        return self.watch.problem() if self.watch is not None else None

    async def close(self) -> None:
        if self.watch is not None:
            await self.watch.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
        """A pooled connection; failures of the server reach callers as `Unavailable`."""
        assert self._pool is not None, "database not open"
        if self.watch is None:
            async with self._connection() as conn:
                yield conn
            return
        # Refused at once while the database is out of reach, and ended (Unavailable) if it
        # is found out of reach while this call waits on it.
        async with self.watch.bounded(), self._connection() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy]:
        assert self._pool is not None, "database not open"
        try:
            async with self._pool.acquire() as conn:
                try:
                    yield conn
                except BROKEN_CONNECTION_ERRORS:
                    # Never hand a half-dead connection to the next caller: the pool opens
                    # a new one on the next acquire, to whichever host now accepts writes.
                    conn.terminate()
                    raise
                except asyncio.CancelledError:
                    if self.watch is not None and self.watch.unreachable:
                        conn.terminate()  # cut short by the watch: its server is gone
                    raise
        except UNAVAILABLE_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def execute(self, sql: str, *args: Any) -> str:
        async with self.connection() as conn:
            return await conn.execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.connection() as conn:
            return await conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async with self.connection() as conn:
            return await conn.fetchrow(sql, *args)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection to the pool as it is (asyncpg has rolled back an open transaction).

    asyncpg's default reset sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL` on every release, a round trip per query. hubbub keeps no session state: no SET,
    LISTEN, session-level advisory lock (the worker's lock is per transaction) or cursor
    outside a transaction, so there is nothing to reset."""


def _unavailable(exc: BaseException) -> Unavailable:
    metrics.BACKEND_ERRORS.labels("postgres").inc()
    return Unavailable(
        f"the database is unavailable ({str(exc) or type(exc).__name__}); retry later"
    )


async def retried(read: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run a read (a SELECT: safe to repeat) and, if its connection broke under it, once more
    on a fresh one: after a failover the first statement on an old connection fails, the
    next finds the new primary. Not after a timeout: that would double a wait."""
    try:
        return await read(*args)
    except Unavailable as exc:
        cause = exc.__cause__
        if isinstance(cause, TimeoutError) or not isinstance(cause, BROKEN_CONNECTION_ERRORS):
            raise
        return await read(*args)


def touched(status: str) -> int:
    """Rows touched, from a command status such as `INSERT 0 1` or `DELETE 3`."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresAdapter:
    """`engine.sql.Database` on the pool: `?` statements run as `numbered` ones."""

    duplicate: tuple[type[Exception], ...] = (asyncpg.UniqueViolationError,)

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    async def one(self, sql: str, *args: Any) -> Row | None:
        return await retried(self.db.fetchrow, numbered(sql), *args)

    async def all(self, sql: str, *args: Any) -> Sequence[Row]:
        return await retried(self.db.fetch, numbered(sql), *args)

    async def run(self, sql: str, *args: Any) -> int:
        return touched(await self.db.execute(numbered(sql), *args))

    async def returning(self, sql: str, *args: Any) -> Sequence[Row]:
        return await self.db.fetch(numbered(sql), *args)

    async def transaction(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        async with self.db.connection() as conn, conn.transaction():
            for statement, args in statements:
                await conn.execute(numbered(statement), *args)
