"""Review 2: money-safety findings proven on the fake-clock world (``tests/engine/world.py``).

Each test is one attack on a promise of the README's "Money safety" section; the docstring
says the sequence of events and what goes wrong with the money.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, task

from gateway.calls import REGISTRY
from gateway.calls.activate import Activate
from gateway.errors import GatewayError
from gateway.legacy.values import ArtNo
from gateway.model import EntryState
from tests.engine.world import Process, World

PY = "python:api:3.1.0"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(str(tmp_path / "gw.db"))
    yield w
    w.close()


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


def test_a_reply_delivered_by_a_runner_that_lost_its_lease_ends_the_binding(world: World
                                                                           ) -> None:
    """A stalled runner whose fenced finish failed still answers its client (the capture
    is real); that delivery must end the binding like any other.

    1. Process A sends ``activate 1 x ART-1``; Klarna applies it, the answer is slow and A
       stalls past its lease.
    2. Process B (recovery) takes the entry over and re-sends with the same key (replayed);
       its answer is slow too, so the entry is still pending when
    3. A wakes, records the capture, fails its fenced finish, and answers its client
       ``["ok", invno]``: delivered. ``journal.delivered`` ignores a pending entry.
    4. B finishes: DONE, ``delivered_at`` NULL, still bound.
    5. The merchant ships a second parcel: the identical call, deliberately, after its
       first reply was delivered. It must be a second capture with a new invno; instead
       it is answered with the first reply: one parcel never captured.
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
    # A wakes: its delayed answer is there; it records the capture and answers its client.
    answer_a = world.drive(d_a, a)
    assert answer_a.reply == ["ok", "9000000000"]
    world.run(a.parts.engine.delivered(answer_a), a)
    assert world.drive(d_b, b) == "done"
    # The second parcel, sent after the first reply was delivered.
    assert world.captures_applied(rno, b) == 1
    second = run_call(world, b, call)
    assert world.captures_applied(rno, b) == 2, \
        f"the deliberate second call was answered {second} from the first operation"
    assert second == ["ok", "9000000001"]
