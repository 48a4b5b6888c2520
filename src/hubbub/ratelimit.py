"""Token buckets for per-connection rate limits (pure: time is passed in)."""

from __future__ import annotations

from collections import deque


class TokenBucket:
    """`rate` tokens per second, holding at most `burst`; `take` answers 0 or the wait needed."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> float:
        """Spend one token; returns 0.0 if allowed, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class FloodGuard:
    """Counts rate-limited frames in a sliding window; past `limit` the client is flooding."""

    __slots__ = ("hits", "limit", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.hits: deque[float] | None = None  # created at the first rejected frame

    def strike(self, now: float) -> bool:
        """Record one rejected frame; True when more than `limit` fell within `window`."""
        hits = self.hits
        if hits is None:
            hits = self.hits = deque(maxlen=self.limit + 1)
        hits.append(now)
        return len(hits) > self.limit and now - hits[0] <= self.window


ALL_FRAMES_PER_SECOND = 200.0
FLOOD_LIMIT = 100  # rate-limited frames within FLOOD_WINDOW seconds before a 1008
FLOOD_WINDOW = 10.0


class ConnectionLimits:
    """The spec's per-connection limits: `send` + `typing` at `rate`/s with bursts of twice
    that, all frames together at 200/s. A `rate` of 0 turns rate limiting off."""

    __slots__ = ("all_frames", "chatty", "flood")

    def __init__(self, rate: float, now: float) -> None:
        self.chatty = TokenBucket(rate, 2 * rate, now) if rate > 0 else None
        self.all_frames = (
            TokenBucket(ALL_FRAMES_PER_SECOND, ALL_FRAMES_PER_SECOND, now) if rate > 0 else None
        )
        self.flood = FloodGuard(FLOOD_LIMIT, FLOOD_WINDOW)

    def check(self, chatty: bool, now: float) -> float:
        """0.0 if the frame may pass, else the seconds to wait (`retry_after`)."""
        if self.all_frames is None:
            return 0.0
        wait = self.all_frames.take(now)
        if not wait and chatty and self.chatty is not None:
            wait = self.chatty.take(now)
        return wait
