"""Windowed counters in Redis: login throttling and the room quota, across every node.

Every key carries the hash tag `{login}`, so all of them live in one slot (one shard of a
Redis Cluster) and one script reads or bumps several atomically. Failed logins and new
rooms are rare next to messages: one slot carries them easily.

A key expires a window after its first hit (INCR, then PEXPIRE when the count is 1, in one
script: a key is never left without its expiry). The keys are built by
`engine.redis.schema`; the scripts are here. A Redis outage answers `unavailable`: logins
and new rooms are refused rather than let through uncounted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from redis.exceptions import RedisError

from hubbub.engine.redis.client import REDIS_UNREACHABLE, RedisClient
from hubbub.engine.redis.schema import counter_key
from hubbub.protocol.errors import Unavailable

# KEYS: the counters. Returns count, ms left, count, ms left, ... (0, 0 for a missing key).
COUNTERS_GET_SCRIPT: Final = """
local out = {}
for i, key in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', key) or '0')
  local left = redis.call('PTTL', key)
  if left < 0 then left = 0 end
  out[2 * i - 1] = n
  out[2 * i] = left
end
return out
"""

# KEYS: the counters. ARGV: 1 window in ms. INCR, then PEXPIRE when the count is 1, in one
# script: a key is never left without its expiry.
COUNTERS_HIT_SCRIPT: Final = """
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then
    redis.call('PEXPIRE', key, ARGV[1])
  end
end
return 0
"""


class RedisCounters:
    """`Counters` in Redis, under `hubbub:{login}:<key>`."""

    def __init__(self, client: RedisClient) -> None:
        self._get = client.register_script(COUNTERS_GET_SCRIPT)
        self._hit = client.register_script(COUNTERS_HIT_SCRIPT)
        self.client = client

    async def get(self, keys: Sequence[str]) -> list[tuple[int, float]]:
        if not keys:
            return []
        try:
            raw = await self._get(keys=[counter_key(k) for k in keys])
        except (RedisError, *REDIS_UNREACHABLE) as exc:
            raise _unavailable(exc) from exc
        return [(int(raw[i]), int(raw[i + 1]) / 1000) for i in range(0, len(raw), 2)]

    async def hit(self, keys: Sequence[str], window: float) -> None:
        if not keys:
            return
        try:
            await self._hit(keys=[counter_key(k) for k in keys], args=[max(1, int(window * 1000))])
        except (RedisError, *REDIS_UNREACHABLE) as exc:
            raise _unavailable(exc) from exc

    async def clear(self, key: str) -> None:
        try:
            await self.client.delete(counter_key(key))
        except (RedisError, *REDIS_UNREACHABLE) as exc:
            raise _unavailable(exc) from exc


def _unavailable(exc: BaseException) -> Unavailable:
    return Unavailable(f"the shared counters (login throttling, room quota) are unavailable: {exc}")
