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
from gateway.binding import Arrival, Decision, Phase, decide
from gateway.model import CaptureEffect, MoneyKind
from gateway.store.journal import (
    CallQuery, Mark, OrderMovedError, TwinBoundError, idempotency_key,
)
from gateway.store.mapping import next_number
from gateway.store.store import ReservationConflictError, Store
from gateway.translate.plan import RestStep
from tests.conftest import make_pg_schema
from tests.store.journal_helpers import capture_result, intend, succeed

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


async def reported(store: Store, *marks: Mark) -> None:
    """Delivery reports, written as the store writes them (with its next transaction)."""
    for mark in marks:
        store.report(mark)
    await store.flush_reports()


async def holder(store: Store, fingerprint: str) -> Any:
    return (await store.read_call(CallQuery(1234, fingerprint))).holder


@pytest_twisted.ensureDeferred
async def test_identical_calls_coalesce_across_processes(stores: Store2) -> None:
    """Same fingerprint: one is bound, the twin (other process) cannot be; a success whose
    reply was not delivered is replayed (once, under a new delivery token), a delivered one
    never is (the next is a new operation); a fault ends the binding at once."""
    a, b = stores.a, stores.b
    first, token = await intend(a, fingerprint="f" * 64)
    with pytest.raises(TwinBoundError):
        await intend(b, fingerprint="f" * 64)
    assert (await holder(b, "f" * 64)).binding.phase is Phase.RUNNING
    _, delivery = await succeed(a, first, token, None, reply=["ok", "9000000000"])
    assert delivery is not None
    await reported(a, Mark(first.journal_id, delivery, False, stores.clock.seconds()))
    bound = await holder(b, "f" * 64)
    assert bound.binding.phase is Phase.UNDELIVERED
    seen = await b.replay(bound.id, bound.binding.token, "B1")
    assert seen is not None and seen.reply_json == '["ok", "9000000000"]'
    assert await b.replay(bound.id, bound.binding.token, "B2") is None  # once
    await reported(b, Mark(bound.id, "B1", True, stores.clock.seconds()))
    assert await holder(b, "f" * 64) is None
    fresh, token_b = await intend(b, fingerprint="f" * 64)
    assert fresh.journal_id != first.journal_id
    assert await b.fail(fresh.journal_id, token_b, None, 9103, "not_allowed_operation: x")
    again, _ = await intend(a, fingerprint="f" * 64)
    assert again.journal_id != fresh.journal_id


@pytest_twisted.ensureDeferred
async def test_a_late_delivery_report_never_undoes_a_newer_one(stores: Store2) -> None:
    """The reply was handed over (token T1), the connection closed (undelivered), the retry
    was given the reply (T2) and it arrived (delivered). A late report about T1 arriving now
    changes nothing: the binding stays ended."""
    a = stores.a
    made, token = await intend(a, fingerprint="l" * 64)
    _, t1 = await succeed(a, made, token, None)
    assert t1 is not None
    now = stores.clock.seconds()
    await reported(a, Mark(made.journal_id, t1, False, now))
    assert await a.replay(made.journal_id, t1, "T2") is not None
    await reported(a, Mark(made.journal_id, "T2", True, now))
    await reported(a, Mark(made.journal_id, t1, False, now),
                         Mark(made.journal_id, t1, True, now))
    entry = await a.get_entry(made.journal_id)
    assert entry.phase is Phase.DELIVERED and await holder(a, "l" * 64) is None


@pytest_twisted.ensureDeferred
async def test_concurrent_intents_only_one_is_bound(stores: Store2) -> None:
    """Both processes commit an intent for the same fingerprint at the same instant:
    exactly one entry is bound, the other intent is refused whole."""
    from twisted.internet import defer

    results = await defer.DeferredList([
        defer.ensureDeferred(intend(stores.a, fingerprint="c" * 64, method="credit_part")),
        defer.ensureDeferred(intend(stores.b, fingerprint="c" * 64, method="credit_part"))],
        consumeErrors=True)
    assert sorted(ok for ok, _ in results) == [False, True]
    [failure] = [r for ok, r in results if not ok]
    assert failure.check(TwinBoundError)


@pytest_twisted.ensureDeferred
async def test_lapsed_lease_is_taken_over(stores: Store2) -> None:
    """A running entry whose lease lapsed (dead process) is taken over, by one runner only,
    presenting the token it saw."""
    first, token = await intend(stores.a, fingerprint="d" * 64)
    assert await stores.b.take_over(first.journal_id, token, "B", 10) is None  # still live
    stores.clock.advance(11)
    assert [e.id for e in await stores.b.unfinished_entries()] == [first.journal_id]
    taken = await stores.b.take_over(first.journal_id, token, "B", 10)
    assert taken is not None and taken.token == "B" and taken.attempts == 2
    assert await stores.a.take_over(first.journal_id, token, "A2", 10) is None


