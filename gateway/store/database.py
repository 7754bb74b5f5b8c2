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

Each database thread keeps its connection (no pool checkout per interaction): the writer's
and the reader's on SQLite, one per pool thread on PostgreSQL. A connection the server
closed (a restart, a network cut) is replaced: before an interaction when the driver knows
it is gone or, idle, it has something unasked to read (a restart's 57P01, then end of file),
and after an interaction that broke it. The journal's hot path runs on the driver's own
connection (:mod:`gateway.store.sql`), so SQLAlchemy never sees those failures: the checks
here look at the driver's connection, not at SQLAlchemy's invalidation.

A failure that says the database cannot be used now (connection lost or refused, server
shutting down or starting, disk full, I/O error: :func:`unavailable`) reaches the caller
as :class:`~gateway.errors.DatabaseUnavailableError`, the legacy clients' 9119 "retry the
same call"; the driver's error is its ``__cause__``. Writes that failed so are remembered
(:meth:`Database.writes_failing`) until a transaction that changes something commits, for
readiness: on SQLite a full disk fails writes while reads still work.

Tests of the engine construct ``Database(url, reactor, threaded=False)``: interactions then
run synchronously on the calling thread (SQLite in memory or in a temp file), so a test
driven by ``task.Clock`` needs no threads and no wall clock.
"""
from __future__ import annotations

import os
import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from gateway.errors import DatabaseUnavailableError
from gateway.metrics import NO_METRICS, Metrics

T = TypeVar("T")
log = Logger()

_RETRYABLE_PG_CODES = {"40001", "40P01"}  # serialization_failure, deadlock_detected
#: SQLite primary result codes that say the database cannot be used now rather than that
#: the statement is wrong: BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
_SQLITE_UNAVAILABLE = {5, 6, 7, 8, 10, 13, 14, 15}
#: PostgreSQL SQLSTATE classes that say the same: connection exception, insufficient
#: resources (disk full, out of memory, too many connections), operator intervention
#: (shutting down, starting up, cancelled), system error (I/O).
_PG_UNAVAILABLE = ("08", "53", "57", "58")
#: Seconds a PostgreSQL connection attempt may take (libpq ``connect_timeout``; a URL that
#: sets its own keeps it): a host that does not answer fails a call in time, not after the
#: system's TCP timeout of minutes.
PG_CONNECT_TIMEOUT = 5
#: How long failed writes count against readiness when nothing has been written since:
#: then readiness says ready again and the next write tells (a load balancer that stopped
#: sending calls would otherwise never learn that the disk has room again).
WRITE_FAILURE_MEMORY = 30.0


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
            # On the driver's connection: this runs for every transaction, and SQLAlchemy's
            # statement machinery costs more than the BEGIN itself.
            conn.connection.dbapi_connection.execute("BEGIN IMMEDIATE")

        return engine
    # Each database thread keeps one pooled connection; the overflow serves everything else
    # (schema checks at start, tools sharing the Database).
    return create_engine(url, pool_size=pool_size, max_overflow=2, pool_pre_ping=True,
                         connect_args=_pg_connect_args(url))


def _pg_connect_args(url: str) -> dict[str, Any]:
    if "connect_timeout" in make_url(url).query:
        return {}
    return {"connect_timeout": PG_CONNECT_TIMEOUT}


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
    engine = create_engine(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True,
                           connect_args=_pg_connect_args(url))

    @event.listens_for(engine, "begin")
    def _pg_read_only(conn: Any) -> None:
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")

    return engine


def caused_by_database(e: BaseException) -> bool:
    """Whether a database failure is ``e`` or lies under it (a fault raised from one)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, (SQLAlchemyError, DatabaseUnavailableError)):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def _driver_error(e: BaseException) -> BaseException:
    """The driver's own exception: SQLAlchemy's wraps it, the hot path's is it."""
    orig = e.orig if isinstance(e, DBAPIError) else None
    return orig if isinstance(orig, BaseException) else e


def _is_retryable(e: BaseException) -> bool:
    orig = _driver_error(e)
    if getattr(orig, "sqlstate", None) in _RETRYABLE_PG_CODES:
        return True
    return getattr(orig, "sqlite_errorcode", None) is not None and \
        "database is locked" in str(orig)


