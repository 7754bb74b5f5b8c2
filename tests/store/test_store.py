"""The store on real SQLite and (with GATEWAY_TEST_PG_DSN) real PostgreSQL.

Every test runs against both engines: the rules that keep money safe across processes
(unique numbers, one in-flight entry per fingerprint, leases, step + row in one
transaction) are database constraints, so they are tested on the databases themselves.
"""
from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy import inspect
from twisted.internet import reactor, task

from gateway.store import schema
from gateway.store.database import Database
from gateway.store.models import metadata
from gateway.model import CaptureEffect, MoneyKind
from gateway.store.journal import Fence, LeaseLostError, Outcome, idempotency_key
from gateway.store.mapping import next_number
from gateway.store.store import ReservationConflictError, Store
from gateway.translate.plan import RestStep
from tests.conftest import make_pg_schema

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class Store2:
    """Two Store objects on one database: two gateway processes, as far as SQL can tell."""

    def __init__(self, url: str) -> None:
        self.clock = task.Clock()
        self.clock.advance(1_000_000)
        self.dbs = [Database(url, reactor), Database(url, reactor)]
        self.a, self.b = (Store(db, self.clock) for db in self.dbs)

    def stop(self) -> None:
        for db in self.dbs:
            db.stop()


@pytest_twisted.async_yield_fixture(params=ENGINES)
async def stores(request: Any, tmp_path: Any) -> AsyncIterator[Store2]:
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
    else:
        url, drop = make_pg_schema()
    db = Database(url, reactor)
    schema.upgrade(db.engine)
    db.stop()
    s = Store2(url)
    try:
        yield s
    finally:
        s.stop()
        if drop:
            drop()


def capture_step(res: Any, amount: int = 1000) -> RestStep:
    return RestStep("POST", f"/ordermanagement/v1/orders/{res.order_id}/captures",
                    {"captured_amount": amount, "order_lines": []}, "capture",
                    CaptureEffect(reservation_id=res.id, order_id=res.order_id,
                                  status_after="PART_CAPTURED"))


@pytest_twisted.ensureDeferred
async def test_migrations_create_exactly_the_models(stores: Store2) -> None:
    """Alembic's schema and the SQLAlchemy models agree, table by table, column by column."""
    insp = inspect(stores.dbs[0].engine)
    for table in metadata.sorted_tables:
        cols = {c["name"] for c in insp.get_columns(table.name)}
        assert cols == {c.name for c in table.columns}, table.name
    schema.check(stores.dbs[0].engine)


@pytest_twisted.ensureDeferred
async def test_reservations_numbers_and_conflicts(stores: Store2) -> None:
    """rno issued from the configured start; same pair again is a no-op; conflicts refused;
    rows are scoped by eid."""
    a = stores.a
    r1 = await a.register_reservation(1234, "order-1", None, "admin")
    assert r1.rno == "8000000000"
    assert (await a.register_reservation(1234, "order-1", None, "admin")).id == r1.id
    r2 = await a.register_reservation(1234, "order-2", "2400000001", "import")
    assert r2.rno == "2400000001"
    with pytest.raises(ReservationConflictError):
        await a.register_reservation(1234, "order-3", "2400000001", "admin")
    with pytest.raises(ReservationConflictError):
        await a.register_reservation(1234, "order-2", "777", "admin")
    assert await a.get_reservation(5678, "2400000001") is None
    other = await a.register_reservation(5678, "order-9", "2400000001", "admin")
    assert other.eid == 5678


