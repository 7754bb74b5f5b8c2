"""Independent review of journal v2 (issue 16): findings proven on the fake-clock world.

Each test is one attack; its docstring is the exact sequence and what breaks. Each is
marked ``xfail(strict=True)`` until the lead fixes it (the fix turns it into a pass, and
strict xfail then fails the run: remove the mark with the fix).
"""
from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from twisted.internet import defer

from gateway.calls import REGISTRY
from gateway.calls.return_amount import ReturnAmount
from gateway.model import CreditImport, ImportStatus, OrderFacts
from tests.engine.test_review2_engine import activate, start
from tests.engine.world import Process, World

PY = "python:api:3.1.0"
EID = 1234


def run_call(world: World, proc: Process, call: Any) -> Any:
    answer = world.drive(start(world, proc, call), proc)
    world.run(proc.parts.engine.delivered(answer), proc)
    world.run(proc.parts.store.flush_reports(), proc)
    return answer.reply


def now(coro: Any) -> Any:
    """A store call's result (the world's database runs inline: no bytes move meanwhile)."""
    return World._result(defer.ensureDeferred(coro))


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


def test_an_import_in_the_read_intent_window_lets_a_refund_exceed_its_invoice(
        world: World) -> None:
    """Journal v2 commits an intent only if ``reservations.version`` has not moved since
    the call's read, and the invoice's refundable amount is taken from that read. An
    import (``klarna-gateway import`` / the admin API) that books a refund on an invoice
    changes what is left on it without moving the version.

    1. Two captures: invoice X (1 x ART-1, 10000) and Y (2 x ART-2, 10000).
    2. A refund R of 5000 (1 x ART-2) made in Klarna's portal is adopted by a read and
       allocated to Y (its lines are Y's).
    3. ``return_amount`` of 10000 on X reads X (10000 left), then GETs the order.
    4. Meanwhile the ERP's import books R where the ERP says it belongs: on X
       (``_claim`` moves it: X now has 5000 left). The version does not move.
    5. The return_amount's intent commits; Klarna (order-level: 20000 captured, 5000
       refunded) refunds 10000; the ledger books it on X: 15000 refunded on an invoice of
       10000. Every later credit of X is computed from a negative remainder.
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


def test_a_v1_entry_whose_reply_was_delivered_before_it_finished_is_not_replayed(
        world: World) -> None:
    """Journal v1 let a runner that lost its lease at the last step answer its client, and
    recorded ``delivered_at`` on the still-pending entry "so when the other runner finishes
    the entry it is not replayed to the next identical call" (v1 ``journal.delivered``).
    Migration 0005 maps that row by ``state`` alone: pending → running/released; its
    ``delivered_at`` is kept as history but no decision reads it.

    1. v1: runner A captured (step done, invoice 9000000000) and its fenced finish failed
       (B had taken the entry over); A answered its client, delivered_at recorded. B died.
    2. ``db upgrade``: the entry is ``running`` (B's lapsed lease).
    3. Recovery finishes it: no client waits, so ``undelivered``, bound.
    4. The ERP, which *has* the reply, ships the second parcel (the identical call): it is
       replayed the first parcel's reply. The second parcel is never captured.
    """
    from sqlalchemy import text

    from gateway.engine.recovery import recover_unfinished
    from gateway.store.database import make_engine
    from tests.engine.test_upgrade_v2 import _migrate

    proc = world.process()
    rno = world.create_order(proc)
    call = activate(rno, ("ART-1", 1))
    assert run_call(world, proc, call) == ["ok", "9000000000"]
    proc.parts.db.stop()
    world.processes.clear()
    _migrate(world.db_url, "0004", down=True)
    at = world.clock.seconds()
    engine = make_engine(world.db_url)
    with engine.begin() as conn:  # the row as v1 left it: A delivered, B holds it, dead
        conn.execute(text(
            "UPDATE journal SET state = 'pending', inflight = fingerprint, reply_json = NULL, "
            "lease_token = 'runner-b', lease_until = :until, delivered_at = :at, "
            "delivering_until = NULL WHERE id = 1"), {"until": at - 1, "at": at - 2})
    engine.dispose()
    _migrate(world.db_url, "head")
    proc = world.process()
    assert world.run(recover_unfinished(proc.parts.engine), proc) == {"done": 1}
    second = run_call(world, proc, call)  # the second parcel, deliberately
    assert world.captures_applied(rno, proc) == 2, \
        f"the second parcel was answered {second} from the first operation"


def _slow(proc: Process, method: str, seconds: float = 0.01) -> None:
    """``proc``'s store ``method`` waits ``seconds`` before its transaction (a database round
    trip that takes time, as every real one does; the world's runs inline)."""
    from twisted.internet import task

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
    3. A's compare-and-set finds B's token: None. A claims again *as a first arrival*:
       replying → waits; delivered → unbound → a NEW operation: a second capture.
    Both calls were sent before either had a reply: concurrent retries of one parcel
    (two identical calls racing to their intent are one operation: the loser joins).
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
    takeover finds B's token: None; A claims again as a first arrival, finds the binding
    ended (delivered) and captures a second time."""
    from gateway.errors import FaultCode, GatewayError

    a, b = world.process(), world.process()
    rno = world.create_order(a)
    call = activate(rno, ("ART-1", 1))
    world.sandbox.faults.add({"method": "POST", "path": "/captures$", "action": "fail",
                              "status": 503, "times": 1000})
    with pytest.raises(GatewayError) as info:
        run_call(world, a, call)
    assert info.value.fault_code == FaultCode.TIMEOUT  # released: retry the same call
    world.sandbox.faults.clear()
    _slow(a, "take_over")
    d_a = start(world, a, call)  # read: released → TAKEOVER; its CAS waits
    assert not d_a.called
    assert run_call(world, b, call)[0] == "ok"  # B takes over first, captures, delivered
    assert captures_after(world, a, d_a, rno) == 1, "two concurrent retries captured twice"


def test_a_double_submit_is_one_operation_even_when_its_twin_finishes_first(
        world: World) -> None:
    """Journal v1 claimed the call's fingerprint in its first transaction, before reading
    the order, so a second identical call always found the first bound (and joined it).
    v2 reads, GETs the order from Klarna and only then commits its intent.

    1. The client sends ``activate 1 x ART-1`` twice at once (a double submit) to A and B.
    2. A reads (nothing bound) and GETs the order; Klarna is slow to answer it (1 s).
    3. B reads (nothing bound), GETs, commits its intent, captures; its reply is delivered.
    4. A's GET returns; its intent finds the order's version moved: claim again. B's
       entry is ``delivered`` (unbound): A is a NEW operation and captures again.
    Neither call had a reply when the other was sent: one parcel, two captures. (Journal
    v1 at 5e76111, the same sequence: B joins A, one capture.)
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


def _database_fails_once(proc: Process, desc: str, committed: bool) -> None:
    """``proc``'s next database interaction named ``desc`` fails as a dropped connection
    does (inside the database layer, SQLAlchemy's error with its connection invalidated):
    before anything is written, or (``committed``) after its COMMIT reached the database
    but before the answer came back."""
    from sqlalchemy.exc import OperationalError

    def dropped(_conn: Any) -> None:
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"),
                               connection_invalidated=True)

    db = proc.parts.db
    for name in ("run_interaction", "run_read"):
        real = getattr(db, name)

        async def fail_once(d: str, fn: Any, *args: Any, _real: Any = real) -> Any:
            if d == desc and not getattr(db, "_review_failed", False):
                db._review_failed = True  # type: ignore[attr-defined]
                if committed:
                    await _real(d, fn, *args)
                return await _real(d, dropped)
            return await _real(d, fn, *args)
        setattr(db, name, fail_once)