def unavailable(e: BaseException, dbapi: Any) -> bool:
    """Whether ``e`` says the database cannot be used now (the call may be retried as it
    is), rather than that a statement or the code is wrong. ``dbapi``: the driver module."""
    if isinstance(e, PoolTimeoutError):
        return True
    if isinstance(e, DBAPIError) and e.connection_invalidated:
        return True
    orig = _driver_error(e)
    code = getattr(orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _SQLITE_UNAVAILABLE
    state = getattr(orig, "sqlstate", None)
    if state:
        return str(state)[:2] in _PG_UNAVAILABLE
    # psycopg: no SQLSTATE when the server never answered (refused, lost, closed)
    return isinstance(orig, getattr(dbapi, "OperationalError", ()))


def _broken(conn: Connection) -> bool:
    """The connection cannot carry another interaction: closed, invalidated, or its driver
    found the server gone (psycopg's ``closed``; sqlite3 connections have no such state)."""
    if conn.closed or conn.invalidated:
        return True
    return bool(getattr(conn.connection.dbapi_connection, "closed", False))


def _idle_poll(conn: Connection) -> Any:
    """A poll on the driver's socket (None for sqlite3): readable while the connection is
    idle between interactions means the server closed it (a restart's or a terminated
    backend's 57P01, then end of file, or a reset). One system call, no round trip."""
    fileno = getattr(conn.connection.dbapi_connection, "fileno", None)
    if fileno is None:
        return None
    poller = select.poll()
    poller.register(fileno(), select.POLLIN)
    return poller


def _reason(e: BaseException) -> str:
    """The driver's error, on one line, for logs and readiness (no URL, no password)."""
    orig = _driver_error(e)
    first = (str(orig).strip().splitlines() or [""])[0]
    return f"{type(orig).__name__}: {first}"[:200]


@dataclass
class _WriteFailure:
    reason: str
    last: float
    #: Database._changed_commits when writes began failing.
    changed_commits: int


@dataclass
class _Queued:
    """One interaction waiting for a database thread."""

    desc: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    #: It only reads (a SQLite batch runs it in the batch's transaction like any other).
    read: bool = False
    done: defer.Deferred[Any] = field(default_factory=defer.Deferred)


_STOP = object()


class _Lane:
    """Database threads fed by one queue; results go back to the reactor.

    Why not Twisted's ``ThreadPool``: handing a call over through its team, coordinator and
    worker objects cost more CPU than the journal's whole transaction (the profile of
    journal v1 had thread hand-offs at a tenth of the gateway's CPU). Here a call is one
    ``SimpleQueue.put`` (C) on the way in and one ``callFromThread`` on the way out, and
    ``run`` may take every call waiting at once (``batch``: the SQLite writer commits them
    together). Threads are daemons: a process that never reached ``stop`` still exits (an
    interrupted transaction is rolled back by the database).
    """

    def __init__(self, name: str, reactor: Any, threads: int,
                 run: Callable[[list[_Queued]], list[tuple[bool, Any]]],
                 batch: Callable[[], int] = lambda: 1) -> None:
        self._name, self._reactor, self._run, self._batch = name, reactor, run, batch
        self._count = threads
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if not self._threads:
            self._threads = [threading.Thread(target=self._loop, name=f"{self._name}-{i}",
                                              daemon=True) for i in range(self._count)]
            for t in self._threads:
                t.start()

    def stop(self, timeout: float = 10.0) -> None:
        threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)
        for t in threads:
            t.join(timeout)

    def submit(self, item: _Queued) -> defer.Deferred[Any]:
        self._queue.put(item)
        return item.done

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            most = self._batch()
            while len(batch) < most:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    self._queue.put(_STOP)  # this thread's stop: after this batch
                    break
                batch.append(more)
            outcomes = self._run(batch)
            self._reactor.callFromThread(_fire, batch, outcomes)


def _fire(batch: list[_Queued], outcomes: list[tuple[bool, Any]]) -> None:
    for item, (ok, value) in zip(batch, outcomes):
        (item.done.callback if ok else item.done.errback)(value)


