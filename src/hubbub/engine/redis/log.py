"""Each room's durable log on Redis: one Lua script per send (idempotency, seq, stream, publish).

Every key of a room carries the room as the hash tag `{room}` (the layout, the payloads
and the script: `engine.redis.schema`), so on Redis Cluster a room's keys, and its
sharded channel, live in one slot and the script may touch them all.

Guarantees. The script runs atomically, so a seq is assigned, logged, recorded for
idempotency and published together or not at all; with `appendonly yes` and
`appendfsync always` Redis fsyncs the AOF before it replies, so an acked message survives a
crash of Redis (kill -9, power cut). With `everysec` the last second of acks can be lost.
With `wait_replicas=n` an append also waits until n replicas have the write, which is what
survives losing the primary's machine, and no client sees a message before that: the
script does not publish then; once WAIT's count is checked the writer publishes the
batch's rooms up to their new seqs (`engine.redis.shown`), and reads (`read`, `page`,
`last_seq`) stop at what was published, so a failover never takes back a message someone
was shown. Redis must run with `maxmemory-policy noeviction`: an evicted counter or record
would break the log's rules.

Idempotency records have no TTL when written: the worker (`hubbub.engine.redis.worker`) gives each
one a TTL once its message is in PostgreSQL, where the unique index keeps the id for ever
(`DistributedLog` checks there before appending). Every append batch also adds its rooms
to the set `hubbub:dirty`, which tells the worker where to look. A counter that is missing
(a new room, or a Redis that lost its data) is seeded from the database when a `seed`
callback is given, so seqs never restart below what history already holds. History below
the stream's trim point is the database's job; `read` and `page` here see only the stream.

A known id: the script returns the stored message untouched and `engine.base.replayed`,
the rule every engine applies, answers it (that message, or Conflict for another body).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, cast

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hubbub import metrics
from hubbub.engine.base import Appended, Message, OnCommit, replayed
from hubbub.engine.redis.client import (
    CLUSTER_UNAVAILABLE,
    RedisClient,
    client_options,
    is_cluster,
    lacks_replicas,
    recheck_primary,
)
from hubbub.engine.redis.schema import (
    APPEND_SCRIPT,
    DIRTY_KEY,
    REDACT_SCRIPT,
    SCRIPT_SHA,
    channel,
    decode_message,
    decode_published,
    gone_key,
    id_key,
    room_key_pattern,
    seq_key,
    shown_key,
    shown_seq,
    stream_key,
)
from hubbub.engine.redis.shown import publish_replicated, read_shown
from hubbub.protocol.errors import NotFound, Unavailable

MAX_BATCH: Final = 4096  # commands per pipeline: bounds a round trip's size and latency

_UNAVAILABLE_ERRORS: Final = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    *CLUSTER_UNAVAILABLE,
)


def _needs_seed(reply: Any) -> bool:
    return isinstance(reply, list) and bool(reply) and reply[0] == -2


def _has_message(reply: Any) -> bool:
    """An append script's reply that carries a message (created, or the stored one)."""
    return isinstance(reply, list) and bool(reply) and reply[0] in (0, 1)


def _unavailable(exc: BaseException) -> Unavailable:
    metrics.BACKEND_ERRORS.labels("redis").inc()
    return Unavailable(f"the message log is unavailable: {exc}")


@dataclass(slots=True)
class _Job:
    """One command for the ordered pipeline and what to make of its reply."""

    command: tuple[Any, ...]
    finish: Callable[[Any], Any]
    future: asyncio.Future[Any]
    is_append: bool = False
    room: str | None = None
    failure: Unavailable | None = None  # with wait_replicas: not replicated, or not published


