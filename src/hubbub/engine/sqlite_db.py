"""SQLite in WAL mode: one writer thread that commits jobs in groups, and reader threads.

Group commit is what makes "acked means durable" cheap: every job queued while the
previous transaction was being committed goes into the next one, so one fsync
covers many sends. Each job runs inside its own savepoint, so one failing job
(a conflict, say) never rolls back the others of its group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hubbub import metrics
from hubbub.errors import Unavailable
from hubbub.migrations import upgrade

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_GROUP = 4096


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
    if readonly:
        conn.execute("PRAGMA query_only=1")
    return conn


class SqliteDatabase:
    """The embedded database: `write` jobs are group-committed, `read` jobs run concurrently."""

    def __init__(self, path: Path, readers: int = 2) -> None:
        self.path = path
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="hubbub-sqlite-read")
        self._local = threading.local()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_rollback: list[Callable[[], None]] = []
        self.commits = 0

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        upgrade(f"sqlite:///{self.path}")
        self._loop = asyncio.get_running_loop()
        conn = connect(self.path)
        self._writer = threading.Thread(
            target=self._write_loop, args=(conn,), name="hubbub-sqlite-writer", daemon=True
        )
        self._writer.start()

    async def close(self) -> None:
        if self._writer is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
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
        its one writing statement (SQLite undoes a failed statement by itself): two
        statements less per job, which on a busy core are two waits less for the GIL.
        """
        assert self._loop is not None, "database not open"
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put(_Job(run, future, on_commit, savepoint))
        return future

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

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                group = [first]
                stop = False
                while len(group) < MAX_GROUP:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stop = True
                        break
                    group.append(job)
                self._commit_group(conn, group)
                if stop:
                    return
        finally:
            conn.close()

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
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
            conn.execute("COMMIT")
            self.commits += 1
        except Exception as exc:
            log.exception("group commit failed")
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            for hook in self.on_rollback:
                hook()
            failure = _unavailable(exc)
            outcomes = [(job, None, failure) for job in group]
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_settle, outcomes)


def _unavailable(exc: Exception) -> Exception:
    """Database failures (disk full, I/O error, locked) are the client's `unavailable`."""
    if isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError:
        metrics.BACKEND_ERRORS.labels("sqlite").inc()
        return Unavailable(f"the database is unavailable ({exc}); retry later")
    return exc


def _settle(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
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
