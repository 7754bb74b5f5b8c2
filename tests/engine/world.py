"""A gateway world with no wall clock, no sockets and no threads, for engine tests.

Every part is the real one: the engine, the store on a real SQLite file, the REST client,
the sandbox emulator. Only the seams differ: time is a ``task.Clock`` (one per simulated
process), the REST client speaks to the sandbox resource through treq's in-memory
``RequestTraversalAgent``, and the database runs its transactions inline. A test moves
time with ``clock.advance`` and moves bytes with :meth:`World.drive`.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent, _SynchronousProducer
from twisted.internet import defer, task
from twisted.python.failure import Failure

from gateway.app import Components, build
from gateway.calls import REGISTRY
from gateway.calls.activate import Activate
from gateway.calls.activate_reservation import ActivateReservation
from gateway.config import Config, load_config, default_sandbox_config_path
from gateway.errors import FaultCode, GatewayError
from gateway.model import Origin
from gateway.sandbox.resource import SandboxResource
from gateway.store import schema
from gateway.store.database import make_engine
from gateway.store.schema import SchemaMode
from gateway.wire.values import ArtNo, Goods

#: A realistic start (2026-06-01): sandbox expiry dates are computed from it.
START = 1_780_300_800.0


@dataclass
class Process:
    """One simulated gateway process: its own clock, REST connection and store handle."""

    clock: task.Clock
    agent: RequestTraversalAgent
    parts: Components


_TEMPLATE: list[str] = []


def _migrated_template() -> str:
    """A SQLite file at the code's head, migrated once per test process (``db upgrade``,
    the real migrations); each world starts from a copy of it, so a world costs a file copy
    rather than a run of every migration."""
    if not _TEMPLATE:
        folder = tempfile.mkdtemp(prefix="world-template-")
        atexit.register(shutil.rmtree, folder, True)
        path = os.path.join(folder, "head.db")
        engine = make_engine(f"sqlite:///{path}")
        schema.upgrade(engine)
        engine.dispose()
        _TEMPLATE.append(path)
    return _TEMPLATE[0]


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
        shutil.copyfile(_migrated_template(), db_path)
        self.db_url = f"sqlite:///{db_path}"
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

    def suspended_process(self) -> Process:
        """A process on its own clock, set to the world's time: the test suspends it (a
        process stopped by the kernel, a long pause) by not advancing that clock."""
        clock = task.Clock()
        clock.advance(self.clock.seconds())
        return self.process(clock=clock)

    @staticmethod
    def turn(proc: Process, turns: int = 50) -> None:
        """Let ``proc`` alone run without time passing: its requests go out, answers that
        are there come in (enough turns for a call to journal its step and send it)."""
        for _ in range(turns):
            proc.agent.flush()
            proc.clock.advance(0)

    def fail(self, method: str, path: str, status: int, times: int = 1000) -> None:
        """Klarna answers ``status`` to the next ``times`` requests ``method path$``."""
        self.sandbox.faults.add({"method": method, "path": path, "action": "fail",
                                 "status": status, "times": times})

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


# -- calls on the world -----------------------------------------------------------------------

#: The official Python SDK's client string: what every engine test call claims to come from.
PY = "python:api:3.1.0"


def activate(rno: str, *artnos: tuple[str, int], eid: int = 1234) -> Activate:
    """``activate`` of the articles ``(artno, qty)`` (none: everything left)."""
    return Activate(eid=eid, client_version=PY, rno=rno,
                    artnos=tuple(ArtNo(a, q) for a, q in artnos))


def activate_reservation(rno: str) -> ActivateReservation:
    """``activate_reservation`` with a goods list of 1 x ART-1 (10 000): a capture, then the
    release of the rest: two steps."""
    goods = (Goods("ART-1", "T", 10000, Decimal(25), Decimal(0), 32, 1),)
    return ActivateReservation(1234, PY, rno, goods=goods)


def release_fails_for_the_budget(world: World) -> tuple[Process, str, ActivateReservation]:
    """``activate_reservation`` of 1 x ART-1 whose capture is applied while every release of
    the rest meets 503 for the whole budget: its client was told 9119. (process, rno,
    call); the 503s stay until the test clears them."""
    proc = world.process()
    rno = world.create_order(proc)
    call = activate_reservation(rno)
    world.fail("POST", "/release-remaining-authorization$", 503)
    assert fault_of(world, proc, call).fault_code == FaultCode.TIMEOUT
    assert world.captures_applied(rno, proc) == 1
    return proc, rno, call


def start(world: World, proc: Process, call: Any) -> defer.Deferred[Any]:
    """``call`` begun in ``proc``; nothing moves until the test pumps or drives."""
    merchant = world.config.merchant(call.eid)
    return defer.ensureDeferred(proc.parts.engine.run(merchant, REGISTRY.spec_for(call), call))


def run_call(world: World, proc: Process, call: Any) -> Any:
    """Run ``call`` to its answer, which reaches its client (delivery recorded): its reply."""
    answer = world.drive(start(world, proc, call), proc)
    world.run(proc.parts.engine.delivered(answer), proc)
    world.run(proc.parts.store.flush_reports(), proc)
    return answer.reply


def fault_of(world: World, proc: Process, call: Any) -> GatewayError:
    """The fault ``call`` answers (it must answer one)."""
    with pytest.raises(GatewayError) as info:
        run_call(world, proc, call)
    return info.value


def now(coro: Coroutine[Any, Any, Any]) -> Any:
    """A store call's result (the world's database runs inline: no pumping, so no bytes
    move and no delayed answer is delivered meanwhile)."""
    return World._result(defer.ensureDeferred(coro))


def _line(reference: str, quantity: int, unit_price: int) -> dict[str, Any]:
    total = quantity * unit_price
    tax = total - round(total * 10000 / 12500)
    return {"type": "physical", "reference": reference, "name": reference,
            "quantity": quantity, "unit_price": unit_price, "tax_rate": 2500,
            "total_amount": total, "total_discount_amount": 0, "total_tax_amount": tax}