@pytest.mark.parametrize(("desc", "committed"), [
    ("read_call", False), ("record_intent", False), ("record_outcome", False),
    ("record_intent", True), ("record_outcome", True)])
def test_a_database_error_mid_call_answers_a_retryable_fault(world: World, desc: str,
                                                             committed: bool) -> None:
    """Issue 16, "Bad input and faults": a database error mid-transaction answers a
    retryable legacy fault (9119: the SDKs and ERPs retry the same call on it) and leaves
    nothing half-written. (Journal v2 answered -32603 "internal error", which tells the ERP
    nothing about whether to retry; the database layer now raises
    ``DatabaseUnavailableError``.) Where the COMMIT reached the database and only its answer
    was lost, the money moves all the same (recovery, or the retry, sends the journaled
    capture) and the ERP's retry gets its invoice number; the retry captures once."""
    from gateway.errors import FaultCode, GatewayError

    proc = world.process()
    rno = world.create_order(proc)
    call = activate(rno, ("ART-1", 1))
    _database_fails_once(proc, desc, committed)
    d = start(world, proc, call)
    with pytest.raises(Exception) as info:
        world.drive(d, proc)
    assert isinstance(info.value, GatewayError) and \
        info.value.fault_code == FaultCode.TIMEOUT, repr(info.value)
    world.clock.advance(proc.parts.engine.lease_seconds + 1)
    assert run_call(world, proc, call)[0] == "ok"  # the ERP's retry
    assert world.captures_applied(rno, proc) == 1


