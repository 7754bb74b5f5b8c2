"""cancel_reservation, update and extend_expiry_date through the official Python SDK."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import klarna
import pytest_twisted

from tests.e2e.sdk import fault_of, mutations
from tests.harness import Harness


@pytest_twisted.ensureDeferred
async def test_cancel_authorized_order(gw: Harness) -> None:
    """AUTHORIZED → POST cancel; a second cancel answers ok without another request."""
    created = await gw.create_order()
    k = gw.sdk()
    assert await gw.call(k.cancel_reservation, created["rno"]) is True
    assert (await gw.order(created["order_id"]))["status"] == "CANCELLED"
    assert await gw.call(k.cancel_reservation, created["rno"]) is True
    assert len(mutations(await gw.operations(created["order_id"]), "/cancel")) == 1


@pytest_twisted.ensureDeferred
async def test_cancel_after_partial_activation_releases_the_rest(gw: Harness) -> None:
    """PART_CAPTURED → release-remaining-authorization (REST refuses cancel there)."""
    created = await gw.create_order()
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-2")
    await gw.call(k.activate, created["rno"])
    assert await gw.call(k.cancel_reservation, created["rno"]) is True
    order = await gw.order(created["order_id"])
    assert order["remaining_authorized_amount"] == 0 and order["captured_amount"] == 5000
    assert mutations(await gw.operations(created["order_id"]),
                     "/release-remaining-authorization")


@pytest_twisted.ensureDeferred
async def test_cancel_refusals(gw: Harness) -> None:
    """Fully captured → 9103; unknown rno → 9109."""
    created = await gw.create_order()
    k = gw.sdk()
    await gw.call(k.activate, created["rno"])
    f = await fault_of(gw, k.cancel_reservation, created["rno"])
    assert f.faultCode == 9103
    f = await fault_of(gw, k.cancel_reservation, "123")
    assert f.faultCode == 9109


@pytest_twisted.ensureDeferred
async def test_update_goods_list_with_latin1_names(gw: Harness) -> None:
    """A goods list becomes PATCH authorization with converted lines and their sum."""
    created = await gw.create_order()
    k = gw.sdk()
    k.add_article(qty=2, artno="ART-1", title="Blåbärssylt", price=100.0, vat=25,
                  flags=klarna.const.GoodsIs.INC_VAT)
    k.add_article(qty=1, artno="ART-3", title="Smörgåstårta", price=80.0, vat=12.0,
                  discount=10, flags=0)
    assert await gw.call(k.update, created["rno"]) is True
    order = await gw.order(created["order_id"])
    lines = {ln["reference"]: ln for ln in order["order_lines"]}
    assert lines["ART-1"]["name"] == "Blåbärssylt" and lines["ART-1"]["total_amount"] == 20000
    # 8000 excl. 12 % → 8960 incl.; 10 % discount → 896
    assert lines["ART-3"]["name"] == "Smörgåstårta" and lines["ART-3"]["unit_price"] == 8960
    assert lines["ART-3"]["total_discount_amount"] == 896
    assert order["order_amount"] == 20000 + 8960 - 896


@pytest_twisted.ensureDeferred
async def test_update_addresses_and_references(gw: Harness) -> None:
    """dlv_addr → shipping address (bill_addr is the SDK's copy, not a billing change);
    orderid1/2 → merchant references; an unchanged update sends nothing."""
    created = await gw.create_order()
    k = gw.sdk()
    k.shipping = klarna.Address(fname="Åsa", lname="Öberg", street="Storgatan",
                                house_number="3", zip="12345", city="Malmö", country="SE",
                                email="asa@example.com", cellno="0701234567")
    k.set_estore_info(orderid1="ERP-1", orderid2="INT-9")
    assert await gw.call(k.update, created["rno"]) is True
    order = await gw.order(created["order_id"])
    assert order["shipping_address"]["given_name"] == "Åsa"
    assert order["shipping_address"]["street_address"] == "Storgatan 3"
    assert order["shipping_address"]["country"].upper() == "SE"
    assert order["merchant_reference1"] == "ERP-1" and order["merchant_reference2"] == "INT-9"
    before = len(mutations(await gw.operations(created["order_id"]), ""))
    k.shipping = klarna.Address(fname="Åsa", lname="Öberg", street="Storgatan",
                                house_number="3", zip="12345", city="Malmö", country="SE",
                                email="asa@example.com", cellno="0701234567")
    k.set_estore_info(orderid1="ERP-1")  # orderid2 empty = unchanged
    assert await gw.call(k.update, created["rno"]) is True
    assert len(mutations(await gw.operations(created["order_id"]), "")) == before


@pytest_twisted.ensureDeferred
async def test_update_real_billing_change_is_refused_whole(gw: Harness) -> None:
    """A billing address different from shipping and from the current one → 9103, and
    the shipping part of the same update is not applied either."""
    created = await gw.create_order()
    k = gw.sdk()
    k.shipping = klarna.Address(fname="Per", lname="Ek", street="Ny väg", house_number="1",
                                zip="11111", city="Lund", country="SE")
    k.billing = klarna.Address(fname="Other", lname="Payer", street="Annan gata",
                               house_number="9", zip="22222", city="Umeå", country="SE")
    f = await fault_of(gw, k.update, created["rno"])
    assert f.faultCode == 9103
    order = await gw.order(created["order_id"])
    assert (order.get("shipping_address") or {}).get("given_name") != "Per"


@pytest_twisted.ensureDeferred
async def test_update_refusals(gw: Harness) -> None:
    """Goods below the captured amount → 2102; cancelled order → 9103; bad goods → 3210."""
    created = await gw.create_order()
    k = gw.sdk()
    await gw.call(k.activate, created["rno"])
    k.add_article(qty=1, artno="ART-1", title="Blåbärssylt", price=10.0, vat=25)
    f = await fault_of(gw, k.update, created["rno"])
    assert f.faultCode in (2102, 9103)
    cancelled = await gw.create_order()
    await gw.call(k.cancel_reservation, cancelled["rno"])
    k.add_article(qty=1, artno="ART-1", title="Blåbärssylt", price=10.0, vat=25)
    f = await fault_of(gw, k.update, cancelled["rno"])
    assert f.faultCode == 9103
    fresh = await gw.create_order()
    k.add_article(qty=1, artno="X" * 300, title="too long", price=10.0, vat=25)
    f = await fault_of(gw, k.update, fresh["rno"])
    assert f.faultCode == 3210


@pytest_twisted.ensureDeferred
async def test_extend_expiry_date(gw: Harness) -> None:
    """extend → Stockholm wall time of the new expires_at, parsed by the SDK."""
    created = await gw.create_order()
    await gw.advance_clock(10 * 86400)
    k = gw.sdk()
    new = await gw.call(k.extend_expiry_date, created["rno"])
    order = await gw.order(created["order_id"])
    expires = datetime.fromisoformat(order["expires_at"].replace("Z", "+00:00"))
    local = expires.astimezone(ZoneInfo("Europe/Stockholm")).replace(tzinfo=None, microsecond=0)
    assert new == local
    created_at = datetime.fromisoformat(order["created_at"].replace("Z", "+00:00"))
    assert (expires - created_at).days >= 37
    assert expires.tzinfo is not None and expires.astimezone(timezone.utc)


@pytest_twisted.ensureDeferred
async def test_extend_refusals(gw: Harness) -> None:
    """Cancelled and expired reservations cannot be extended (9103)."""
    k = gw.sdk()
    cancelled = await gw.create_order()
    await gw.call(k.cancel_reservation, cancelled["rno"])
    f = await fault_of(gw, k.extend_expiry_date, cancelled["rno"])
    assert f.faultCode == 9103
    expired = await gw.create_order()
    await gw.advance_clock(30 * 86400)
    f = await fault_of(gw, k.extend_expiry_date, expired["rno"])
    assert f.faultCode == 9103 and "expired" in f.faultString
