"""Whether this node can reach its PostgreSQL: a probe of its own, so a node cut off from the
database says so at once instead of holding every caller for a statement timeout.

A partition (a pulled cable, a firewall, a switch that drops packets) refuses nothing:
statements and connection attempts hang until a timeout, 30 s for a statement. A node in
that state would stay in the load balancer's rotation and keep every client's send waiting.
So a node runs `DatabaseWatch`: every `INTERVAL` seconds a `SELECT 1` on a connection of
its own (never one of the pool's, which a burst of long queries may hold), bounded by
`TIMEOUT`. After `MISSES` failures in a row:

- `problem` says so in a sentence, and `/readyz` answers 503 with it (the load balancer
  sends the node no new clients);
- calls (`bounded`, around every `PostgresDatabase.connection`) fail at once with
  `Unavailable` ("retry later") instead of hanging, until a probe succeeds; calls already
  waiting on the database end the same way at that moment (their connections are dropped:
  a write whose COMMIT was cut short is as uncertain as after any timeout).

The probe connects as the pool does (the multi-host URL, `target_session_attrs`), so after
a failover it finds the new primary, and the first probe that answers ends the refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import asyncpg

from hubbub import metrics
from hubbub.protocol.errors import Unavailable

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between probes
TIMEOUT = 2.0  # seconds a probe (connecting included) may take
MISSES = 2  # failed probes in a row before the database is judged unreachable


class DatabaseWatch:
    def __init__(
        self,
        dsn: str,
        interval: float = INTERVAL,
        timeout: float = TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dsn = dsn
        self.interval = interval
        self.timeout = timeout
        self.clock = clock
        self.misses = 0
        self.failing_since: float | None = None  # the first miss of the current run
        self.error = ""
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiting: set[asyncio.Timeout] = set()  # the scopes of calls in flight

    @property
    def unreachable(self) -> bool:
        return self.misses >= MISSES

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hubbub-database-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop()

    def problem(self) -> str | None:
        """Why the database cannot be used now, in a sentence; None while it answers."""
        if not self.unreachable or self.failing_since is None:
            return None
        seconds = self.clock() - self.failing_since
        why = f" ({self.error})" if self.error else ""
        return f"the database has not answered for {seconds:.0f} s{why}"

    def refusal(self) -> Unavailable | None:
        """The error a call gets at once while the database is unreachable, or None."""
        problem = self.problem()
        return Unavailable(f"{problem}; retry later") if problem is not None else None

    @contextlib.asynccontextmanager
    async def bounded(self) -> AsyncIterator[None]:
        """Around one call: Unavailable at once while the database is out of reach, or as
        soon as it is judged so while the call waits."""
        refusal = self.refusal()
        if refusal is not None:
            raise refusal
        scope = asyncio.timeout(None)
        try:
            async with scope:
                self._waiting.add(scope)
                try:
                    yield
                finally:
                    self._waiting.discard(scope)
        except TimeoutError as exc:
            refusal = self.refusal()
            if scope.expired() and refusal is not None:
                raise refusal from exc
            raise

    async def probe(self) -> bool:
        """One `SELECT 1` (connecting first if need be), within `timeout`; True if answered."""
        started = self.clock()
        try:
            async with asyncio.timeout(self.timeout):
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(self.dsn, timeout=self.timeout)
                await self._conn.fetchval("SELECT 1")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self._drop()
            self._missed(exc, started)
            return False
        if self.unreachable:
            log.warning("the database answers again", extra={"after": self._elapsed()})
        self.misses, self.failing_since = 0, None
        return True

    def _missed(self, exc: BaseException, started: float) -> None:
        self.error = "" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
        if self.misses == 0:
            self.failing_since = started
        self.misses += 1
        if self.misses == MISSES:
            metrics.BACKEND_ERRORS.labels("postgres").inc()
            log.error(
                "the database does not answer; refusing its calls until it does",
                extra={
                    "seconds": self._elapsed(),
                    "error": self.error,
                    "ended": len(self._waiting),
                },
            )
            now = asyncio.get_running_loop().time()
            for scope in self._waiting:
                scope.reschedule(now)  # each waiting call ends with TimeoutError -> Unavailable

    def _elapsed(self) -> float:
        return round(self.clock() - (self.failing_since or self.clock()), 1)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()  # never a graceful close: the server may not answer

    async def _run(self) -> None:
        while True:
            started = self.clock()
            await self.probe()
            await asyncio.sleep(max(0.0, self.interval - (self.clock() - started)))