@pytest_twisted.ensureDeferred
async def test_step_outcome_and_invoice_row_commit_together(stores: Store2) -> None:
    """Keys are committed with the intent; the capture's success writes the invoice with
    the invno issued then; recording it again changes nothing."""
    a = stores.a
    res = await a.register_reservation(1234, "order-1", None, "admin")
    made, token = await intend(a, res=res, steps=[capture_step(res)], allocate_invno=True)
    [step] = made.steps
    assert step.state == "planned" and len(step.idempotency_key) == 36
    assert step.idempotency_key == idempotency_key(await a.install_id(), made.journal_id, 1)
    assert (await a.get_entry(made.journal_id)).steps[0].idempotency_key == step.idempotency_key
    owned, _ = await succeed(a, made, token, res, capture_result(made))
    assert owned
    assert not (await succeed(a, made, token, res, capture_result(made)))[0]  # finished
    [inv] = await a.invoices_for(res.id)
    assert isinstance(step.effect, CaptureEffect)
    assert inv.invno == step.effect.invno == made.invno == "9000000000"
    assert inv.capture_id == f"cap-{made.journal_id}"
    assert (await a.get_reservation(1234, res.rno)).status == "PART_CAPTURED"


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
    made, token = await intend(a, res=res, steps=[capture_step(res)], allocate_invno=True)
    assert await a.adopt(res, [{"capture_id": "cap-2", "captured_amount": 1000}], []) == ([], [])
    await succeed(a, made, token, res, [{"capture_id": "cap-2"}])
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
async def test_an_intent_commits_only_if_the_order_has_not_moved(stores: Store2) -> None:
    """The intent takes the order's lease and checks the version its plan read: a call
    that read the order before another call's intent reads again (nothing written)."""
    a, b = stores.a, stores.b
    res = await a.register_reservation(1234, "order-1", None, "admin")
    seen = (await a.read_call(CallQuery(1234, "m" * 64, rno=res.rno))).order
    made, token = await intend(b, res=res, steps=[capture_step(res)])
    with pytest.raises(OrderMovedError):
        await intend(a, fingerprint="m" * 64, res=res, steps=[capture_step(res)], order=seen)
    await b.release(made.journal_id, token, res.id)
    fresh = (await a.read_call(CallQuery(1234, "m" * 64, rno=res.rno))).order
    assert fresh is not None and fresh.version > seen.version and not fresh.leased(0)
    assert fresh.unresolved == {MoneyKind.CAPTURE: 1}  # b's capture: outcome unknown


@pytest_twisted.ensureDeferred
async def test_after_9119_the_same_call_stays_bound_for_the_retry_window(stores: Store2) -> None:
    """A client told 9119 may retry late: the identical call replays the operation
    (finished meanwhile by recovery, its reply never delivered) until the retry window."""
    a, clock = stores.a, stores.clock
    first, token = await intend(a, fingerprint="h" * 64)
    assert await a.release(first.journal_id, token, None)  # the client got 9119
    entry = await a.get_entry(first.journal_id)
    taken = await a.take_over(first.journal_id, entry.token, "R", 10)  # recovery
    assert taken is not None
    await succeed(a, first, "R", None, reply=["ok", "9000000007"], client=False)
    clock.advance(600)
    bound = await holder(a, "h" * 64)
    assert decide(bound.binding, Arrival.FIRST, clock.seconds(), 3600).decision \
        is Decision.REPLAY
    seen = await a.replay(bound.id, bound.binding.token, "B")
    assert seen is not None and seen.reply_json == '["ok", "9000000007"]'
    clock.advance(3600)
    bound = await holder(a, "h" * 64)
    verdict = decide(bound.binding, Arrival.FIRST, clock.seconds(), 3600)
    assert verdict.decision is Decision.NEW and verdict.unbind
    assert await a.expire(bound.id, bound.binding.token)
    assert await holder(a, "h" * 64) is None


@pytest_twisted.ensureDeferred
async def test_a_runner_that_lost_its_lease_is_fenced_out(stores: Store2) -> None:
    """Runner A stalls past its lease; B takes the entry over. A can no longer renew,
    finish or release (False); B can. A capture A did send is still recorded (it
    happened), by id, once."""
    a, b, clock = stores.a, stores.b, stores.clock
    res = await a.register_reservation(1234, "order-1", None, "admin")
    made, token_a = await intend(a, res=res, steps=[capture_step(res)], allocate_invno=True)
    clock.advance(11)
    fresh = await b.take_over(made.journal_id, token_a, "B", 10)
    assert fresh is not None and len(fresh.steps) == 1
    assert not await a.release(made.journal_id, token_a, res.id)
    assert not (await succeed(a, made, token_a, res, capture_result(made)))[0]
    [inv] = await a.invoices_for(res.id)  # A's capture is recorded all the same
    assert (await a.get_entry(made.journal_id)).phase is Phase.RUNNING
    assert (await succeed(b, made, "B", res, capture_result(made)))[0]
    assert [i.capture_id for i in await a.invoices_for(res.id)] == [inv.capture_id]
    assert (await a.get_entry(made.journal_id)).state == "done"


@pytest_twisted.ensureDeferred
async def test_pending_money_of_other_entries_is_reported(stores: Store2) -> None:
    """A planned capture of an unfinished entry shows up as unresolved for the next call."""
    a = stores.a
    res = await a.register_reservation(1234, "order-1", None, "admin")
    made, token = await intend(a, res=res, steps=[capture_step(res)], allocate_invno=True)
    await a.release(made.journal_id, token, res.id)
    view = (await a.read_call(CallQuery(1234, "k" * 64, rno=res.rno))).order
    assert view is not None and not view.leased(stores.clock.seconds())
    assert view.unresolved == {MoneyKind.CAPTURE: 1}
