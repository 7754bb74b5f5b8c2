"""SQLite group commit: many interactions, few commits, each failure its own.

On one writer thread the fsync of each COMMIT bounds throughput, so interactions that queue
up while a commit runs share the next one. These tests run the real threaded ``Database`` on
a real SQLite file and check what must not change: a caller is answered only after its
writes are committed, an interaction that raises rolls back only its own writes, and every
caller gets its own result.
"""
from __future__ import annotations

import threading
from typing import Any

import pytest_twisted
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, select
from sqlalchemy.engine import Connection
from twisted.internet import defer, reactor

from gateway.store.database import Database
from tests.waiting import eventually

META = MetaData()
ROWS = Table("rows", META, Column("id", Integer, primary_key=True),
             Column("tag", String, nullable=False))


class Boom(Exception):
    pass


class Gate:
    """Holds the writer thread inside the first interaction until opened."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    async def held(self) -> None:
        await eventually(self.entered.is_set, "the writer thread holds the gate", every=0.001)

    def set(self) -> None:
        self.opened.set()


def _insert(conn: Connection, tag: str, gate: Gate | None = None) -> int:
    if gate is not None:
        gate.entered.set()
        gate.opened.wait(5)  # hold the writer so the next interactions queue up behind it
    conn.execute(insert(ROWS).values(tag=tag))
    if tag.startswith("fail"):
        raise Boom(tag)
    return len(conn.execute(select(ROWS.c.id)).all())


def _tags(conn: Connection) -> list[str]:
    return sorted(r.tag for r in conn.execute(select(ROWS.c.tag)))


def _database(tmp_path: Any) -> tuple[Database, list[int]]:
    db = Database(f"sqlite:///{tmp_path}/group.db", reactor)
    META.create_all(db.engine)
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda _conn: commits.append(1))
    return db, commits


@pytest_twisted.ensureDeferred
async def test_queued_interactions_share_one_commit_and_fail_alone(tmp_path: Any) -> None:
    db, commits = _database(tmp_path)
    try:
        gate = Gate()
        first = defer.ensureDeferred(db.run_interaction("first", _insert, "first", gate))
        await gate.held()
        queued = [defer.ensureDeferred(db.run_interaction("i", _insert, tag))
                  for tag in ["a", "b", "fail-c", "d", "fail-e", "f"]]
        reactor.callLater(0.05, gate.set)
        assert await first == 1
        results = await defer.DeferredList(queued, consumeErrors=True)
        ok = [value for success, value in results if success]
        failed = [value.value for success, value in results if not success]
        assert [str(e) for e in failed] == ["fail-c", "fail-e"]
        assert all(isinstance(e, Boom) for e in failed)
        # each caller saw the rows of the batch so far, never a rolled-back one
        assert ok == [2, 3, 4, 5]
        assert await db.run_interaction("tags", _tags) == ["a", "b", "d", "f", "first"]
        # the first commit alone, then the six queued behind it in one, then the read
        assert len(commits) == 3
    finally:
        db.stop()


@pytest_twisted.ensureDeferred
async def test_answer_comes_after_the_commit(tmp_path: Any) -> None:
    """A caller's Deferred fires only once its writes are visible to another connection."""
    db, _ = _database(tmp_path)
    other = Database(f"sqlite:///{tmp_path}/group.db", reactor, threaded=False)
    try:
        gate = Gate()
        first = defer.ensureDeferred(db.run_interaction("first", _insert, "x", gate))
        await gate.held()
        queued = [defer.ensureDeferred(db.run_interaction("i", _insert, f"t{i}"))
                  for i in range(20)]
        reactor.callLater(0.05, gate.set)
        await first
        for d in queued:
            await d
            seen = other.run_sync("tags", _tags)
            assert len(seen) >= 2
        assert len(other.run_sync("tags", _tags)) == 21
    finally:
        db.stop()
        other.stop()


