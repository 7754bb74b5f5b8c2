"""What a money call costs the database: statements and transactions, counted for real.

Every statement SQLite executes is seen by the connection's trace callback (the driver's
own hook: it sees what SQLAlchemy sends and what the journal's fixed statements send on
the DBAPI connection, one line per execution, an ``executemany`` row by row). A call is
measured in steady state: the delivery report of the call before it rides in its
transactions, as in production. Limits (journal v2):

- ``cancel_reservation``: at most 8 statements in at most 3 transactions;
- a partial ``activate``: at most 10 statements.

Transaction control (BEGIN, COMMIT, SAVEPOINT, RELEASE) is not counted as statements;
every BEGIN is counted as a transaction. These limits fail the day the path grows.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from gateway.calls import REGISTRY
from gateway.calls.activate import Activate
from gateway.calls.cancel_reservation import CancelReservation
from gateway.wire.values import ArtNo
from tests.engine.world import Process, World

PY = "python:api:3.1.0"
_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA")


class Trace:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.on = False

    def __call__(self, sql: str) -> None:
        if self.on:
            self.lines.append(" ".join(sql.split()))

    @property
    def statements(self) -> list[str]:
        return [s for s in self.lines if not s.upper().startswith(_CONTROL)]

    @property
    def transactions(self) -> int:
        return sum(1 for s in self.lines if s.upper().startswith("BEGIN"))


@pytest.fixture
def traced(world: World) -> Iterator[tuple[Process, Trace]]:
    proc = world.process()
    trace = Trace()
    engine = proc.parts.db.engine
    engine.dispose()  # new connections from here on, each traced

    @event.listens_for(engine, "connect")
    def _trace(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.set_trace_callback(trace)
    yield proc, trace


def call_and_deliver(world: World, proc: Process, call: Any) -> Any:
    merchant = world.config.merchant(call.eid)
    answer = world.run(proc.parts.engine.run(merchant, REGISTRY.spec_for(call), call), proc,
                       step=0.001)
    world.run(proc.parts.engine.delivered(answer), proc, step=0.001)
    return answer.reply


def measure(world: World, proc: Process, trace: Trace, make: Any) -> Trace:
    """The second of two identical kinds of call, each on its own order (the first warms
    the process and leaves its delivery report for the second to carry)."""
    warm, measured = world.create_order(proc), world.create_order(proc)
    call_and_deliver(world, proc, make(warm))
    assert proc.parts.store.reports.waiting == 1
    trace.on = True
    call_and_deliver(world, proc, make(measured))
    trace.on = False
    return trace


def test_cancel_reservation_costs_at_most_8_statements_in_3_transactions(
        world: World, traced: tuple[Process, Trace]) -> None:
    proc, trace = traced
    measure(world, proc, trace, lambda rno: CancelReservation(eid=1234, client_version=PY,
                                                              rno=rno))
    assert len(trace.statements) <= 8, "\n".join(trace.statements)
    assert trace.transactions <= 3, "\n".join(trace.lines)
    # the previous call's delivery report rode along; this call's waits for the next
    assert any(s.startswith("UPDATE journal SET phase = 'delivered'") for s in trace.statements)
    assert proc.parts.store.reports.waiting == 1


def test_partial_activate_costs_at_most_10_statements(
        world: World, traced: tuple[Process, Trace]) -> None:
    proc, trace = traced
    measure(world, proc, trace, lambda rno: Activate(eid=1234, client_version=PY, rno=rno,
                                                     artnos=(ArtNo("ART-1", 1),)))
    assert len(trace.statements) <= 10, "\n".join(trace.statements)
    assert trace.transactions <= 3, "\n".join(trace.lines)
    assert any(s.startswith("INSERT INTO invoices") for s in trace.statements)
