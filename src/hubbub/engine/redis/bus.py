"""Fan-out across nodes on Redis pub/sub, with per-room gap detection.

Each room has one sharded channel (`schema.channel`, `{room}` hash tag, SPUBLISH /
SSUBSCRIBE), so on Redis Cluster a room's messages travel through the shard that holds
the room's log. The append script publishes every message itself; this class publishes
the rest: ephemeral events (typing, presence), removal notices and room changes (archived,
unarchived, deleted) on the room's channel,
token revocations on one plain channel every node subscribes to (the payloads:
`engine.redis.schema`).

A node subscribes to a room while at least one of its connections is joined there.
Pub/sub is at-most-once (a publish during a reconnect is simply gone), so each room keeps
a cursor, the last seq this node delivered, and delivers strictly in seq order:

- a message at cursor + 1 is delivered at once; one at or below the cursor is a repeat
  and dropped;
- a message further ahead is a gap: it waits while the missing seqs are read from the log
  (the Redis stream, or PostgreSQL below the stream's trim point), which are delivered
  first (`hubbub_gap_fills_total`);
- after every (re)subscription is confirmed the room is synced: its cursor is set to the
  log's last seq on first subscription, or filled up to it after a reconnect, so nothing
  published while the node was not listening is skipped.

A join calls `subscribe` and waits for that sync before it reads its cut (`last_seq`):
every message above the cut is then published after the subscription was in place, so
it reaches the node (or is filled from the log).

A subscription can also stall without failing (an open socket that delivers nothing): a
canary through it (`engine.redis.canary`) finds that, `delivery_problem` says so (`/readyz`
answers 503), and the subscription is rebuilt and resynced like a lost connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgspec

from hubbub import metrics
from hubbub.engine.base import BusListener, Message
from hubbub.engine.redis.canary import Canary, canary_channels
from hubbub.engine.redis.client import (
    REDIS_UNREACHABLE,
    RedisClient,
    Subscriber,
    open_pubsub,
)
from hubbub.engine.redis.schema import (
    CONTROL_CHANNEL,
    KIND_EVENT,
    KIND_REMOVED,
    KIND_REVOKED,
    KIND_ROOM_CHANGED,
    channel,
    event_payload,
    removed_payload,
    revoked_payload,
    room_changed_payload,
    room_of,
    seq_key,
    shown_key,
    shown_seq,
)
from hubbub.protocol.errors import Unavailable

log = logging.getLogger(__name__)

Reader = Callable[[str, int, int], Awaitable[list[Message]]]
"""Reads a room's messages with after < seq <= upto from the log (gap fills)."""

Send = Callable[..., Awaitable[Any]]
"""Sends one Redis command, in order with the node's appends (`RedisLog.send`)."""

_decode = msgspec.msgpack.Decoder().decode