class Database:
    """An engine plus the database threads its interactions run on."""

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
        self._started = False
        self._local = threading.local()
        self._kept: list[Connection] = []
        self._kept_lock = threading.Lock()
        self._generation = 0
        #: Transactions committed that changed something (on PostgreSQL: every commit).
        self._changed_commits = 0
        self._write_failure: _WriteFailure | None = None
        self._logged_unavailable = float("-inf")
        if self.is_sqlite:  # one writer, committing in groups
            self._writer = _Lane("gateway-db", reactor, 1, self._run_batch,
                                 lambda: self.max_batch)
        else:  # PostgreSQL: a thread per pooled connection, one transaction per interaction
            self._writer = _Lane("gateway-db", reactor, pool_size, self._run_each)
        self._reader: _Lane | None = None
        self._read_engine: Engine | None = None
        if self.is_sqlite and threaded and sqlite_path(self.url) is not None:
            self._read_engine = make_engine(self.url, read_only=read_only, reads=True)
            self._reader = _Lane("gateway-db-read", reactor, 1, self._run_reads)

    def start(self) -> None:
        if not self._started and self.threaded:
            self._writer.start()
            if self._reader is not None:
                self._reader.start()
            self._started = True

    def stop(self) -> None:
        if self._started:
            self._writer.stop()
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

    def _connection(self, engine: Engine) -> Connection | None:
        """The calling database thread's connection to ``engine``, kept for the thread's
        life; None on any other thread (the CLI, the tests' inline database). One the
        server closed is replaced before use."""
        local = self._local
        conn: Connection | None = getattr(local, "conn", None)
        if conn is not None and local.generation == self._generation \
                and not _broken(conn) and not (local.idle and local.idle.poll(0)):
            return conn  # the common case, kept cheap: it runs for every interaction
        if not threading.current_thread().name.startswith("gateway-db"):
            return None
        if conn is not None:
            self._forget_connection()  # dispose() since, it broke or the server closed it
        conn = engine.connect()
        local.conn, local.generation, local.idle = conn, self._generation, _idle_poll(conn)
        with self._kept_lock:
            self._kept.append(conn)
        return conn

    def dispose(self) -> None:
        """Drop every connection: pooled ones now, the database threads' own at their next
        interaction (each thread closes its own)."""
        self._generation += 1
        self.engine.dispose()
        if self._read_engine is not None:
            self._read_engine.dispose()

    def _forget_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._kept_lock:
                if conn in self._kept:
                    self._kept.remove(conn)
            try:
                conn.invalidate()
            except Exception:  # noqa: BLE001 - it is being dropped because it failed
                pass

    def run_sync(self, desc: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a transaction on the calling thread (CLI, migrations,
        and the database threads)."""
        for attempt in range(5):
            conn = None
            try:
                conn = self._connection(self.engine)
                if conn is None:
                    with self.engine.connect() as fresh:
                        return self._commit(fresh, fn, args)
                return self._commit(conn, fn, args)
            except BaseException as e:
                if conn is not None and _broken(conn):
                    self._forget_connection()
                if attempt == 4 or not isinstance(e, Exception) or not _is_retryable(e):
                    raise
                log.info("retrying {desc} after {error}", desc=desc, error=type(e).__name__)
                time.sleep(0.01 * (2**attempt))
        raise AssertionError("unreachable")

    def _commit(self, conn: Connection, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        before = _changes(conn)
        with conn.begin():
            result = fn(conn, *args)
        if before is None or _changes(conn) != before:
            self._changed_commits += 1  # clears writes_failing()
        return result

    def _read_sync(self, desc: str, fn: Callable[..., T], *args: Any) -> T:
        """Run a read: no transaction of its own (each statement sees committed data)."""
        engine = self._read_engine or self.engine
        conn = self._connection(engine)
        if conn is None:
            with self.engine.connect() as fresh:
                return fn(fresh, *args)
        autocommit = not self.is_sqlite  # PostgreSQL: no BEGIN/COMMIT round trips
        try:
            if autocommit:
                conn.connection.dbapi_connection.autocommit = True  # type: ignore[union-attr]
            return fn(conn, *args)
        finally:
            self._after_read(conn, autocommit)

    def _after_read(self, conn: Connection, autocommit: bool) -> None:
        """Leave the kept connection as a transaction expects it, or drop it if it broke
        (never raising over the read's own result or error)."""
        try:
            if not _broken(conn):
                if conn.in_transaction():
                    conn.rollback()
                if autocommit:
                    conn.connection.dbapi_connection.autocommit = False  # type: ignore[union-attr]
                return
        except Exception:  # noqa: BLE001 - it broke just now: dropped below
            pass
        self._forget_connection()

    async def run_read(self, desc: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)``, which only reads, outside the writer's queue."""
        started = self._reactor.seconds()
        try:
            if not self.threaded:
                return self._read_sync(desc, fn, *args)
            self.start()
            item = _Queued(desc, fn, args, read=True)
            lane = self._reader or self._writer
            return await lane.submit(item)  # type: ignore[no-any-return]
        except Exception as e:
            fault = self._unavailable(desc, e, write=False)
            if fault is e:
                raise
            raise fault from e
        finally:
            self.metrics.database(desc, self._reactor.seconds() - started)

    async def run_interaction(self, desc: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one transaction on a database thread (or, when not
        ``threaded``, right here: tests on a fake clock)."""
        started = self._reactor.seconds()
        try:
            if not self.threaded:
                result = self.run_sync(desc, fn, *args)
            else:
                self.start()
                result = await self._writer.submit(_Queued(desc, fn, args))
        except Exception as e:
            fault = self._unavailable(desc, e, write=True)
            if fault is e:
                raise
            raise fault from e
        finally:
            self.metrics.database(desc, self._reactor.seconds() - started)
        failure = self._write_failure
        if failure is not None and self._changed_commits != failure.changed_commits:
            self._write_failure = None
            log.info("database writes succeed again")
        return result  # type: ignore[no-any-return]

    def _unavailable(self, desc: str, e: Exception, *, write: bool) -> Exception:
        """What the caller gets for ``e``: :class:`DatabaseUnavailableError` when the
        database cannot be used now (logged at most every 10 s), else ``e`` itself."""
        if isinstance(e, DatabaseUnavailableError) or \
                not unavailable(e, self.engine.dialect.loaded_dbapi):
            return e
        reason, now = _reason(e), self._reactor.seconds()
        if write:
            failure = self._write_failure
            self._write_failure = _WriteFailure(
                reason, now, failure.changed_commits if failure else self._changed_commits)
        if now - self._logged_unavailable >= 10.0:
            self._logged_unavailable = now
            log.warn("database unavailable ({desc}): {reason}; calls are answered 9119 "
                     "(retry the same call) until it is back", desc=desc, reason=reason)
        return DatabaseUnavailableError(debug_context=f"{desc}: {reason}")

    def writes_failing(self) -> str | None:
        """Why writes fail, while they do: the last write failed because the database could
        not be used and no transaction that changed something has committed since (for at
        most :data:`WRITE_FAILURE_MEMORY` seconds after that failure)."""
        failure = self._write_failure
        if failure is None:
            return None
        if self._changed_commits != failure.changed_commits or \
                self._reactor.seconds() - failure.last > WRITE_FAILURE_MEMORY:
            self._write_failure = None
            return None
        return failure.reason

    # -- what the threads run ------------------------------------------------------------------

    def _run_reads(self, batch: list[_Queued]) -> list[tuple[bool, Any]]:
        return [_outcome(self._read_sync, item) for item in batch]

    def _run_each(self, batch: list[_Queued]) -> list[tuple[bool, Any]]:
        """PostgreSQL: one transaction per interaction (it has its own group commit, and
        several processes share it)."""
        return [_outcome(self._read_sync if item.read else self.run_sync, item)
                for item in batch]

    def _run_batch(self, batch: list[_Queued]) -> list[tuple[bool, Any]]:
        """SQLite: run ``batch`` in one transaction; each outcome is (succeeded, result or
        failure).

        A lone interaction runs as :meth:`run_sync` does. When BEGIN or COMMIT itself fails
        (another process holds the lock too long), every interaction failed, none applied.
        """
        self.metrics.committed(len(batch))
        if len(batch) == 1:
            return [_outcome(self.run_sync, batch[0])]
        try:
            return self.run_sync("batch", _run_in_savepoints, batch)
        except BaseException:  # noqa: BLE001 - even SystemExit: never leave callers waiting
            return [(False, Failure())] * len(batch)


def _outcome(run: Callable[..., Any], item: _Queued) -> tuple[bool, Any]:
    try:
        return True, run(item.desc, item.fn, *item.args)
    except BaseException:  # noqa: BLE001 - handed to the caller's Deferred
        return False, Failure()


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


def _changes(conn: Connection) -> int | None:
    """Rows changed on this connection so far (SQLite), or None (PostgreSQL: unknown)."""
    total = getattr(conn.connection.dbapi_connection, "total_changes", None)
    return total if isinstance(total, int) else None


def _in_transaction(conn: Connection) -> bool:
    return bool(getattr(conn.connection.dbapi_connection, "in_transaction", True))


def connection_dialect(conn: Connection) -> str:
    return conn.dialect.name
