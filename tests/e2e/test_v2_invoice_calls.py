"""return_amount, update_orderno, invoice_amount, invoice_part_amount and invoice_address
through the official Python SDK, the real gateway and the sandbox.

The SDK divides amounts by 100 and turns the address into an ``Address``, so each reply's
wire type is also checked with a plain XML-RPC client sending what the SDK sends.
"""
from __future__ import annotations

import base64
import hashlib
import xmlrpc.client
from typing import Any

import pytest_twisted
import treq

from tests.e2e.sdk import fault_of, mutations
from tests.harness import REST_AUTH, Harness

PERSON = {"given_name": "Åsa", "family_name": "Ölund", "street_address": "Storgatan 1",
          "postal_code": "11122", "city": "Stockholm", "country": "SE",
          "email": "asa@example.com"}


async def activated(gw: Harness, **extra: Any) -> tuple[dict[str, Any], str]:
    created = await gw.create_order(**extra)
    _, invno = await gw.call(gw.sdk().activate, created["rno"])
    return created, str(invno)


async def wire(gw: Harness, method: str, *params: Any, digest_of: tuple[Any, ...]) -> Any:
    """The call as the PY SDK puts it on the wire, answered as the gateway marshals it."""
    text = ":".join(str(x) for x in (*digest_of, "sandbox-secret")).encode("latin-1")
    digest = base64.b64encode(hashlib.sha512(text).digest()).decode()
    proxy = xmlrpc.client.ServerProxy(gw.url)
    full = ["4.1", "python:api:3.1.0", *params]
    full = [digest if p is DIGEST else p for p in full]
    return await gw.call(getattr(proxy, method), *full)


DIGEST = object()


@pytest_twisted.ensureDeferred
async def test_return_amount_refunds_on_that_invoice(gw: Harness) -> None:
    """25.00 incl. VAT → a refund of 2500 (one 'return_amount' line named 'Discount');
    100.00 excl. 25 % with a description → 12500; the ledger books both on the invoice;
    more than is left, or 0 → 2102; an unknown invno → 8101."""
    created, invno = await activated(gw)
    k = gw.sdk()
    assert await gw.call(k.return_amount, invno, 25.0, 25) == invno
    assert await gw.call(k.return_amount, invno, 100, 25, 0, "Goodwill") == invno
    order = await gw.order(created["order_id"])
    assert order["refunded_amount"] == 2500 + 12500
    first, second = order["refunds"]
    [line] = first["order_lines"]
    assert (line["reference"], line["name"], line["total_amount"], line["tax_rate"],
            line["total_tax_amount"]) == ("return_amount", "Discount", 2500, 2500, 500)
    assert second["refunded_amount"] == 12500 and second["description"] == "Goodwill"
    mapping = await gw.mapping(1234, created["rno"])
    [inv] = mapping["invoices"]
    assert inv["refunded_amount"] == 15000 and len(inv["credits"]) == 2
    f = await fault_of(gw, k.return_amount, invno, 200.01, 25)  # 20001 > 20000 left
    assert f.faultCode == 2102 and "only 20000 is left" in f.faultString
    f = await fault_of(gw, k.return_amount, invno, 0, 25)
    assert f.faultCode == 2102
    f = await fault_of(gw, k.return_amount, "9999999999", 10, 25)
    assert f.faultCode == 8101
    assert len(mutations(await gw.operations(created["order_id"]), "/refunds")) == 2


@pytest_twisted.ensureDeferred
async def test_return_amount_is_bounded_per_invoice(gw: Harness) -> None:
    """Two invoices: a return on the first can never take more than it holds, even though
    the order as a whole has room; after credit_invoice nothing is left (2102)."""
    created = await gw.create_order()
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    _, inv1 = await gw.call(k.activate, created["rno"])
    _, inv2 = await gw.call(k.activate, created["rno"])
    f = await fault_of(gw, k.return_amount, inv1, 100.01, 25)
    assert f.faultCode == 2102
    assert await gw.call(k.credit_invoice, inv1, "CR-1") == inv1
    f = await fault_of(gw, k.return_amount, inv1, 1, 25)
    assert f.faultCode == 2102
    assert await gw.call(k.return_amount, inv2, 250.0, 25) == inv2
    assert (await gw.order(created["order_id"]))["refunded_amount"] == 10000 + 25000


@pytest_twisted.ensureDeferred
async def test_update_orderno_sets_merchant_reference1(gw: Harness) -> None:
    """→ PATCH merchant-references once; the same number again sends nothing; reply the
    invno as a string; unknown invno → 8101."""
    created, invno = await activated(gw)
    k = gw.sdk()
    assert await gw.call(k.update_orderno, invno, "ERP-42") == invno
    order = await gw.order(created["order_id"])
    assert order["merchant_reference1"] == "ERP-42"
    reply = await wire(gw, "update_orderno", 1234, DIGEST, invno, "ERP-42",
                       digest_of=(invno, "ERP-42"))
    assert reply == invno and isinstance(reply, str)
    assert len(mutations(await gw.operations(created["order_id"]),
                         "/merchant-references")) == 1
    f = await fault_of(gw, k.update_orderno, "9999999999", "X")
    assert f.faultCode == 8101


