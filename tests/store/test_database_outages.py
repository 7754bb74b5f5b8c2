"""The threaded ``Database`` when PostgreSQL goes away and comes back.

Each database thread keeps its connection, and the journal's hot path runs its statements
on the driver's own connection (:mod:`gateway.store.sql`), where SQLAlchemy never sees a
failure. A connection the server dropped (a restart, a terminated backend, a network cut)
must still be replaced, or that thread fails every interaction for the rest of the
process's life. A failure that says the database is away is a retryable legacy fault
(9119), never an internal error.

PostgreSQL is reached through :class:`tests.netcut.Link`, a TCP link the test can cut, so
the PostgreSQL other sessions share is never stopped.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
import pytest_twisted
from sqlalchemy import text
from sqlalchemy.engine import Connection
from twisted.internet import defer, reactor, task, threads

from gateway.errors import DatabaseUnavailableError, FaultCode
from gateway.store import sql
from gateway.store.database import Database
from tests.conftest import PG_DSN, make_pg_schema
from tests.netcut import linked as link_to
from tests.waiting import eventually

pytestmark = pytest.mark.postgres

_ONE = sql.Sql("SELECT 1")


def _raw_one(conn: Connection) -> int:
    """A statement on the driver's connection, as the journal's hot path runs them."""
    return int(sql.one(conn, _ONE)[0])


def _sa_one(conn: Connection) -> int:
    return int(conn.execute(text("SELECT 1")).scalar_one())


class Linked:
    """A ``Database`` on a fresh schema, reached through a link the test can cut."""

    def __init__(self) -> None:
        self.url, self.drop = make_pg_schema()
        self.app = "t18c_" + uuid.uuid4().hex[:10]
        self.link, self.via = link_to(self.url, application_name=self.app)
        self.db = Database(self.via, reactor, pool_size=2)

    def terminate_backends(self) -> int:
        """End this database's server processes as a restart does (57P01 to each)."""
        with psycopg.connect(PG_DSN or "", autocommit=True) as admin:
            rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE application_name = %s", (self.app,)).fetchall()
        return len(rows)


@pytest_twisted.async_yield_fixture
async def linked() -> AsyncIterator[Linked]:
    if not PG_DSN:
        pytest.skip("GATEWAY_TEST_PG_DSN is not set")
    lk = Linked()
    try:
        yield lk
    finally:
        lk.db.stop()
        lk.link.close()
        lk.drop()


async def _outcomes(db: Database, n: int) -> list[str]:
    """``n`` rounds of a read, a raw write and an SQLAlchemy write, each 'ok' or its
    error."""
    got: list[str] = []
    runs: list[tuple[Callable[..., Any], Callable[[Connection], int]]] = [
        (db.run_read, _raw_one), (db.run_interaction, _raw_one),
        (db.run_interaction, _sa_one)]
    for _ in range(n):
        for run, fn in runs:
            try:
                await run("probe", fn)
                got.append("ok")
            except Exception as e:  # noqa: BLE001 - what each one saw is the result
                got.append(type(e).__name__)
    return got


async def _warm(db: Database) -> None:
    """Every database thread holds a connection (calls run side by side)."""
    def held(conn: Connection) -> int:
        time.sleep(0.2)
        return _raw_one(conn)
    await defer.gatherResults([defer.ensureDeferred(db.run_interaction("warm", held))
                               for _ in range(4)])
    assert await _outcomes(db, 1) == ["ok"] * 3


@pytest.mark.parametrize("how", ["cut", "terminated"])
@pytest_twisted.ensureDeferred
async def test_connections_the_server_closed_while_idle_are_replaced_before_use(
        linked: Linked, how: str) -> None:
    """The server dropped every connection while they were idle (a network cut, or a
    restart's 57P01 to each backend), and is back: no interaction fails, each thread
    connects afresh instead of sending into a dead connection."""
    await _warm(linked.db)
    if how == "cut":
        linked.link.sever()
    else:
        assert await threads.deferToThread(linked.terminate_backends) >= 2
    await task.deferLater(reactor, 0.3, lambda: None)  # the close reaches the client
    got = await _outcomes(linked.db, 3)
    assert got == ["ok"] * 9, got


def _slow(started: threading.Event) -> Callable[[Connection], None]:
    """An interaction that runs for a second on the server, and says when it began."""
    def slow(conn: Connection) -> None:
        started.set()
        sql.run(conn, sql.Sql("SELECT pg_sleep(1)"))
    return slow


@pytest.mark.parametrize("lane", ["read", "write"])
@pytest_twisted.ensureDeferred
async def test_a_connection_lost_mid_interaction_fails_only_that_one(linked: Linked,
                                                                      lane: str) -> None:
    """The connection dies under an interaction: that one fails with a retryable fault;
    the same thread's next interactions, reads and writes, succeed on a new connection."""
    db = Database(linked.via, reactor, pool_size=1)  # one thread: it must heal itself
    try:
        run = db.run_read if lane == "read" else db.run_interaction
        assert await _outcomes(db, 1) == ["ok"] * 3
        started = threading.Event()
        slow = defer.ensureDeferred(run("slow", _slow(started)))
        await eventually(started.is_set, "the slow interaction began")
        linked.link.sever()
        with pytest.raises(DatabaseUnavailableError):
            await slow
        assert await _outcomes(db, 2) == ["ok"] * 6
    finally:
        db.stop()


@pytest_twisted.ensureDeferred
async def test_an_unreachable_database_is_a_retryable_fault_and_then_comes_back(
        linked: Linked) -> None:
    """Refused connections: each interaction fails at once with 9119 (retry the same call),
    naming the database; plugged back in, the next ones succeed."""
    await _warm(linked.db)
    linked.link.unplug()
    started = reactor.seconds()
    for run in (linked.db.run_interaction, linked.db.run_read):
        with pytest.raises(DatabaseUnavailableError) as caught:
            await run("probe", _raw_one)
        assert caught.value.fault_code is FaultCode.TIMEOUT
        assert caught.value.fault_string == ("timeout: the gateway's database is "
                                             "unavailable; retry the same call")
    assert reactor.seconds() - started < 2.0
    linked.link.plug()
    got = await _outcomes(linked.db, 3)
    assert got[-3:] == ["ok"] * 3, got


_RAISE = "DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '{code}'; END $$"


@pytest.mark.parametrize("code", ["40P01", "40001"])
@pytest_twisted.ensureDeferred
async def test_a_deadlock_raised_on_the_driver_connection_is_retried(linked: Linked,
                                                                      code: str) -> None:
    """A deadlock or serialisation failure met by a hot-path statement (on the driver's
    connection, not wrapped by SQLAlchemy) is retried like one SQLAlchemy raised."""
    tries: list[int] = []

    def flaky(conn: Connection) -> int:
        tries.append(1)
        if len(tries) == 1:
            sql.raw(conn).execute(_RAISE.format(code=code))
        return _raw_one(conn)
    assert await linked.db.run_interaction("flaky", flaky) == 1
    assert len(tries) == 2
