"""activate, driven by the official Python SDK through the gateway and the sandbox."""
from __future__ import annotations

import pytest_twisted

from tests.e2e.sdk import fault_of, mutations
from tests.harness import Harness


@pytest_twisted.ensureDeferred
async def test_full_activation_captures_everything(gw: Harness) -> None:
    """No artnos: one capture of remaining_authorized_amount, reply ['ok', invno]."""
    created = await gw.create_order()
    k = gw.sdk()
    risk, invno = await gw.call(k.activate, created["rno"])
    assert risk == "ok" and int(invno) >= 9000000000
    order = await gw.order(created["order_id"])
    assert order["status"] == "CAPTURED" and order["captured_amount"] == 35000
    mapping = await gw.mapping(1234, created["rno"])
    [inv] = mapping["invoices"]
    assert inv["invno"] == str(invno) and inv["captured_amount"] == 35000
    assert inv["capture_id"] == order["captures"][0]["capture_id"]
    assert len(mutations(await gw.operations(created["order_id"]), "/captures")) == 1


@pytest_twisted.ensureDeferred
async def test_partial_activations_by_artno_then_rest(gw: Harness) -> None:
    """Two partial activations by artno, then the rest; then nothing is left (9103)."""
    created = await gw.create_order()
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    _, inv1 = await gw.call(k.activate, created["rno"])
    k.add_art_no(qty=2, artno="ART-2")
    _, inv2 = await gw.call(k.activate, created["rno"])
    order = await gw.order(created["order_id"])
    assert order["status"] == "PART_CAPTURED" and order["captured_amount"] == 20000
    _, inv3 = await gw.call(k.activate, created["rno"])
    assert len({inv1, inv2, inv3}) == 3
    order = await gw.order(created["order_id"])
    assert order["status"] == "CAPTURED" and order["captured_amount"] == 35000
    assert sorted(c["captured_amount"] for c in order["captures"]) == [10000, 10000, 15000]
    # The identical call again, its reply delivered, is a new operation: v2's refusal...
    f = await fault_of(gw, k.activate, created["rno"])
    assert f.faultCode == 9103 and "fully activated" in f.faultString
    # ...and so is a different one.
    f = await fault_of(gw, k.activate, created["rno"], ocr="again")
    assert f.faultCode == 9103 and "fully activated" in f.faultString
    assert len(mutations(await gw.operations(created["order_id"]), "/captures")) == 3


@pytest_twisted.ensureDeferred
async def test_partial_activation_refusals(gw: Harness) -> None:
    """Unknown artno → 9108; more than remains → 9107; nothing is captured."""
    created = await gw.create_order()
    k = gw.sdk()
    k.add_art_no(qty=1, artno="NOPE")
    f = await fault_of(gw, k.activate, created["rno"])
    assert f.faultCode == 9108 and "NOPE" in f.faultString
    k.clear()
    k.add_art_no(qty=3, artno="ART-1")
    f = await fault_of(gw, k.activate, created["rno"])
    assert f.faultCode == 9107
    assert mutations(await gw.operations(created["order_id"]), "/captures") == []


@pytest_twisted.ensureDeferred
async def test_authentication_faults(gw: Harness) -> None:
    """Wrong secret → 9114; unknown eid → 9113; nothing reaches REST."""
    created = await gw.create_order()
    f = await fault_of(gw, gw.sdk(secret="wrong").activate, created["rno"])
    assert f.faultCode == 9114
    f = await fault_of(gw, gw.sdk(eid=4321, secret="x").activate, created["rno"])
    assert f.faultCode == 9113
    assert mutations(await gw.operations(created["order_id"]), "") == []


@pytest_twisted.ensureDeferred
async def test_unknown_and_foreign_rno(gw: Harness) -> None:
    """An unknown rno and another merchant's rno both answer 9109."""
    created = await gw.create_order(eid=5678)
    f = await fault_of(gw, gw.sdk().activate, "8999999999")
    assert f.faultCode == 9109
    f = await fault_of(gw, gw.sdk(eid=1234).activate, created["rno"])
    assert f.faultCode == 9109
    # ...and pass-through of another merchant's order id is refused too.
    f = await fault_of(gw, gw.sdk(eid=1234).activate, created["order_id"])
    assert f.faultCode == 9109


@pytest_twisted.ensureDeferred
async def test_pass_through_order_id_as_rno(gw: Harness) -> None:
    """An OM order id used as rno is accepted for its own merchant and registered."""
    order_id = await gw.create_unregistered_order()
    risk, invno = await gw.call(gw.sdk().activate, order_id)
    assert risk == "ok"
    mapping = await gw.mapping(1234, order_id)
    assert mapping["origin"] == "pass_through" and mapping["invoices"][0]["invno"] == invno
    # The order id of a registered reservation is an alias of its rno.
    created = await gw.create_order()
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    await gw.call(k.activate, created["order_id"])
    assert len((await gw.mapping(1234, created["rno"]))["invoices"]) == 1


@pytest_twisted.ensureDeferred
async def test_cancelled_expired_and_pending_orders_refuse(gw: Harness) -> None:
    """Cancelled, expired and fraud-PENDING reservations answer 9103 naming the reason."""
    k = gw.sdk()
    cancelled = await gw.create_order()
    assert await gw.call(k.cancel_reservation, cancelled["rno"]) is True
    f = await fault_of(gw, k.activate, cancelled["rno"])
    assert f.faultCode == 9103 and "cancelled" in f.faultString
    pending = await gw.create_order(token="pending-123")
    f = await fault_of(gw, k.activate, pending["rno"])
    assert f.faultCode == 9103 and "PENDING" in f.faultString
    expiring = await gw.create_order()
    await gw.advance_clock(29 * 86400)
    f = await fault_of(gw, k.activate, expiring["rno"])
    assert f.faultCode == 9103 and "expired" in f.faultString


@pytest_twisted.ensureDeferred
async def test_activate_info_reaches_the_capture(gw: Harness) -> None:
    """orderid1 → capture reference, ocr → description, shipment info → shipping_info."""
    created = await gw.create_order()
    k = gw.sdk()
    k.set_activate_info(orderid1="ERP-77")
    k.set_shipment_info(shipping_company="DHL SE", tracking_no="TRACK1",
                        shipping_product="Home")
    await gw.call(k.activate, created["rno"], ocr="OCR123")
    order = await gw.order(created["order_id"])
    [cap] = order["captures"]
    assert cap["reference"] == "ERP-77" and cap["description"] == "OCR123"
    assert cap["shipping_info"][0]["tracking_number"] == "TRACK1"
    assert cap["shipping_info"][0]["shipping_company"] == "DHL SE"
