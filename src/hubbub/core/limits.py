"""Every limit on what one client may do: token buckets per connection and per key, the
flood guard and the penalty box, the HTTP API's quotas, and login throttling.

Pure where it can be (time is passed in); the HTTP quotas and login throttling count in the
engine's shared `Counters`, so a limit holds whichever node a request reaches.

HTTP quotas. History is limited per node with a token bucket per user (`--history-rate`,
bursts of twice that), as the WebSocket `history` frame is per connection: a client that
pages faster is told to wait. Room creation is counted per user in the shared counters
(`--rooms-per-hour`).

Login throttling bounds password guesses per address and per account, with three
counters of failed logins, each expiring `window` seconds after its first failure:

- `a:<address>`: failures from one address, whatever the accounts. At `limit`, every
  login from that address is refused (429) until the counter expires, even with the
  right password: a guesser learns nothing more from there.
- `u:<account>`: failures against one account, from any address (an attacker with many
  addresses). At `limit`, the account is closed only to addresses that have themselves
  failed on it (`p:<account>|<address>`): the owner, logging in from an address with no
  failures there, still gets in, so nobody can lock a victim out from everywhere by
  failing on purpose. A botnet then gets one guess per fresh address per window.
- `p:<account>|<address>`: failures of that pair. A successful login clears it (the
  owner's own typos are forgiven); it clears neither the address's counter (an attacker
  could log into an account of their own between guesses to reset it) nor the
  account's (the owner's logins would hand guessers a fresh allowance each time).

Unknown usernames are counted like known ones, so throttling says nothing about which
accounts exist. Refused attempts are not counted: waiting out the window always works.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

from hubbub.engine.base import Counters
from hubbub.protocol.errors import RateLimited


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


@dataclass(frozen=True, slots=True)
class LoginKeys:
    address: str
    account: str
    pair: str


class LoginThrottle:
    """At most `limit` failed logins per address and per account within `window` seconds."""

    def __init__(self, counters: Counters | None, limit: int, window: float) -> None:
        self.counters = counters  # None: throttling is off
        self.limit = limit
        self.window = window

    @property
    def _counters(self) -> Counters:
        assert self.counters is not None, "only used while enabled"
        return self.counters

    @property
    def enabled(self) -> bool:
        return self.counters is not None and self.limit > 0 and self.window > 0

    @staticmethod
    def keys(username: str, address: str) -> LoginKeys:
        """The counters of a login; no name over 32 characters exists, so 64 are plenty
        (a 64 KiB "username" does not become a 64 KiB key)."""
        account = username.lower()[:64]
        return LoginKeys(f"a:{address}", f"u:{account}", f"p:{account}|{address}")

    async def check(self, keys: LoginKeys) -> None:
        """Raise RateLimited (with the seconds to wait) if this login may not be tried now."""
        if not self.enabled:
            return
        (
            (by_address, address_left),
            (by_account, account_left),
            (by_pair, _),
        ) = await self._counters.get([keys.address, keys.account, keys.pair])
        if by_address >= self.limit:
            raise RateLimited(_seconds(address_left), "too many failed logins from this address")
        if by_account >= self.limit and by_pair > 0:
            raise RateLimited(_seconds(account_left), "too many failed logins for this account")

    async def failed(self, keys: LoginKeys) -> None:
        if self.enabled:
            await self._counters.hit([keys.address, keys.account, keys.pair], self.window)

    async def succeeded(self, keys: LoginKeys) -> None:
        if self.enabled:
            await self._counters.clear(keys.pair)


def _seconds(left: float) -> int:
    """Whole seconds to wait (Retry-After takes an integer), at least 1."""
    return max(1, math.ceil(left))
