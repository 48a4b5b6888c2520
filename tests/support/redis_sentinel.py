"""A private Redis Sentinel group for tests (`hubbub.ops.sentinel_group`), with redis-server
found the tests' way: skipped without it, failed under CI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hubbub.ops import sentinel_group
from hubbub.ops.sentinel_group import RedisProcess, replication
from support.redis_server import require_redis_server

__all__ = ["RedisProcess", "SentinelGroup", "replication"]


class SentinelGroup(sentinel_group.SentinelGroup):
    def __init__(self, directory: Path, **options: Any) -> None:
        options.setdefault("executable", require_redis_server())
        super().__init__(directory, **options)
