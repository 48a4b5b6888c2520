"""What the rules share: the backends, the clock, and this node's caches.

`Chat` is one object to its callers (the HTTP API, the gateway), but its rules live in
cohesive parts (`core.accounts`, `core.rooms`, the messages in `core.chat`) that each
read this state; it is set up once here so no part owns another's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from argon2 import PasswordHasher

from hubbub.core.limits import LoginThrottle
from hubbub.core.passwords import Passwords
from hubbub.core.tokens import TokenCache
from hubbub.engine.base import Bus, Log, Presence, RoomChange, Store


class ChatState:
    """The backends and caches of a `Chat`, and its clock."""

    def __init__(
        self,
        store: Store,
        log: Log,
        bus: Bus,
        presence: Presence,
        *,
        token_ttl: int,
        name_grace: int = 7 * 24 * 3600,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.store = store
        self.log = log
        self.bus = bus
        self.presence = presence
        self.token_ttl = token_ttl
        self.name_grace = name_grace  # seconds a deleted room's name stays held
        self.passwords = Passwords(hasher)
        self.clock = clock
        self.throttle = throttle or LoginThrottle(None, 0, 0)
        self._tokens = TokenCache()
        self._joining: dict[tuple[str, str], asyncio.Future[bool]] = {}  # memberships being written
        # Rooms joined on this node that are archived or deleted (-> ARCHIVED or DELETED):
        # sends to them are refused without a read (each join refreshes its room's entry
        # from the record it loads anyway, and `room_changed` keeps it current between joins).
        self._closed: dict[str, RoomChange] = {}

    def now_ms(self) -> int:
        return int(self.clock() * 1000)
