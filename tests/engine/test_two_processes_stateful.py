"""Two gateway processes, one store, one ERP shipping parcels: a hypothesis state machine.

The ERP ships parcels of one article on one order, one after another: every parcel is the
*same* legacy call (``activate 1 x ART-1``), byte for byte. A parcel whose reply reached the
ERP is done and the next one is a deliberate repeat; a parcel whose reply did not (the
connection closed, a 9119, the process died) is sent again: a retry. Hypothesis interleaves
the events of both processes on their own fake clocks: a call arriving at either process,
time passing, the reply written (reaching the ERP or not), a process killed, a process
stalled past its leases and woken, recovery. After every step and at the end:

- **no money moved twice**: the order never holds more captures than parcels the ERP
  asked for;
- **no deliberate repeat swallowed**: every parcel the ERP was answered for has its own
  capture and its own invoice number.

"The reply written" includes its delivery report being written (the process stays up for
one commit after writing a reply); a process killed in that instant is the one window no
design can close (``gateway/store/delivery.py``).
"""
from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet import defer, task
from twisted.python.failure import Failure

from gateway.calls import REGISTRY
from gateway.calls.activate import Activate
from gateway.engine.answers import Answer
from gateway.engine.recovery import recover_unfinished
from gateway.model import Origin
from gateway.wire.values import ArtNo
from tests.engine.world import Process, World

PY = "python:api:3.1.0"
PARCELS = 40


@dataclass
class Node:
    """One gateway process as the test sees it."""

    proc: Process
    frozen: bool = False


@dataclass
class Attempt:
    node: str
    done: defer.Deferred[Any]
    box: list[Any]


