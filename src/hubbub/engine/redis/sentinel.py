"""A client of the primary that Redis Sentinel names (`redis+sentinel://`), built on redis-py.

Master discovery is redis-py's (`redis.asyncio.sentinel.Sentinel.master_for`): every new
connection asks the sentinels for the primary's address, and a connection that reads
READONLY (it reached a primary since demoted to a replica) is dropped and raises
ConnectionError. So after a failover, commands in flight fail (the engine answers
`unavailable`, within the socket timeout) and the next ones reach the promoted replica;
the bus's pub/sub connection breaks too, and the bus reconnects and resyncs every room from
the log (`engine.redis.bus`). `WAIT` rides in the append pipeline, on that pipeline's
connection, so it always asks the primary that took the writes; when it falls short,
`client.recheck_primary` drops the idle connections, so an old primary that still runs (a
planned failover, a pause) gets no more than one batch. The URL: `engine.redis.urls`.
"""

from __future__ import annotations

from typing import Any, Final, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError

from hubbub.engine.redis.urls import sentinel_target

# A sentinel answers from memory: a second without a reply means it is down, hung or cut
# off, and the next sentinel is asked. No retries: the next sentinel is the retry.
SENTINEL_TIMEOUT: Final = 1.0


class PrimaryConnection(SentinelManagedConnection):
    """A connection to the primary that, finding it demoted, drops every idle connection of
    its pool too.

    redis-py drops only the connection that read READONLY; the pool's other idle ones still
    point at the demoted server, and each would fail one more command before asking the
    sentinels. Dropped here, the next command on any of them asks the sentinels at once."""

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except RedisConnectionError as exc:
            if isinstance(exc.__context__, ReadOnlyError):  # "previous master is now a slave"
                await self.connection_pool.disconnect(inuse_connections=False)
            raise


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool with the blocking pool's bounded size: a command waits for
    a free connection instead of failing with "too many connections" (as on one server)."""


class SentinelRedis(Redis):
    """A client of the Sentinel-named primary; closing it closes its sentinel connections."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            pool = cast(SentinelConnectionPool, self.connection_pool)
            await cast(Sentinel, pool.sentinel_manager).aclose()


def connect_sentinel(
    url: str,
    *,
    socket_timeout: float | None,
    max_connections: int,
    pool_timeout: float | None,
    connection_class: type[AbstractConnection] = PrimaryConnection,
) -> SentinelRedis:
    """A client of the primary `url` names (see the module docstring), returning bytes.

    `socket_timeout` bounds every reply from the primary (None waits for ever, for pub/sub);
    sentinels always get `SENTINEL_TIMEOUT`, so a hung sentinel never stalls a reconnect."""
    target = sentinel_target(url)
    no_retry = Retry(NoBackoff(), 0)  # a failure is reported at once: the engine retries
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        target.sentinels,
        sentinel_kwargs={
            "socket_timeout": SENTINEL_TIMEOUT,
            "socket_connect_timeout": SENTINEL_TIMEOUT,
            "socket_keepalive": True,
            "retry": no_retry,
        },
    )
    options: dict[str, Any] = {
        "db": target.db,
        "username": target.username,
        "password": target.password,
        "decode_responses": False,
        "socket_timeout": socket_timeout,
        "socket_keepalive": True,
        "retry": no_retry,
        "max_connections": max_connections,
        "timeout": pool_timeout,
        "connection_class": connection_class,
    }
    client = sentinel.master_for(
        target.master,
        redis_class=SentinelRedis,
        connection_pool_class=_BlockingSentinelPool,
        **options,
    )
    return cast(SentinelRedis, client)
