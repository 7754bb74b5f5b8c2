"""credit_part, credit_invoice, email_invoice and send_invoice through the official SDK."""
from __future__ import annotations

import klarna
import pytest_twisted

from tests.e2e.sdk import fault_of, mutations
from tests.harness import Harness


async def activated(gw: Harness, eid: int = 1234) -> tuple[dict, str]:
    created = await gw.create_order(eid=eid)
    _, invno = await gw.call(gw.sdk(eid).activate, created["rno"])
    return created, str(invno)


@pytest_twisted.ensureDeferred
async def test_credit_part_by_artno_then_credit_invoice(gw: Harness) -> None:
    """Partial refunds by artno are bounded per invoice; credit_invoice refunds the rest."""
    created, invno = await activated(gw)
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    assert await gw.call(k.credit_part, invno, "CR-1") == invno
    k.clear()
    k.add_art_no(qty=2, artno="ART-1")  # only 1 left on the invoice
    f = await fault_of(gw, k.credit_part, invno, "CR-2")
    assert f.faultCode == 9107
    k.clear()
    k.add_art_no(qty=1, artno="NOPE")
    f = await fault_of(gw, k.credit_part, invno, "CR-3")
    assert f.faultCode == 9108
    assert await gw.call(k.credit_invoice, invno, "CR-4") == invno
    order = await gw.order(created["order_id"])
    assert order["refunded_amount"] == 35000
    assert sorted(r["reference"] for r in order["refunds"]) == ["CR-1", "CR-4"]
    f = await fault_of(gw, k.credit_invoice, invno, "CR-5")
    assert f.faultCode == 2102
    mapping = await gw.mapping(1234, created["rno"])
    [inv] = mapping["invoices"]
    assert inv["refunded_amount"] == 35000
    assert sorted(c["credno"] for c in inv["credits"]) == ["CR-1", "CR-4"]


@pytest_twisted.ensureDeferred
async def test_credits_are_per_invoice(gw: Harness) -> None:
    """Two invoices of one order: a credit can never take more than its own invoice had."""
    created = await gw.create_order()
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    _, inv1 = await gw.call(k.activate, created["rno"])
    _, inv2 = await gw.call(k.activate, created["rno"])
    k.add_art_no(qty=2, artno="ART-1")  # inv1 captured one ART-1 only
    f = await fault_of(gw, k.credit_part, inv1, "X")
    assert f.faultCode == 9107
    k.clear()
    k.add_art_no(qty=3, artno="ART-2")  # all three ART-2 are on inv2
    assert await gw.call(k.credit_part, inv2, "Y") == inv2
    order = await gw.order(created["order_id"])
    assert order["refunded_amount"] == 15000


@pytest_twisted.ensureDeferred
async def test_credit_part_with_goods_list(gw: Harness) -> None:
    """The trailing goods list (PY add_article) is refunded as extra refund lines."""
    created, invno = await activated(gw)
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-2")
    k.add_article(qty=1, artno="FEE", title="Återbetalning frakt", price=20.0, vat=25)
    assert await gw.call(k.credit_part, invno, "CR-G") == invno
    order = await gw.order(created["order_id"])
    assert order["refunded_amount"] == 5000 + 2000
    [refund] = order["refunds"]
    assert {ln["reference"] for ln in refund["order_lines"]} == {"ART-2", "FEE"}


@pytest_twisted.ensureDeferred
async def test_unknown_and_foreign_invoices(gw: Harness) -> None:
    """Unknown invno and another merchant's invno → 8101; nothing refunded."""
    created, invno = await activated(gw, eid=5678)
    k = gw.sdk(1234)
    f = await fault_of(gw, k.credit_invoice, invno, "")
    assert f.faultCode == 8101
    f = await fault_of(gw, k.email_invoice, "9999999999")
    assert f.faultCode == 8101
    k.add_art_no(qty=1, artno="ART-1")
    f = await fault_of(gw, k.credit_part, invno, "")
    assert f.faultCode == 8101
    assert (await gw.order(created["order_id"], eid=5678))["refunded_amount"] == 0


@pytest_twisted.ensureDeferred
async def test_email_and_send_invoice(gw: Harness) -> None:
    """Both trigger the capture's send-out and answer the invno."""
    created, invno = await activated(gw)
    k = gw.sdk()
    assert await gw.call(k.email_invoice, invno) == invno
    assert await gw.call(k.send_invoice, invno) == invno
    ops = mutations(await gw.operations(created["order_id"]), "/trigger-send-out")
    assert len(ops) == 2


@pytest_twisted.ensureDeferred
async def test_capture_made_outside_is_adopted(gw: Harness) -> None:
    """A capture made in the 'merchant portal' gets an invno before the next call acts."""
    import treq

    from tests.harness import REST_AUTH

    created = await gw.create_order()
    resp = await treq.post(
        f"{gw.sandbox}/ordermanagement/v1/orders/{created['order_id']}/captures",
        json={"captured_amount": 10000}, auth=REST_AUTH[1234])
    assert resp.code == 201
    await resp.content()
    k = gw.sdk()
    await gw.call(k.activate, created["rno"])
    mapping = await gw.mapping(1234, created["rno"])
    assert len(mapping["invoices"]) == 2
    assert sorted(i["adopted"] for i in mapping["invoices"]) == [False, True]
    adopted = next(i for i in mapping["invoices"] if i["adopted"])
    assert await gw.call(k.credit_invoice, adopted["invno"], "") == adopted["invno"]


@pytest_twisted.ensureDeferred
async def test_other_v2_methods_answer_clear_faults(gw: Harness) -> None:
    """Calls the gateway does not offer answer 9103 (after their eid and digest checked);
    unknown names -32601."""
    import xmlrpc.client

    k = gw.sdk()
    created = await gw.create_order()
    f = await fault_of(gw, k.split_reservation, created["rno"], 100)
    assert f.faultCode == 9103 and "split" in f.faultString
    f = await fault_of(gw, gw.sdk(secret="wrong").split_reservation, created["rno"], 100)
    assert f.faultCode == 9114
    proxy = xmlrpc.client.ServerProxy(gw.url)
    f = await fault_of(gw, proxy.no_such_method, "4.1", "x")
    assert f.faultCode == -32601
    _ = klarna  # the SDK is the client under test


@pytest_twisted.ensureDeferred
async def test_passive_invoice_calls_answer_as_v2_did(gw: Harness) -> None:
    """REST has no passive invoices: on a known (active) invoice activate_part and
    activate_invoice answer 8111, delete_invoice and update_goods_qty 8113; on an unknown
    invno 8101; a wrong secret is still 9114 first. Nothing reaches Klarna."""
    created = await gw.create_order()
    k = gw.sdk()
    _, invno = await gw.call(k.activate, created["rno"])
    ops_before = await gw.operations(created["order_id"])
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    assert (await fault_of(gw, k.activate_part, invno)).faultCode == 8111
    assert (await fault_of(gw, gw.sdk().activate_invoice, invno)).faultCode == 8111
    assert (await fault_of(gw, gw.sdk().delete_invoice, invno)).faultCode == 8113
    assert (await fault_of(gw, gw.sdk().update_goods_qty, invno, "ART-1", 1)).faultCode == 8113
    assert (await fault_of(gw, gw.sdk().delete_invoice, "9999999999")).faultCode == 8101
    bad = gw.sdk(secret="wrong")
    assert (await fault_of(gw, bad.delete_invoice, invno)).faultCode == 9114
    assert await gw.operations(created["order_id"]) == ops_before