class TwoProcesses(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world = World(tempfile.mkdtemp() + "/gw.db")
        self.nodes = {name: Node(self._spawn()) for name in "AB"}
        self.rno, self.order_id = self._order()
        self.call = Activate(eid=1234, client_version=PY, rno=self.rno,
                             artnos=(ArtNo("ART-1", 1),))
        self.answered: list[str] = []  # invnos of parcels whose reply reached the ERP
        self.asked = 0  # parcels the ERP has asked for (its current one included)
        self.outstanding = False  # the current parcel has no answer yet: resend it
        self.attempt: Attempt | None = None

    # -- the world ---------------------------------------------------------------------------

    def _spawn(self) -> Process:
        clock = task.Clock()
        clock.advance(self.world.clock.seconds())
        return self.world.process(clock=clock)

    def _order(self) -> tuple[str, str]:
        proc = self.nodes["A"].proc
        line = {"type": "physical", "reference": "ART-1", "name": "ART-1",
                "quantity": PARCELS, "unit_price": 1000, "tax_rate": 2500,
                "total_amount": PARCELS * 1000, "total_discount_amount": 0,
                "total_tax_amount": PARCELS * 200}
        body = {"purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
                "order_amount": PARCELS * 1000, "order_tax_amount": PARCELS * 200,
                "order_lines": [line]}
        merchant = self.world.config.merchant(1234)
        resp = self.world.run(proc.parts.om.request(
            merchant, "POST", f"/payments/v1/authorizations/a-{uuid.uuid4()}/order", body,
            idempotency_key=str(uuid.uuid4())), proc)
        order_id = str(resp.body["order_id"])
        res = self.world.run(proc.parts.store.register_reservation(
            1234, order_id, None, Origin.ADMIN.value), proc)
        return res.rno, order_id

    def captures(self) -> int:
        return len(self.world.sandbox.state.book.orders[self.order_id].captures)

    def live(self) -> list[Node]:
        return [n for n in self.nodes.values() if not n.frozen]

    def _pump(self, seconds: float) -> None:
        """Move bytes and time for the world and every process that is not stalled."""
        steps = max(1, min(int(seconds / 0.05), 400))
        for _ in range(steps):
            for node in self.live():
                node.proc.agent.flush()
            for clock in {id(c): c for c in [self.world.clock]
                          + [n.proc.clock for n in self.live()]}.values():
                clock.advance(seconds / steps)
        for node in self.live():
            node.proc.agent.flush()

    # -- the ERP and the processes ------------------------------------------------------------

    @precondition(lambda self: self.attempt is None and self.asked <= PARCELS - 2)
    @rule(name=st.sampled_from("AB"))
    def send(self, name: str) -> None:
        """The ERP sends the current parcel again (no answer yet) or the next one."""
        if not self.outstanding:
            self.asked += 1
            self.outstanding = True
        node = self.nodes[name]
        merchant = self.world.config.merchant(1234)
        d = defer.ensureDeferred(node.proc.parts.engine.run(
            merchant, REGISTRY.spec_for(self.call), self.call))
        box: list[Any] = []
        d.addBoth(box.append)
        self.attempt = Attempt(name, d, box)

    @rule(seconds=st.sampled_from([0.0, 0.01, 0.1, 1.0, 6.0, 30.0]))
    def time_passes(self, seconds: float) -> None:
        self._pump(seconds)

    @precondition(lambda self: self.attempt is not None and bool(self.attempt.box))
    @rule(reached=st.booleans())
    def reply_written(self, reached: bool) -> None:
        """The edge writes the answer: it reaches the ERP, or the connection was gone."""
        assert self.attempt is not None
        node = self.nodes[self.attempt.node]
        result = self.attempt.box[0]
        self.attempt = None
        if isinstance(result, Failure):
            return  # a fault (9119...): the ERP sends the same parcel again
        assert isinstance(result, Answer)
        engine = node.proc.parts.engine
        if not reached:
            self.world._result(defer.ensureDeferred(engine.undelivered(result)))
            return
        self.world._result(defer.ensureDeferred(engine.delivered(result)))
        self.world._result(defer.ensureDeferred(node.proc.parts.store.flush_reports()))
        self.answered.append(str(result.reply[1]))
        self.outstanding = False

    @rule(name=st.sampled_from("AB"))
    def kill(self, name: str) -> None:
        """The process dies: whatever it was doing stops; the ERP's connection to it drops."""
        if self.attempt is not None and self.attempt.node == name:
            self.attempt = None
        self.nodes[name] = Node(self._spawn())

    @precondition(lambda self: len(self.live()) == 2)
    @rule(name=st.sampled_from("AB"))
    def stall(self, name: str) -> None:
        """The process stops getting CPU (its clock and its sockets stand still)."""
        self.nodes[name].frozen = True

    @rule(name=st.sampled_from("AB"))
    def wake(self, name: str) -> None:
        node = self.nodes[name]
        if node.frozen:
            node.frozen = False
            node.proc.clock.advance(self.world.clock.seconds() - node.proc.clock.seconds())

    @rule(name=st.sampled_from("AB"))
    def recovery(self, name: str) -> None:
        node = self.nodes[name]
        if not node.frozen:
            d = defer.ensureDeferred(recover_unfinished(node.proc.parts.engine))
            for _ in range(400):
                if d.called:
                    break
                self._pump(0.05)

    # -- what must hold ------------------------------------------------------------------------

    @invariant()
    def no_money_moved_twice(self) -> None:
        assert self.captures() <= self.asked

    @invariant()
    def no_deliberate_repeat_swallowed(self) -> None:
        assert len(set(self.answered)) == len(self.answered), self.answered
        assert self.captures() >= len(self.answered)

    def teardown(self) -> None:
        """Everything settles: the last parcel is answered, and the books balance."""
        try:
            for name in "AB":
                self.wake(name)
            self.attempt = None
            for _ in range(20):
                if not self.outstanding:
                    break
                self._pump(40.0)  # leases lapse, graces pass
                self.recovery("A")
                self.send("B")
                for _ in range(400):
                    if self.attempt is not None and self.attempt.box:
                        break
                    self._pump(0.05)
                self.reply_written(True)
            assert not self.outstanding
            assert self.captures() == len(self.answered) == self.asked
            assert len(set(self.answered)) == len(self.answered)
        finally:
            self.world.close()


TwoProcesses.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_two_processes = TwoProcesses.TestCase
