"""The SQLite writer: failures of the database reach clients as `unavailable`, never hang."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hubbub.engine.sqlite.database import SqliteDatabase
from hubbub.protocol.errors import Unavailable


async def test_a_job_hit_by_a_database_failure_fails_alone_as_unavailable(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "db.sqlite")
    db.open()
    try:

        def broken(c: sqlite3.Connection) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        ok = db.write(lambda c: c.execute("SELECT 1").fetchone()[0])
        failed = db.write(broken)
        with pytest.raises(Unavailable, match="disk I/O error"):
            await failed
        assert await ok == 1
        assert await db.write(lambda c: 2) == 2  # the writer thread is still serving
    finally:
        await db.close()


async def test_integrity_errors_stay_integrity_errors(tmp_path: Path) -> None:
    """Constraint violations are the caller's to interpret (a taken name is `conflict`)."""
    db = SqliteDatabase(tmp_path / "db.sqlite")
    db.open()
    try:

        def clash(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO users (key, name, password_hash, created_at) VALUES ('a', 'a', 'h', 0)"
            )
            c.execute(
                "INSERT INTO users (key, name, password_hash, created_at) VALUES ('a', 'a', 'h', 0)"
            )

        with pytest.raises(sqlite3.IntegrityError):
            await db.write(clash)
    finally:
        await db.close()


async def test_a_failed_commit_fails_every_job_of_the_group_as_unavailable(
    tmp_path: Path,
) -> None:
    db = SqliteDatabase(tmp_path / "db.sqlite")
    db.open()
    try:
        # A job that ends the transaction itself makes the group's COMMIT fail.
        first = db.write(lambda c: c.execute("SELECT 1"))
        saboteur = db.write(lambda c: c.execute("ROLLBACK"))
        results = [await _outcome(first), await _outcome(saboteur)]
        assert all(isinstance(r, Unavailable) for r in results), results
        assert await db.write(lambda c: 3) == 3  # and the writer recovers
    finally:
        await db.close()


async def _outcome(future: object) -> object:
    try:
        return await future  # type: ignore[misc]
    except Exception as exc:
        return exc


async def test_text_removed_by_a_scrubbing_job_is_in_neither_file(tmp_path: Path) -> None:
    """secure_delete zeroes what a write frees, and the checkpoint after a scrubbing job
    truncates the WAL, whose older frames still held the text."""
    path = tmp_path / "db.sqlite"
    db = SqliteDatabase(path)
    db.open()
    secret = "the-secret-" + "x" * 40

    def files() -> bytes:
        return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")))

    try:
        insert = "INSERT INTO users (key, name, password_hash, created_at) VALUES (?, 'a', ?, 0)"
        await db.write(lambda c: c.execute(insert, ("a", secret)))
        assert secret.encode() in files()

        def forget(c: sqlite3.Connection) -> None:
            c.execute("UPDATE users SET password_hash = '' WHERE key = 'a'")
            db.scrub_after_commit()

        await db.write(forget)
        assert secret.encode() not in files()
        assert path.with_name(path.name + "-wal").stat().st_size == 0
    finally:
        await db.close()
