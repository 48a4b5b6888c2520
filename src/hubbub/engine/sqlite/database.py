"""SQLite in WAL mode: write jobs committed in groups on the event loop, reads in threads.

Group commit is what makes "acked means durable" cheap: every job queued while the
previous transaction was being committed goes into the next one, so one fsync
covers many sends. Each job runs inside its own savepoint (unless it needs none), so
one failing job (a conflict, say) never rolls back the others of its group.

The jobs' statements run on the event loop: they touch only SQLite's page cache and
take microseconds, and running them there costs no thread switch. Only the COMMIT,
which waits for the fsync, runs in a thread. A writer thread running the statements
itself would need the GIL back after every statement, and on a busy core each of
those handoffs waits for the interpreter's switch interval (5 ms): that, not the
fsync, was most of a send's latency under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from hubbub import metrics
from hubbub.engine.migrations import upgrade
from hubbub.protocol.errors import Unavailable

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_GROUP = 4096

Outcomes = list[tuple["_Job", Any, BaseException | None]]


@dataclass(slots=True)
class _Job:
    run: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    on_commit: Callable[[Any], None] | None
    savepoint: bool


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # fsync the WAL per commit
    conn.execute("PRAGMA busy_timeout=5000")
    # What a delete frees is overwritten with zeros, not left in the file's free space:
    # a deleted message's text must be gone from storage (see `scrub_after_commit`).
    conn.execute("PRAGMA secure_delete=ON")
    if readonly:
        conn.execute("PRAGMA query_only=1")
    return conn


class SqliteDatabase:
    """The embedded database: `write` jobs are group-committed, `read` jobs run concurrently."""

    def __init__(self, path: Path, readers: int = 2) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._queued: list[_Job] = []
        self._busy = False  # a group is being run or committed: new jobs wait for the next
        self._idle = asyncio.Event()
        self._idle.set()
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="hubbub-sqlite-commit")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="hubbub-sqlite-read")
        self._local = threading.local()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_rollback: list[Callable[[], None]] = []
        self.commits = 0
        self._scrub = False  # a job of the group being run removed text (a delete)

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        upgrade(f"sqlite:///{self.path}")
        self._loop = asyncio.get_running_loop()
        self._conn = connect(self.path)

    async def close(self) -> None:
        if self._conn is not None:
            await self._idle.wait()
            self._conn.close()
            self._conn = None
        self._committer.shutdown(wait=True)
        self._readers.shutdown(wait=True)

    def write(
        self,
        run: Callable[[sqlite3.Connection], T],
        on_commit: Callable[[T], None] | None = None,
        *,
        savepoint: bool = True,
    ) -> asyncio.Future[T]:
        """Queue `run(conn)` for the next group commit; the future resolves once it is durable.

        `on_commit(result)` runs on the event loop right after the commit, in queue order,
        before the future resolves: the hook for publishing in commit order.

        Each job runs in a savepoint, so a job that fails leaves no trace in its group.
        `savepoint=False` skips it for a job that raises only before it writes or from
        its one writing statement (SQLite undoes a failed statement by itself).
        """
        assert self._loop is not None and self._conn is not None, "database not open"
        future: asyncio.Future[T] = self._loop.create_future()
        self._queued.append(_Job(run, future, on_commit, savepoint))
        if not self._busy:
            self._busy = True
            self._idle.clear()
            self._loop.call_soon(self._next_group)
        return future

    def scrub_after_commit(self) -> None:
        """Called by a job that removes text: once its group commits, the WAL is
        checkpointed into the database file and truncated, so the removed text is left
        neither in the file (secure_delete zeroed it there) nor in the WAL's older frames."""
        self._scrub = True

    async def read(self, run: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, run)

    def _read(self, run: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        try:
            if conn is None:
                conn = self._local.conn = connect(self.path, readonly=True)
            return run(conn)
        except sqlite3.OperationalError as exc:
            raise _unavailable(exc) from exc

    def _next_group(self) -> None:
        """Run the queued jobs in one transaction and hand its COMMIT to the thread."""
        group = self._queued[:MAX_GROUP]
        del self._queued[:MAX_GROUP]
        if not group:
            self._busy = False
            self._idle.set()
            return
        conn = self._conn
        assert conn is not None and self._loop is not None
        outcomes: Outcomes = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in group:
                if job.savepoint:
                    conn.execute("SAVEPOINT job")
                try:
                    result = job.run(conn)
                except Exception as exc:  # the job's own failure: only this job is undone
                    if job.savepoint:
                        conn.execute("ROLLBACK TO job")
                    outcomes.append((job, None, _unavailable(exc)))
                else:
                    outcomes.append((job, result, None))
                if job.savepoint:
                    conn.execute("RELEASE job")
        except Exception as exc:
            self._failed(conn, group, exc)
            self._loop.call_soon(self._next_group)
            return
        scrub, self._scrub = self._scrub, False
        commit = self._committer.submit(_commit, conn, scrub)
        commit.add_done_callback(partial(self._committed_threadsafe, group, outcomes))

    def _committed_threadsafe(
        self, group: list[_Job], outcomes: Outcomes, done: Future[Any]
    ) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._committed, group, outcomes, done)

    def _committed(self, group: list[_Job], outcomes: Outcomes, done: Future[Any]) -> None:
        exc = done.exception()
        if exc is not None:
            assert self._conn is not None
            self._failed(self._conn, group, exc)
            self._next_group()
            return
        self.commits += 1
        # What was queued meanwhile goes first, so that its fsync runs while this group's
        # results are published (a fan-out to many connections takes a while). Groups
        # still settle in commit order: the next one settles after its own COMMIT.
        self._next_group()
        _settle(outcomes)

    def _failed(self, conn: sqlite3.Connection, group: list[_Job], exc: BaseException) -> None:
        log.error("group commit failed", exc_info=exc)
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        for hook in self.on_rollback:
            hook()
        failure = _unavailable(exc) if isinstance(exc, Exception) else exc
        _settle([(job, None, failure) for job in group])


def _commit(conn: sqlite3.Connection, scrub: bool) -> None:
    """COMMIT (in the committer thread), then the checkpoint a delete asked for: it waits
    for the readers (busy_timeout) and must not fail the commit, which is durable."""
    conn.execute("COMMIT")
    if not scrub:
        return
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    except sqlite3.Error:
        log.exception("checkpoint after a delete failed")
        return
    if busy:
        log.warning("checkpoint after a delete was blocked; the next one completes it")


def _unavailable(exc: Exception) -> Exception:
    """Database failures (disk full, I/O error, locked) are the client's `unavailable`."""
    if isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError:
        metrics.BACKEND_ERRORS.labels("sqlite").inc()
        return Unavailable(f"the database is unavailable ({exc}); retry later")
    return exc


def _settle(outcomes: Outcomes) -> None:
    for job, result, exc in outcomes:
        if exc is None and job.on_commit is not None:
            try:
                job.on_commit(result)
            except Exception:
                log.exception("post-commit hook failed")
        if job.future.cancelled():
            continue
        if exc is not None:
            job.future.set_exception(exc)
        else:
            job.future.set_result(result)
