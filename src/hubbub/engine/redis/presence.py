"""Who is online in which room across many nodes, on Redis, and how a dead node's users go.

Each node counts its own connections (room -> user key -> display name and connections) and
tells Redis only when a user's first connection in a room appears on the node or the last
one goes.
Redis holds, per room, the user keys each node incarnation has there, a count of
incarnations per user and the display names; per incarnation, the rooms where it has
entries; and one hash of every incarnation's heartbeat expiry, `hubbub:nodes` (every key and
script: `engine.redis.schema`; a room's keys carry the room as the hash tag `{room}`, so on
Redis Cluster a room's presence lives in one slot and each script touches one room only).

A user key is the lower-cased name (names are case-insensitive); the display name is kept.
A user is online in a room while its count is above zero; the scripts that change a count
report the transitions to and from zero, and only the caller whose script made one reports
it, so every online and offline event is published once.

Incarnations. A node writes under an incarnation, `<node id>:<random token>`, not its bare
id. When its own registration is found missing or expired (Redis lost its data, or the node
paused so long that the others declared it dead) or after a write failed, the node does not
repair its old entries in place: it registers a fresh incarnation, copies its whole local
state there with the sync script (publishing `online` for users that were offline), and then
drops the old incarnation like a dead node (publishing `offline` for users that left in the
meantime). Repairing in place would race with a sweeper still dropping the old entries: a
room synced just before the sweeper reaches it would lose the node's users without any
event. Under a new incarnation the sweeper and the node never touch the same keys, and a
user who never left keeps a count above zero throughout, so no event flickers.

Heartbeats. Every `interval` a node refreshes its expiry to Redis time + 2 intervals, then
sweeps: any incarnation whose expiry passed is claimed (one script on `hubbub:nodes`: only
one sweeper wins, and the claim is a lease, so a sweeper that dies mid-sweep is replaced),
each of its rooms is dropped (a script per room returns the display names whose count
reached zero; `offline` is published for them), and its entry is deleted. A node killed
right after a refresh is expired 2 intervals later and swept within the next interval, so
its users show `offline` on every node within 3 intervals of its death. Times come from
Redis (`TIME` in the scripts), so the nodes' clocks do not matter.

Ordering. Each node sends its presence writes through one writer task, in the order its local
state changed, as pipelines on one connection; so Redis applies them in that order, and the
sync of a new incarnation (a snapshot of the local state) is ordered with the adds and
removes around it. The writer's scripts run by EVALSHA; after Redis lost its script cache
they are loaded and the commands that failed for it are sent again, in order (every command
is idempotent: set membership decides whether a count moves).

`online(room)` trusts the counts: a node that died but is not swept yet still shows its users
for up to 3 intervals, the same bound the spec gives for the `offline` event.

Failures. `add` and `remove` never raise for Redis errors: they log, count
`hubbub_backend_errors_total{backend="redis"}`, answer False (the caller publishes nothing)
and mark the node for a new incarnation at the next successful heartbeat, which publishes what
changed meanwhile. `online` raises Unavailable. The heartbeat loop survives outages and
retries every interval. Between Redis losing its data and the next heartbeat, a leave
whose entry is gone counts as the last one unless another node counts the user: a repeated
`offline` is harmless, a missing one would leave the user online everywhere.

Where a worker sweeps too (`sweep_dead_nodes`), it follows the same rules: it may run beside
any number of nodes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from redis.exceptions import NoScriptError, RedisError

from hubbub import metrics
from hubbub.engine.redis.client import REDIS_UNREACHABLE, RedisClient, client_options
from hubbub.engine.redis.presence_scripts import (
    ADD_SCRIPT,
    BEAT_SCRIPT,
    CLAIM_SCRIPT,
    DROP_SCRIPT,
    PRESENCE_WRITER_SCRIPTS,
    RELEASE_SCRIPT,
    REMOVE_SCRIPT,
    SYNC_SCRIPT,
)
from hubbub.engine.redis.schema import NODES_KEY, evalsha, name_key, presence_keys, rooms_key
from hubbub.protocol.errors import Unavailable
from hubbub.protocol.events import presence_frame

log = logging.getLogger(__name__)

SWEEP_LEASE_MS: Final = 30_000  # how long a claimed sweep stays claimed if its sweeper dies
MAX_BATCH: Final = 1024  # commands per writer pipeline
DROP_BATCH: Final = 256  # rooms per sweep pipeline

PublishEvent = Callable[[str, dict[str, Any]], None]
"""Publishes an event frame to a room on every node (the bus's `publish_event`)."""


def _decode(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _backend_error(what: str, exc: BaseException) -> None:
    metrics.BACKEND_ERRORS.labels("redis").inc()
    log.warning("redis presence %s failed", what, extra={"error": str(exc)})


async def _server_ms(client: RedisClient) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _is_due(value: int, now: int) -> bool:
    """An entry to sweep: expired, or claimed by a sweeper whose lease ran out."""
    return 0 <= value < now or (value < 0 and -value < now)


async def drop_incarnation(
    client: RedisClient, incarnation: str, publish_event: PublishEvent
) -> int:
    """Remove every presence entry of a node incarnation, publishing `offline` for each user
    that this made offline in a room; returns how many. Safe to run concurrently: each user
    is reported by exactly one caller (the one whose script removed the last entry)."""
    rooms = sorted(_decode(r) for r in await client.smembers(rooms_key(incarnation)))
    if rooms:
        # Loaded first (on every shard of a cluster): the pipeline below only runs EVALSHA.
        await client.script_load(DROP_SCRIPT)
    gone = 0
    for start in range(0, len(rooms), DROP_BATCH):
        chunk = rooms[start : start + DROP_BATCH]
        async with client.pipeline(transaction=False) as pipe:
            for room in chunk:
                pipe.execute_command(*evalsha(DROP_SCRIPT, presence_keys(room, incarnation)))
            replies: list[list[bytes]] = await pipe.execute()
        for room, names in zip(chunk, replies, strict=True):
            for name in names:
                publish_event(room, presence_frame(room, _decode(name), "offline"))
                gone += 1
    await client.delete(rooms_key(incarnation))
    return gone


async def sweep_dead_nodes(
    client: RedisClient,
    publish_event: PublishEvent,
    *,
    exclude: str | None = None,
    lease_ms: int = SWEEP_LEASE_MS,
) -> int:
    """Drop the presence of every node incarnation whose heartbeat expired; returns how many
    this call swept. Any number of nodes or workers may sweep at once: each dead incarnation
    is claimed by one of them, and each user's `offline` is published once."""
    entries = await client.hgetall(NODES_KEY)
    if not entries:
        return 0
    now = await _server_ms(client)
    claim = client.register_script(CLAIM_SCRIPT)
    release = client.register_script(RELEASE_SCRIPT)
    swept = 0
    for raw, value in entries.items():
        incarnation = _decode(raw)
        if incarnation == exclude or not _is_due(int(value), now):
            continue
        marker = int(await claim(keys=[NODES_KEY], args=[incarnation, lease_ms]))
        if not marker:
            continue  # alive again, or another sweeper has it
        gone = await drop_incarnation(client, incarnation, publish_event)
        await release(keys=[NODES_KEY], args=[incarnation, marker])
        metrics.PRESENCE_EXPIRED.inc()
        log.info("swept a dead node's presence", extra={"node": incarnation, "offline": gone})
        swept += 1
    return swept


@dataclass(slots=True)
class _Here:
    """A user in a room through this node: the display name and the connections."""

    name: str
    connections: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Job:
    """Commands for the writer's pipeline; the future gets their replies, in order."""

    commands: list[tuple[Any, ...]]
    future: asyncio.Future[list[Any]]


class RedisPresence:
    """The Presence of many nodes on Redis: see the module docstring."""

    def __init__(
        self, client: RedisClient, node_id: str, publish_event: PublishEvent, interval: float
    ) -> None:
        if client_options(client).get("decode_responses"):
            raise ValueError("RedisPresence needs a client with decode_responses=False")
        if interval <= 0:
            raise ValueError("the heartbeat interval must be positive")
        self.client = client
        self.node_id = node_id
        self.publish_event = publish_event
        self.interval = interval
        self.incarnation = self._new_incarnation()
        self._ttl_ms = max(1, round(2 * interval * 1000))
        self._rooms: dict[str, dict[str, _Here]] = {}
        self._stale = True  # register a new incarnation at the next heartbeat
        self._retired: list[str] = []  # earlier incarnations still to drop
        self._queue: list[_Job] = []
        self._writer: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._closing = False
        self._beat_lock = asyncio.Lock()

    def _new_incarnation(self) -> str:
        return f"{self.node_id}:{secrets.token_hex(6)}"

    # Lifecycle

    async def start(self) -> None:
        """Register the node (at once if Redis answers, else at a later beat) and beat."""
        await self.beat()
        self._heartbeat = asyncio.create_task(self._beats(), name="hubbub-presence-heartbeat")

    async def close(self) -> None:
        """Stop beating and remove this node's entries, publishing `offline` for the users
        that leaves offline. If Redis does not answer, the other nodes sweep them later."""
        self._closing = True
        while self._heartbeat is not None and not self._heartbeat.done():
            # Cancelled again at each turn: a library may swallow one cancellation, and
            # then the loop ends at its next turn anyway (it checks `_closing`).
            self._heartbeat.cancel()
            await asyncio.wait([self._heartbeat], timeout=self.interval)
        self._rooms.clear()
        try:
            if self._writer is not None:
                await asyncio.shield(self._writer)
            async with self._beat_lock:
                for incarnation in [*self._retired, self.incarnation]:
                    await self._retire(incarnation)
                self._retired.clear()
        except (RedisError, *REDIS_UNREACHABLE) as exc:
            _backend_error("deregistration", exc)

    # The Presence protocol

    async def add(self, room: str, user: str, connection: str) -> bool:
        key = user.lower()
        users = self._rooms.setdefault(room, {})
        here = users.get(key)
        if here is not None:
            here.connections.add(connection)
            return False
        users[key] = _Here(user, {connection})
        keys = presence_keys(room, self.incarnation)
        replies = await self._write(
            "add",
            ("SADD", rooms_key(self.incarnation), room),  # first: sweeps find the room
            evalsha(ADD_SCRIPT, keys, key, user),
        )
        return replies is not None and replies[1] == 1

    async def remove(self, room: str, user: str, connection: str) -> bool:
        key = user.lower()
        users = self._rooms.get(room)
        here = users.get(key) if users is not None else None
        if users is None or here is None or connection not in here.connections:
            return False
        here.connections.discard(connection)
        if here.connections:
            return False
        del users[key]
        commands = [evalsha(REMOVE_SCRIPT, presence_keys(room, self.incarnation), key, here.name)]
        if not users:
            del self._rooms[room]
            commands.append(("SREM", rooms_key(self.incarnation), room))
        replies = await self._write("remove", *commands)
        return replies is not None and replies[0] == 1

    async def online(self, room: str) -> list[str]:
        try:
            names = await self.client.hvals(name_key(room))
        except REDIS_UNREACHABLE as exc:
            metrics.BACKEND_ERRORS.labels("redis").inc()
            raise Unavailable(f"presence is unavailable: {exc}") from exc
        return sorted((_decode(n) for n in names), key=str.lower)

    # Heartbeats

    async def beat(self) -> None:
        """One heartbeat: refresh this node's expiry (or register a new incarnation and copy
        the local state there), then sweep dead nodes. Never raises for Redis errors."""
        async with self._beat_lock:
            try:
                if not self._stale:
                    replies = await self._submit(
                        [
                            evalsha(
                                BEAT_SCRIPT, [NODES_KEY], self.incarnation, f"{self._ttl_ms}", "0"
                            )
                        ]
                    )
                    if replies[0] != 1:
                        log.warning("presence registration lost; registering again")
                        self._stale = True
                if self._stale:
                    await self._reincarnate()
                await sweep_dead_nodes(self.client, self.publish_event, exclude=self.incarnation)
            except (RedisError, *REDIS_UNREACHABLE) as exc:
                _backend_error("heartbeat", exc)
            except Exception:
                log.exception("presence heartbeat failed")

    async def _beats(self) -> None:
        """Beat every interval on a fixed schedule, so a slow beat does not delay the next."""
        next_beat = time.monotonic()
        while not self._closing:
            next_beat += self.interval
            await asyncio.sleep(max(0.0, next_beat - time.monotonic()))
            if next_beat < time.monotonic() - self.interval:
                next_beat = time.monotonic()  # fell behind (a pause): beat now, then on time
            if not self._closing:
                await self.beat()

    async def _reincarnate(self) -> None:
        """Register a fresh incarnation holding the whole local state, then drop the old ones
        (see the module docstring); publishes what changed for other nodes' eyes."""
        old, self.incarnation = self.incarnation, self._new_incarnation()
        if old not in self._retired:
            self._retired.append(old)
        incarnation = self.incarnation
        rooms = {room: list(users.items()) for room, users in self._rooms.items() if users}
        commands: list[tuple[Any, ...]] = [
            evalsha(BEAT_SCRIPT, [NODES_KEY], incarnation, f"{self._ttl_ms}", "1")
        ]
        if rooms:
            commands.append(("SADD", rooms_key(incarnation), *rooms))
        for room, users in rooms.items():
            pairs = [part for key, here in users for part in (key, here.name)]
            commands.append(evalsha(SYNC_SCRIPT, presence_keys(room, incarnation), *pairs))
        replies = await self._submit(commands)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        self._stale = False
        for room, (online, offline) in zip(rooms, replies[2:], strict=True):
            for name in online:
                self.publish_event(room, presence_frame(room, _decode(name), "online"))
            for name in offline:
                self.publish_event(room, presence_frame(room, _decode(name), "offline"))
        while self._retired:
            await self._retire(self._retired[0])
            self._retired.pop(0)

    async def _retire(self, incarnation: str) -> None:
        await drop_incarnation(self.client, incarnation, self.publish_event)
        await self.client.hdel(NODES_KEY, incarnation)

    # The writer: this node's presence writes, in order, pipelined

    async def _write(self, what: str, *commands: tuple[Any, ...]) -> list[Any] | None:
        """Run commands in order with every other write of this node; None on failure (then
        logged, counted, and repaired by the next heartbeat)."""
        try:
            replies = await self._submit(list(commands))
        except (RedisError, *REDIS_UNREACHABLE) as exc:
            replies = [exc]
        error = next((r for r in replies if isinstance(r, BaseException)), None)
        if error is None:
            return replies
        self._stale = True
        _backend_error(what, error)
        return None

    def _submit(self, commands: list[tuple[Any, ...]]) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(commands, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="hubbub-presence-writer")
        return future

    async def _drain(self) -> None:
        while self._queue:
            batch: list[_Job] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0].commands) <= MAX_BATCH):
                job = self._queue.pop(0)
                batch.append(job)
                size += len(job.commands)
            try:
                replies = await self._execute([c for job in batch for c in job.commands])
            except asyncio.CancelledError:
                for job in batch:
                    job.future.cancel()
                raise
            except Exception as exc:
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            offset = 0
            for job in batch:
                count = len(job.commands)
                if not job.future.done():
                    job.future.set_result(replies[offset : offset + count])
                offset += count

    async def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One pipeline; if Redis lost the scripts, load them and resend what failed, in order
        (every command is idempotent, and all of them failed or none: see the docstring)."""
        replies = await self._pipeline(commands)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            for script in PRESENCE_WRITER_SCRIPTS:
                await self.client.script_load(script)
            again = await self._pipeline([commands[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies
