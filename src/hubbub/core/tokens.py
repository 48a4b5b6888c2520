"""The cache of authenticated tokens: bounded in size, and never trusted past an entry's end.

Every WebSocket hello and HTTP request authenticates a token; the cache spares the store
a read for a token seen within the last minute. Entries are kept in the order they were
made, which is also about the order they end (each lasts a minute, or less when the token
expires sooner), so ended entries are dropped from the front as new ones come, and when
the cache is full the oldest goes: the one closest to its end anyway.
"""

from __future__ import annotations

from collections import OrderedDict

RECHECK_MS = 60_000
"""A cached token is checked against the store again after this long (a revocation on
another node reaches this one at once through the bus; this bounds a missed one)."""
LIMIT = 100_000
"""Tokens cached at most (about 35 MB when full), far more than one node's clients use."""


class TokenCache:
    """token hash -> (user, valid until, in ms), at most `limit` of them."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._entries: OrderedDict[str, tuple[str, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, hashed: str, now: int) -> str | None:
        """The user of a cached token still valid at `now`; None (and forgotten) otherwise."""
        entry = self._entries.get(hashed)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[hashed]
            return None
        return entry[0]

    def put(self, hashed: str, user: str, expires_at: int, now: int) -> None:
        """Cache a token the store vouched for at `now`, until the recheck or its expiry."""
        entries = self._entries
        entries.pop(hashed, None)
        while entries:
            _, until = next(iter(entries.values()))
            if until > now and len(entries) < self.limit:
                break
            entries.popitem(last=False)
        entries[hashed] = (user, min(now + RECHECK_MS, expires_at))

    def forget(self, hashed: str) -> None:
        self._entries.pop(hashed, None)