@pytest_twisted.ensureDeferred
async def test_batches_are_bounded(tmp_path: Any) -> None:
    db, commits = _database(tmp_path)
    db.max_batch = 4
    try:
        gate = Gate()
        first = defer.ensureDeferred(db.run_interaction("first", _insert, "x", gate))
        await gate.held()
        queued = [defer.ensureDeferred(db.run_interaction("i", _insert, f"t{i}"))
                  for i in range(10)]
        reactor.callLater(0.05, gate.set)
        await first
        await defer.gatherResults(queued)
        assert len(commits) == 1 + 3  # 10 queued in batches of 4, 4, 2
    finally:
        db.stop()


def _disk_full(conn: Connection, tag: str) -> None:
    """An insert that fails with SQLITE_FULL: SQLite then rolls back the whole transaction
    (not only the statement), as it may on SQLITE_IOERR and SQLITE_NOMEM too."""
    pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
    conn.exec_driver_sql(f"PRAGMA max_page_count={pages}")
    try:
        conn.execute(insert(ROWS).values(tag=tag * 100_000))
    finally:
        conn.exec_driver_sql("PRAGMA max_page_count=1073741823")


@pytest_twisted.ensureDeferred
async def test_an_error_that_ends_the_transaction_fails_the_whole_batch(tmp_path: Any) -> None:
    """SQLite ends the whole transaction on some errors (disk full, I/O error): the writes
    of the interactions before it in the batch are gone, so none of them may be answered
    as a success (the caller would then move money its journal never recorded)."""
    db, _ = _database(tmp_path)
    try:
        gate = Gate()
        first = defer.ensureDeferred(db.run_interaction("first", _insert, "first", gate))
        await gate.held()
        queued = [defer.ensureDeferred(db.run_interaction("i", _insert, "a")),
                  defer.ensureDeferred(db.run_interaction("full", _disk_full, "z")),
                  defer.ensureDeferred(db.run_interaction("i", _insert, "c"))]
        reactor.callLater(0.05, gate.set)
        await first
        results = await defer.DeferredList(queued, consumeErrors=True)
        tags = await db.run_interaction("tags", _tags)
        answered_ok = [tag for tag, (success, _v) in zip("azc", results) if success]
        for tag in answered_ok:
            assert tag in tags, f"{tag!r} answered as committed but its row is gone: {tags}"
    finally:
        db.stop()


def _exit(conn: Connection, tag: str) -> None:
    conn.execute(insert(ROWS).values(tag=tag))
    raise SystemExit(tag)


@pytest_twisted.ensureDeferred
async def test_a_base_exception_fails_its_caller_and_the_writer_goes_on(tmp_path: Any) -> None:
    """An interaction raising SystemExit (a BaseException) fails its own caller, as it did on
    the thread pool before group commit; the writer must not stay 'busy' for ever with every
    later caller waiting on a Deferred that never fires."""
    db, _ = _database(tmp_path)
    try:
        alone = defer.ensureDeferred(db.run_interaction("exit", _exit, "alone"))
        alone.addTimeout(5, reactor)
        failure = (await defer.DeferredList([alone], consumeErrors=True))[0][1]
        assert failure.check(SystemExit), failure

        gate = Gate()
        first = defer.ensureDeferred(db.run_interaction("first", _insert, "first", gate))
        await gate.held()
        queued = [defer.ensureDeferred(db.run_interaction("i", _insert, "a")),
                  defer.ensureDeferred(db.run_interaction("exit", _exit, "batched")),
                  defer.ensureDeferred(db.run_interaction("i", _insert, "c"))]
        for d in queued:
            d.addTimeout(5, reactor)
        reactor.callLater(0.05, gate.set)
        await first
        results = await defer.DeferredList(queued, consumeErrors=True)
        assert [success for success, _ in results] == [True, False, True]
        after = defer.ensureDeferred(db.run_interaction("tags", _tags))
        after.addTimeout(5, reactor)
        assert await after == ["a", "c", "first"]
    finally:
        db.stop()
