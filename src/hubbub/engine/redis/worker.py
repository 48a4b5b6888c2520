"""The worker's job (`hubbub worker`): moves each room's Redis log into PostgreSQL, then trims it.

Nodes append to a room's Redis Stream (`hubbub.engine.redis.log`) and add the room to the
set `hubbub:dirty`. A worker pass:

1. picks rooms: a chunk popped from `hubbub:dirty`, rooms that failed in an earlier pass,
   and every `--scan-interval` seconds every room in PostgreSQL whose Redis counter differs
   from PostgreSQL's highest seq (a dirty mark is lost when a worker dies right after
   popping it, or when a node's SADD failed: the scan is what makes that harmless);
2. per room, per batch, in ONE PostgreSQL transaction that holds the room's advisory lock
   (`PostgresArchive.claim`; a worker that does not get it skips the room and marks it
   dirty again): `persisted` = the highest seq PostgreSQL has; XRANGE `persisted + 1 ..`
   at most `--batch` entries; note the batch in the room's list `hubbub:{room}:moving`;
   INSERT ... ON CONFLICT (room, seq) DO NOTHING; commit;
3. after the commit, settles the batch: EXPIRE each of its idempotency records
   (`--idempotency-ttl`; PostgreSQL's unique index remembers the ids for ever after), then
   `XTRIM MINID persisted - keep + 1`, so only persisted entries leave the stream and the
   `--keep` most recent stay as the recent-message cache; then drops the note.

Why it is safe to run several workers, and to kill -9 one at any point and restart it:

- The cursor is PostgreSQL's highest seq of the room, read and advanced in the transaction
  that inserts the batch, under the room's lock. A batch commits exactly once together
  with its cursor; a crash before the commit leaves nothing, and the next worker reads the
  same entries again. Re-inserting a stored seq does nothing (ON CONFLICT DO NOTHING).
- A crash after the commit but before the batch was settled leaves its records without a
  TTL and the stream untrimmed. The note in `hubbub:{room}:moving`, pushed under the lock
  before the commit, says so: the next worker to lock the room (the full scan finds every
  room with a note) settles every noted batch PostgreSQL has, and drops notes of batches
  that never committed (it holds the lock, so their transactions are over). EXPIRE, XTRIM
  and dropping a note are repeatable, and a trim never passes a batch still noted.
- An idempotency record gets its TTL only once its message is in PostgreSQL, and a stream
  entry is trimmed only once its record has a TTL and its message is in PostgreSQL.

The design doc suggests Redis consumer groups. Their acknowledgements live in Redis, apart
from the PostgreSQL commit: a crash between the two leaves entries pending, to be
reclaimed (XAUTOCLAIM) and possibly inserted twice. With PostgreSQL's highest seq as the
cursor, a batch and its cursor commit together and there is no pending-entries list.

Errors of Redis or PostgreSQL are logged and counted (`hubbub_backend_errors_total`); the
worker backs off and retries the rooms it did not finish, and never stops for them.
SIGTERM or SIGINT: the current batch finishes, then the worker exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, cast

import asyncpg
from redis.exceptions import RedisError

from hubbub import metrics
from hubbub.engine.base import Message
from hubbub.engine.postgres.archive import PostgresArchive
from hubbub.engine.postgres.database import PostgresDatabase
from hubbub.engine.redis.client import RedisClient
from hubbub.engine.redis.presence import sweep_dead_nodes
from hubbub.engine.redis.schema import (
    DIRTY_KEY,
    channel,
    decode_message,
    event_payload,
    id_key,
    moving_key,
    seq_key,
    shown_key,
    shown_seq,
    stream_key,
)
from hubbub.protocol.errors import Unavailable

log = logging.getLogger(__name__)

DIRTY_CHUNK: Final = 256  # rooms popped from the dirty set per pass
SCAN_CHUNK: Final = 500  # rooms per query and per Redis pipeline of a full scan
BATCHES_PER_VISIT: Final = 16  # then a busy room goes back to the dirty set: others get a turn
MAX_BACKOFF: Final = 5.0


@dataclass(frozen=True)
class WorkerSettings:
    """How much a worker moves at a time, and how long it keeps what."""

    batch: int = 1000
    poll_interval: float = 0.1
    keep: int = 1000
    idempotency_ttl: int = 86400
    scan_interval: float = 10.0

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError("--batch must be at least 1")
        if self.keep < 0:
            raise ValueError("--keep must not be negative")
        if self.idempotency_ttl < 1:
            raise ValueError("--idempotency-ttl must be at least 1 second")
        if self.poll_interval < 0 or self.scan_interval < 0:
            raise ValueError("--poll-interval and --scan-interval must not be negative")


@dataclass(frozen=True, slots=True)
class _Range:
    """One noted batch: seqs low..high of a room."""

    low: int
    high: int

    @property
    def note(self) -> str:
        return f"{self.low}:{self.high}"

    @classmethod
    def parse(cls, raw: bytes) -> _Range:
        low, _, high = raw.decode().partition(":")
        return cls(int(low), int(high))


@dataclass(slots=True)
class _Visit:
    """What one visit of a room did."""

    moved: int = 0
    lag: int = 0
    more: bool = False  # the room still had entries when the visit ended


class _Skip(Exception):
    """The room cannot be moved now (locked elsewhere, or broken data); try it later.

    `lag` is what waits in the room (0 when unknown): a stuck room still shows as lag."""

    def __init__(self, room: str, lag: int = 0) -> None:
        super().__init__(room)
        self.lag = lag


class Worker:
    """Moves Redis log entries into PostgreSQL, one pass at a time (see the module docstring).

    The database must be open; the Redis client must use `decode_responses=False`.
    """

    def __init__(
        self,
        db: PostgresDatabase,
        client: RedisClient,
        settings: WorkerSettings,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.archive = PostgresArchive(db)
        self.client = client
        self.settings = settings
        self.stopping = stopping or asyncio.Event()
        self._retry: set[str] = set()  # rooms an error interrupted: first in the next pass
        self._next_scan = 0.0  # monotonic time of the next full scan (the first pass scans)

    # Passes

    async def run(self) -> None:
        """Run passes until `stop()`; back off on backend errors, never give up."""
        backoff = 0.0
        while not self.stopping.is_set():
            try:
                moved = await self.run_pass()
            except Exception as exc:
                backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF)
                _report(exc, backoff)
                await self._sleep(backoff)
                continue
            backoff = 0.0
            if not moved:
                await self._sleep(self.settings.poll_interval)
        await self._remark(self._retry)

    def stop(self) -> None:
        """Finish the batch in progress, then leave `run`."""
        self.stopping.set()

    async def run_pass(self, scan: bool | None = None) -> int:
        """One pass over the rooms that need it; returns how many messages it moved.

        `scan` forces (True) or skips (False) the full scan; by default it is due every
        `scan_interval` seconds."""
        rooms = await self._rooms_to_visit(scan)
        moved = lag = 0
        pending = list(rooms)
        try:
            while pending and not self.stopping.is_set():
                visit = await self._visit(pending[0])
                pending.pop(0)
                moved += visit.moved
                lag += visit.lag
        except BaseException:
            self._retry.update(pending)
            raise
        metrics.WORKER_LAG.set(lag)
        if pending:  # stopping: leave the rest to the next worker
            await self._remark(pending)
        return moved

    async def _expire_presence(self) -> None:
        """Sweep the presence of dead nodes, as every node does each heartbeat: with no node
        left alive, the worker still expires their users (and says so on the rooms)."""
        events: list[tuple[str, dict[str, Any]]] = []
        await sweep_dead_nodes(self.client, lambda room, frame: events.append((room, frame)))
        if events:
            async with self.client.pipeline(transaction=False) as pipe:
                for room, frame in events:
                    pipe.execute_command("SPUBLISH", channel(room), event_payload(room, frame))
                await pipe.execute()

    async def _rooms_to_visit(self, scan: bool | None) -> list[str]:
        rooms = dict.fromkeys(sorted(self._retry))
        self._retry.clear()
        try:
            popped = cast(list[bytes], await self.client.spop(DIRTY_KEY, DIRTY_CHUNK)) or []
            rooms.update(dict.fromkeys(sorted(raw.decode() for raw in popped)))
            if scan or (scan is None and time.monotonic() >= self._next_scan):
                rooms.update(dict.fromkeys(await self._scan()))
                await self._expire_presence()
                self._next_scan = time.monotonic() + self.settings.scan_interval
        except BaseException:
            self._retry.update(rooms)
            raise
        return list(rooms)

    async def _scan(self) -> list[str]:
        """Every room whose Redis counter is not PostgreSQL's highest seq, or with a note."""
        found: list[str] = []
        after = ""
        while True:
            chunk = await self.archive.rooms(after, SCAN_CHUNK)
            if not chunk:
                return found
            async with self.client.pipeline(transaction=False) as pipe:
                for room, _ in chunk:
                    pipe.get(seq_key(room))
                    pipe.exists(moving_key(room))
                replies: list[Any] = await pipe.execute()
            for (room, persisted), last, noted in zip(
                chunk, replies[::2], replies[1::2], strict=True
            ):
                if noted or (last is not None and int(last) != persisted):
                    found.append(room)
            after = chunk[-1][0]

    async def _remark(self, rooms: Iterable[str]) -> None:
        """Put rooms back into the dirty set (best effort: the full scan finds them too)."""
        rooms = list(rooms)
        if not rooms:
            return
        try:
            await self.client.sadd(DIRTY_KEY, *rooms)
        except RedisError as exc:
            metrics.BACKEND_ERRORS.labels("redis").inc()
            log.warning("could not mark rooms dirty again: %s", exc, extra={"rooms": len(rooms)})
        else:
            self._retry.difference_update(rooms)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    # One room

    async def _visit(self, room: str) -> _Visit:
        """Move a room's batches until none remain (at most BATCHES_PER_VISIT of them)."""
        visit = _Visit()
        for number in range(BATCHES_PER_VISIT):
            if number and self.stopping.is_set():
                visit.more = True
                break
            try:
                moved, lag, full = await self._move_batch(room)
            except _Skip as skip:
                visit.lag = visit.lag if number else skip.lag
                return visit
            if not number:
                visit.lag = lag
            visit.moved += moved
            if not full:
                return visit
            visit.more = True
        if visit.more:
            await self._remark([room])
        return visit

    async def _move_batch(self, room: str) -> tuple[int, int, bool]:
        """Move one batch; returns (messages moved, lag seen, whether the batch was full)."""
        started = time.perf_counter()
        async with self.archive.claim(room) as claim:
            if claim is None:  # another worker is moving this room
                await self._remark([room])
                raise _Skip(room)
            persisted = claim.persisted
            last, notes, entries = await self._read(room, persisted)
            lag = max(last - persisted, 0)
            _check(room, persisted, last, lag, entries)
            done = [note for note in notes if note.low <= persisted]
            stale = [note for note in notes if note.low > persisted]  # never committed
            batch = _Range(entries[0].seq, entries[-1].seq) if entries else None
            if stale or batch:
                await self._note(room, stale, batch)
            try:
                await claim.insert(entries)
            except asyncpg.IntegrityConstraintViolationError as exc:
                # An unknown room, or a known id under another seq: skipping a message would
                # leave a hole in history, so the room waits for a person to look.
                metrics.BACKEND_ERRORS.labels("postgres").inc()
                log.error("cannot store the room's log: %s", exc, extra={"room": room})
                raise _Skip(room, lag) from exc
        if done or batch:
            await self._settle(room, batch.high if batch else persisted, done, batch, entries)
        if batch:
            log.debug("moved", extra={"room": room, "low": batch.low, "high": batch.high})
            metrics.WORKER_PERSISTED.inc(len(entries))
            metrics.WORKER_BATCH.observe(time.perf_counter() - started)
        return len(entries), lag, len(entries) == self.settings.batch

    async def _read(self, room: str, persisted: int) -> tuple[int, list[_Range], list[Message]]:
        """The room's last seq shown to clients, its notes, and the next batch after
        `persisted` (never above what was shown: with --redis-replicas, an entry above the
        `shown` marker may be missing from the replicas, and a failover would give its seq
        to another message)."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(shown_key(room))
            pipe.get(seq_key(room))
            pipe.lrange(moving_key(room), 0, -1)
            pipe.xrange(stream_key(room), str(persisted + 1), "+", self.settings.batch)
            shown, seq, notes, entries = await pipe.execute()
        # After a failover the marker may lag what PostgreSQL already has (its last raise
        # had not reached the replica): that is no counter behind PostgreSQL.
        last = max(shown_seq(shown, seq), min(persisted, int(seq or 0)))
        messages = [decode_message(fields) for _, fields in entries]
        return last, [_Range.parse(raw) for raw in notes], [m for m in messages if m.seq <= last]

    async def _note(self, room: str, stale: list[_Range], batch: _Range | None) -> None:
        """Drop notes of batches that never committed; note the batch about to commit."""
        async with self.client.pipeline(transaction=False) as pipe:
            for note in stale:
                pipe.lrem(moving_key(room), 1, note.note)
            if batch is not None:
                pipe.rpush(moving_key(room), batch.note)
            await pipe.execute()

    async def _settle(
        self,
        room: str,
        upto: int,
        earlier: list[_Range],
        batch: _Range | None,
        entries: list[Message],
    ) -> None:
        """Give committed batches' records a TTL, trim the stream up to `upto - keep`, and
        drop the batches' notes.

        `entries` are the messages of `batch`, just committed; those of `earlier` batches
        (committed, but left unsettled by a worker that died) are read back from the
        stream, which still holds them: trims stop at every batch still noted."""
        messages = list(entries)
        if earlier:
            async with self.client.pipeline(transaction=False) as pipe:
                for r in earlier:
                    pipe.xrange(stream_key(room), str(r.low), str(min(r.high, upto)))
                for reply in await pipe.execute():
                    messages += [decode_message(fields) for _, fields in reply]
        ttl = self.settings.idempotency_ttl
        async with self.client.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.expire(id_key(room, message.sender, message.id), ttl)
            minid = upto - self.settings.keep + 1
            if minid > 1:
                pipe.xtrim(stream_key(room), minid=minid, approximate=False)
            for r in [*earlier, *([batch] if batch else [])]:
                pipe.lrem(moving_key(room), 1, r.note)
            await pipe.execute()


def _check(room: str, persisted: int, last: int, lag: int, entries: list[Message]) -> None:
    """Refuse a batch that does not continue PostgreSQL's history seq by seq.

    Entries PostgreSQL lacks were trimmed or lost from the stream (it should not happen:
    trims stop at what PostgreSQL has). Inventing them is impossible and skipping them
    would hide the loss, so the room stops here, loudly, every pass."""
    if last and last < persisted:
        metrics.BACKEND_ERRORS.labels("redis").inc()
        log.error(
            "the Redis counter is behind PostgreSQL's history",
            extra={"room": room, "redis_seq": last, "persisted": persisted},
        )
    expected = list(range(persisted + 1, persisted + 1 + len(entries)))
    missing = (not entries and last > persisted) or [m.seq for m in entries] != expected
    if missing:
        metrics.BACKEND_ERRORS.labels("redis").inc()
        log.error(
            "the Redis log lacks entries PostgreSQL does not have; not moving this room",
            extra={
                "room": room,
                "persisted": persisted,
                "first_in_stream": entries[0].seq if entries else None,
                "redis_seq": last,
            },
        )
        raise _Skip(room, lag)


def _report(exc: Exception, backoff: float) -> None:
    """Log a failed pass; count Redis failures (PostgreSQL's are counted where they occur)."""
    if isinstance(exc, RedisError):
        metrics.BACKEND_ERRORS.labels("redis").inc()
    if isinstance(exc, RedisError | OSError | Unavailable):
        log.warning("worker pass failed, retrying in %.1fs: %s", backoff, exc)
    else:
        log.exception("worker pass failed unexpectedly, retrying in %.1fs", backoff)
