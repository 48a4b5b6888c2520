"""History reads from a streaming replica (`--database-read`), sent to the primary when the
replica has not replayed everything the primary had flushed when the read began."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hubbub.engine.postgres.database import PostgresAdapter, PostgresDatabase
from hubbub.engine.sql import Row, numbered
from hubbub.protocol.errors import Unavailable

log = logging.getLogger(__name__)

PRIMARY_POSITION = "SELECT pg_current_wal_flush_lsn()::text"
# Replayed up to the primary's position: every commit acknowledged before the read (a
# client's own message included) is visible on the replica.
CAUGHT_UP = "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)"


class ReplicaReads(PostgresAdapter):
    """`engine.sql.Database` for history reads: `all` runs on the replica when it has caught
    up with the primary's flushed WAL position (read first, on the primary), else on the
    primary; a replica that fails sends the read to the primary too. Every other call, and
    every write, goes to the primary."""

    def __init__(self, primary: PostgresDatabase, replica: PostgresDatabase) -> None:
        super().__init__(primary)
        self.replica = replica

    async def all(self, sql: str, *args: Any) -> Sequence[Row]:
        position = await self.db.fetchrow(PRIMARY_POSITION)
        assert position is not None
        try:
            async with self.replica.connection() as conn:
                if await conn.fetchval(CAUGHT_UP, position[0]):
                    rows: Sequence[Row] = await conn.fetch(numbered(sql), *args)
                    return rows
        except Unavailable as exc:
            log.warning("history read from the primary: the replica failed (%s)", exc)
        return await super().all(sql, *args)
