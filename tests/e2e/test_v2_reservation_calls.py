"""activate_reservation and change_reservation through the official Python SDK, the real
gateway and the sandbox."""
from __future__ import annotations

from typing import Any

import klarna
import pytest_twisted

from tests.e2e.sdk import fault_of, mutations
from tests.harness import Harness

PNO = "4103219202"


def customer(k: Any, **overrides: Any) -> None:
    """The addresses the PY SDK requires for activate_reservation (shipping country = SE)."""
    fields = {"email": "asa@example.com", "telno": "", "cellno": "0701234567",
              "fname": "Åsa", "lname": "Ölund", "street": "Storgatan 1", "zip": "11122",
              "city": "Stockholm", "country": "SE", **overrides}
    k.shipping = klarna.Address(**fields)
    k.billing = klarna.Address(**fields)


def goods(k: Any, *rows: tuple[str, int]) -> None:
    for artno, qty in rows:
        k.add_article(qty=qty, artno=artno, title=f"Vara {artno}", price=100.0, vat=25)


@pytest_twisted.ensureDeferred
async def test_activate_reservation_captures_the_goods_and_releases_the_rest(gw: Harness
                                                                             ) -> None:
    """Goods rows → one capture of those lines at the order's amounts (orderid1 →
    reference, ocr → description, shipinfo → shipping_info), then the uncaptured rest is
    released; reply ("ok", invno) with invno a string."""
    created = await gw.create_order()
    k = gw.sdk()
    customer(k)
    goods(k, ("ART-1", 1), ("ART-2", 2))
    k.set_estore_info(orderid1="ERP-7")
    k.set_shipment_info(shipping_company="PostNord", tracking_no="TR-9")
    risk, invno = await gw.call(k.activate_reservation, PNO, created["rno"], None,
                                ocr="OCR-1")
    assert risk == "ok" and isinstance(invno, str) and invno.isdigit()
    order = await gw.order(created["order_id"])
    assert order["status"] == "CAPTURED" and order["captured_amount"] == 20000
    assert order["remaining_authorized_amount"] == 0
    [capture] = order["captures"]
    assert (capture["reference"], capture["description"]) == ("ERP-7", "OCR-1")
    assert capture["shipping_info"] == [{"shipping_company": "PostNord",
                                         "tracking_number": "TR-9"}]
    assert sorted((ln["reference"], ln["quantity"]) for ln in capture["order_lines"]) == [
        ("ART-1", 1), ("ART-2", 2)]
    ops = await gw.operations(created["order_id"])
    assert len(mutations(ops, "/captures")) == 1
    assert len(mutations(ops, "/release-remaining-authorization")) == 1
    mapping = await gw.mapping(1234, created["rno"])
    [inv] = mapping["invoices"]
    assert inv["invno"] == invno and inv["captured_amount"] == 20000
    assert mapping["status"] == "CAPTURED"


@pytest_twisted.ensureDeferred
async def test_activate_reservation_preserve_keeps_the_rest_for_a_second_activation(
        gw: Harness) -> None:
    """RSRV_PRESERVE_RESERVATION (16): no release; a second activate_reservation captures
    the rest (two invoices)."""
    created = await gw.create_order()
    k = gw.sdk()
    customer(k)
    goods(k, ("ART-1", 1))
    _, inv1 = await gw.call(k.activate_reservation, PNO, created["rno"], None, flags=16)
    order = await gw.order(created["order_id"])
    assert order["status"] == "PART_CAPTURED" and order["remaining_authorized_amount"] == 25000
    customer(k)
    goods(k, ("ART-1", 1), ("ART-2", 3))
    _, inv2 = await gw.call(k.activate_reservation, PNO, created["rno"], None)
    assert inv1 != inv2
    order = await gw.order(created["order_id"])
    assert order["status"] == "CAPTURED" and order["captured_amount"] == 35000
    ops = await gw.operations(created["order_id"])
    assert len(mutations(ops, "/captures")) == 2
    assert mutations(ops, "/release-remaining-authorization") == []


@pytest_twisted.ensureDeferred
async def test_activate_reservation_refusals_capture_nothing(gw: Harness) -> None:
    """Unknown rno → 9109; artno not on the order → 9108; more than remains → 9107; a
    cancelled reservation → 9103; nothing is captured."""
    created = await gw.create_order()
    k = gw.sdk()
    for rows, rno, code in (([("ART-1", 1)], "8999999999", 9109),
                            ([("NOPE", 1)], created["rno"], 9108),
                            ([("ART-1", 3)], created["rno"], 9107)):
        customer(k)
        goods(k, *rows)
        f = await fault_of(gw, k.activate_reservation, PNO, rno, None)
        assert f.faultCode == code, f.faultString
        k.clear()
    assert mutations(await gw.operations(created["order_id"]), "/captures") == []
    cancelled = await gw.create_order()
    assert await gw.call(k.cancel_reservation, cancelled["rno"]) is True
    customer(k)
    goods(k, ("ART-1", 1))
    f = await fault_of(gw, k.activate_reservation, PNO, cancelled["rno"], None)
    assert f.faultCode == 9103 and "cancelled" in f.faultString
    assert (await gw.order(created["order_id"]))["captured_amount"] == 0