@pytest_twisted.ensureDeferred
async def test_numbers_are_unique_across_processes(stores: Store2) -> None:
    """Two 'processes' issuing invnos concurrently never hand out the same number."""
    got: list[str] = []
    lock = threading.Lock()

    def issue(db: Database) -> None:
        for _ in range(25):
            n = db.run_sync("n", next_number, "invno", 9000000000)
            with lock:
                got.append(n)
    threads = [threading.Thread(target=issue, args=(db,)) for db in stores.dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == len(set(got)) == 50
    assert min(int(n) for n in got) == 9000000000


@pytest_twisted.ensureDeferred
async def test_identical_calls_coalesce_across_processes(stores: Store2) -> None:
    """Same fingerprint: one runs, the twin (other process) waits; a success whose reply was
    not delivered replays to the next identical call, a delivered one never does (the next
    is a new operation); a fault releases at once."""
    a, b = stores.a, stores.b
    kw: dict[str, Any] = dict(eid=1234, method="activate", fingerprint="f" * 64,
                              call={"method": "activate"}, lease_seconds=10,
                              retry_window=3600, rno=None, invno=None)
    first = await a.begin_call(token="A", **kw)
    twin = await b.begin_call(token="B", **kw)
    assert (first.action, twin.action) == ("run", "wait")
    await a.finish_call(first.entry.id, Outcome(reply=["ok", "9000000000"]))
    replay = await b.begin_call(token="B", **kw)
    assert replay.action == "replay" and replay.entry.reply == ["ok", "9000000000"]
    assert await b.mark_delivered(replay.entry.id)
    fresh = await b.begin_call(token="B", **kw)
    assert fresh.action == "run" and fresh.entry.id != first.entry.id
    await b.finish_call(fresh.entry.id, Outcome(fault_code=9103,
                                                fault_string="not_allowed_operation: x"))
    again = await a.begin_call(token="A", **kw)
    assert again.action == "run" and again.entry.id != fresh.entry.id


@pytest_twisted.ensureDeferred
async def test_concurrent_begin_only_one_runs(stores: Store2) -> None:
    """Both processes claim the same fingerprint at the same instant: exactly one runs."""
    import asyncio  # noqa: F401  (the two interactions run on two real thread pools)
    from twisted.internet import defer

    kw: dict[str, Any] = dict(eid=1234, method="credit_part", fingerprint="c" * 64,
                              call={}, lease_seconds=10, retry_window=3600)
    results = await defer.gatherResults([
        defer.ensureDeferred(stores.a.begin_call(token="A", **kw)),
        defer.ensureDeferred(stores.b.begin_call(token="B", **kw))])
    assert sorted(r.action for r in results) == ["run", "wait"]


@pytest_twisted.ensureDeferred
async def test_lapsed_lease_is_taken_over(stores: Store2) -> None:
    """A pending entry whose lease lapsed (dead process) is resumed by the next twin."""
    kw: dict[str, Any] = dict(eid=1234, method="activate", fingerprint="d" * 64, call={},
                              lease_seconds=10, retry_window=3600, rno=None, invno=None)
    first = await stores.a.begin_call(token="A", **kw)
    stores.clock.advance(11)
    assert [e.id for e in await stores.b.unfinished_entries()] == [first.entry.id]
    second = await stores.b.begin_call(token="B", **kw)
    assert second.action == "run" and second.entry.id == first.entry.id


@pytest_twisted.ensureDeferred
async def test_step_outcome_and_invoice_row_commit_together(stores: Store2) -> None:
    """Keys are committed with the plan; completing the capture step writes the invoice
    with the planned invno; completing it again changes nothing."""
    a = stores.a
    res = await a.register_reservation(1234, "order-1", None, "admin")
    begin = await a.begin_call(eid=1234, method="activate", fingerprint="e" * 64, call={},
                               token="A", lease_seconds=10, retry_window=3600, rno=None,
                               invno=None)
    fence = Fence(begin.entry.id, "A")
    entry = await a.plan_steps(fence, 10, entry=begin.entry, order_id=res.order_id,
                               steps=[capture_step(res)], allocate_invno=True, notes=())
    [step] = entry.steps
    assert step.state == "planned" and len(step.idempotency_key) == 36
    same_key = idempotency_key(await a.install_id(), begin.entry.id, 1)
    assert step.idempotency_key == same_key
    await a.complete_step(entry.id, 1, 201, {"capture_id": "cap-1"}, fence=fence)
    await a.complete_step(entry.id, 1, 201, {"capture_id": "cap-1"}, fence=fence)
    [inv] = await a.invoices_for(res.id)
    assert isinstance(step.effect, CaptureEffect)
    assert inv.invno == step.effect.invno == "9000000000" and inv.capture_id == "cap-1"


@pytest_twisted.ensureDeferred
async def test_adoption_by_id_and_pending_capture_guard(stores: Store2) -> None:
    """Captures/refunds made elsewhere are adopted by id; while a capture of ours is in
    flight unknown captures are left alone (it may be ours), and an adopted capture that
    turns out to be ours takes our invno."""
    a = stores.a
    res = await a.register_reservation(1234, "order-1", None, "admin")
    invnos, _ = await a.adopt(res, [{"capture_id": "ext-1", "captured_amount": 500}], [])
    assert len(invnos) == 1
    assert await a.adopt(res, [{"capture_id": "ext-1", "captured_amount": 500}], []) == ([], [])
    _, refunds = await a.adopt(res, [], [{"refund_id": "r-1", "refunded_amount": 200,
                                          "reference": "CR"}])
    assert refunds == ["r-1"]
    [inv] = await a.invoices_for(res.id)
    assert inv.refunded_amount == 200 and inv.credits[0].credno == "CR"
    begin = await a.begin_call(eid=1234, method="activate", fingerprint="g" * 64, call={},
                               token="A", lease_seconds=10, retry_window=3600, rno=None,
                               invno=None)
    fence = Fence(begin.entry.id, "A")
    await a.plan_steps(fence, 10, entry=begin.entry, order_id=res.order_id,
                       steps=[capture_step(res)], allocate_invno=True, notes=())
    assert await a.adopt(res, [{"capture_id": "cap-2", "captured_amount": 1000}], []) == ([], [])
    await a.complete_step(begin.entry.id, 1, 201, {"capture_id": "cap-2"}, fence=fence)
    assert {i.capture_id: i.adopted for i in await a.invoices_for(res.id)} == {
        "ext-1": True, "cap-2": False}


@pytest_twisted.ensureDeferred
async def test_order_lease_is_exclusive(stores: Store2) -> None:
    """One legacy call per order at a time, across processes; a lapsed lease is free."""
    res = await stores.a.register_reservation(1234, "order-1", None, "admin")
    assert await stores.a.acquire_order_lock(res.id, "A", 10)
    assert not await stores.b.acquire_order_lock(res.id, "B", 10)
    stores.clock.advance(11)
    assert await stores.b.acquire_order_lock(res.id, "B", 10)
    await stores.b.release_order_lock(res.id, "B")
    assert await stores.a.acquire_order_lock(res.id, "A", 10)


@pytest_twisted.ensureDeferred
async def test_after_9119_the_same_call_stays_bound_for_the_retry_window(stores: Store2) -> None:
    """A client told 9119 may retry late: the identical call replays the operation
    (finished meanwhile by recovery, its reply never delivered) until the retry window."""
    a, clock = stores.a, stores.clock
    kw: dict[str, Any] = dict(eid=1234, method="activate", fingerprint="h" * 64, call={},
                              lease_seconds=10, retry_window=3600, rno=None, invno=None)
    first = await a.begin_call(token="A", **kw)
    await a.release_lease(Fence(first.entry.id, "A"))  # the client got 9119
    assert await a.take_over(first.entry.id, "R", 10)  # recovery finishes it
    assert await a.finish_call(first.entry.id, Outcome(reply=["ok", "9000000007"]),
                               fence=Fence(first.entry.id, "R"))
    clock.advance(600)
    late = await a.begin_call(token="B", **kw)
    assert late.action == "replay" and late.entry.reply == ["ok", "9000000007"]
    clock.advance(3600)
    assert (await a.begin_call(token="C", **kw)).action == "run"


@pytest_twisted.ensureDeferred
async def test_a_runner_that_lost_its_lease_is_fenced_out(stores: Store2) -> None:
    """Runner A stalls past its lease; B takes the entry over. A can no longer plan,
    renew or finish (LeaseLostError / False); B can. A capture A did send is still
    recorded (it happened), by id, once."""
    a, b, clock = stores.a, stores.b, stores.clock
    res = await a.register_reservation(1234, "order-1", None, "admin")
    kw: dict[str, Any] = dict(eid=1234, method="activate", fingerprint="i" * 64, call={},
                              lease_seconds=10, retry_window=3600, rno=res.rno, invno=None)
    first = await a.begin_call(token="A", **kw)
    assert first.locked
    clock.advance(11)
    fresh = await b.take_over(first.entry.id, "B", 10)
    assert fresh is not None and fresh.steps == ()
    fence_a, fence_b = Fence(first.entry.id, "A", res.id), Fence(first.entry.id, "B")
    with pytest.raises(LeaseLostError):
        await a.plan_steps(fence_a, 10, entry=first.entry, order_id=res.order_id,
                           steps=[capture_step(res)], allocate_invno=True, notes=())
    assert (await a.get_entry(first.entry.id)).steps == ()  # nothing of A's plan committed
    planned = await b.plan_steps(fence_b, 10, entry=fresh, order_id=res.order_id,
                                 steps=[capture_step(res)], allocate_invno=True, notes=())
    assert not await a.finish_call(first.entry.id, Outcome(reply="x"), fence=fence_a)
    assert not await a.complete_step(first.entry.id, 1, 201, {"capture_id": "cap-1"},
                                     fence=Fence(first.entry.id, "A"), renew_seconds=10)
    effect = planned.steps[0].effect
    assert isinstance(effect, CaptureEffect)
    assert await b.complete_step(first.entry.id, 1, 201, {"capture_id": "cap-1"},
                                 fence=fence_b, finish=Outcome(reply=["ok", effect.invno]))
    [inv] = await a.invoices_for(res.id)
    assert inv.capture_id == "cap-1"
    assert (await a.get_entry(first.entry.id)).state == "done"


@pytest_twisted.ensureDeferred
async def test_pending_money_of_other_entries_is_reported(stores: Store2) -> None:
    """A planned capture of an unfinished entry shows up as pending for the next call."""
    a = stores.a
    res = await a.register_reservation(1234, "order-1", None, "admin")
    kw: dict[str, Any] = dict(eid=1234, lease_seconds=10, retry_window=3600, rno=res.rno,
                              invno=None)
    first = await a.begin_call(method="activate", fingerprint="j" * 64, call={},
                               token="A", **kw)
    fence = Fence(first.entry.id, "A", res.id)
    await a.plan_steps(fence, 10, entry=first.entry, order_id=res.order_id,
                       steps=[capture_step(res)], allocate_invno=True, notes=())
    await a.release_lease(fence)
    other = await a.begin_call(method="activate", fingerprint="k" * 64, call={},
                               token="C", **kw)
    assert other.action == "run" and other.locked
    assert other.unresolved == {MoneyKind.CAPTURE: 1}
