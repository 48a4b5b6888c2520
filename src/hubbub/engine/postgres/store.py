"""The store on PostgreSQL (asyncpg): `engine.sql.SqlStore` over `PostgresAdapter`.

The rest of the engine's PostgreSQL side: `postgres.database` (the pool), `postgres.log`
(the message log of the PostgreSQL engine), `postgres.history` (the read-only history of
the Redis engine) and `postgres.archive` (the worker's side of `messages`).
"""

from __future__ import annotations

from hubbub.engine.postgres.database import PostgresAdapter, PostgresDatabase
from hubbub.engine.sql import SqlStore


class PostgresStore(SqlStore):
    """Users, tokens, rooms, memberships and bans in PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        super().__init__(PostgresAdapter(db))
        self.db = db
