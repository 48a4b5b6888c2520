"""The store on PostgreSQL (asyncpg): `engine.sql.SqlStore` over `PostgresAdapter`.

The rest of the engine's PostgreSQL side: `postgres.database` (the pool), `postgres.log`
(the message log of the PostgreSQL engine), `postgres.history` (the read-only history of
the Redis engine) and `postgres.archive` (the worker's side of `messages`).
`PostgresArchive` and `PostgresDatabase` are importable from here too, as they were
before those modules split off.
"""

from __future__ import annotations

from hubbub.engine.postgres.archive import PostgresArchive
from hubbub.engine.postgres.database import PostgresAdapter, PostgresDatabase, asyncpg_dsn
from hubbub.engine.sql import SqlStore

__all__ = ["PostgresArchive", "PostgresDatabase", "PostgresStore", "asyncpg_dsn"]


class PostgresStore(SqlStore):
    """Users, tokens, rooms, memberships and bans in PostgreSQL."""

    def __init__(self, db: PostgresDatabase) -> None:
        super().__init__(PostgresAdapter(db))
        self.db = db
