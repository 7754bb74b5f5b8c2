"""Request slots in PostgreSQL: one budget per merchant for every process on the database.

Two :class:`Database` objects on one schema stand for two gateway processes. The slots are
timed by the database's clock, so these tests use real time, with margins.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy import text
from twisted.internet import defer, reactor

from gateway.om.ratelimit import Limit
from gateway.store import schema
from gateway.store.database import Database
from gateway.store.ratelimit import SharedRateLimiter
from tests.conftest import make_pg_schema

pytestmark = pytest.mark.postgres


@pytest.fixture
def two() -> Iterator[tuple[SharedRateLimiter, SharedRateLimiter]]:
    url, drop = make_pg_schema()
    dbs = [Database(url, reactor), Database(url, reactor)]
    schema.upgrade(dbs[0].engine)
    try:
        yield SharedRateLimiter(dbs[0], reactor), SharedRateLimiter(dbs[1], reactor)
    finally:
        for db in dbs:
            db.stop()
        drop()


def _row(limiter: SharedRateLimiter, eid: int) -> Any:
    with limiter.db.engine.connect() as conn:
        return conn.execute(text("SELECT tat, paused_until, extract(epoch FROM now()) "
                                 "FROM rest_rate_limits WHERE eid = :e"), {"e": eid}).first()


@pytest_twisted.ensureDeferred
async def test_one_bucket_for_two_processes(two: Any) -> None:
    """At 10/s (burst 1) the slots of two processes interleave 0.1 s apart; a slot beyond
    a caller's budget is refused and takes nothing."""
    a, b = two
    ten = Limit(10.0)
    waits = [await (a if i % 2 else b).acquire(1234, ten, 5.0) for i in range(4)]
    assert waits[0] == 0.0
    for i, wait in enumerate(waits):
        assert wait is not None and i * 0.1 - 0.05 <= wait <= i * 0.1 + 0.02, waits
    assert await a.acquire(1234, ten, 0.2) is None  # the next slot is ~0.4 s away
    nxt = await b.acquire(1234, ten, 1.0)  # ... and the refusal did not move it
    assert nxt is not None and 0.3 <= nxt <= 0.42
    assert await a.acquire(5678, ten, 0.0) == 0.0  # another merchant's bucket


@pytest_twisted.ensureDeferred
async def test_concurrent_takers_lose_no_update(two: Any) -> None:
    """80 slots taken at once from two processes' thread pools at 10/s: every one granted,
    and the bucket moved by exactly 80 intervals from the first (each statement saw the one
    before it: no lost update, no slot granted twice)."""
    a, b = two
    started = time.time()
    waits = await defer.gatherResults([
        defer.ensureDeferred((a, b)[i % 2].acquire(4321, Limit(10.0), 10.0))
        for i in range(80)])
    assert None not in waits and max(waits) <= 8.0
    tat, _, _ = _row(a, 4321)
    assert 8.0 - 0.01 <= tat - started <= 8.0 + 0.5


@pytest_twisted.ensureDeferred
async def test_a_pause_is_shared(two: Any) -> None:
    """Process A is told Retry-After: 1. B's next limited slot waits for it in the same
    statement; B's calls of a merchant without a limit learn it at the next refresh."""
    a, b = two
    await a.pause(1234, 1.0)
    wait = await b.acquire(1234, Limit(5.0), 3.0)
    assert wait is not None and 0.9 <= wait <= 1.02
    await a.pause(5678, 2.0)
    assert await b.acquire(5678, None, 0.5) == 0.0  # not known yet: no round trip taken
    await b.refresh()
    assert await b.acquire(5678, None, 0.5) is None
    left = await b.acquire(5678, None, 5.0)
    assert left is not None and 1.8 <= left <= 2.0
    assert await a.acquire(5678, Limit(5.0), 0.5) is None  # known locally: no round trip


@pytest_twisted.ensureDeferred
async def test_a_row_from_a_clock_that_jumped_back_does_not_hold_the_merchant(
        two: Any) -> None:
    a, _ = two
    assert await a.acquire(1234, Limit(1.0), 0.0) == 0.0
    with a.db.engine.begin() as conn:
        conn.execute(text("UPDATE rest_rate_limits SET tat = tat + 86400, "
                          "paused_until = extract(epoch FROM now()) + 86400"))
    assert await a.acquire(1234, Limit(1.0), 0.0) == 0.0


def test_sqlite_is_refused(tmp_path: Any) -> None:
    db = Database(f"sqlite:///{tmp_path}/x.db", reactor)
    try:
        with pytest.raises(ValueError):
            SharedRateLimiter(db, reactor)
    finally:
        db.stop()


SCRIPT: list[tuple[str, Any, float]] = [
    ("acquire", Limit(10.0, 3), 5.0), ("acquire", Limit(10.0, 3), 5.0),
    ("acquire", Limit(10.0, 3), 5.0), ("acquire", Limit(10.0, 3), 5.0),
    ("acquire", Limit(10.0, 3), 0.05), ("pause", None, 1.0),
    ("acquire", Limit(10.0, 3), 0.5), ("acquire", Limit(10.0, 3), 5.0),
    ("acquire", Limit(10.0, 3), 5.0), ("acquire", Limit(2.0), 5.0),
]


@pytest_twisted.ensureDeferred
async def test_the_sql_takes_the_slots_the_python_takes(two: Any) -> None:
    """The same requests and pause, played against the SQL bucket and the in-memory one
    (``gateway.om.ratelimit.take``): the same grants and refusals, the same waits (within
    the few milliseconds the script takes to run)."""
    from gateway.om.ratelimit import LocalRateLimiter

    shared, _ = two
    local = LocalRateLimiter(reactor)
    got: dict[str, list[float | None]] = {"sql": [], "python": []}
    for name, limiter in (("sql", shared), ("python", local)):
        for op, limit, value in SCRIPT:
            if op == "pause":
                await limiter.pause(99, value)
            else:
                got[name].append(await limiter.acquire(99, limit, value))
    assert [w is None for w in got["sql"]] == [w is None for w in got["python"]]
    for s, p in zip(got["sql"], got["python"]):
        assert s is None or p is None or abs(s - p) < 0.05, got
    assert got["python"][:5] == [0.0, 0.0, 0.0, pytest.approx(0.1, abs=0.02), None]
