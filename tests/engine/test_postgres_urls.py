"""PostgreSQL URLs with several hosts (libpq's failover form) reach asyncpg and SQLAlchemy's
psycopg dialect as each one parses them; malformed ones are refused in sentences."""

from __future__ import annotations

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url
from support.pgutil import POSTGRES

from hubbub.engine import EngineSettings, open_engine
from hubbub.engine.migrations import sqlalchemy_url, upgrade
from hubbub.engine.postgres.database import PostgresDatabase
from hubbub.engine.postgres.urls import asyncpg_dsn, check, hosts
from hubbub.ops.processes import free_port

MULTI = "postgresql://u:p@h1:5433,h2/db?target_session_attrs=read-write"


def test_hosts_are_listed_in_order_with_the_default_port() -> None:
    assert hosts(MULTI) == [("h1", 5433), ("h2", 5432)]
    assert hosts("postgresql://db/h") == [("db", 5432)]
    assert hosts("postgresql://u@[::1]:6000/h") == [("::1", 6000)]
    assert hosts("postgresql:///h") == []  # libpq's default: the local socket


def test_asyncpg_keeps_the_multi_host_netloc() -> None:
    assert asyncpg_dsn(MULTI) == MULTI
    plus = "postgresql+psycopg://a:1,b:2/db?target_session_attrs=read-write"
    assert asyncpg_dsn(plus) == "postgresql://a:1,b:2/db?target_session_attrs=read-write"


def test_sqlalchemy_gets_the_hosts_as_query_parameters() -> None:
    url = sqlalchemy_url(MULTI)
    assert url == (
        "postgresql+psycopg://u:p@/db?host=h1:5433&host=h2:5432&target_session_attrs=read-write"
    )
    # What psycopg is then called with: libpq's comma-separated host and port lists.
    engine = sqlalchemy.create_engine(url)
    _, kwargs = engine.dialect.create_connect_args(make_url(url))
    assert kwargs["host"] == "h1,h2"
    assert kwargs["port"] == "5433,5432"
    assert kwargs["target_session_attrs"] == "read-write"
    assert kwargs["dbname"] == "db" and kwargs["user"] == "u" and kwargs["password"] == "p"


def test_one_host_urls_are_unchanged_but_for_the_driver() -> None:
    assert sqlalchemy_url("postgresql+psycopg://db:5/h?sslmode=require") == (
        "postgresql+psycopg://db:5/h?sslmode=require"
    )


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql://h1:5433,h2:x/db", "bad host 'h2:x'"),
        ("postgresql://h1,,h2/db", "bad host ''"),
        ("postgresql://h1/db?target_session_attrs=master", "target_session_attrs=master"),
        ("mysql://h1/db", "not a PostgreSQL URL"),
    ],
)
def test_malformed_urls_are_refused_in_sentences(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(")) as caught:
        check(url)
    assert "database URL" in str(caught.value) or "PostgreSQL URL" in str(caught.value)


def test_ipv6_hosts_in_a_multi_host_url_are_refused_for_the_migrations() -> None:
    with pytest.raises(ValueError, match="IPv6"):
        sqlalchemy_url("postgresql://[::1]:5432,h2/db")


def _behind_a_dead_host(url: str) -> str:
    """`url` with a host that refuses connections listed before its own."""
    scheme, _, rest = url.partition("://")
    user, at, tail = rest.partition("@") if "@" in rest.split("/", 1)[0] else ("", "", rest)
    return f"{scheme}://{user}{at}127.0.0.1:{free_port()},{tail}?target_session_attrs=read-write"


async def test_the_pool_and_the_migrations_skip_a_dead_first_host() -> None:
    url = _behind_a_dead_host(POSTGRES.empty_url())
    upgrade(url)  # SQLAlchemy + psycopg: connects, finds the schema at head
    db = PostgresDatabase(url, migrate=True)
    await db.open()
    try:
        row = await db.fetchrow("SELECT NOT pg_is_in_recovery() AS writable, count(*) FROM users")
        assert row is not None and row["writable"] is True
    finally:
        await db.close()


def test_a_read_replica_needs_a_postgresql_database_and_a_well_formed_url() -> None:
    with pytest.raises(ValueError, match="--database-read needs --database postgresql"):
        open_engine(EngineSettings("sqlite:///x.db", database_read="postgresql://r/db"))
    with pytest.raises(ValueError, match="bad host 'r:x'"):
        open_engine(EngineSettings("postgresql://p/db", database_read="postgresql://r:x/db"))
