"""check_order_status with the official Python SDK and the PHP 2.4.0 wire captures."""
from __future__ import annotations

from pathlib import Path

import pytest_twisted
import treq
from klarna.const import OrderStatusFor
from twisted.internet import threads

from gateway.calls import REGISTRY
from gateway.calls.check_order_status import plan
from gateway.model import Reservation
from gateway.translate.plan import OrderContext
from tests.e2e.sdk import fault_of
from tests.e2e.test_php_wire import post_http10
from tests.harness import ADMIN, Harness

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures" / "php-2.4.0"


def test_fraud_status_maps_to_v2_codes() -> None:
    """ACCEPTED → 1, PENDING → 2, REJECTED and STOPPED → 3; an unknown one → 1, noted."""
    res = Reservation(id=1, eid=1, rno="r", order_id="o", status=None, origin="admin")
    call = REGISTRY.spec("check_order_status").decode(1, "v", ["4.1", "v", 1, "d", "r", 0])
    for fraud, code in (("ACCEPTED", 1), ("PENDING", 2), ("REJECTED", 3), ("STOPPED", 3),
                        ("NEW", 1)):
        result = plan(call, OrderContext(reservation=res, order={"fraud_status": fraud}))
        assert result.answer == code and not result.steps


@pytest_twisted.ensureDeferred
async def test_by_reservation_invoice_and_merchant_order_id(gw: Harness) -> None:
    """The same order found by rno, by invno and by the merchant's order id (set with
    update); the reply is an <int>; unknown numbers are 9109, an unknown order id 9111."""
    created = await gw.create_order()
    k = gw.sdk()
    status = await gw.call(k.check_order_status, created["rno"], OrderStatusFor.RESERVATION)
    assert status == 1 and isinstance(status, int)
    k.add_art_no(qty=1, artno="ART-1")
    _, invno = await gw.call(k.activate, created["rno"])
    assert await gw.call(k.check_order_status, invno, OrderStatusFor.INVOICE) == 1
    k = gw.sdk()
    k.set_estore_info(orderid1="ERP-4711")
    assert await gw.call(k.update, created["rno"]) is True
    assert await gw.call(k.check_order_status, "ERP-4711", OrderStatusFor.ORDERID) == 1
    f = await fault_of(gw, k.check_order_status, "8999999999", OrderStatusFor.RESERVATION)
    assert f.faultCode == 9109
    f = await fault_of(gw, k.check_order_status, "ERP-0000", OrderStatusFor.ORDERID)
    assert f.faultCode == 9111


@pytest_twisted.ensureDeferred
async def test_pending_and_stopped_orders(gw: Harness) -> None:
    """A fraud-PENDING order answers 2; after Klarna stops it, 3."""
    created = await gw.create_order(token="pending-1")
    k = gw.sdk()
    assert await gw.call(k.check_order_status, created["rno"], OrderStatusFor.RESERVATION) == 2
    resp = await treq.post(f"{gw.sandbox}/sandbox/v1/orders/{created['order_id']}/fraud_status",
                           json={"fraud_status": "STOPPED"}, headers=ADMIN)
    assert resp.code == 200
    await resp.content()
    assert await gw.call(k.check_order_status, created["rno"], OrderStatusFor.RESERVATION) == 3


@pytest_twisted.ensureDeferred
async def test_php_captures_type_0_and_type_1(gw: Harness) -> None:
    """The PHP 2.4.0 bytes: capture 16 asks for rno 8000000001 (type 0); capture 17 asks for
    9000000001 as an order id (type 1), which is the order's merchant reference here."""
    order_id = await gw.create_unregistered_order()
    resp = await treq.post(f"{gw.admin}/v1/reservations", headers=ADMIN,
                           json={"eid": 1234, "order_id": order_id, "rno": "8000000001"})
    assert resp.code == 201, await resp.text()
    await resp.content()
    body = (CAPTURES / "16-check_order_status.xml").read_bytes()
    assert await threads.deferToThread(post_http10, gw.url, body) == 1
    k = gw.sdk()
    k.set_estore_info(orderid1="9000000001")
    assert await gw.call(k.update, "8000000001") is True
    body = (CAPTURES / "17-check_order_status.xml").read_bytes()
    assert await threads.deferToThread(post_http10, gw.url, body) == 1
