"""Redis clients built from `--redis` URLs: one server, a Sentinel-managed primary, or a Cluster.

- `redis://host:port/db`, `rediss://...`, `unix://...`: one Redis server (`redis.asyncio.Redis`).
- `redis+sentinel://[user[:password]@]host[:port][,host[:port]...]/MASTER[?db=N]`: the
  primary that Redis Sentinel names MASTER (`engine.redis.sentinel`, on redis-py's
  `Sentinel.master_for`). To the engine it is one server whose address may change: every
  new connection asks the sentinels, so after a failover it reaches the promoted replica.
- `redis+cluster://[user[:password]@]host:port[,host:port...]`: a Redis Cluster
  (`redis.asyncio.cluster.RedisCluster`). The addresses are seeds: any reachable one is
  enough to discover every shard; listing all masters lets a node start while some are down.

The URLs are parsed and checked in `engine.redis.urls`.

A Sentinel-managed primary is one server to everything below: redis-py's `Redis` with a
Sentinel connection pool. What a failover does to the engine: `engine.redis.sentinel`.

The engine's code is the same on a server and a cluster: every key of a room carries
`{room}` as hash tag, so a room's scripts and pipelines stay in one slot, and a cluster
pipeline sends each command to the shard that owns its slot (commands of one room keep
their order there). Two things differ, and live here:

- Pub/sub. A room's channel is sharded (SSUBSCRIBE goes to the shard that owns the slot),
  and the control channel is a plain channel, which a cluster delivers on every node.
  `open_pubsub` returns redis-py's `PubSub` for one server, and a `ClusterSubscriber` for a
  cluster: one pub/sub connection per master, read concurrently, so a quiet shard never
  delays a busy one.
- `WAIT` has no key: on a cluster it would reach an arbitrary node, not the ones that took
  the writes, so `--redis-replicas` is refused there (`RedisLog` checks `is_cluster`).

Availability. A cluster pipeline fails as a whole when one master is unreachable, and
every append batch also adds to the global `hubbub:dirty`; so while a master is down
(with no replica to fail over to) a node's appends to rooms of other masters fail with
`unavailable` too whenever they share its batch. Run masters with replicas for failover.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import (
    ClusterDownError,
    DataError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hubbub.engine.redis.sentinel import PrimaryConnection, connect_sentinel
from hubbub.engine.redis.urls import check_url as check_url  # re-exported: the engine's entry
from hubbub.engine.redis.urls import cluster_seeds as cluster_seeds
from hubbub.engine.redis.urls import is_cluster_url, is_sentinel_url

try:
    import hiredis

    HIREDIS = True
except ImportError:  # redis-py's pure-Python parser and packer then
    HIREDIS = False

CLUSTER_UNAVAILABLE: Final = (ClusterDownError, TryAgainError, RedisClusterException)
"""A cluster that is down, resharding, or whose slots no reachable master serves: the
engine answers these as `unavailable`, like a connection error of one server."""

REDIS_UNREACHABLE: Final = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    *CLUSTER_UNAVAILABLE,
)
"""Redis (or the cluster) cannot be reached: retried later, or answered `unavailable`.
(A primary demoted to a replica answers READONLY; on a Sentinel client redis-py turns that
into a ConnectionError and drops the connection, so the next one asks the sentinels.)"""


def lacks_replicas(exc: BaseException) -> bool:
    """The primary refused a write for want of replicas (`min-replicas-to-write`): like a
    lost connection, the write did not happen and may succeed later (`unavailable`)."""
    return isinstance(exc, ResponseError) and str(exc).startswith("NOREPLICAS")


async def recheck_primary(client: RedisClient) -> None:
    """After a write that too few replicas acknowledged: on a Sentinel client, drop the idle
    connections, so the next command asks the sentinels where the primary is.

    A planned failover (`SENTINEL FAILOVER`), a pause or a partition leaves the old primary
    running, and taking writes, until Sentinel reconfigures it some seconds later; its
    replicas follow the new primary at once, so WAIT there falls short. Without this the
    engine would keep writing to it, every send refused, until Sentinel cut it off."""
    pool = getattr(client, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        await pool.disconnect(inuse_connections=False)


RedisClient: TypeAlias = Redis | RedisCluster
"""What the engine's Redis classes take: a client of one server (which a Sentinel client
is) or of a cluster."""


MAX_CONNECTIONS: Final = 64  # per client, to one Redis server
# A command waits for a free connection as long as it takes: every connection in use is
# released within its socket timeout, so the wait is bounded by the commands ahead of it.
POOL_TIMEOUT: Final = None


def connect(url: str, *, socket_timeout: float | None = None) -> RedisClient:
    """A client for `url` that returns bytes (the engine decodes what it reads itself).

    `socket_timeout` bounds every reply; None (for pub/sub, which blocks for the node's
    life) waits for ever. Keepalive is on, so a dead peer is noticed even when idle."""
    if is_sentinel_url(url):
        managed: type[AbstractConnection] = PrimaryConnection
        return connect_sentinel(
            url,
            socket_timeout=socket_timeout,
            max_connections=MAX_CONNECTIONS,
            pool_timeout=POOL_TIMEOUT,
            connection_class=_hiredis_packing(managed) if HIREDIS else managed,
        )
    if not is_cluster_url(url):
        check_url(url)
        # A bounded pool that waits for a free connection: a burst of reads (a reconnect
        # storm replaying history, say) queues instead of failing with "too many connections".
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_TIMEOUT,
            decode_responses=False,
            socket_timeout=socket_timeout,
            socket_keepalive=True,
        )
        if HIREDIS:
            pool.connection_class = _hiredis_packing(pool.connection_class)
        return Redis.from_pool(pool)
    seeds, username, password = cluster_seeds(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seeds],
        username=username,
        password=password,
        decode_responses=False,
        socket_timeout=socket_timeout,
        socket_keepalive=True,
    )


class _HiredisPacking:
    """Commands packed by hiredis (C) instead of redis-py's Python packer.

    redis-py reads replies with hiredis when it is installed, but its asyncio connections
    still pack every command in Python, which costs several times more than the C packer
    for the append script's dozen arguments (redis-py's synchronous client uses hiredis
    for both). Same bytes on the wire: the packer follows redis-py's (a command name with
    spaces is split, str is UTF-8, numbers are their repr)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        args = tuple(bytes(a) if isinstance(a, (bytearray, memoryview)) else a for a in args)
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from exc