class _Feed:
    """One subscribed room: its delivery cursor and what waits for a gap to be filled."""

    __slots__ = ("busy", "cursor", "pending", "ready", "room", "unconfirmed")

    def __init__(self, room: str) -> None:
        self.room = room
        self.cursor: int | None = None  # None until the first sync
        self.pending: list[Message] = []
        self.busy = False  # a sync or a fill owns delivery; arrivals queue in pending
        self.unconfirmed = 0  # SSUBSCRIBEs sent and not yet confirmed
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class RedisBus:
    """The Bus on Redis: see the module docstring."""

    def __init__(
        self,
        client: RedisClient,
        send: Send,
        read: Reader,
        *,
        subscribe_timeout: float = 5.0,
        reconnect_delay: float = 0.5,
        idle_ping: float = 5.0,
        node_id: str = "hubbub",
        canary_interval: float = 5.0,
    ) -> None:
        self.client = client  # for the pub/sub connection and syncs: no socket timeout
        self.send = send
        self.read = read
        self.subscribe_timeout = subscribe_timeout
        self.reconnect_delay = reconnect_delay
        self.idle_ping = idle_ping
        self.listeners: list[BusListener] = []
        self.feeds: dict[str, _Feed] = {}
        self.connected = asyncio.Event()
        self._pubsub: Subscriber | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.node_id = node_id
        self.canary: Canary | None = None  # 0 s turns it off
        if canary_interval > 0:
            self.canary = Canary(node_id, canary_interval, self._publish_canary)

    # Lifecycle

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._run(), name="hubbub-redis-bus")
        if self.canary is not None:
            self.canary.start()

    async def close(self) -> None:
        if self.canary is not None:
            await self.canary.close()
        tasks = [t for t in (self._reader, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # The Bus protocol

    def attach(self, listener: BusListener) -> None:
        self.listeners.append(listener)

    def publish_event(
        self,
        room: str,
        frame: dict[str, Any],
        skip_user: str | None = None,
        skip_connection: str | None = None,
    ) -> None:
        payload = event_payload(room, frame, skip_user, skip_connection)
        self._publish("SPUBLISH", channel(room), payload)

    def publish_removed(self, room: str, user: str, reason: str) -> None:
        self._publish("SPUBLISH", channel(room), removed_payload(room, user, reason))

    def publish_room_changed(self, room: str, change: str) -> None:
        self._publish("SPUBLISH", channel(room), room_changed_payload(room, change))

    def publish_token_revoked(self, token_hash: str) -> None:
        self._publish("PUBLISH", CONTROL_CHANNEL, revoked_payload(token_hash))

    def delivery_problem(self) -> str | None:
        """Why this node's subscription cannot be trusted now (the canary), or None."""
        return self.canary.problem() if self.canary is not None else None

    async def subscribe(self, room: str) -> None:
        """Listen to `room` and wait until its feed is synced (see the module docstring)."""
        feed = self.feeds.get(room)
        if feed is None:
            feed = self.feeds[room] = _Feed(room)
            if self._pubsub is not None:
                self._spawn(self._quietly(self._subscribe([feed])))
            # else the reader subscribes every feed once it has a connection
        if feed.ready.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(feed.ready), self.subscribe_timeout)
        except TimeoutError:
            raise Unavailable("the fan-out bus (Redis) is unavailable") from None

    def unsubscribe(self, room: str) -> None:
        feed = self.feeds.pop(room, None)
        if feed is None:
            return
        if not feed.ready.done():
            feed.ready.cancel()
        pubsub = self._pubsub
        if pubsub is not None:
            self._spawn(self._quietly(pubsub.sunsubscribe(channel(room))))

    # Publishing

    def _publish(self, *command: Any) -> None:
        self._spawn(self._quietly(self.send(*command)))

    async def _publish_canary(self, name: str, payload: bytes) -> None:
        await self.send("SPUBLISH", name, payload)  # the way room events go

    async def _quietly(self, call: Awaitable[Any]) -> None:
        """Fire and forget, but never silently: a failed publish is logged and counted."""
        try:
            await call
        except (Unavailable, *REDIS_UNREACHABLE) as exc:
            metrics.BACKEND_ERRORS.labels("redis").inc()
            log.warning("redis publish failed", extra={"error": str(exc)})

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # The subscriber

    async def _run(self) -> None:
        while True:
            pubsub = open_pubsub(self.client)  # one server's PubSub, or one per shard
            try:
                await self._until_stalled(self._session(pubsub))
            except REDIS_UNREACHABLE as exc:
                metrics.BACKEND_ERRORS.labels("redis").inc()
                log.warning("redis pub/sub connection lost", extra={"error": str(exc)})
            except Exception:  # whatever else broke, the node must not stop listening
                metrics.BACKEND_ERRORS.labels("redis").inc()
                log.exception("redis pub/sub listener failed; reconnecting")
            finally:
                self._pubsub = None
                self.connected.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(self.reconnect_delay)

    async def _subscribe(self, feeds: list[_Feed]) -> None:
        pubsub = self._pubsub
        if not feeds or pubsub is None:
            return
        for feed in feeds:
            feed.unconfirmed += 1
        await pubsub.ssubscribe(*(channel(feed.room) for feed in feeds))

    async def _session(self, pubsub: Subscriber) -> None:
        """Subscribe everything on a new connection, then listen to it until it fails."""
        await pubsub.subscribe(CONTROL_CHANNEL)
        if self.canary is not None:
            # After the first subscription: a cluster client knows its masters then.
            self.canary.use(canary_channels(self.client, self.node_id))
            await pubsub.ssubscribe(*self.canary.channels)
        self._pubsub = pubsub
        for feed in self.feeds.values():
            feed.unconfirmed = 0  # confirmations of a lost connection never come
        await self._subscribe(list(self.feeds.values()))
        self.connected.set()
        await self._listen(pubsub)

    async def _until_stalled(self, session: Coroutine[Any, Any, None]) -> None:
        if self.canary is None:
            await session
        else:
            await self.canary.watch(session)

    async def _listen(self, pubsub: Subscriber) -> None:
        canary = self.canary
        while True:
            item = await pubsub.get_message(timeout=self.idle_ping)
            if item is None:
                await pubsub.ping()  # an idle connection that died fails here
                continue
            kind = item["type"]
            if kind == "smessage" or kind == "message":
                if canary is not None and (probe := canary.probes.get(item["channel"])):
                    canary.heard(probe, item["data"])
                else:
                    self._dispatch(item["data"])
            elif kind == "ssubscribe":
                feed = self.feeds.get(room_of(item["channel"]))
                if feed is not None and feed.unconfirmed > 0:
                    feed.unconfirmed -= 1
                    if feed.unconfirmed == 0:
                        feed.busy = True
                        self._spawn(self._sync(feed))

    def _dispatch(self, data: bytes) -> None:
        item = _decode(data)
        head = item[0]
        if type(head) is str:  # a message, as the append script packs it
            self._on_message(Message(*item))
        elif head == KIND_EVENT:
            _, room, frame, skip_user, skip_connection = item
            for listener in self.listeners:
                listener.on_event(room, frame, skip_user or None, skip_connection or None)
        elif head == KIND_REMOVED:
            _, room, user, reason = item
            for listener in self.listeners:
                listener.on_removed(room, user, reason)
        elif head == KIND_ROOM_CHANGED:
            _, room, change = item
            for listener in self.listeners:
                listener.on_room_changed(room, change)
        elif head == KIND_REVOKED:
            for listener in self.listeners:
                listener.on_token_revoked(item[1])

    # Ordered delivery

    def _on_message(self, message: Message) -> None:
        feed = self.feeds.get(message.room)
        if feed is None:
            return
        if feed.busy or feed.cursor is None:
            feed.pending.append(message)
            return
        if message.seq <= feed.cursor:
            return
        if message.seq == feed.cursor + 1:
            feed.cursor = message.seq
            self._deliver(message)
            return
        feed.pending.append(message)
        feed.busy = True
        self._spawn(self._catch_up(feed, None))

    def _deliver(self, message: Message) -> None:
        for listener in self.listeners:
            listener.on_message(message)

    async def _sync(self, feed: _Feed) -> None:
        """After a confirmed subscription: set or advance the cursor to the log's last seq."""
        while self.feeds.get(feed.room) is feed:
            try:
                keys = (shown_key(feed.room), seq_key(feed.room))
                last = shown_seq(*await self.client.mget(*keys))  # what was published
            except REDIS_UNREACHABLE as exc:
                # Retried while the room is subscribed: a join waits for this sync.
                metrics.BACKEND_ERRORS.labels("redis").inc()
                log.warning("room sync failed", extra={"room": feed.room, "error": str(exc)})
                await asyncio.sleep(self.reconnect_delay)
                continue
            if feed.cursor is None:
                feed.cursor = last
                await self._catch_up(feed, None)
            else:
                await self._catch_up(feed, last)
            if not feed.ready.done():
                feed.ready.set_result(None)
            return

    async def _catch_up(self, feed: _Feed, upto: int | None) -> None:
        """Deliver, in seq order, everything up to `upto` and everything pending, filling
        gaps from the log; then hand delivery back to `_on_message`."""
        while self.feeds.get(feed.room) is feed:
            assert feed.cursor is not None
            pending = sorted(feed.pending, key=lambda m: m.seq)
            feed.pending = []
            target = upto
            for message in pending:
                if message.seq <= feed.cursor:
                    continue
                if message.seq > feed.cursor + 1:
                    feed.pending = [m for m in pending if m.seq >= message.seq] + feed.pending
                    target = message.seq - 1
                    break
                feed.cursor = message.seq
                self._deliver(message)
            if target is not None and target > feed.cursor:
                if not await self._fill(feed, target):
                    await asyncio.sleep(self.reconnect_delay)
                    continue
                if target == upto:
                    upto = None
                continue
            if not feed.pending:
                feed.busy = False
                return

    async def _fill(self, feed: _Feed, upto: int) -> bool:
        """Read and deliver (cursor, upto] from the log; False if the log could not be read."""
        assert feed.cursor is not None
        try:
            missing = await self.read(feed.room, feed.cursor, upto)
        except (Unavailable, *REDIS_UNREACHABLE) as exc:
            metrics.BACKEND_ERRORS.labels("redis").inc()
            log.warning("gap fill failed", extra={"room": feed.room, "error": str(exc)})
            return False
        if self.feeds.get(feed.room) is not feed:
            return True
        metrics.GAP_FILLS.inc()
        delivered = 0
        for message in missing:
            if message.seq == feed.cursor + 1:
                feed.cursor = message.seq
                self._deliver(message)
                delivered += 1
        metrics.GAP_FILLED.inc(delivered)
        if feed.cursor < upto:
            # The log does not hold them (a Redis that lost data it had acked): skip
            # rather than stall the room for ever; this is logged loudly.
            log.error(
                "messages missing from the log",
                extra={"room": feed.room, "from": feed.cursor + 1, "to": upto},
            )
            feed.cursor = upto
        return True
