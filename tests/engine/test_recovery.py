"""Recovery on the fake-clock world (``tests/engine/world.py``): the sweep every process runs
(``recover_unfinished``, each ``RECOVERY_INTERVAL`` and at start) finishes what a killed
process or an exhausted budget left unfinished, with the journaled keys, so unresolved money
never blocks an order for long and moves once.

Time moves with ``clock.advance`` (a lease lapses in a step, not in a sleep); a suspended
process is one whose own clock stops while the world's goes on.
"""
from __future__ import annotations

from dataclasses import replace

from gateway.engine.decisions import same_money
from gateway.engine.recovery import recover_unfinished
from gateway.errors import FaultCode, GatewayError
from gateway.model import EntryState
from tests.engine.world import (
    World, activate, fault_of, now, release_fails_for_the_budget, run_call, start,
)


def test_recovery_finishes_a_released_call_before_its_client_retries(world: World) -> None:
    """Klarna answers 503 to every capture for the whole budget: the client is told 9119
    (retry the same call) and the entry is released. Klarna recovers; the next sweep
    finishes the entry without waiting for the client (one capture, with the journaled
    key), and the client's retry is given that reply: the same invno, no second capture."""
    proc = world.process()
    rno = world.create_order(proc)
    call = activate(rno, ("ART-1", 1))
    world.sandbox.faults.add({"method": "POST", "path": "/captures$", "action": "fail",
                              "status": 503, "times": 1000})
    assert fault_of(world, proc, call).fault_code == FaultCode.TIMEOUT
    assert world.captures_applied(rno, proc) == 0
    world.sandbox.faults.clear()
    assert world.run(recover_unfinished(proc.parts.engine), proc) == {"done": 1}
    assert world.captures_applied(rno, proc) == 1
    assert run_call(world, proc, call) == ["ok", "9000000000"]  # the retry: replayed
    assert world.captures_applied(rno, proc) == 1
    assert not now(proc.parts.store.unfinished_entries())


def test_recovery_leaves_a_live_runner_alone_and_takes_over_when_its_lease_lapses(
        world: World) -> None:
    """Process A journals a capture and sends it, then stops (its clock stands still: a
    process stopped by the kernel, a long GC pause). A sweep in process B while A's lease
    is live leaves the entry alone (A may still finish it). Once the lease has lapsed, B's sweep
    takes the entry over and completes it with the same key: Klarna applies the capture
    once, and the client's retry is given the one invno."""
    b = world.process()
    rno = world.create_order(b)
    a = world.suspended_process()
    call = activate(rno, ("ART-1", 1))
    world.sandbox.faults.add({"method": "POST", "path": "/captures$", "action": "latency",
                              "delay_ms": 60_000, "times": 1})
    d_a = start(world, a, call)
    world.turn(a)  # A's capture is journaled and on its way
    assert not d_a.called
    entry = now(b.parts.store.get_entry(1))
    assert entry.state is EntryState.PENDING and entry.steps
    assert not now(b.parts.store.unfinished_entries())  # held: not recovery's to finish
    assert world.run(recover_unfinished(b.parts.engine), b) == {}
    world.clock.advance(a.parts.engine.lease_seconds + 1)  # A's lease lapses; A sleeps on
    assert world.run(recover_unfinished(b.parts.engine), b) == {"done": 1}
    assert world.captures_applied(rno, b) == 1
    done = now(b.parts.store.get_entry(entry.id))
    assert done.state is EntryState.DONE and done.reply == ["ok", "9000000000"]
    assert run_call(world, b, call) == ["ok", "9000000000"]  # the client's retry
    assert world.captures_applied(rno, b) == 1


def test_recovery_decides_from_the_entry_as_it_is_now(world: World) -> None:
    """A sweep holding an old copy of an entry (read before its capture was journaled: no
    steps) whose capture was since applied but unanswered resumes it from the entry as the
    store has it now: with the same key, not failed as "nothing was ever sent". One
    capture, and the client's late retry gets the journaled invno."""
    proc = world.process()
    rno = world.create_order(proc)
    call = activate(rno, ("ART-1", 1))
    world.sandbox.faults.add({"method": "POST", "path": "/captures$",
                              "action": "apply_then_fail", "status": 503, "times": 1000})
    assert fault_of(world, proc, call).fault_code == FaultCode.TIMEOUT
    world.sandbox.faults.clear()
    [entry] = now(proc.parts.store.unfinished_entries())
    assert entry.steps  # planned and sent
    stale = replace(entry, steps=())
    assert world.run(proc.parts.engine.resume(stale), proc) == "done"
    invno = entry.steps[0].effect.invno  # type: ignore[union-attr]
    assert run_call(world, proc, call) == ["ok", invno]
    assert world.captures_applied(rno, proc) == 1


def test_settling_from_the_order_needs_the_same_lines_and_reference() -> None:
    """A step settled from the order (its key expired, or unresolved too long) adopts a
    capture only if it is the one it sent: equal amount is not enough, a capture made in
    Klarna's portal with other lines or another reference is not ours."""
    body = {"captured_amount": 10000, "reference": "ERP-1",
            "order_lines": [{"reference": "ART-1", "quantity": 1, "total_amount": 10000}]}
    ours = {"captured_amount": 10000, "reference": "ERP-1",
            "order_lines": [{"reference": "ART-1", "quantity": 1, "total_amount": 10000}]}
    portal = {"captured_amount": 10000,
              "order_lines": [{"reference": "ART-2", "quantity": 2, "total_amount": 10000}]}
    assert same_money(ours, body, "captured_amount")
    assert not same_money(portal, body, "captured_amount")
    assert not same_money(dict(ours, reference="other"), body, "captured_amount")


def test_a_retry_after_recovery_failed_a_half_applied_entry_does_not_capture_again(
        world: World) -> None:
    """``activate_reservation`` of 1 x ART-1 (two steps: capture, release the rest).

    1. The capture is applied; the release meets 503 for the whole budget: the client is
       told 9119 "retry the same call to continue it"; the entry is released (capture
       done, release planned).
    2. Recovery resumes it before the client's retry arrives; Klarna now refuses the
       release (403). The entry ends ``failed``; its fault goes to nobody yet.
    3. The client retries the same call, as it was told: it is given the recorded fault
       (which names the invoice), not made a NEW operation that captures 1 x ART-1 a
       second time. The client never had an answer but 9119 and did what it was told.
    """

    proc, rno, call = release_fails_for_the_budget(world)
    world.sandbox.faults.clear()
    world.fail("POST", "/release-remaining-authorization$", 403, times=1)
    assert world.run(recover_unfinished(proc.parts.engine), proc) == {"failed": 1}
    try:
        run_call(world, proc, call)  # the retry the client was told to send
    except GatewayError:
        pass  # the recorded fault (naming the invoice) would be a right answer
    assert world.captures_applied(rno, proc) == 1, "the retry captured the goods again"
