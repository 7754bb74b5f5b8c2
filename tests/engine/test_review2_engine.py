"""Review 2: money-safety findings proven on the fake-clock world (``tests/engine/world.py``).

Each test is one attack on a promise of
docs/operations.md#money-safety-guarantees-and-limits; the docstring says the sequence of
events and what goes wrong with the money.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import json
from decimal import Decimal

import pytest
from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent, _SynchronousProducer
from twisted.internet import defer, task
from twisted.web.resource import Resource

from gateway.calls import REGISTRY
from gateway.calls.activate import Activate
from gateway.calls.activate_reservation import ActivateReservation
from gateway.calls.change_reservation import ChangeReservation
from gateway.calls.update import Update
from gateway.engine.recovery import recover_unfinished
from gateway.errors import FaultCode, GatewayError
from gateway.model import EntryState
from gateway.wire.values import ArtNo, Goods
from tests.engine.world import Process, World

PY = "python:api:3.1.0"


def activate(rno: str, *artnos: tuple[str, int]) -> Activate:
    return Activate(eid=1234, client_version=PY, rno=rno,
                    artnos=tuple(ArtNo(a, q) for a, q in artnos))


def start(world: World, proc: Process, call: Any) -> defer.Deferred[Any]:
    merchant = world.config.merchant(call.eid)
    return defer.ensureDeferred(proc.parts.engine.run(merchant, REGISTRY.spec_for(call), call))


def run_call(world: World, proc: Process, call: Any) -> Any:
    answer = world.drive(start(world, proc, call), proc)
    world.run(proc.parts.engine.delivered(answer), proc)  # the client got it
    return answer.reply


def now(coro: Any) -> Any:
    """The result of a store call (the world's database runs inline: no pumping, so no
    delayed answer is delivered meanwhile)."""
    return World._result(defer.ensureDeferred(coro))


def fault_of(world: World, proc: Process, call: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        run_call(world, proc, call)
    return info.value


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
    (Journal v1 let A hand over the reply; the deliberate second call was then swallowed.)
    """
    b = world.process()
    rno = world.create_order(b)
    a_clock = task.Clock()
    a_clock.advance(world.clock.seconds())
    a = world.process(clock=a_clock)
    world.sandbox.faults.add({"method": "POST", "path": "/captures$", "action": "latency",
                              "delay_ms": 1000, "times": 2})
    call = activate(rno, ("ART-1", 1))
    d_a = start(world, a, call)
    for _ in range(50):  # until A's capture is journaled and sent
        a.agent.flush()
        a_clock.advance(0)
    assert not d_a.called
    world.clock.advance(a.parts.engine.lease_seconds + 1)  # A sleeps, the world goes on
    entry = now(b.parts.store.get_entry(1))
    assert entry.state is EntryState.PENDING and entry.steps
    d_b = defer.ensureDeferred(b.parts.engine.resume(entry))
    for _ in range(50):  # B's request is out, its answer delayed
        b.agent.flush()
        world.clock.advance(0)
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


def test_give_up_right_after_an_attempt_lets_a_retry_capture_twice(tmp_path: Path) -> None:
    """Give-up measures the step's age from when it was planned, not from its last attempt,
    so it can conclude "never applied" seconds after an attempt whose outcome is unknown.

    1. ``activate 1 x ART-1``: Klarna is down (503) for the whole budget → 9119, pending.
    2. 890 s after planning the client retries the same call (as told): the capture is
       sent again with the same key; the front answers 503, but Klarna applies it 30 s
       later (the request was queued). The budget runs out → 9119.
    3. Three seconds later the client retries; the step is now 900 s old: settled from the
       order, no capture there *yet* → given up ("Klarna never applied it; send the call
       again"), the entry FAILED and unbound, seconds after an attempt of unknown outcome.
    4. The client sends the call again, as told: a new operation, a new key, a capture of
       1 x ART-1; and Klarna applies the queued one too. One activation, two captures.
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
    """Unresolved money blocks new money on the order, but nothing blocks a new change of
    the order behind an unresolved change, and recovery later sends the stale one.

    1. ``change_reservation`` to 40 000 (a raise): every PATCH /authorization meets 503 for
       the budget → 9119; the entry stays pending with its PATCH journaled.
    2. The ERP changes its mind and sends ``update`` with a goods list of 30 000 (retrying
       the same call on 9119): the order lease is free and no *money* is unresolved, so it
       runs at once; Klarna applies it.
    3. Recovery resumes the change_reservation: its journaled PATCH (order_amount 40 000 and
       the old lines + an adjustment line) is sent with its key and applied.
    4. The ERP activates everything: 40 000 captured where its last word was 30 000.
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
    the rest (403). The fault names what was applied, "capture the goods list (10000 minor
    units)", but not the invno the capture was booked under: the ERP, told the activation
    failed, holds no number for money that was captured (it cannot credit it, and an
    identical retry is a new operation that captures the goods again)."""
    proc = world.process()
    rno = world.create_order(proc)
    call = ActivateReservation(
        1234, PY, rno, goods=(Goods("ART-1", "T", 10000, Decimal(25), Decimal(0), 32, 1),))
    world.sandbox.faults.add({"method": "POST", "path": "/release-remaining-authorization$",
                              "action": "fail", "status": 403, "times": 1})
    fault = fault_of(world, proc, call)
    assert world.captures_applied(rno, proc) == 1
    res = now(proc.parts.store.get_reservation(1234, rno))
    [invoice] = now(proc.parts.store.invoices_for(res.id))
    assert "not applied: release" in fault.fault_string
    assert invoice.invno in fault.fault_string, fault.fault_string
