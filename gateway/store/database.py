"""Running SQL off the reactor thread.

Every interaction is a named plain function ``fn(conn, *args)`` run inside one transaction
(``engine.begin()``) on a dedicated thread pool, the way Synapse's ``DatabasePool`` does it.
SQLite gets one thread (one writer, no lock fights); PostgreSQL as many as the engine pool.
Interactions must be safe to run again: serialisation failures and deadlocks are retried a
bounded number of times. ORM objects never leave the thread: functions return plain values.

Tests of the engine construct ``Database(url, reactor, threaded=False)``: interactions then
run synchronously on the calling thread (SQLite in memory or in a temp file), so a test
driven by ``task.Clock`` needs no threads and no wall clock.
"""
from __future__ import annotations

import os
import threading
import time
from urllib.parse import quote
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from twisted.internet import threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from gateway.metrics import NO_METRICS, Metrics

T = TypeVar("T")
log = Logger()

_RETRYABLE_PG_CODES = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///PATH`` URL (None for an in-memory database)."""
    rest = url.split("://", 1)[1] if "://" in url else url
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    return None if path in ("", ":memory:") else path


def read_only_sqlite_url(url: str) -> str:
    """A URL that opens an existing SQLite file read-only and creates nothing.

    ``mode=ro`` never writes the database, but on a WAL database SQLite would still create
    the ``-wal``/``-shm`` files if no writer has them open (and a read-only connection
    cannot remove them afterwards). When they are absent no gateway has the file open, so
    the file is opened ``immutable`` (no locks, no side files); when they exist, they are
    used as they are. Raises ``FileNotFoundError`` for a missing file (never creates one).
    """
    path = sqlite_path(url)
    if path is None:
        raise ValueError("an in-memory SQLite database cannot be opened read-only")
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    immutable = "" if os.path.exists(path + "-wal") else "&immutable=1"
    return f"sqlite:///file:{quote(os.path.abspath(path))}?mode=ro{immutable}&uri=true"


def make_engine(url: str, *, pool_size: int = 5, read_only: bool = False) -> Engine:
    """An engine configured for its dialect (SQLite: WAL, busy timeout, FKs on).

    ``read_only``: every transaction is read-only (PostgreSQL ``SET TRANSACTION READ
    ONLY``; SQLite opened with ``mode=ro``, see :func:`read_only_sqlite_url`). Tools that
    only read (``klarna-gateway journal``) use it so they cannot change or create anything.
    """
    url = normalise_url(url)
    if read_only:
        return _read_only_engine(url, pool_size)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite starts transactions lazily (not before a SELECT), which makes
            # read-then-write interactions racy; take the write lock at BEGIN instead.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            if ":memory:" not in url:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True)


def _read_only_engine(url: str, pool_size: int) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(read_only_sqlite_url(url),
                               connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _ro_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA busy_timeout=30000")

        @event.listens_for(engine, "begin")
        def _ro_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True)

    @event.listens_for(engine, "begin")
    def _pg_read_only(conn: Any) -> None:
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")

    return engine


def _daemon_thread(*args: Any, **kwargs: Any) -> threading.Thread:
    return threading.Thread(*args, daemon=True, **kwargs)


def _is_retryable(e: DBAPIError) -> bool:
    code = getattr(getattr(e, "orig", None), "sqlstate", None)
    if code in _RETRYABLE_PG_CODES:
        return True
    return isinstance(e, OperationalError) and "database is locked" in str(e)


class Database:
    """An engine plus the thread pool its interactions run on."""

    def __init__(self, url: str, reactor: Any, *, pool_size: int = 5,
                 threaded: bool = True, metrics: Metrics = NO_METRICS,
                 read_only: bool = False) -> None:
        self.url = normalise_url(url)
        self.metrics = metrics
        self.engine = make_engine(self.url, pool_size=pool_size, read_only=read_only)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.threaded = threaded
        self._reactor = reactor
        threads_max = 1 if self.is_sqlite else pool_size
        self._pool = ThreadPool(minthreads=1, maxthreads=threads_max, name="gateway-db")
        # Daemon threads: a process (or a test) that never reached stop() must still exit;
        # an interrupted transaction is rolled back by the database.
        self._pool.threadFactory = _daemon_thread  # type: ignore[assignment]
        self._started = False

    def start(self) -> None:
        if not self._started and self.threaded:
            self._pool.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self._pool.stop()
            self._started = False
        self.engine.dispose()

    def run_sync(self, desc: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a transaction on the calling thread (CLI, migrations)."""
        for attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    return fn(conn, *args)
            except DBAPIError as e:
                if attempt == 4 or not _is_retryable(e):
                    raise
                log.info("retrying {desc} after {error}", desc=desc, error=type(e).__name__)
                time.sleep(0.01 * (2**attempt))
        raise AssertionError("unreachable")

    async def run_interaction(self, desc: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one transaction on the database thread pool (or, when
        not ``threaded``, right here: tests on a fake clock)."""
        started = self._reactor.seconds()
        try:
            if not self.threaded:
                return self.run_sync(desc, fn, *args)
            self.start()
            return await threads.deferToThreadPool(self._reactor, self._pool, self.run_sync,
                                                   desc, fn, *args)
        finally:
            self.metrics.database(desc, self._reactor.seconds() - started)


def connection_dialect(conn: Connection) -> str:
    return conn.dialect.name
