"""Identical calls in flight at once are one operation; a race with an import books no
more than an invoice holds. On the fake-clock world (``tests/engine/world.py``), where the
test chooses the interleaving.

A client's double submit, two workers of its queue, a proxy retrying on a second
connection: identical calls that were all sent before any had its answer are one parcel.
Whichever process reaches its intent (or its replay, or its takeover) first does the work;
the others join it and are given its outcome, never a second capture.
"""
from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from twisted.internet import defer, task

from gateway.calls.return_amount import ReturnAmount
from gateway.errors import FaultCode
from gateway.model import CreditImport, ImportStatus, OrderFacts
from tests.engine.world import (
    PY, Process, World, activate, fault_of, now, run_call, start,
)

EID = 1234


def captures_after(world: World, proc: Process, d: defer.Deferred[Any], rno: str) -> int:
    """Let the call ``d`` end (a fault such as 9119 is an acceptable end; a capture is not)
    and count the order's captures."""
    try:
        world.drive(d, proc)
    except Exception:  # noqa: BLE001
        pass
    return world.captures_applied(rno, proc)


def order_id_of(world: World, proc: Process, rno: str) -> str:
    res = now(proc.parts.store.get_reservation(EID, rno))
    return str(res.order_id)


def test_an_import_between_a_credits_read_and_its_intent_never_over_refunds(
        world: World) -> None:
    """A call commits its intent only if ``reservations.version`` has not moved since its
    read, and an invoice's refundable amount is taken from that read; so an import
    (``klarna-gateway import`` / the admin API) that books a refund on an invoice moves the
    version too, and the credit reads again.

    1. Two captures: invoice X (1 x ART-1, 10000) and Y (2 x ART-2, 10000).
    2. A refund R of 5000 (1 x ART-2) made in Klarna's portal is adopted by a read and
       allocated to Y (its lines are Y's).
    3. ``return_amount`` of 10000 on X reads X (10000 left), then GETs the order.
    4. Meanwhile the ERP's import books R where the ERP says it belongs: on X
       (``_claim`` moves it: X now has 5000 left). The version does not move.
    5. The return_amount's intent finds the version moved and reads X again (5000 left):
       it is refused rather than booked, never 15000 refunded on an invoice of 10000
       (every later credit of X would be computed from a negative remainder).
    """
    proc = world.process()
    rno = world.create_order(proc)
    invno_x = run_call(world, proc, activate(rno, ("ART-1", 1)))[1]
    invno_y = run_call(world, proc, activate(rno, ("ART-2", 2)))[1]
    order_id = order_id_of(world, proc, rno)
    merchant = world.config.merchant(EID)
    line = {"type": "physical", "reference": "ART-2", "name": "ART-2", "quantity": 1,
            "unit_price": 5000, "tax_rate": 2500, "total_amount": 5000,
            "total_discount_amount": 0, "total_tax_amount": 1000}
    world.run(proc.parts.om.request(
        merchant, "POST", f"/ordermanagement/v1/orders/{order_id}/refunds",
        {"refunded_amount": 5000, "order_lines": [line]}, idempotency_key=str(uuid.uuid4())),
        proc)
    res = now(proc.parts.store.get_reservation(EID, rno))
    klarna = world.order(rno, proc)
    now(proc.parts.store.adopt(res, klarna["captures"], klarna["refunds"]))
    [refund_id] = [r["refund_id"] for r in klarna["refunds"]]
    y = now(proc.parts.store.get_invoice(EID, invno_y))
    assert y.refunded_amount == 5000  # allocated to Y, the invoice holding ART-2

    give_back = ReturnAmount(eid=EID, client_version=PY, invno=invno_x, amount=10000,
                             vat=Decimal(25), tax_rate=2500)
    world.sandbox.faults.add({"method": "GET", "path": "/orders/[^/]+$", "action": "latency",
                              "delay_ms": 1000, "times": 1})
    d = start(world, proc, give_back)  # read X (10000 left), GET order in flight
    assert not d.called
    outcome = now(proc.parts.store.import_row(
        CreditImport(EID, invno_x, "C-1", refund_id),
        OrderFacts.of(order_id, world.order(rno, proc))))
    assert outcome.status is ImportStatus.OK, outcome
    x = now(proc.parts.store.get_invoice(EID, invno_x))
    assert x.refunded_amount == 5000  # the import moved R onto X
    try:
        world.drive(d, proc)
    except Exception:  # noqa: BLE001 - refused (2102) is the right outcome
        pass
    x = now(proc.parts.store.get_invoice(EID, invno_x))
    assert x.refunded_amount <= x.captured_amount, \
        f"invoice {invno_x}: {x.refunded_amount} refunded of {x.captured_amount} captured"


