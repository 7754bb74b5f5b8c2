"""The engine on a fake clock: give-up, key-trust age, lease takeover and fencing.

No wall clock, no sockets, no threads (see ``tests/engine/world.py``): time moves only
with ``clock.advance``, so rules measured in minutes and days run in milliseconds, and
the interleavings of two processes are chosen by the test, not by luck.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, task

from gateway.binding import DELIVERY_GRACE_SECONDS
from gateway.calls import REGISTRY
from gateway.calls.activate import Activate
from gateway.calls.cancel_reservation import CancelReservation
from gateway.engine.decisions import GIVE_UP_QUIET_SECONDS
from gateway.errors import FaultCode, GatewayError
from gateway.model import EntryState
from gateway.wire.values import ArtNo
from tests.engine.world import Process, World

PY = "python:api:3.1.0"


def activate(rno: str, *artnos: tuple[str, int]) -> Activate:
    return Activate(eid=1234, client_version=PY, rno=rno,
                    artnos=tuple(ArtNo(a, q) for a, q in artnos))


def run_call(world: World, proc: Process, call: Any) -> Any:
    merchant = world.config.merchant(call.eid)
    answer = world.run(proc.parts.engine.run(merchant, REGISTRY.spec_for(call), call), proc)
    world.run(proc.parts.engine.delivered(answer), proc)  # the client got it
    return answer.reply


def fault_of(world: World, proc: Process, call: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        run_call(world, proc, call)
    return info.value


def pending_entry(world: World, proc: Process) -> Any:
    """The unfinished entry that journaled a step (a call blocked before planning has none)."""
    [entry] = [e for e in world.run(proc.parts.store.unfinished_entries(), proc) if e.steps]
    return entry


def test_a_call_needs_no_thread_and_no_socket(world: World) -> None:
    """The whole path (claim, GET, plan, capture, finish) on a fake clock, inline database,
    in-memory HTTP: one capture, the first invno, and not one thread started."""
    threads_before = threading.active_count()
    proc = world.process()
    rno = world.create_order(proc)
    assert run_call(world, proc, activate(rno, ("ART-1", 1))) == ["ok", "9000000000"]
    assert world.captures_applied(rno, proc) == 1
    assert threading.active_count() == threads_before


def test_budget_then_give_up_after_fifteen_minutes(world: World) -> None:
    """Klarna answers 503 to every capture: after the 7.5 s budget the client gets 9119 and
    the entry stays pending (money unresolved, new captures wait). Fifteen simulated minutes
    later recovery settles it from the order: no capture there, so it is given up, and the
    order takes new money again."""
    proc = world.process()
    rno = world.create_order(proc)
    world.sandbox.faults.add({"method": "POST", "path": "/captures$", "action": "fail",
                              "status": 503, "times": 1000})
    started = world.clock.seconds()
    assert fault_of(world, proc, activate(rno, ("ART-1", 1))).fault_code == FaultCode.TIMEOUT
    assert 3.0 <= world.clock.seconds() - started <= 7.5  # retried, within the budget
    blocked = fault_of(world, proc, activate(rno, ("ART-2", 1)))
    assert blocked.fault_code == FaultCode.TIMEOUT and "unfinished" in blocked.public_message
    entry = pending_entry(world, proc)
    world.clock.advance(600)  # ten minutes: not yet
    assert world.run(proc.parts.engine.resume(entry), proc) == "pending"
    world.clock.advance(301)  # past give_up_seconds (900 s): no longer sent, only looked for
    assert world.run(proc.parts.engine.resume(pending_entry(world, proc)), proc) == "pending"
    world.clock.advance(GIVE_UP_QUIET_SECONDS)  # no attempt of ours can still land: give up
    assert world.run(proc.parts.engine.resume(pending_entry(world, proc)), proc) == "failed"
    gone = world.run(proc.parts.store.get_entry(entry.id), proc)
    assert gone.state is EntryState.FAILED and "gave up" in (gone.fault_string or "")
    world.sandbox.faults.clear()
    assert world.captures_applied(rno, proc) == 0
    assert run_call(world, proc, activate(rno, ("ART-2", 1)))[0] == "ok"
    assert world.captures_applied(rno, proc) == 1


def test_a_capture_applied_but_unanswered_is_settled_not_resent_after_a_day(tmp_path: Path
                                                                            ) -> None:
    """The capture reached Klarna but every answer was lost. A day later the idempotency key
    has expired at Klarna (the sandbox forgets it after 24 h), so re-sending would capture
    twice: past the key-trust age (23 h) the engine settles the step from the order's own
    captures instead, and books that capture under the journaled invno."""
    world = World(str(tmp_path / "gw.db"), give_up_seconds=200_000.0)
    try:
        proc = world.process()
        rno = world.create_order(proc)
        world.sandbox.faults.add({"method": "POST", "path": "/captures$",
                                  "action": "apply_then_fail", "status": 503, "times": 1000})
        assert fault_of(world, proc, activate(rno, ("ART-1", 1))).fault_code == \
            FaultCode.TIMEOUT
        assert world.captures_applied(rno, proc) == 1  # applied once, answered never
        entry = pending_entry(world, proc)
        world.sandbox.faults.clear()
        world.clock.advance(24 * 3600 + 60)
        assert world.run(proc.parts.engine.resume(entry), proc) == "done"
        assert world.captures_applied(rno, proc) == 1
        done = world.run(proc.parts.store.get_entry(entry.id), proc)
        assert done.state is EntryState.DONE and done.reply == ["ok", "9000000000"]
        res = world.run(proc.parts.store.get_reservation(1234, rno), proc)
        [invoice] = world.run(proc.parts.store.invoices_for(res.id), proc)
        assert (invoice.invno, invoice.adopted) == ("9000000000", False)
    finally:
        world.close()


def test_a_stale_status_step_is_settled_from_the_order(world: World) -> None:
    """A cancel whose answer was lost, resumed two days later: the order is CANCELLED, so
    the step is done (no second request, whose key Klarna has forgotten)."""
    proc = world.process()
    rno = world.create_order(proc)
    world.sandbox.faults.add({"method": "POST", "path": "/cancel$",
                              "action": "apply_then_fail", "status": 503, "times": 1000})
    call = CancelReservation(eid=1234, client_version=PY, rno=rno)
    assert fault_of(world, proc, call).fault_code == FaultCode.TIMEOUT
    entry = pending_entry(world, proc)
    world.sandbox.faults.clear()
    world.clock.advance(2 * 86400)
    assert world.run(proc.parts.engine.resume(entry), proc) == "done"
    assert world.order(rno, proc)["status"] == "CANCELLED"


def _start_until_planned(world: World, proc: Process, call: Activate) -> defer.Deferred[Any]:
    """Start ``call`` in ``proc`` and pump only until its step is journaled and sent."""
    merchant = world.config.merchant(call.eid)
    d = defer.ensureDeferred(proc.parts.engine.run(merchant, REGISTRY.spec_for(call), call))
    for _ in range(200):
        entries = world.run(proc.parts.store.unfinished_entries(), proc) or \
            [world.run(proc.parts.store.get_entry(1), proc)]
        if any(e.steps for e in entries) or d.called:
            return d
        proc.agent.flush()
        proc.clock.advance(0)
        world.clock.advance(0)
    raise AssertionError("the call never planned its step")


def test_takeover_and_fencing_of_a_suspended_runner(world: World) -> None:
    """Process A journals a capture and sends it, then is suspended (its clock stops) past
    its lease. Process B takes the entry over and completes it with the same key. When A
    wakes, Klarna replays the one capture to it, and A's fenced finish writes nothing: it
    answers 9119 (B owns the outcome; the client's retry is given it): one capture, one
    invoice, B's outcome."""
    b = world.process()
    rno = world.create_order(b)
    a_clock = task.Clock()
    a_clock.advance(world.clock.seconds())
    a = world.process(clock=a_clock)
    # The capture is applied at once; its answer is on its way when A is suspended.
    world.sandbox.faults.add({"method": "POST", "path": "/captures$", "action": "latency",
                              "delay_ms": 1000, "times": 1})
    d_a = _start_until_planned(world, a, activate(rno, ("ART-1", 1)))
    assert not d_a.called
    world.clock.advance(a.parts.engine.lease_seconds + 1)  # the world goes on; A sleeps
    entry = world.run(b.parts.store.get_entry(1), b)
    assert entry.state is EntryState.PENDING and entry.steps
    assert world.run(b.parts.engine.resume(entry), b) == "done"
    finished = world.run(b.parts.store.get_entry(1), b)
    # A wakes up: its request reaches Klarna (replayed: same key) and it tries to finish.
    with pytest.raises(GatewayError) as info:
        world.drive(d_a, a)
    assert info.value.fault_code == FaultCode.TIMEOUT
    assert finished.reply == ["ok", "9000000000"]
    assert world.captures_applied(rno, b) == 1
    res = world.run(b.parts.store.get_reservation(1234, rno), b)
    assert [i.invno for i in world.run(b.parts.store.invoices_for(res.id), b)] == ["9000000000"]
    assert world.run(b.parts.store.get_entry(1), b).updated_at == finished.updated_at


def test_a_runner_stalled_before_its_intent_never_sends_late(world: World) -> None:
    """A reads the order, then stalls before journaling its intent (its GET unanswered)
    while its client gives up and retries on process B: B captures, its reply is
    delivered. When A wakes past its budget it answers 9119 and sends nothing: one capture
    (a call never sends after its client may have given up)."""
    b = world.process()
    rno = world.create_order(b)
    a_clock = task.Clock()
    a_clock.advance(world.clock.seconds())
    a = world.process(clock=a_clock)
    world.sandbox.faults.add({"method": "GET", "path": "/orders/[^/]+$", "action": "latency",
                              "delay_ms": 1000, "times": 1})
    call = activate(rno, ("ART-1", 1))
    d_a = defer.ensureDeferred(a.parts.engine.run(world.config.merchant(1234),
                                                  REGISTRY.spec_for(call), call))
    assert not d_a.called  # waiting for its GET order
    assert run_call(world, b, call)[0] == "ok"  # the client's retry, on B
    a_clock.advance(a.parts.engine.budget + 1)  # A wakes: its budget is spent
    with pytest.raises(GatewayError) as info:
        world.drive(d_a, a)
    assert info.value.fault_code == FaultCode.TIMEOUT
    assert world.captures_applied(rno, b) == 1
    assert not world.run(b.parts.store.unfinished_entries(), b)


def test_an_immediate_repeat_waits_for_the_delivery_of_the_first_reply(world: World) -> None:
    """The first parcel's reply is being written when the second (identical) call arrives:
    the second waits until the first's delivery is recorded, then is a new operation (a
    second capture, a new invno), never a replay of the first's reply."""
    proc = world.process()
    rno = world.create_order(proc)
    merchant = world.config.merchant(1234)
    call = activate(rno, ("ART-1", 1))
    first = world.run(proc.parts.engine.run(merchant, REGISTRY.spec_for(call), call), proc)
    # The reply is on the wire; its delivery is not recorded yet. The repeat arrives now.
    second = defer.ensureDeferred(proc.parts.engine.run(merchant, REGISTRY.spec_for(call),
                                                        call))
    world.pump(proc, step=0.01)
    assert not second.called  # waiting for the first reply's delivery, not replaying it
    world.run(proc.parts.engine.delivered(first), proc)
    answer = world.drive(second, proc)
    assert not answer.replayed and answer.reply[1] != first.reply[1]
    assert world.captures_applied(rno, proc) == 2


def test_a_reply_that_could_not_be_written_is_replayed_at_once(world: World) -> None:
    """The connection closed before the reply was written: the next identical call gets
    that reply (the same invno, one capture), without waiting."""
    proc = world.process()
    rno = world.create_order(proc)
    merchant = world.config.merchant(1234)
    call = activate(rno, ("ART-1", 1))
    first = world.run(proc.parts.engine.run(merchant, REGISTRY.spec_for(call), call), proc)
    world.run(proc.parts.engine.undelivered(first), proc)
    again = world.run(proc.parts.engine.run(merchant, REGISTRY.spec_for(call), call), proc)
    assert again.replayed and again.reply == first.reply
    assert world.captures_applied(rno, proc) == 1


def test_two_identical_calls_in_flight_together_are_one_operation(world: World) -> None:
    """B arrives while A is still capturing: B gets A's outcome, even though A's reply is
    delivered first (they were one operation: a client's double submit)."""
    proc = world.process()
    rno = world.create_order(proc)
    merchant = world.config.merchant(1234)
    call = activate(rno, ("ART-1", 1))
    world.sandbox.faults.add({"method": "POST", "path": "/captures$", "action": "latency",
                              "delay_ms": 500, "times": 1})
    spec = REGISTRY.spec_for(call)
    a = defer.ensureDeferred(proc.parts.engine.run(merchant, spec, call))
    b = defer.ensureDeferred(proc.parts.engine.run(merchant, spec, call))
    first = world.drive(a, proc)
    world.run(proc.parts.engine.delivered(first), proc)
    second = world.drive(b, proc)
    assert second.replayed and second.reply == first.reply
    assert world.captures_applied(rno, proc) == 1


@dataclass
class OneArticle:
    """An order and the identical call ``activate 1 x ART-1`` sent on it by one process,
    with what its client does with each answer: the scenarios of replays and repeats."""

    world: World
    proc: Process
    rno: str
    call: Activate

    @classmethod
    def on(cls, world: World) -> OneArticle:
        proc = world.process()
        rno = world.create_order(proc)
        return cls(world, proc, rno, activate(rno, ("ART-1", 1)))

    def start(self) -> defer.Deferred[Any]:
        engine = self.proc.parts.engine
        return defer.ensureDeferred(engine.run(self.world.config.merchant(1234),
                                               REGISTRY.spec_for(self.call), self.call))

    def send(self) -> Any:
        return self.world.drive(self.start(), self.proc)

    def delivered(self, answer: Any) -> None:
        self.world.run(self.proc.parts.engine.delivered(answer), self.proc)

    def undelivered(self, answer: Any) -> None:
        self.world.run(self.proc.parts.engine.undelivered(answer), self.proc)

    def captures(self) -> int:
        return self.world.captures_applied(self.rno, self.proc)


def test_a_repeat_right_after_a_replayed_reply_waits_for_its_delivery(world: World) -> None:
    """Found by the soak on PostgreSQL (1 swallowed credit in 1000 calls): a replayed reply
    is being written like any other. The first reply never reached its client (or recovery
    finished the entry); the client's retry gets it replayed; the ERP sends a deliberate
    repeat the instant that replay arrives, before its delivery is recorded. The repeat must
    wait for that delivery and then be a new operation (a second capture, a new invno), not
    be given the same reply a second time."""
    parcel = OneArticle.on(world)
    first = parcel.send()
    parcel.undelivered(first)  # the client had gone
    retry = parcel.send()
    assert retry.replayed and retry.reply == first.reply
    # The replay is on the wire; its delivery is not recorded yet. The repeat arrives now.
    repeat = parcel.start()
    world.pump(parcel.proc, step=0.01)
    assert not repeat.called, "the repeat was answered from the reply being replayed"
    parcel.delivered(retry)
    second = world.drive(repeat, parcel.proc)
    assert not second.replayed and second.reply[1] != first.reply[1]
    assert parcel.captures() == 2


def test_a_replay_that_could_not_be_written_is_replayed_again(world: World) -> None:
    """A replayed reply whose connection closed first stays undelivered: the next identical
    call gets it at once (no capture is made twice, no reply is lost)."""
    parcel = OneArticle.on(world)
    first = parcel.send()
    parcel.undelivered(first)
    parcel.undelivered(parcel.send())
    again = parcel.send()
    assert again.replayed and again.reply == first.reply
    assert parcel.captures() == 1


def test_a_replay_whose_delivery_was_never_recorded_is_replayed_after_the_grace(
        world: World) -> None:
    """The process died between writing a replay and recording its delivery: after the
    delivery grace the reply counts as never delivered and is replayed (the safe way round:
    never applied twice)."""
    parcel = OneArticle.on(world)
    first = parcel.send()
    parcel.undelivered(first)
    parcel.send()  # replayed, its delivery never recorded
    world.clock.advance(DELIVERY_GRACE_SECONDS + 0.1)
    again = parcel.send()
    assert again.replayed and again.reply == first.reply
    assert parcel.captures() == 1
