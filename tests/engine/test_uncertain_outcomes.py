"""Outcomes the engine learns late, in part or not at all, on the fake-clock world
(``tests/engine/world.py``): each still moves money once and tells the ERP what happened.

Each test is one sequence of events against a promise of
docs/operations.md#money-safety-guarantees-and-limits: a runner stalled past its lease, a
capture Klarna applies after its answer timed out, a change recovery sends after a newer
one, a fault after money moved, a database error mid-call, a step Klarna refuses after the
client was told to retry, a credit while an earlier one is unresolved. The docstring says
the sequence and what would go wrong with the money.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import json
from decimal import Decimal

import pytest
from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent, _SynchronousProducer
from twisted.internet import defer
from twisted.web.resource import Resource

from gateway.calls.change_reservation import ChangeReservation
from gateway.calls.credit_invoice import CreditInvoice
from gateway.calls.update import Update
from gateway.engine.recovery import recover_unfinished
from gateway.errors import FaultCode, GatewayError
from gateway.model import EntryState
from gateway.wire.values import Goods
from tests.engine.world import (
    PY, Process, World, activate, activate_reservation, fault_of, now, run_call, start,
)

EID = 1234


def test_a_runner_that_lost_its_lease_never_hands_over_a_reply_it_does_not_own(
        world: World) -> None:
    """A stalled runner whose fenced finish failed records its capture (it happened) but
    answers 9119: the entry's owner answers. The client's retry gets the owner's reply, and
    the merchant's deliberate second parcel after that is a second capture.

    1. Process A sends ``activate 1 x ART-1``; Klarna applies it, the answer is slow and A
       stalls past its lease.
    2. Process B (recovery) takes the entry over and re-sends with the same key (replayed);
       its answer is slow too, so the entry is still running when
    3. A wakes, records the capture, fails its fenced finish: 9119 ("being completed
       elsewhere"), no reply handed over.
    4. B finishes: ``undelivered`` (nobody waited for its reply), still bound.
    5. The client retries: the reply is replayed (the same invno, one capture), delivered.
    6. The second parcel, deliberately: a second capture with a new invno.
    (Journal v1 let A hand over the reply: the deliberate second call was then swallowed.)
    """
    b = world.process()
    rno = world.create_order(b)
    a = world.suspended_process()
    world.sandbox.faults.add({"method": "POST", "path": "/captures$", "action": "latency",
                              "delay_ms": 1000, "times": 2})
    call = activate(rno, ("ART-1", 1))
    d_a = start(world, a, call)
    world.turn(a)  # A's capture is journaled and sent
    assert not d_a.called
    world.clock.advance(a.parts.engine.lease_seconds + 1)  # A sleeps, the world goes on
    entry = now(b.parts.store.get_entry(1))
    assert entry.state is EntryState.PENDING and entry.steps
    d_b = defer.ensureDeferred(b.parts.engine.resume(entry))
    world.turn(b)  # B's request is out, its answer delayed
    assert not d_b.called
    # A wakes: its delayed answer is there; it records the capture but owns no outcome.
    with pytest.raises(GatewayError) as info:
        world.drive(d_a, a)
    assert info.value.fault_code == FaultCode.TIMEOUT
    assert world.drive(d_b, b) == "done"
    assert world.captures_applied(rno, b) == 1
    assert run_call(world, b, call) == ["ok", "9000000000"]  # the retry: replayed
    assert world.captures_applied(rno, b) == 1
    second = run_call(world, b, call)  # the second parcel, after the reply was delivered
    assert world.captures_applied(rno, b) == 2, \
        f"the deliberate second call was answered {second} from the first operation"
    assert second == ["ok", "9000000001"]


class LateFront(Resource):
    """A front (load balancer) before the sandbox that, once armed, answers the next
    matching request 503 at once while the backend applies it ``delay`` seconds later (a
    queued request whose client-side wait ran out), and sheds further matching requests
    with 503 until then. Everything else goes straight to the sandbox."""

    isLeaf = True

    def __init__(self, world: World, method: bytes, path_end: bytes) -> None:
        super().__init__()
        self.world = world
        self.method, self.path_end = method, path_end
        self.delay: float | None = None
        self.agent = RequestTraversalAgent(world.sandbox)
        self.backend = HTTPClient(self.agent, data_to_body_producer=_SynchronousProducer)

    def arm(self, delay: float) -> None:
        self.delay = delay

    def render(self, request: Any) -> Any:
        if self.delay is None or request.method != self.method \
                or not request.path.endswith(self.path_end):
            return self.world.sandbox.render(request)
        if self.delay > 0:
            request.content.seek(0)
            body = request.content.read()
            headers = {k: v for k, v in request.requestHeaders.getAllRawHeaders()
                       if k.lower() not in (b"host", b"content-length", b"connection")}
            uri = b"http://klarna.test" + request.uri

            def apply() -> None:
                self.delay = None
                self.backend.request(request.method.decode(), uri.decode(),
                                     headers=headers, data=body)
                self.agent.flush()
            self.world.clock.callLater(self.delay, apply)
            self.delay = 0.0  # applied once; until then, shed the rest
        request.setResponseCode(503)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"error_code": "SERVICE_UNAVAILABLE",
                           "error_messages": ["upstream timed out"],
                           "correlation_id": "front"}).encode()


def test_give_up_waits_out_an_attempt_that_may_still_be_applied(tmp_path: Path) -> None:
    """Give-up concludes "Klarna never applied it" only after a quiet period in which no
    attempt of ours can still land, not as soon as the step is ``give_up_seconds`` old.

    1. ``activate 1 x ART-1``: Klarna is down (503) for the whole budget → 9119, pending.
    2. 890 s after planning the client retries the same call (as told): the capture is
       sent again with the same key; the front answers 503, but Klarna applies it 30 s
       later (the request was queued). The budget runs out → 9119.
    3. The client retries every three seconds; past 900 s the step is no longer sent, only
       looked for on the order, and held (9119) while that last attempt may still land:
       it is not given up ("send the call again") on an order that shows no capture *yet*.
    4. The queued capture lands; the next retry settles the step from the order and the
       client gets its invno. One activation, one capture (had the step been given up at
       900 s, the client's new call would have captured a second time).
    """
    world = World(str(tmp_path / "gw.db"))
    try:
        front = LateFront(world, b"POST", b"/captures")
        proc = world.process(root=front)
        rno = world.create_order(proc)
        call = activate(rno, ("ART-1", 1))
        world.sandbox.faults.add({"method": "POST", "path": "/captures$", "action": "fail",
                                  "status": 503, "times": 1000})
        planned = world.clock.seconds()
        assert fault_of(world, proc, call).fault_code == FaultCode.TIMEOUT
        world.sandbox.faults.clear()
        world.clock.advance(planned + 890 - world.clock.seconds())
        front.arm(delay=30.0)  # applied at 920 s
        replies: list[Any] = []
        for _ in range(20):  # the ERP retries the same call until it gets an answer
            try:
                replies.append(run_call(world, proc, call))
                break
            except GatewayError as e:
                assert e.fault_code == FaultCode.TIMEOUT, e.fault_string
                replies.append(e.fault_string)
                world.clock.advance(3.0)
        assert replies[-1][0] == "ok", replies
        assert world.captures_applied(rno, proc) == 1, \
            f"one activation of 1 x ART-1, two captures; the client saw {replies}"
    finally:
        world.close()


def test_a_stale_authorization_change_is_not_applied_after_a_later_update(world: World
                                                                         ) -> None:
    """An unresolved change of the order blocks a newer change until it is resolved, as
    unresolved money blocks new money: the order ends as the ERP's last word left it.

    1. ``change_reservation`` to 40 000 (a raise): every PATCH /authorization meets 503 for
       the budget → 9119; the entry stays pending with its PATCH journaled.
    2. The ERP changes its mind and sends ``update`` with a goods list of 30 000, retrying
       the same call on 9119 ("an earlier change ... is still unfinished") while the
       recovery sweep resolves the raise (sent with its key, applied).
    3. The update then runs and is applied: order_amount 30 000.
    4. The ERP activates everything: 30 000 captured (were the stale raise sent after the
       update, 40 000 would be).
    """
    proc = world.process()
    rno = world.create_order(proc)
    world.sandbox.faults.add({"method": "PATCH", "path": "/authorization$", "action": "fail",
                              "status": 503, "times": 1000})
    raise_to = ChangeReservation(eid=1234, client_version=PY, rno=rno, amount=40000)
    assert fault_of(world, proc, raise_to).fault_code == FaultCode.TIMEOUT
    world.sandbox.faults.clear()
    goods = (Goods("ART-1", "ART-1", 10000, Decimal(25), Decimal(0), 32, 2),
             Goods("ART-2", "ART-2", 5000, Decimal(25), Decimal(0), 32, 2))
    lower_to = Update(eid=1234, client_version=PY, rno=rno, goods=goods)
    for _ in range(3):  # 9119: the ERP retries the same call, the sweep runs meanwhile
        try:
            assert run_call(world, proc, lower_to) == "ok"
            break
        except GatewayError as e:
            assert e.fault_code == FaultCode.TIMEOUT, e.fault_string
            world.run(recover_unfinished(proc.parts.engine), proc)
    assert world.order(rno, proc)["order_amount"] == 30000
    world.run(recover_unfinished(proc.parts.engine), proc)  # the periodic sweep
    assert run_call(world, proc, activate(rno))[0] == "ok"
    captured = world.order(rno, proc)["captured_amount"]
    assert captured == 30000, f"the ERP's last update said 30000; {captured} was captured"


def test_a_fault_after_a_capture_names_the_invoice_it_created(world: World) -> None:
    """``activate_reservation`` captures the goods list, then Klarna refuses the release of
    the rest (403). The fault names what was applied and the invno the capture was booked
    under: the ERP, told the activation failed, still holds a number for the money that
    was captured (to credit it), and knows not to capture the goods again."""
    proc = world.process()
    rno = world.create_order(proc)
    call = activate_reservation(rno)
    world.fail("POST", "/release-remaining-authorization$", 403, times=1)
    fault = fault_of(world, proc, call)
    assert world.captures_applied(rno, proc) == 1
    res = now(proc.parts.store.get_reservation(1234, rno))
    [invoice] = now(proc.parts.store.invoices_for(res.id))
    assert "not applied: release" in fault.fault_string
    assert invoice.invno in fault.fault_string, fault.fault_string


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
            if d == desc and not getattr(db, "_failed_once", False):
                db._failed_once = True  # type: ignore[attr-defined]
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
    """A database error mid-transaction answers a retryable legacy fault (9119: the SDKs
    and ERPs retry the same call on it; never -32603 "internal error", which tells the ERP
    nothing about whether to retry) and leaves nothing half-written. Where the COMMIT
    reached the database and only its answer was lost, the money moves all the same
    (recovery, or the retry, sends the journaled capture) and the ERP's retry gets its
    invoice number; the retry captures once."""
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


def test_no_new_credit_while_an_earlier_one_is_unresolved(world: World) -> None:
    """``credit_invoice`` X meets 503 for its whole budget (9119, not applied); a credit Y
    of the same invoice must not refund meanwhile (9119, "unfinished"), and once the
    client's retry of X completes, Y finds nothing left to credit (2102): the invoice is
    never refunded beyond what it captured."""
    proc = world.process()
    rno = world.create_order(proc)
    invno = run_call(world, proc, activate(rno, ("ART-1", 2)))[1]
    run_call(world, proc, activate(rno))  # a second invoice with the rest
    world.sandbox.faults.add({"method": "POST", "path": "/refunds$", "action": "fail",
                              "status": 503, "times": 1000})
    x = CreditInvoice(eid=EID, client_version=PY, invno=invno, credno="X")
    y = CreditInvoice(eid=EID, client_version=PY, invno=invno, credno="Y")
    assert fault_of(world, proc, x).fault_code == FaultCode.TIMEOUT
    world.sandbox.faults.clear()
    blocked = fault_of(world, proc, y)
    assert blocked.fault_code == FaultCode.TIMEOUT and "unfinished" in blocked.public_message
    assert run_call(world, proc, x) == invno  # the client retries X
    assert int(fault_of(world, proc, y).fault_code) == 2102
    assert world.order(rno, proc)["refunded_amount"] == 20000
    invoice = now(proc.parts.store.get_invoice(EID, invno))
    assert invoice.refunded_amount == invoice.captured_amount == 20000
