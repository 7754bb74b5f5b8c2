"""A gateway world with no wall clock, no sockets and no threads, for engine tests.

Every part is the real one: the engine, the store on a real SQLite file, the REST client,
the sandbox emulator. Only the seams differ: time is a ``task.Clock`` (one per simulated
process), the REST client speaks to the sandbox resource through treq's in-memory
``RequestTraversalAgent``, and the database runs its transactions inline. A test moves
time with ``clock.advance`` and moves bytes with :meth:`World.drive`.
"""
from __future__ import annotations

import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent, _SynchronousProducer
from twisted.internet import defer, task
from twisted.python.failure import Failure

from gateway.app import Components, build
from gateway.config import Config, load_config, default_sandbox_config_path
from gateway.model import Origin
from gateway.sandbox.resource import SandboxResource
from gateway.store import schema
from gateway.store.database import make_engine
from gateway.store.schema import SchemaMode

#: A realistic start (2026-06-01): sandbox expiry dates are computed from it.
START = 1_780_300_800.0


@dataclass
class Process:
    """One simulated gateway process: its own clock, REST connection and store handle."""

    clock: task.Clock
    agent: RequestTraversalAgent
    parts: Components


class World:
    """The sandbox (on the world clock) and any number of gateway processes."""

    def __init__(self, db_path: str, config: Config | None = None, **settings: Any) -> None:
        base = config or load_config(default_sandbox_config_path())
        if settings:
            from dataclasses import replace
            base = replace(base, gateway=replace(base.gateway, **settings))
        self.config = base
        self.clock = task.Clock()
        self.clock.advance(START)
        self.sandbox = SandboxResource(self.config, self.clock)
        self.db_url = f"sqlite:///{db_path}"
        engine = make_engine(self.db_url)
        schema.upgrade(engine)
        engine.dispose()
        self.processes: list[Process] = []

    def process(self, clock: task.Clock | None = None, root: Any = None) -> Process:
        """A gateway process; ``clock`` defaults to the world clock (a separate one
        simulates a process that was suspended while the world went on). ``root``: a
        resource in front of the sandbox (a load balancer, say) this process talks to."""
        agent = RequestTraversalAgent(root if root is not None else self.sandbox)
        d = defer.ensureDeferred(build(
            self.config, self.db_url, clock or self.clock,
            http=HTTPClient(agent, data_to_body_producer=_SynchronousProducer),
            threaded=False, schema_mode=SchemaMode.NONE))
        parts = self._result(d)
        proc = Process(clock=clock or self.clock, agent=agent, parts=parts)
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.processes:
            proc.parts.db.stop()

    # -- moving bytes and time -------------------------------------------------------------

    def pump(self, *procs: Process, step: float = 0.0) -> None:
        """Deliver pending bytes both ways, then let ``step`` seconds pass everywhere."""
        for proc in procs or tuple(self.processes):
            proc.agent.flush()
        for clock in {id(c): c for c in [self.clock, *(p.clock for p in procs)]}.values():
            clock.advance(step)

    def drive(self, d: defer.Deferred[Any], *procs: Process, step: float = 0.05,
              limit: float = 3600.0) -> Any:
        """Pump until ``d`` fires (at most ``limit`` simulated seconds); its result, or raise
        its failure."""
        waited = 0.0
        while not d.called:
            self.pump(*procs, step=step)
            waited += step
            if waited > limit:
                raise AssertionError(f"still waiting after {limit} simulated seconds")
        return self._result(d)

    def run(self, coro: Coroutine[Any, Any, Any], *procs: Process, **kw: Any) -> Any:
        return self.drive(defer.ensureDeferred(coro), *procs, **kw)

    @staticmethod
    def _result(d: defer.Deferred[Any]) -> Any:
        box: list[Any] = []
        d.addBoth(box.append)
        assert box, "not fired"
        if isinstance(box[0], Failure):
            box[0].raiseException()
        return box[0]

    # -- sandbox helpers --------------------------------------------------------------------

    def create_order(self, proc: Process, eid: int = 1234) -> str:
        """A two-line order born in the sandbox (Klarna Payments), registered: its rno."""
        lines = [_line("ART-1", 2, 10000), _line("ART-2", 3, 5000)]
        body = {"purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
                "order_amount": 35000, "order_tax_amount": 7000, "order_lines": lines}
        merchant = self.config.merchant(eid)
        assert merchant is not None
        resp = self.run(proc.parts.om.request(
            merchant, "POST", f"/payments/v1/authorizations/auth-{uuid.uuid4()}/order", body,
            idempotency_key=str(uuid.uuid4())), proc)
        order_id = str(resp.body["order_id"])
        res = self.run(proc.parts.store.register_reservation(eid, order_id, None,
                                                             Origin.ADMIN.value), proc)
        return str(res.rno)

    def order(self, rno: str, proc: Process, eid: int = 1234) -> dict[str, Any]:
        res = self.run(proc.parts.store.get_reservation(eid, rno), proc)
        merchant = self.config.merchant(eid)
        assert merchant is not None and res is not None
        return dict(self.run(proc.parts.om.get_order(merchant, res.order_id), proc))

    def captures_applied(self, rno: str, proc: Process) -> int:
        """How many captures the sandbox applied to the order (the money truth)."""
        return len(self.order(rno, proc).get("captures") or [])


def _line(reference: str, quantity: int, unit_price: int) -> dict[str, Any]:
    total = quantity * unit_price
    tax = total - round(total * 10000 / 12500)
    return {"type": "physical", "reference": reference, "name": reference,
            "quantity": quantity, "unit_price": unit_price, "tax_rate": 2500,
            "total_amount": total, "total_discount_amount": 0, "total_tax_amount": tax}
