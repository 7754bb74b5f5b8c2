"""The engine with the older v2 calls, on a fake clock (see ``tests/engine/world.py``):
a two-step activation resumed after 9119, and reads that are never bound to an earlier
answer."""
from __future__ import annotations

from decimal import Decimal


from gateway.calls.activate import Activate
from gateway.calls.activate_reservation import ActivateReservation
from gateway.calls.credit_part import CreditPart
from gateway.calls.invoice_amount import InvoiceAmount
from gateway.errors import FaultCode
from gateway.wire.values import ArtNo, Goods
from tests.engine.test_engine_clock import PY, fault_of, run_call
from tests.engine.world import World


def test_activate_reservation_resumed_after_its_release_failed(world: World) -> None:
    """The capture succeeds, the release meets 503s for the whole budget: 9119. The
    client's retry of the same call sends only the release (same key), answers the same
    invno, and the order holds exactly one capture."""
    proc = world.process()
    rno = world.create_order(proc)
    call = ActivateReservation(
        1234, PY, rno, goods=(Goods("ART-1", "T", 10000, Decimal(25), Decimal(0), 32, 1),))
    world.sandbox.faults.add({"method": "POST", "path": "/release-remaining-authorization$",
                              "action": "fail", "status": 503, "times": 1000})
    assert fault_of(world, proc, call).fault_code == FaultCode.TIMEOUT
    assert world.captures_applied(rno, proc) == 1
    assert world.order(rno, proc)["status"] == "PART_CAPTURED"
    world.sandbox.faults.clear()
    assert run_call(world, proc, call) == ["ok", "9000000000"]
    order = world.order(rno, proc)
    assert order["status"] == "CAPTURED" and len(order["captures"]) == 1
    assert order["captured_amount"] == 10000


def test_a_read_answered_9119_is_not_bound_to_its_retry(world: World) -> None:
    """invoice_amount meets 503s on GET order: 9119. Its retry answers; a credit follows;
    the identical read, well inside the 24 h retry window, answers the new amount (a
    mutation would be replayed there, a read never is)."""
    proc = world.process()
    rno = world.create_order(proc)
    _, invno = run_call(world, proc, Activate(eid=1234, client_version=PY, rno=rno))
    read = InvoiceAmount(1234, PY, invno)
    world.sandbox.faults.add({"method": "GET", "path": "/ordermanagement/v1/orders/[^/]+$",
                              "action": "fail", "status": 503, "times": 1000})
    assert fault_of(world, proc, read).fault_code == FaultCode.TIMEOUT
    world.sandbox.faults.clear()
    assert run_call(world, proc, read) == 35000
    credit = CreditPart(1234, PY, invno, artnos=(ArtNo("ART-2", 1),), credno="C1")
    assert run_call(world, proc, credit) == invno
    world.clock.advance(60)
    assert run_call(world, proc, read) == 30000
