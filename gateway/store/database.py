"""Running SQL off the reactor thread.

Every interaction is a named plain function ``fn(conn, *args)`` run inside one transaction
(``engine.begin()``) on a dedicated thread pool, the way Synapse's ``DatabasePool`` does it.
SQLite gets one thread (one writer, no lock fights); PostgreSQL as many as the engine pool.
Interactions must be safe to run again: serialisation failures and deadlocks are retried a
bounded number of times. ORM objects never leave the thread: functions return plain values.

SQLite commits in groups. A commit waits for the disk (``synchronous=FULL`` in WAL mode:
one fsync), and on one writer thread that wait, not the SQL, bounds the calls per second.
Interactions that arrive while a commit is under way are queued and the next batch runs
them all in one transaction, each inside its own savepoint (one that raises rolls back
only its own writes and fails only its own caller), then commits once. Nobody is answered
before the commit that holds their writes is on disk, so durability is unchanged; an idle
gateway still commits each interaction alone. PostgreSQL keeps one transaction per
interaction (it has its own group commit, and several processes share it).

Reads that write nothing (``run_read``) skip the queue: on SQLite they run on a reader
thread of their own over a second connection (WAL lets it read while the writer commits),
each statement its own snapshot; on PostgreSQL in autocommit, one round trip per
statement instead of three (BEGIN, the statement, COMMIT).

Each database thread keeps its connection for its whole life (no pool checkout per
interaction): the writer's and the reader's on SQLite, one per pool thread on PostgreSQL.

Tests of the engine construct ``Database(url, reactor, threaded=False)``: interactions then
run synchronously on the calling thread (SQLite in memory or in a temp file), so a test
driven by ``task.Clock`` needs no threads and no wall clock.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
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
    path = rest.removeprefix("/")
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


def make_engine(url: str, *, pool_size: int = 5, read_only: bool = False,
                reads: bool = False) -> Engine:
    """An engine configured for its dialect (SQLite: WAL, busy timeout, FKs on).

    ``read_only``: every transaction is read-only (PostgreSQL ``SET TRANSACTION READ
    ONLY``; SQLite opened with ``mode=ro``, see :func:`read_only_sqlite_url`). Tools that
    only read (``klarna-gateway journal``) use it so they cannot change or create anything.
    ``reads``: a SQLite engine for a process's reader thread: no write lock at BEGIN.
    """
    url = normalise_url(url)
    if read_only:
        return _read_only_engine(url, pool_size)
    if reads:
        return _reader_engine(url)
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


def _reader_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _reader_pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # autocommit: each statement is its own snapshot
        dbapi_conn.execute("PRAGMA busy_timeout=30000")
        dbapi_conn.execute("PRAGMA query_only=ON")

    return engine


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


@dataclass
class _Queued:
    """One interaction waiting for the SQLite writer thread."""

    desc: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    done: defer.Deferred[Any] = field(default_factory=defer.Deferred)


class Database:
    """An engine plus the thread pool its interactions run on."""

    #: Most interactions one SQLite commit carries (bounds how long a batch holds the lock).
    max_batch = 64

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
        self._queue: list[_Queued] = []
        self._queue_lock = threading.Lock()
        self._writer_busy = False
        self._local = threading.local()
        self._kept: list[Connection] = []
        self._kept_lock = threading.Lock()
        self._reader: ThreadPool | None = None
        self._read_engine: Engine | None = None
        if self.is_sqlite and threaded and sqlite_path(self.url) is not None:
            self._read_engine = make_engine(self.url, read_only=read_only, reads=True)
            self._reader = ThreadPool(minthreads=1, maxthreads=1, name="gateway-db-read")
            self._reader.threadFactory = _daemon_thread  # type: ignore[assignment]

    def start(self) -> None:
        if not self._started and self.threaded:
            self._pool.start()
            if self._reader is not None:
                self._reader.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self._pool.stop()
            if self._reader is not None:
                self._reader.stop()
            self._started = False
        with self._kept_lock:
            kept, self._kept = self._kept, []
        for conn in kept:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing at shutdown: nothing left to save
                pass
        self.engine.dispose()
        if self._read_engine is not None:
            self._read_engine.dispose()

    def _connection(self, engine: Engine) -> Connection:
        """This thread's connection to ``engine``, kept for the thread's life (threaded
        databases only: the CLI and the tests' inline database check one out each time)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = engine.connect()
            self._local.conn = conn
            with self._kept_lock:
                self._kept.append(conn)
        return conn

    def _forget_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.invalidate()
            except Exception:  # noqa: BLE001 - it is being dropped because it failed
                pass

    def run_sync(self, desc: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a transaction on the calling thread (CLI, migrations,
        and the database threads)."""
        for attempt in range(5):
            try:
                if self.threaded and self._started:
                    conn = self._connection(self.engine)
                    try:
                        with conn.begin():
                            return fn(conn, *args)
                    except DBAPIError as e:
                        if e.connection_invalidated:
                            self._forget_connection()
                        raise
                with self.engine.begin() as conn:
                    return fn(conn, *args)
            except DBAPIError as e:
                if attempt == 4 or not _is_retryable(e):
                    raise
                log.info("retrying {desc} after {error}", desc=desc, error=type(e).__name__)
                time.sleep(0.01 * (2**attempt))
        raise AssertionError("unreachable")

    def _read_sync(self, desc: str, fn: Callable[..., T], *args: Any) -> T:
        """Run a read: no transaction of its own (each statement sees committed data)."""
        if not (self.threaded and self._started):
            with self.engine.connect() as conn:
                return fn(conn, *args)
        engine = self._read_engine or self.engine
        conn = self._connection(engine)
        autocommit = not self.is_sqlite  # PostgreSQL: no BEGIN/COMMIT round trips
        try:
            if autocommit:
                conn.connection.dbapi_connection.autocommit = True  # type: ignore[union-attr]
            return fn(conn, *args)
        except DBAPIError as e:
            if e.connection_invalidated:
                self._forget_connection()
            raise
        finally:
            if not conn.invalidated:
                if conn.in_transaction():
                    conn.rollback()
                if autocommit:
                    conn.connection.dbapi_connection.autocommit = False  # type: ignore[union-attr]

    async def run_read(self, desc: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)``, which only reads, outside the writer's queue."""
        started = self._reactor.seconds()
        try:
            if not self.threaded:
                return self._read_sync(desc, fn, *args)
            self.start()
            pool = self._reader or self._pool
            return await threads.deferToThreadPool(self._reactor, pool, self._read_sync,
                                                   desc, fn, *args)
        finally:
            self.metrics.database(desc, self._reactor.seconds() - started)

    async def run_interaction(self, desc: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one transaction on the database thread pool (or, when
        not ``threaded``, right here: tests on a fake clock)."""
        started = self._reactor.seconds()
        try:
            if not self.threaded:
                return self.run_sync(desc, fn, *args)
            self.start()
            if self.is_sqlite:
                return await self._enqueue(desc, fn, args)
            return await threads.deferToThreadPool(self._reactor, self._pool, self.run_sync,
                                                   desc, fn, *args)
        finally:
            self.metrics.database(desc, self._reactor.seconds() - started)

    def _enqueue(self, desc: str, fn: Callable[..., T],
                 args: tuple[Any, ...]) -> defer.Deferred[T]:
        item = _Queued(desc, fn, args)
        with self._queue_lock:
            self._queue.append(item)
            start_writer = not self._writer_busy
            self._writer_busy = True
        if start_writer:
            self._pool.callInThread(self._drain_queue)
        return item.done

    def _drain_queue(self) -> None:
        """The writer thread: commit queued interactions in batches until none are left."""
        while True:
            with self._queue_lock:
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
                if not batch:
                    self._writer_busy = False
                    return
            outcomes = self._run_batch(batch)
            self.metrics.committed(len(batch))
            for item, (ok, value) in zip(batch, outcomes):
                fire = item.done.callback if ok else item.done.errback
                self._reactor.callFromThread(fire, value)

    def _run_batch(self, batch: list[_Queued]) -> list[tuple[bool, Any]]:
        """Run ``batch`` in one transaction; each outcome is (succeeded, result or failure).

        A lone interaction runs as :meth:`run_sync` does. When BEGIN or COMMIT itself fails
        (another process holds the lock too long), every interaction failed, none applied.
        """
        if len(batch) == 1:
            item = batch[0]
            try:
                return [(True, self.run_sync(item.desc, item.fn, *item.args))]
            except BaseException:  # noqa: BLE001 - handed to the caller's Deferred
                return [(False, Failure())]
        try:
            return self.run_sync("batch", _run_in_savepoints, batch)
        except BaseException:  # noqa: BLE001 - even SystemExit: never leave callers waiting
            return [(False, Failure())] * len(batch)


def _run_in_savepoints(conn: Connection, batch: list[_Queued]) -> list[tuple[bool, Any]]:
    outcomes: list[tuple[bool, Any]] = []
    for item in batch:
        try:
            with conn.begin_nested():
                outcomes.append((True, item.fn(conn, *item.args)))
        except BaseException:  # this caller's failure, unless SQLite ended the transaction
            if not _in_transaction(conn):
                # SQLite ended the whole transaction (disk full, I/O error, ...), not only
                # this savepoint: the writes of the interactions before it are gone too, and
                # the next would run outside any transaction. Fail the batch as a whole.
                raise
            outcomes.append((False, Failure()))
    return outcomes


def _in_transaction(conn: Connection) -> bool:
    return bool(getattr(conn.connection.dbapi_connection, "in_transaction", True))


def connection_dialect(conn: Connection) -> str:
    return conn.dialect.name
