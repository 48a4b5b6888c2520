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


FLOOD_LIMIT = 100  # rate-limited frames within FLOOD_WINDOW seconds before a 1008
FLOOD_WINDOW = 10.0


class ConnectionLimits:
    """The per-connection limits: `send` + `typing` at `rate`/s with bursts of twice that
    (the spec's 20), all frames together at `frame_rate`/s (the spec's 200), and `history`
    requests at `history_rate`/s with bursts of twice that. A `rate` of 0 turns rate
    limiting off altogether, as the spec's `--rate-limit 0` says; a `frame_rate` or
    `history_rate` of 0 turns off that limit alone."""

    __slots__ = ("all_frames", "chatty", "flood", "history")

    def __init__(
        self, rate: float, now: float, frame_rate: float = 200.0, history_rate: float = 0.0
    ) -> None:
        on = rate > 0
        self.chatty = TokenBucket(rate, 2 * rate, now) if on else None
        self.all_frames = (
            TokenBucket(frame_rate, frame_rate, now) if on and frame_rate > 0 else None
        )
        self.history = (
            TokenBucket(history_rate, 2 * history_rate, now) if on and history_rate > 0 else None
        )
        self.flood = FloodGuard(FLOOD_LIMIT, FLOOD_WINDOW)

    def check(self, chatty: bool, now: float, history: bool = False) -> float:
        """0.0 if the frame may pass, else the seconds to wait (`retry_after`)."""
        wait = self.all_frames.take(now) if self.all_frames is not None else 0.0
        if not wait and chatty and self.chatty is not None:
            wait = self.chatty.take(now)
        if not wait and history and self.history is not None:
            wait = self.history.take(now)
        return wait


class KeyedBuckets:
    """A token bucket per key (a user, an address), for limits that outlive a connection.

    Buckets that have refilled are forgotten, so memory follows the keys active within
    one refill time rather than every key ever seen.
    """

    __slots__ = ("buckets", "burst", "rate")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, now: float) -> float:
        """0.0 if allowed, else the seconds until `key` may go again; rate 0 allows all."""
        if self.rate <= 0:
            return 0.0
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= 4096:
                self._forget_full(now)
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def _forget_full(self, now: float) -> None:
        full = self.burst / self.rate
        for key, bucket in list(self.buckets.items()):
            if now - bucket.stamp >= full:
                del self.buckets[key]


class PenaltyBox:
    """Keys (a user, an address) kept out for `seconds` after abuse.

    A client cut off for flooding or for an oversized frame that comes straight back
    would cost the node a handshake and a hello each time, and start again: for a while
    it is refused before any of that. Expired entries are dropped as new ones come in,
    and past `limit` keys the oldest go first, so the box cannot grow without bound.
    """

    __slots__ = ("limit", "seconds", "until")

    def __init__(self, seconds: float, limit: int = 100_000) -> None:
        self.seconds = seconds
        self.limit = limit
        self.until: dict[str, float] = {}

    def add(self, key: str, now: float) -> None:
        if self.seconds <= 0:
            return
        until = self.until
        until.pop(key, None)  # re-inserted last: the dict stays in expiry order
        until[key] = now + self.seconds
        while until:  # the expired, from the front
            first = next(iter(until))
            if until[first] > now:
                break
            del until[first]
        if len(until) > self.limit:
            for old in list(until)[: len(until) - self.limit]:
                del until[old]

    def remaining(self, key: str, now: float) -> float:
        """Seconds `key` is still kept out (0.0 when it is not)."""
        until = self.until.get(key)
        if until is None:
            return 0.0
        if until <= now:
            del self.until[key]
            return 0.0
        return until - now