def test_a_retry_after_recovery_failed_a_half_applied_entry_does_not_capture_again(
        world: World) -> None:
    """``activate_reservation`` of 1 x ART-1 (two steps: capture, release the rest).

    1. The capture is applied; the release meets 503 for the whole budget: the client is
       told 9119 "retry the same call to continue it"; the entry is released (capture
       done, release planned).
    2. Recovery resumes it before the client's retry arrives; Klarna now refuses the
       release (403). The entry ends ``failed``, unbound; its fault goes to nobody.
    3. The client retries the same call, as it was told: nothing is bound to it, so it is
       a NEW operation: 1 x ART-1 is captured a second time.
    The client never had an answer but 9119 and did exactly what it was told.
    """
    from gateway.calls.activate_reservation import ActivateReservation
    from gateway.engine.recovery import recover_unfinished
    from gateway.errors import FaultCode, GatewayError
    from gateway.wire.values import Goods

    proc = world.process()
    rno = world.create_order(proc)
    call = ActivateReservation(
        EID, PY, rno, goods=(Goods("ART-1", "T", 10000, Decimal(25), Decimal(0), 32, 1),))
    world.sandbox.faults.add({"method": "POST", "path": "/release-remaining-authorization$",
                              "action": "fail", "status": 503, "times": 1000})
    with pytest.raises(GatewayError) as info:
        run_call(world, proc, call)
    assert info.value.fault_code == FaultCode.TIMEOUT
    assert world.captures_applied(rno, proc) == 1
    world.sandbox.faults.clear()
    world.sandbox.faults.add({"method": "POST", "path": "/release-remaining-authorization$",
                              "action": "fail", "status": 403, "times": 1})
    assert world.run(recover_unfinished(proc.parts.engine), proc) == {"failed": 1}
    try:
        run_call(world, proc, call)  # the retry the client was told to send
    except GatewayError:
        pass  # the recorded fault (naming the invoice) would be a right answer
    assert world.captures_applied(rno, proc) == 1, "the retry captured the goods again"


def test_a_v1_entry_that_died_before_planning_is_not_answered_as_a_success(
        world: World) -> None:
    """Journal v1 claimed a call's fingerprint *before* reading the order and planning: a
    process that died in between left a pending entry with no steps (v1's recovery ended
    such an entry "timeout: the call ended before any request was sent"). Migration 0005
    makes it ``running`` (or ``released``), bound; v2's continuation has no case for an
    entry without steps: ``send_all`` finds nothing planned and finishes it with the reply
    its (absent) steps would have earned.

    1. v1: ``cancel_reservation`` claimed; the process died during its GET order.
    2. ``db upgrade``; recovery resumes the entry: "done", reply "ok", undelivered.
    3. The client's retry is replayed "ok": the ERP books the order as cancelled. Klarna's
       order was never cancelled (its authorization stays open; for ``activate`` the
       retry gets no invoice and crashes the reply instead).
    """
    from sqlalchemy import text

    from gateway.calls.cancel_reservation import CancelReservation
    from gateway.engine.claim import Ticket
    from gateway.engine.recovery import recover_unfinished
    from gateway.store.database import make_engine
    from tests.engine.test_upgrade_v2 import _migrate

    proc = world.process()
    rno = world.create_order(proc)
    order_id = order_id_of(world, proc, rno)
    call = CancelReservation(eid=EID, client_version=PY, rno=rno)
    ticket = Ticket.of(REGISTRY.spec("cancel_reservation"), call, 0, 0)
    proc.parts.db.stop()
    world.processes.clear()
    _migrate(world.db_url, "0004", down=True)
    at = world.clock.seconds()
    engine = make_engine(world.db_url)
    with engine.begin() as conn:  # claimed by v1, died before planning: no steps
        conn.execute(text(
            "INSERT INTO journal (eid, method, fingerprint, inflight, call_json, rno, "
            "order_id, state, lease_token, lease_until, attempts, created_at, updated_at) "
            "VALUES (:eid, 'cancel_reservation', :fp, :fp, :call, :rno, NULL, 'pending', "
            "'dead', :until, 1, :at, :at)"),
            {"eid": EID, "fp": ticket.fingerprint, "call": ticket.call_json, "rno": rno,
             "until": at - 1, "at": at - 20})
    engine.dispose()
    _migrate(world.db_url, "head")
    proc = world.process()
    world.run(recover_unfinished(proc.parts.engine), proc)
    try:
        reply = run_call(world, proc, call)  # the client's retry
    except Exception as e:  # noqa: BLE001 - a fault (retry) is honest; a false "ok" is not
        reply = e
    status = world.order(rno, proc)["status"]
    assert reply != "ok" or status == "CANCELLED", \
        f"the retry was answered {reply!r}; order {order_id} is {status}"
