"""Password hashing: argon2id with pinned parameters, off the event loop, a few at a time.

The parameters are RFC 9106's second recommended profile ("low memory"): 64 MiB, 3
passes, 4 lanes. They exceed the OWASP Password Storage Cheat Sheet's argon2id minimum
(19 MiB, 2 passes, 1 lane, or any of its equivalent trade-offs) in both memory and time,
and cost about 0.1 s of a core here. They are written out rather than taken from
argon2-cffi's defaults, so that a library upgrade never changes them unseen; when they do
change, old hashes still verify (argon2 hashes carry their parameters) and are rehashed
at the user's next login.

A hash takes 64 MiB while it runs, so hashes run in a pool of one thread per core: a flood
of logins queues for the pool instead of growing the node's memory with every request
(and the event loop never waits for a hash).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TIME_COST: Final = 3
MEMORY_COST_KIB: Final = 64 * 1024
PARALLELISM: Final = 4


def default_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_COST_KIB, parallelism=PARALLELISM)


class Passwords:
    """Hash and verify in a bounded thread pool; a dummy hash for logins of unknown users."""

    def __init__(self, hasher: PasswordHasher | None = None, workers: int | None = None) -> None:
        self.hasher = hasher or default_hasher()
        self._pool = ThreadPoolExecutor(
            workers or os.cpu_count() or 2, thread_name_prefix="hubbub-argon2"
        )
        # Verifying against it costs what verifying a real hash costs, so a login with an
        # unknown username takes as long as one with a wrong password.
        self.dummy_hash = self.hasher.hash(secrets.token_hex(16))

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.hasher.hash, password)

    async def verify(self, stored: str, password: str) -> bool:
        """Whether `password` matches `stored` (argon2 compares in constant time)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self.hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return False