def _hiredis_packing(cls: type[AbstractConnection]) -> type[AbstractConnection]:
    return type(f"Hiredis{cls.__name__}", (_HiredisPacking, cls), {})


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)


def client_options(client: RedisClient) -> Mapping[str, Any]:
    """The connection options the client was built with (decode_responses, socket_timeout)."""
    if isinstance(client, RedisCluster):
        return client.get_connection_kwargs()
    return client.connection_pool.connection_kwargs


def open_pubsub(client: RedisClient) -> Subscriber:
    """A pub/sub handle for plain and sharded channels on either kind of client."""
    if isinstance(client, RedisCluster):
        return ClusterSubscriber(client)
    return client.pubsub()


class ClusterSubscriber:
    """Pub/sub on a Redis Cluster with the calls `RedisBus` makes of a `PubSub`.

    One connection per master that holds a subscription, each read by its own task into
    one queue. Sharded channels are subscribed on the master that owns their slot (one
    SSUBSCRIBE per slot: a cluster refuses channels of several slots in one), the control
    channel on one master (a cluster forwards plain PUBLISH to every node).

    Any failure of any connection is reported by `get_message` as a ConnectionError, as is
    a channel the server unsubscribed by itself (its slot moved to another master, say): the
    bus then opens a new subscriber and syncs every room from the log, which is what it does
    after losing the connection to a single server. The connections never reconnect on
    their own for the same reason: a silent reconnect would hide the messages it missed.
    """

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster
        self._clients: dict[str, Redis] = {}
        self._pubsubs: dict[str, PubSub] = {}
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._sharded: set[str] = set()  # sharded channels this subscriber wants
        self._queue: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()

    async def subscribe(self, *channels: str) -> None:
        await self.cluster.initialize()
        for name in channels:
            node = self._node(name)
            pubsub = self._pubsub(node)
            await pubsub.subscribe(name)
            self._listen(node, pubsub)

    async def ssubscribe(self, *channels: str) -> None:
        await self.cluster.initialize()
        by_slot: dict[int, list[str]] = defaultdict(list)
        for name in channels:
            by_slot[key_slot(name.encode())].append(name)
        for names in by_slot.values():
            node = self._node(names[0])
            pubsub = self._pubsub(node)
            self._sharded.update(names)
            await pubsub.ssubscribe(*names)
            self._listen(node, pubsub)

    async def sunsubscribe(self, *channels: str) -> None:
        for name in channels:
            self._sharded.discard(name)
            node = self._node(name)
            pubsub = self._pubsubs.get(node.name)
            if pubsub is not None:
                await pubsub.sunsubscribe(name)

    async def get_message(
        self,
        timeout: float | None = 0.0,  # noqa: ASYNC109 (the signature of PubSub.get_message)
    ) -> dict[str, Any] | None:
        """The next message of any master, None after `timeout` seconds without one."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    async def ping(self) -> None:
        """Ping every connection: a dead one fails here (or its reader reports it)."""
        await asyncio.gather(*(pubsub.ping() for pubsub in list(self._pubsubs.values())))

    async def aclose(self) -> None:
        for task in self._readers.values():
            task.cancel()
        await asyncio.gather(*self._readers.values(), return_exceptions=True)
        for pubsub in self._pubsubs.values():
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
        self._readers.clear()
        self._pubsubs.clear()
        self._clients.clear()

    def _node(self, channel_name: str) -> ClusterNode:
        """The master that owns the channel's slot."""
        node = self.cluster.get_node_from_key(channel_name)
        if node is None:
            raise RedisConnectionError(f"no Redis Cluster node serves {channel_name!r}")
        return node

    def _pubsub(self, node: ClusterNode) -> PubSub:
        """The pub/sub handle of `node` (it connects on its first subscription)."""
        pubsub = self._pubsubs.get(node.name)
        if pubsub is not None:
            return pubsub
        options = self.cluster.get_connection_kwargs()
        client = Redis(
            host=node.host,
            port=int(node.port),
            username=options.get("username"),
            password=options.get("password"),
            decode_responses=False,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),  # see the class docstring: no silent reconnects
        )
        self._clients[node.name] = client
        pubsub = self._pubsubs[node.name] = client.pubsub()
        return pubsub

    def _listen(self, node: ClusterNode, pubsub: PubSub) -> None:
        """Start reading `node`'s connection, once it exists (after its first subscription)."""
        if node.name not in self._readers:
            self._readers[node.name] = asyncio.create_task(
                self._read(node.name, pubsub), name=f"hubbub-redis-pubsub-{node.name}"
            )

    async def _read(self, name: str, pubsub: PubSub) -> None:
        try:
            while True:
                item = await pubsub.get_message(timeout=None)
                if item is None:
                    continue
                if item["type"] == "sunsubscribe" and _text(item["channel"]) in self._sharded:
                    await self._refresh_slots()
                    raise RedisConnectionError(
                        f"{_text(item['channel'])} was moved away from {name}"
                    )
                self._queue.put_nowait(item)
        except asyncio.CancelledError:
            raise
        except RedisConnectionError as exc:
            self._queue.put_nowait(exc)
        except Exception as exc:  # MOVED and the like: the bus reconnects and resyncs
            if "MOVED" in str(exc):
                await self._refresh_slots()
            self._queue.put_nowait(RedisConnectionError(f"pub/sub on {name} failed: {exc}"))

    async def _refresh_slots(self) -> None:
        """Re-read the slot map, so the next subscriber asks the right masters."""
        with contextlib.suppress(Exception):
            await self.cluster.nodes_manager.initialize()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


Subscriber: TypeAlias = PubSub | ClusterSubscriber
"""What `open_pubsub` returns."""