@pytest_twisted.ensureDeferred
async def test_invoice_amount_is_net_and_always_current(gw: Harness) -> None:
    """<int> minor units (the SDK shows 350.0); after a credit_part, and after a refund made
    in the merchant portal (adopted when the order is read), the next identical call answers
    the new amount at once: a read is never replayed."""
    created, invno = await activated(gw)
    k = gw.sdk()
    assert await gw.call(k.invoice_amount, invno) == 350.0
    raw = await wire(gw, "invoice_amount", 1234, invno, DIGEST, digest_of=(1234, invno))
    assert raw == 35000 and type(raw) is int
    k.add_art_no(qty=1, artno="ART-2")
    await gw.call(k.credit_part, invno, "CR-1")
    assert await gw.call(k.invoice_amount, invno) == 300.0
    resp = await treq.post(
        f"{gw.sandbox}/ordermanagement/v1/orders/{created['order_id']}/refunds",
        json={"refunded_amount": 1000}, auth=REST_AUTH[1234])
    assert resp.code == 201
    await resp.content()
    raw = await wire(gw, "invoice_amount", 1234, invno, DIGEST, digest_of=(1234, invno))
    assert raw == 29000
    assert await gw.call(k.invoice_amount, invno) == 290.0
    f = await fault_of(gw, k.invoice_amount, "9999999999")
    assert f.faultCode == 8101
    assert mutations(await gw.operations(created["order_id"]), "/refunds")[-1][
        "status"] == 201


@pytest_twisted.ensureDeferred
async def test_invoice_part_amount_matches_credit_part(gw: Harness) -> None:
    """What credit_part of the same artnos would refund; 9108 for an artno not on the
    invoice, 9107 for more than is left; a second invoice counts only its own lines."""
    created = await gw.create_order()
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    _, inv1 = await gw.call(k.activate, created["rno"])
    _, inv2 = await gw.call(k.activate, created["rno"])
    k.add_art_no(qty=1, artno="ART-1")
    k.add_art_no(qty=2, artno="ART-2")
    assert await gw.call(k.invoice_part_amount, inv2) == 200.0
    k.add_art_no(qty=1, artno="ART-1")
    raw = await wire(gw, "invoice_part_amount", 1234, inv1, [{"artno": "ART-1", "qty": 1}],
                     DIGEST, digest_of=(1234, inv1, "ART-1:1"))
    assert raw == 10000 and type(raw) is int
    k.clear()
    k.add_art_no(qty=1, artno="ART-2")
    f = await fault_of(gw, k.invoice_part_amount, inv1)
    assert f.faultCode == 9108
    k.clear()
    k.add_art_no(qty=2, artno="ART-1")
    f = await fault_of(gw, k.invoice_part_amount, inv1)
    assert f.faultCode == 9107
    k.clear()
    k.add_art_no(qty=1, artno="ART-1")
    assert await gw.call(k.credit_part, inv1, "") == inv1
    k.add_art_no(qty=1, artno="ART-1")  # PY keeps artnos: now 2 × ART-1, 1 refunded
    f = await fault_of(gw, k.invoice_part_amount, inv1)
    assert f.faultCode == 9107
    assert len(mutations(await gw.operations(created["order_id"]), "/refunds")) == 1


@pytest_twisted.ensureDeferred
async def test_invoice_address(gw: Harness) -> None:
    """The capture's billing address as exactly 6 elements with an int country; the SDK
    reads it into an Address; a company is ["", company, ...]."""
    created, invno = await activated(gw, billing_address=PERSON)
    k = gw.sdk()
    raw = await wire(gw, "invoice_address", 1234, invno, DIGEST, digest_of=(1234, invno))
    assert raw == ["Åsa", "Ölund", "Storgatan 1", "11122", "Stockholm", 209]
    assert type(raw[5]) is int
    addr = await gw.call(k.invoice_address, invno)
    assert (addr.fname, addr.lname, addr.street, addr.zip, addr.city, addr.country) == (
        "Åsa", "Ölund", "Storgatan 1", "11122", "Stockholm", "SE")
    assert addr.is_company is False
    firm = {**PERSON, "organization_name": "Företaget AB"}
    _, invno2 = await activated(gw, billing_address=firm)
    addr = await gw.call(k.invoice_address, invno2)
    assert addr.is_company is True and addr.company == "Företaget AB"
    assert created["order_id"] != _["order_id"]


@pytest_twisted.ensureDeferred
async def test_invoice_address_without_one_is_8999_and_unknown_invno_8101(gw: Harness
                                                                           ) -> None:
    _, invno = await activated(gw)
    k = gw.sdk()
    f = await fault_of(gw, k.invoice_address, invno)
    assert f.faultCode == 8999 and f.faultString.startswith("misc_invoice_error: ")
    f = await fault_of(gw, k.invoice_address, "9999999999")
    assert f.faultCode == 8101