@pytest_twisted.ensureDeferred
async def test_change_reservation_decrease_increase_and_back(gw: Harness) -> None:
    """NEW_AMOUNT 300.00 → order_amount 30000 with a discount line; ADD_AMOUNT +50.00 back
    to 35000 (the adjustment line goes); 400.00 → a surcharge line; the same amount again
    → True with no request."""
    created = await gw.create_order()
    k = gw.sdk()
    assert await gw.call(k.change_reservation, created["rno"], 300.0) is True
    order = await gw.order(created["order_id"])
    assert order["order_amount"] == 30000
    adj = order["order_lines"][-1]
    assert (adj["type"], adj["reference"], adj["total_amount"]) == (
        "discount", "change_reservation", -5000)
    assert await gw.call(k.change_reservation, created["rno"], 50, 1) is True
    order = await gw.order(created["order_id"])
    assert order["order_amount"] == 35000
    assert [ln["reference"] for ln in order["order_lines"]] == ["ART-1", "ART-2"]
    assert await gw.call(k.change_reservation, created["rno"], 400.0) is True
    order = await gw.order(created["order_id"])
    assert order["order_amount"] == 40000 and order["order_lines"][-1]["type"] == "surcharge"
    before = len(mutations(await gw.operations(created["order_id"]), ""))
    assert await gw.call(k.change_reservation, created["rno"], 0, 1) is True
    assert len(mutations(await gw.operations(created["order_id"]), "")) == before
    assert len(mutations(await gw.operations(created["order_id"]), "/authorization")) == 3


@pytest_twisted.ensureDeferred
async def test_change_reservation_after_a_capture(gw: Harness) -> None:
    """After activating ART-1 × 1 (100.00): NEW_AMOUNT is the uncaptured rest (150.00 →
    order_amount 25000); 0 releases the rest; below what is captured → 2102."""
    created = await gw.create_order()
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    await gw.call(k.activate, created["rno"])
    assert await gw.call(k.change_reservation, created["rno"], 150.0) is True
    order = await gw.order(created["order_id"])
    assert order["order_amount"] == 25000 and order["remaining_authorized_amount"] == 15000
    f = await fault_of(gw, k.change_reservation, created["rno"], -200.0, 1)
    assert f.faultCode == 2102 and "below the 10000" in f.faultString
    assert await gw.call(k.change_reservation, created["rno"], 0) is True
    order = await gw.order(created["order_id"])
    assert order["status"] == "CAPTURED" and order["captured_amount"] == 10000
    ops = await gw.operations(created["order_id"])
    assert len(mutations(ops, "/release-remaining-authorization")) == 1
    f = await fault_of(gw, k.change_reservation, created["rno"], 100.0)
    assert f.faultCode == 9103 and "fully activated" in f.faultString


@pytest_twisted.ensureDeferred
async def test_change_reservation_refusals(gw: Harness) -> None:
    """Unknown rno → 9109; 0 with nothing captured or beyond 2 000 000.00 → 2102; a
    cancelled reservation → 9103; Klarna refusing an increase (403) → 9103, and the
    order is unchanged."""
    created = await gw.create_order()
    k = gw.sdk()
    f = await fault_of(gw, k.change_reservation, "8999999999", 100.0)
    assert f.faultCode == 9109
    f = await fault_of(gw, k.change_reservation, created["rno"], 0)
    assert f.faultCode == 2102
    f = await fault_of(gw, k.change_reservation, created["rno"], 2_000_000.01)
    assert f.faultCode == 2102
    await gw.fault(path=f"/orders/{created['order_id']}/authorization$", method="PATCH",
                   action="fail", status=403)
    f = await fault_of(gw, k.change_reservation, created["rno"], 500.0)
    assert f.faultCode == 9103 and "Klarna refused" in f.faultString
    assert "correlation_id" in f.faultString
    assert (await gw.order(created["order_id"]))["order_amount"] == 35000
    cancelled = await gw.create_order()
    await gw.call(k.cancel_reservation, cancelled["rno"])
    f = await fault_of(gw, k.change_reservation, cancelled["rno"], 100.0)
    assert f.faultCode == 9103 and "cancelled" in f.faultString
    ops = await gw.operations(created["order_id"])
    assert mutations(ops, "/authorization") == []
