"""Which database failures are an outage (a retryable 9119) and which are bugs, and how long
failed writes count against readiness. Real SQLite errors, met on a real file."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import pytest_twisted
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, text
from sqlalchemy.engine import Connection
from twisted.internet import task

from gateway.errors import DatabaseUnavailableError
from gateway.store.database import WRITE_FAILURE_MEMORY, Database, unavailable

META = MetaData()
ROWS = Table("rows", META, Column("id", Integer, primary_key=True), Column("tag", String))


def _database(tmp_path: Path) -> tuple[Database, task.Clock]:
    clock = task.Clock()
    db = Database(f"sqlite:///{tmp_path}/e.db", clock, threaded=False)
    META.create_all(db.engine)
    return db, clock


def _fill(conn: Connection) -> None:
    """Cap the file at its size and write more than fits: SQLITE_FULL, as on a full disk
    (the cap stays on this connection: every later write that needs a page fails too)."""
    pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
    conn.exec_driver_sql(f"PRAGMA max_page_count={pages}")
    conn.execute(insert(ROWS).values(tag="x" * 200_000))


def _room(conn: Connection) -> None:
    conn.exec_driver_sql("PRAGMA max_page_count=1073741823")


def _insert(conn: Connection) -> None:
    conn.execute(insert(ROWS).values(tag="row"))


def _nothing(conn: Connection) -> int:
    return int(conn.execute(text("SELECT count(*) FROM rows")).scalar_one())


@pytest_twisted.ensureDeferred
async def test_a_full_disk_is_an_outage_a_bug_is_not(tmp_path: Path) -> None:
    db, _ = _database(tmp_path)
    try:
        with pytest.raises(DatabaseUnavailableError) as caught:
            await db.run_interaction("fill", _fill)
        assert "database or disk is full" in (caught.value.debug_context or "")
        with pytest.raises(Exception) as bug:
            await db.run_interaction("typo", lambda c: c.execute(text("SELEC 1")))
        assert not isinstance(bug.value, DatabaseUnavailableError)
        with pytest.raises(Exception) as missing:
            await db.run_read("missing", lambda c: c.execute(text("SELECT * FROM nope")))
        assert not isinstance(missing.value, DatabaseUnavailableError)
    finally:
        db.stop()


@pytest_twisted.ensureDeferred
async def test_writes_failing_until_a_write_changes_something(tmp_path: Path) -> None:
    """Readiness's view of a full disk: failing from the failed write; a transaction that
    commits without changing anything (SQLite takes it on a full disk) does not clear it,
    one that writes does; with no write at all it lapses after WRITE_FAILURE_MEMORY."""
    db, clock = _database(tmp_path)
    try:
        assert db.writes_failing() is None
        for _ in range(2):
            with pytest.raises(DatabaseUnavailableError):
                await db.run_interaction("fill", _fill)
            assert "database or disk is full" in (db.writes_failing() or "")
            assert await db.run_interaction("count", _nothing) == 0
            assert await db.run_read("count", _nothing) == 0
            assert "database or disk is full" in (db.writes_failing() or "")
            clock.advance(WRITE_FAILURE_MEMORY + 1)
            assert db.writes_failing() is None  # no write told otherwise since
        with pytest.raises(DatabaseUnavailableError):
            await db.run_interaction("fill", _fill)
        await db.run_interaction("room", _room)
        assert db.writes_failing() is not None  # a pragma changes no row
        await db.run_interaction("insert", _insert)
        assert db.writes_failing() is None
    finally:
        db.stop()


def test_an_sqlite_file_that_cannot_be_written_is_an_outage(tmp_path: Path) -> None:
    """A read-only file (a disk remounted read-only, wrong permissions): an outage too."""
    path = tmp_path / "ro.db"
    db = Database(f"sqlite:///{path}", task.Clock(), threaded=False)
    META.create_all(db.engine)
    db.stop()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        with pytest.raises(sqlite3.OperationalError) as caught:
            conn.execute("INSERT INTO rows (tag) VALUES ('x')")
        assert unavailable(caught.value, sqlite3)
        with pytest.raises(sqlite3.OperationalError) as typo:
            conn.execute("SELEC 1")
        assert not unavailable(typo.value, sqlite3)
    finally:
        conn.close()