class RedisLog:
    """Per-room gapless logs in Redis Streams; appends are pipelined, in order, by one writer.

    Every command goes through one writer task that sends what was queued since its last
    round trip as one pipeline and handles the replies in order. So `on_commit` sees this
    node's messages in seq order, and `last_seq` answers only after `on_commit` ran for every
    earlier append of this node, as `SqliteLog` does. (Other nodes' messages reach a node
    through the channel, not `on_commit`.)

    The client must be built with `decode_responses=False`, and with a `socket_timeout`
    longer than `wait_timeout_ms` when `wait_replicas` is set. A connection error mid-batch
    fails the batch with Unavailable even though its scripts may have run; a retry with the
    same ids is safe, and then returns the stored messages. (So is the client's own retry,
    if it has one; a message created by a lost first attempt then comes back with
    `created=False` and skips `on_commit`, though the channel carried it.)
    """

    def __init__(
        self,
        client: RedisClient,
        on_commit: OnCommit,
        *,
        seed: Callable[[str], Awaitable[int]] | None = None,
        sharded_pubsub: bool = False,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        options = client_options(client)
        if options.get("decode_responses"):
            raise ValueError("RedisLog needs a client with decode_responses=False")
        if wait_replicas and is_cluster(client):
            # WAIT has no key: a cluster would send it to any node, not the shards that
            # took this batch's writes, and it would wait for nothing.
            raise ValueError(
                "--redis-replicas is not supported on a Redis Cluster (redis+cluster://): "
                "WAIT cannot follow writes spread over several shards"
            )
        socket_timeout = options.get("socket_timeout")
        if (
            wait_replicas
            and socket_timeout is not None
            and wait_timeout_ms >= socket_timeout * 1000
        ):
            # Else the client gives up on the connection while WAIT is still blocking.
            raise ValueError("wait_timeout_ms must be shorter than the client's socket_timeout")
        self.client = client
        self.on_commit = on_commit
        self.seed = seed
        self.publish_command = "SPUBLISH" if sharded_pubsub else "PUBLISH"
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.script_sha = SCRIPT_SHA[APPEND_SCRIPT]
        self.round_trips = 0  # pipelines sent: observable batching
        self._queue: list[_Job] = []
        self._writer: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Wait for queued commands to finish (the client belongs to the caller)."""
        if self._writer is not None:
            await asyncio.shield(self._writer)

    # The Log protocol

    async def append(self, room: str, sender: str, msg_id: str, body: str) -> Appended:
        keys = (
            seq_key(room),
            stream_key(room),
            id_key(room, sender, msg_id),
            gone_key(room),
            shown_key(room),
        )
        must_seed = "1" if self.seed is not None else "0"
        # With wait_replicas the writer publishes, after WAIT: '' tells the script not to.
        publish = "" if self.wait_replicas else self.publish_command
        args = (room, msg_id, sender, body, must_seed, channel(room), publish)
        command = ("EVALSHA", self.script_sha, len(keys), *keys, *args)

        def finish(reply: list[Any]) -> Appended:
            if reply[0] == -3:  # deleted (on any node): nothing was written
                raise NotFound(f"no room {room!r}")
            if reply[0] == -2:  # still missing after the writer seeded it
                raise Unavailable(f"the seq counter of room {room!r} could not be seeded")
            message = decode_published(reply[1])
            if reply[0] == 0:  # the id is known: the stored message
                return replayed(message, body)
            self.on_commit(message)
            return Appended(message, created=True)

        result: Appended = await self._submit(command, finish, is_append=True, room=room)
        return result

    def send(self, *command: Any) -> asyncio.Future[Any]:
        """Run any command in order with this node's appends (a publish, say)."""
        return self._submit(command, lambda reply: reply)

    async def last_seq(self, room: str) -> int:
        # Through the writer, like an append: see the class docstring. With wait_replicas,
        # the last seq published (the `shown` marker).
        if not self.wait_replicas:
            result: int = await self._submit(("GET", seq_key(room)), lambda v: int(v or 0))
            return result
        command = ("MGET", shown_key(room), seq_key(room))
        shown: int = await self._submit(command, lambda values: shown_seq(*values))
        return shown

    async def redact(self, room: str) -> None:
        """Mark the room deleted and rewrite its stream without bodies (`REDACT_SCRIPT`),
        in order with this node's appends; then delete its idempotency records, which
        hold the bodies too."""
        await self._submit(("EVAL", REDACT_SCRIPT, 2, stream_key(room), gone_key(room)), int)
        await self._delete_matching(f"{room_key_pattern(room)[:-1]}id:*")

    async def purge(self, room: str) -> None:
        """Delete every key of the room (counter, stream, records, marker, presence) and
        its dirty mark: a room of that name starts afresh."""
        await self._delete_matching(room_key_pattern(room))
        try:
            await self.client.srem(DIRTY_KEY, room)
        except _UNAVAILABLE_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def _delete_matching(self, pattern: str) -> None:
        try:
            batch: list[Any] = []
            async for key in self.client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await self.client.unlink(*batch)
                    batch = []
            if batch:
                await self.client.unlink(*batch)
        except _UNAVAILABLE_ERRORS as exc:
            raise _unavailable(exc) from exc

    async def read(self, room: str, after: int, upto: int) -> list[Message]:
        low = max(after, 0) + 1
        if upto < low:
            return []
        return await self._range(room, low, upto, None)

    async def page(
        self, room: str, before: int | None, after: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        low = 1 if after is None else max(after, 0) + 1
        high = None if before is None else before - 1
        if high is not None and high < low:
            return [], False
        if after is not None and before is None:
            # The oldest above a lone `after`; "more" means newer ones exist.
            rows = await self._range(room, low, None, limit + 1)
            return rows[:limit], len(rows) > limit
        # The newest below `before` (or the newest of all); "more" means older ones exist.
        rows = await self._range(room, low, high, limit + 1, newest_first=True)
        more = len(rows) > limit
        rows = rows[:limit]
        rows.reverse()
        return rows, more

    async def read_first(self, room: str) -> Message | None:
        """The oldest message the stream still holds (the worker trims below it)."""
        rows = await self._range(room, 0, None, 1)
        return rows[0] if rows else None

    # Reads

    async def _range(
        self, room: str, low: int, high: int | None, count: int | None, newest_first: bool = False
    ) -> list[Message]:
        top = "+" if high is None else str(high)
        for attempt in (1, 2):
            try:
                if self.wait_replicas:  # never above what was published
                    return await read_shown(self.client, room, low, high, count, newest_first)
                if newest_first:
                    reply = await self.client.xrevrange(stream_key(room), top, str(low), count)
                else:
                    reply = await self.client.xrange(stream_key(room), str(low), top, count)
                break
            except RedisConnectionError as exc:
                # A pooled connection that died with a Redis restart or failover fails its
                # next command; a read is safe to ask again, once, on a fresh connection.
                if attempt == 2 or isinstance(exc, RedisTimeoutError):
                    raise _unavailable(exc) from exc
            except _UNAVAILABLE_ERRORS as exc:
                raise _unavailable(exc) from exc
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], reply)
        return [decode_message(fields) for _, fields in entries]

    # The ordered pipeline

    def _submit(
        self,
        command: tuple[Any, ...],
        finish: Callable[[Any], Any],
        is_append: bool = False,
        room: str | None = None,
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(command, finish, future, is_append, room=room))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="hubbub-redis-log-writer")
        return future

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                replies = await self._execute(batch)
            except _UNAVAILABLE_ERRORS as exc:
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(_unavailable(exc))
                continue
            except asyncio.CancelledError:
                for job in batch:
                    job.future.cancel()
                raise
            except Exception as exc:  # an unexpected failure: no waiter hangs
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, reply in replies:
                self._resolve(job, reply)

    def _resolve(self, job: _Job, reply: Any) -> None:
        # `finish` runs even for a cancelled waiter: a created message still goes to on_commit.
        try:
            if isinstance(reply, BaseException):
                unavailable = isinstance(reply, _UNAVAILABLE_ERRORS) or lacks_replicas(reply)
                raise _unavailable(reply) if unavailable else reply
            if job.failure is not None:  # nothing was published: on_commit must not see it
                raise job.failure
            result = job.finish(reply)
        except BaseException as exc:
            if not job.future.done():
                job.future.set_exception(exc)
            return
        if not job.future.done():
            job.future.set_result(result)

    async def _execute(self, batch: list[_Job]) -> list[tuple[_Job, Any]]:
        """The jobs' replies in the order Redis ran them: one pipeline for the batch (and WAIT
        after it); if the script was missing on the server, say after a restart, it is loaded
        and the commands that failed for that sent again, still in order, after the others."""
        done = list(zip(batch, await self._pipeline(batch), strict=True))
        missing = [job for job, reply in done if isinstance(reply, NoScriptError)]
        if missing:
            await self.client.script_load(APPEND_SCRIPT)
            done = [(job, reply) for job, reply in done if not isinstance(reply, NoScriptError)]
            done += zip(missing, await self._pipeline(missing), strict=True)
        unseeded = [job for job, reply in done if job.is_append and _needs_seed(reply)]
        if unseeded:
            # Every append of such a room in this batch found its counter missing (nothing
            # was written), so sending them again, in order, keeps the room's call order.
            resent = {id(job) for job in unseeded}
            done = [(job, reply) for job, reply in done if id(job) not in resent]
            try:
                await self._seed_rooms({job.room for job in unseeded if job.room is not None})
            except _UNAVAILABLE_ERRORS:
                raise
            except Exception as exc:  # the database: those appends fail, the rest stand
                failed = Unavailable(f"the database is unavailable to seed a counter: {exc}")
                return done + [(job, failed) for job in unseeded]
            done += zip(unseeded, await self._pipeline(unseeded), strict=True)
        if self.wait_replicas:
            await self._publish(done)
        return done

    async def _publish(self, done: list[tuple[_Job, Any]]) -> None:
        """With wait_replicas, once WAIT confirmed the batch: publish each room up to the
        batch's highest seq there, created or known (a known id may be one whose earlier
        WAIT failed, so never published); an append whose room was not published fails."""
        uptos: dict[str, int] = {}
        for job, reply in done:
            if (
                job.is_append
                and job.failure is None
                and job.room is not None
                and _has_message(reply)
            ):
                seq = decode_published(reply[1]).seq
                uptos[job.room] = max(seq, uptos.get(job.room, 0))
        if not uptos:
            return
        self.round_trips += 1
        try:
            errors = await publish_replicated(self.client, uptos, self.publish_command)
        except _UNAVAILABLE_ERRORS as exc:
            errors = dict.fromkeys(uptos, exc)
        for job, _ in done:
            error = errors.get(job.room) if job.is_append and job.room else None
            if error is not None and job.failure is None:
                job.failure = _unavailable(error)

    async def _seed_rooms(self, rooms: set[str]) -> None:
        """Set missing counters to the database's last seqs (SET NX: a concurrent seeder of
        another node sets the same value)."""
        assert self.seed is not None
        names = sorted(rooms)
        lasts = await asyncio.gather(*(self.seed(room) for room in names))
        async with self.client.pipeline(transaction=False) as pipe:
            for room, last in zip(names, lasts, strict=True):
                pipe.set(seq_key(room), last, nx=True)
            await pipe.execute()

    async def _pipeline(self, batch: list[_Job]) -> list[Any]:
        wait = self.wait_replicas > 0 and any(job.is_append for job in batch)
        rooms = {job.room for job in batch if job.is_append and job.room is not None}
        async with self.client.pipeline(transaction=False) as pipe:
            for job in batch:
                pipe.execute_command(*job.command)
            if rooms:
                pipe.execute_command("SADD", DIRTY_KEY, *rooms)
            if wait:
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            self.round_trips += 1
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        if wait:
            acknowledged = replies.pop()
            if isinstance(acknowledged, BaseException):
                raise acknowledged
            if acknowledged < self.wait_replicas:
                failure = Unavailable(
                    f"fewer than {self.wait_replicas} replicas acknowledged the write "
                    f"within {self.wait_timeout_ms} ms"
                )
                for job in batch:
                    if job.is_append:
                        job.failure = failure
                await recheck_primary(self.client)  # it may be a primary no longer
        if rooms:
            replies.pop()  # the SADD: the worker's full scan covers a failed one
        if any(lacks_replicas(reply) for reply in replies):
            await recheck_primary(self.client)  # as above: refused for want of replicas
        return replies
