"""The HTTP API's abuse limits: history calls per second per user, rooms created per hour.

History is limited per node with a token bucket per user (`--history-rate`, bursts of
twice that), as the WebSocket `history` frame is per connection: a client that pages
faster is told to wait. Room creation is counted per user in the engine's shared
counters (`--rooms-per-hour`), so that the limit holds whichever node a request reaches.
"""

from __future__ import annotations

import math
import time

from hubbub.engine.base import Counters
from hubbub.errors import RateLimited
from hubbub.ratelimit import KeyedBuckets

HOUR = 3600.0


class HttpLimits:
    def __init__(self, counters: Counters, rooms_per_hour: int, history_rate: float) -> None:
        self.counters = counters
        self.rooms_per_hour = rooms_per_hour
        self.history = KeyedBuckets(history_rate, 2 * history_rate)

    def check_history(self, user: str) -> None:
        """Raises RateLimited when `user` asks for history faster than `--history-rate`."""
        wait = self.history.take(user.lower(), time.monotonic())
        if wait:
            raise RateLimited.after(wait, "too many history requests; slow down")

    def _rooms_key(self, user: str) -> str:
        return f"rooms-created:{user.lower()}"

    async def check_room_quota(self, user: str) -> None:
        """Raises RateLimited when `user` created `--rooms-per-hour` rooms this hour."""
        if self.rooms_per_hour <= 0:
            return
        ((count, ttl),) = await self.counters.get([self._rooms_key(user)])
        if count >= self.rooms_per_hour:
            raise RateLimited(
                float(max(math.ceil(ttl), 1)),
                f"at most {self.rooms_per_hour} new rooms per hour; try again later",
            )

    async def room_created(self, user: str) -> None:
        if self.rooms_per_hour > 0:
            await self.counters.hit([self._rooms_key(user)], HOUR)
