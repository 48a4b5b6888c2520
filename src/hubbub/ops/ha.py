"""The data tier of `hubbub cluster --ha`: no single point of failure, on one machine.

Redis is a Sentinel group (a primary, two replicas and three sentinels, `appendfsync
always`, `min-replicas-to-write 1`) and the nodes ack after `--redis-replicas 1`; PostgreSQL
is a primary with a synchronous streaming standby, reached through a multi-host URL with
`target_session_attrs=read-write`. Everything is private (temp dirs, free ports on
127.0.0.1) and stopped by PID. What each part promises, and what it does not, is
docs/guarantees.md.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Final

from hubbub.ops.processes import PostgresPair
from hubbub.ops.sentinel_group import SentinelGroup

NODE_ARGS: Final = ("--redis-replicas", "1")
"""What every node of an HA cluster runs with: an ack waits for a Redis replica."""


class DataTier:
    """A Sentinel-managed Redis and a PostgreSQL primary with a synchronous standby."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="hubbub-ha-"))
        self.redis = SentinelGroup(self.directory / "redis", min_replicas_to_write=1)
        self.postgres = PostgresPair()

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def database_url(self) -> str:
        return self.postgres.url

    def start(self, timeout: float) -> None:
        try:
            self.postgres.start(timeout)
            self.redis.start(timeout)
        except BaseException:
            self.stop()
            raise

    def processes(self) -> dict[str, int]:
        """The PIDs of the tier's processes that run, by name."""
        named = {f"redis{i}": s.proc for i, s in enumerate(self.redis.servers)}
        named |= {f"sentinel{i}": s.proc for i, s in enumerate(self.redis.sentinels)}
        running = {k: p.pid for k, p in named.items() if p is not None and p.poll() is None}
        pair = (("postgres", self.postgres.primary), ("standby", self.postgres.standby))
        for name, server in pair:
            if server.proc is not None and server.proc.poll() is None:
                running[name] = server.proc.pid
        return running

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.redis.stop()
        with contextlib.suppress(Exception):
            self.postgres.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
