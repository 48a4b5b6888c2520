"""Throwaway PostgreSQL databases for a test session: created on first use, dropped at the end.

`POSTGRES` is the engine tests' database (the engine contract suite empties it per test);
tests/conftest.py makes another one for the shared `hubbub serve --database` server.

The server is the local one (`HUBBUB_TEST_POSTGRES`, default
postgresql://postgres@127.0.0.1:5432/test, used only to create and drop databases).
Without a server the PostgreSQL tests are skipped, except under CI (`CI` set), where
they fail: CI must never turn green by not testing an engine.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import urlsplit, urlunsplit

import psycopg

from hubbub.engine.migrations import upgrade
from support.needs import missing

ADMIN_URL = os.environ.get("HUBBUB_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
TABLES = "users, tokens, rooms, memberships, bans, messages, reactions, room_seqs"


def unreachable(reason: str) -> None:
    missing(f"PostgreSQL is unreachable at {ADMIN_URL}: {reason}; .ci/run starts it")


class TestDatabase:
    """One database named `hubbub_test_<random>`, migrated to the head revision once
    (unless `migrate` is false: a server under test then migrates it at start-up)."""

    __test__ = False  # not a test class, despite its name

    def __init__(self, admin_url: str = ADMIN_URL, migrate: bool = True) -> None:
        self.admin_url = admin_url
        self.migrate = migrate
        self.name = f"hubbub_test_{secrets.token_hex(6)}"
        self.url: str | None = None
        self.error: str | None = None

    def empty_url(self) -> str:
        """The database's URL with every table emptied: a fresh engine's data."""
        url = self._ensure()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {TABLES} CASCADE")
        return url

    def ensure(self) -> str:
        """The database's URL, creating it first if needed (skip or fail if unreachable)."""
        return self._ensure()

    def _ensure(self) -> str:
        if self.url is None and self.error is None:
            try:
                with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f'CREATE DATABASE "{self.name}"')
            except psycopg.OperationalError as exc:
                self.error = str(exc).strip() or type(exc).__name__
            else:
                parts = urlsplit(self.admin_url)
                self.url = urlunsplit(parts._replace(path=f"/{self.name}"))
                if self.migrate:
                    upgrade(self.url)
        if self.url is None:
            unreachable(self.error or "unknown error")
        assert self.url is not None
        return self.url

    def drop(self) -> None:
        if self.url is None:
            return
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.url = None


POSTGRES = TestDatabase()
