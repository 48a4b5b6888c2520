"""Schema migrations (Alembic), shared by the SQLite and PostgreSQL engines."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig

HERE = Path(__file__).resolve().parent

MIGRATION_LOCK = 0x68756262
"""The PostgreSQL advisory lock every migrator holds while it migrates (env.py)."""


def sqlalchemy_url(url: str) -> str:
    """The URL SQLAlchemy needs: PostgreSQL is migrated with psycopg 3 (sync), not asyncpg,
    and a libpq multi-host netloc is rewritten as SQLAlchemy's `?host=h:p&host=h:p`."""
    from hubbub.engine.postgres import urls

    return urls.sqlalchemy_url(url) if urls.is_postgres(url) else url


def alembic_config(url: str) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (idempotent)."""
    command.upgrade(alembic_config(url), revision)