def _slow(proc: Process, method: str, seconds: float = 0.01) -> None:
    """``proc``'s store ``method`` waits ``seconds`` before its transaction (a database round
    trip that takes time, as every real one does; the world's runs inline)."""
    real = getattr(proc.parts.store, method)

    async def slow(*args: Any, **kwargs: Any) -> Any:
        await task.deferLater(proc.clock, seconds, lambda: None)
        return await real(*args, **kwargs)
    setattr(proc.parts.store, method, slow)


def test_two_concurrent_retries_of_an_undelivered_reply_capture_once(world: World) -> None:
    """The reply of ``activate 1 x ART-1`` never reached its client (undelivered). The
    client's retry goes out twice at once (a double submit, two workers of its queue, a
    proxy retrying on a second connection), to processes A and B.

    1. A reads the entry: undelivered, within the window → REPLAY; its replay
       compare-and-set is on its way to the database.
    2. B reads the same, decides REPLAY, and its compare-and-set lands first (replying
       under B's delivery token); B hands the reply over; it is delivered.
    3. A's compare-and-set finds B's token: A lost the race, and joins B's replay (it
       does not claim again as a first arrival, which would find the binding delivered,
       ended, and capture a second time).
    Both calls were sent before either had a reply: concurrent retries of one parcel are
    one operation. One capture.
    """
    a, b = world.process(), world.process()
    rno = world.create_order(a)
    call = activate(rno, ("ART-1", 1))
    first = world.drive(start(world, a, call), a)
    world.run(a.parts.engine.undelivered(first), a)
    world.run(a.parts.store.flush_reports(), a)
    _slow(a, "replay")
    d_a = start(world, a, call)  # read, REPLAY; its CAS waits for the database
    assert not d_a.called
    retry_b = run_call(world, b, call)  # B replays first; its reply is delivered
    assert retry_b == first.reply
    assert captures_after(world, a, d_a, rno) == 1, "two concurrent retries captured twice"


def test_two_concurrent_retries_of_a_released_entry_capture_once(world: World) -> None:
    """The same race on a released entry (its client was told 9119, "retry the same call"):
    the client's retry goes out twice at once, to A and B. Both read ``released`` →
    TAKEOVER. B's compare-and-set lands first; B captures and its reply is delivered. A's
    takeover finds B's token: A lost the race and joins B's operation (claiming again as
    a first arrival would find the binding ended and capture a second time). One capture."""
    a, b = world.process(), world.process()
    rno = world.create_order(a)
    call = activate(rno, ("ART-1", 1))
    world.sandbox.faults.add({"method": "POST", "path": "/captures$", "action": "fail",
                              "status": 503, "times": 1000})
    assert fault_of(world, a, call).fault_code == FaultCode.TIMEOUT  # released: retry it
    world.sandbox.faults.clear()
    _slow(a, "take_over")
    d_a = start(world, a, call)  # read: released → TAKEOVER; its CAS waits
    assert not d_a.called
    assert run_call(world, b, call)[0] == "ok"  # B takes over first, captures, delivered
    assert captures_after(world, a, d_a, rno) == 1, "two concurrent retries captured twice"


def test_a_double_submit_is_one_operation_even_when_its_twin_finishes_first(
        world: World) -> None:
    """A call reads, GETs the order from Klarna and only then commits its intent, so the
    first of two identical calls to arrive need not be the first to commit.

    1. The client sends ``activate 1 x ART-1`` twice at once (a double submit) to A and B.
    2. A reads (nothing bound) and GETs the order; Klarna is slow to answer it (1 s).
    3. B reads (nothing bound), GETs, commits its intent, captures; its reply is delivered.
    4. A's GET returns; its intent finds the order's version moved: claim again. B's
       entry is ``delivered``, but it was made after A's read (the claim's watermark): A
       is its twin, joins it and is given its outcome, not a NEW operation.
    Neither call had a reply when the other was sent: one parcel, one capture.
    """
    a, b = world.process(), world.process()
    rno = world.create_order(a)
    call = activate(rno, ("ART-1", 1))
    world.sandbox.faults.add({"method": "GET", "path": "/orders/[^/]+$", "action": "latency",
                              "delay_ms": 1000, "times": 1})
    d_a = start(world, a, call)  # A's GET order is slow
    assert not d_a.called
    answer = world.drive(start(world, b, call), a, b)  # B, sent at the same moment
    world.run(b.parts.engine.delivered(answer), b)  # B's reply reaches the client
    world.run(b.parts.store.flush_reports(), b)
    assert captures_after(world, a, d_a, rno) == 1, "one double-submitted parcel, two captures"


