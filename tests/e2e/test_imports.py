"""Invoices and credits from before the migration, imported through ``POST /v1/imports``,
then credited through the gateway by the official Python SDK.

The "pre-migration" captures and refunds are made straight at the sandbox with the
merchant's REST credentials, as Klarna's own back office would have made them: the gateway
has never heard of the order, its invoice number or its credit.
"""
from __future__ import annotations

import uuid
from typing import Any

import pytest_twisted
import treq

from tests.e2e.sdk import fault_of, mutations
from tests.harness import ADMIN, REST_AUTH, Harness, order_line

LINES = [order_line("ART-1", "Blåbärssylt", 2, 10000), order_line("ART-2", "Lingon", 3, 5000)]


async def klarna_order(gw: Harness, eid: int = 1234,
                       lines: list[dict[str, Any]] | None = None) -> str:
    """An order born at Klarna before the gateway existed."""
    lines = lines or LINES
    body = {"purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
            "order_amount": sum(ln["total_amount"] for ln in lines),
            "order_tax_amount": sum(ln["total_tax_amount"] for ln in lines),
            "order_lines": lines}
    resp = await treq.post(f"{gw.sandbox}/payments/v1/authorizations/auth-{uuid.uuid4()}/order",
                           json=body, auth=REST_AUTH[eid])
    data = await resp.json()
    assert resp.code == 200, data
    return str(data["order_id"])


async def klarna(gw: Harness, order_id: str, what: str, body: dict[str, Any],
                 eid: int = 1234) -> str:
    """A capture or refund made at Klarna directly → its id."""
    resp = await treq.post(f"{gw.sandbox}/ordermanagement/v1/orders/{order_id}/{what}s",
                           json=body, auth=REST_AUTH[eid])
    assert resp.code == 201, await resp.text()
    await resp.content()
    return resp.headers.getRawHeaders(f"{what.capitalize()}-Id")[0]


def part(reference: str, quantity: int) -> dict[str, Any]:
    line = next(ln for ln in LINES if ln["reference"] == reference)
    return order_line(reference, line["name"], quantity, line["unit_price"])


async def imports(gw: Harness, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    resp = await treq.post(gw.admin + "/v1/imports", json=body, headers=ADMIN)
    return resp.code, await resp.json()


@pytest_twisted.ensureDeferred
async def test_premigration_invoice_is_credited_through_the_sdk(gw: Harness) -> None:
    """Dry run changes nothing; the import registers the order and binds invno and credit;
    again it is unchanged; then credit_part, email_invoice and credit_invoice work on the
    old invno, and the refund limits count the refund made before the migration."""
    order_id = await klarna_order(gw)
    capture_id = await klarna(gw, order_id, "capture",
                              {"captured_amount": 35000, "order_lines": LINES})
    refund_id = await klarna(gw, order_id, "refund", {
        "refunded_amount": 10000, "reference": "OLD-CR-1", "order_lines": [part("ART-1", 1)]})
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-1")
    assert (await fault_of(gw, k.credit_part, "123456", "CR-1")).faultCode == 8101
    body: dict[str, Any] = {
        "invoices": [{"eid": 1234, "invno": "123456", "order_id": order_id,
                      "capture_id": capture_id}],
        "credits": [{"eid": 1234, "invno": "123456", "credno": "OLD-CR-1",
                     "refund_id": refund_id}]}

    code, dry = await imports(gw, {**body, "dry_run": True})
    assert code == 200 and dry["dry_run"] is True
    assert dry["counts"] == {"ok": 2, "unchanged": 0, "refused": 0}, dry
    [inv] = dry["invoices"]
    assert (inv["status"], inv["captured_amount"], inv["reservation_registered"],
            inv["rno"]) == ("ok", 35000, True, None)
    assert inv["row"] == body["invoices"][0]
    [cred] = dry["credits"]
    assert (cred["refunded_amount"], cred["left_to_refund"]) == (10000, 25000)
    assert (await fault_of(gw, k.credit_part, "123456", "CR-1")).faultCode == 8101

    code, real = await imports(gw, body)
    assert code == 200 and real["counts"] == {"ok": 2, "unchanged": 0, "refused": 0}, real
    rno = real["invoices"][0]["rno"]
    assert rno == "8000000000"
    code, again = await imports(gw, body)
    assert again["counts"] == {"ok": 0, "unchanged": 2, "refused": 0}, again

    assert await gw.call(k.credit_part, "123456", "CR-1") == "123456"
    k.clear()
    k.add_art_no(qty=1, artno="ART-1")  # 2 captured, 1 refunded before, 1 just now
    assert (await fault_of(gw, k.credit_part, "123456", "CR-X")).faultCode == 9107
    assert await gw.call(k.email_invoice, "123456") == "123456"
    assert await gw.call(k.credit_invoice, "123456", "CR-2") == "123456"
    assert (await fault_of(gw, k.credit_invoice, "123456", "CR-3")).faultCode == 2102
    order = await gw.order(order_id)
    assert order["refunded_amount"] == 35000
    assert sorted(r["reference"] for r in order["refunds"]) == ["CR-1", "CR-2", "OLD-CR-1"]
    refunds = {r["reference"]: r["refunded_amount"] for r in order["refunds"]}
    assert refunds["CR-2"] == 15000  # what was left after both earlier credits
    ops = await gw.operations(order_id)
    assert len(mutations(ops, f"/captures/{capture_id}/trigger-send-out")) == 1
    shown = await gw.mapping(1234, rno)
    assert shown["origin"] == "import" and shown["order_id"] == order_id
    [invoice] = shown["invoices"]
    assert (invoice["invno"], invoice["refunded_amount"]) == ("123456", 35000)
    assert sorted(c["credno"] for c in invoice["credits"]) == ["CR-1", "CR-2", "OLD-CR-1"]


@pytest_twisted.ensureDeferred
async def test_adopted_capture_and_refund_take_the_erp_numbers(gw: Harness) -> None:
    """The gateway met the old capture and refund first (it adopted them on an activation)
    under numbers the ERP never saw: the import gives them the ERP's invno and credno."""
    order_id = await klarna_order(gw)
    capture_id = await klarna(gw, order_id, "capture",
                              {"captured_amount": 20000, "order_lines": [part("ART-1", 2)]})
    refund_id = await klarna(gw, order_id, "refund", {
        "refunded_amount": 10000, "reference": "OLD-CR-1", "order_lines": [part("ART-1", 1)]})
    resp = await treq.post(gw.admin + "/v1/reservations", headers=ADMIN,
                           json={"eid": 1234, "order_id": order_id, "rno": "2400000001"})
    assert resp.code == 201
    await resp.content()
    k = gw.sdk()
    k.add_art_no(qty=3, artno="ART-2")
    _, own = await gw.call(k.activate, "2400000001")
    adopted = [i for i in (await gw.mapping(1234, "2400000001"))["invoices"] if i["adopted"]]
    assert [(i["capture_id"], i["credits"][0]["refund_id"]) for i in adopted] == [
        (capture_id, refund_id)]
    code, report = await imports(gw, {
        "invoices": [{"eid": 1234, "invno": "123456", "order_id": order_id,
                      "capture_id": capture_id}],
        "credits": [{"eid": 1234, "invno": "123456", "credno": "OLD-CR-1",
                     "refund_id": refund_id}]})
    assert code == 200 and report["counts"]["ok"] == 2, report
    assert report["invoices"][0]["renumbered_from"] == adopted[0]["invno"]
    assert "now booked under the ERP's credno" in report["credits"][0]["message"]
    invoices = {i["invno"]: i for i in (await gw.mapping(1234, "2400000001"))["invoices"]}
    assert set(invoices) == {"123456", str(own)}
    assert not invoices["123456"]["adopted"] and not invoices["123456"]["credits"][0]["adopted"]
    k.clear()
    k.add_art_no(qty=1, artno="ART-1")
    assert await gw.call(k.credit_part, "123456", "CR-1") == "123456"
    assert (await fault_of(gw, k.credit_part, adopted[0]["invno"], "CR-1")).faultCode == 8101
    k.clear()
    k.add_art_no(qty=1, artno="ART-1")  # both ART-1 of that invoice are refunded now
    assert (await fault_of(gw, k.credit_part, "123456", "CR-2")).faultCode == 9107


@pytest_twisted.ensureDeferred
async def test_bad_rows_are_refused_with_reasons_and_change_nothing(gw: Harness) -> None:
    """Strangers, other merchants' orders, conflicts, refunds that do not fit and refunds
    already booked: each refused with its reason, the good rows applied; a body of the
    wrong shape is a 400."""
    order_id = await klarna_order(gw)
    cap1 = await klarna(gw, order_id, "capture",
                        {"captured_amount": 20000, "order_lines": [part("ART-1", 2)]})
    cap2 = await klarna(gw, order_id, "capture",
                        {"captured_amount": 15000, "order_lines": [part("ART-2", 3)]})
    big = await klarna(gw, order_id, "refund", {"refunded_amount": 30000})
    theirs = await klarna_order(gw, eid=5678)
    their_cap = await klarna(gw, theirs, "capture", {"captured_amount": 35000}, eid=5678)

    def inv(invno: str, order: str, cap: str, eid: int = 1234) -> dict[str, Any]:
        return {"eid": eid, "invno": invno, "order_id": order, "capture_id": cap}

    code, report = await imports(gw, {
        "invoices": [inv("100", order_id, cap1), inv("200", order_id, cap2),
                     inv("300", order_id, "no-such-capture"), inv("400", theirs, their_cap),
                     inv("100", order_id, cap2), inv("500", order_id, cap1, eid=9999),
                     {"eid": 1234, "invno": "600", "order_id": order_id}],
        "credits": [{"eid": 1234, "invno": "100", "credno": "OLD", "refund_id": big},
                    {"eid": 1234, "invno": "700", "credno": "OLD", "refund_id": "x"}]})
    assert code == 200
    assert report["counts"] == {"ok": 2, "unchanged": 0, "refused": 7}, report
    said = [(r["status"], r["message"]) for r in report["invoices"] + report["credits"]]
    assert [s for s, _ in said[:2]] == ["ok", "ok"]
    assert said[2][1] == f"capture no-such-capture is not on order {order_id}"
    assert said[3][1].startswith(f"order {theirs} does not exist for eid 1234: ")
    assert said[4][1] == "invno 100 repeats invoices[0]"
    assert said[5][1] == "eid 9999 is not a configured merchant"
    assert said[6][1] == "missing capture_id"
    assert said[7][1] == (f"refund {big} (30000) does not fit invoice 100: 20000 is left to "
                          "refund on it")
    assert said[8][1].startswith("invoice 700 is unknown for eid 1234: import it first")

    code, report = await imports(gw, {"invoices": [inv("100", order_id, cap2),
                                                   inv("999", order_id, cap1)]})
    assert [r["message"] for r in report["invoices"]] == [
        f"invno 100 is already used by eid 1234 for capture {cap1} of order {order_id}",
        f"capture {cap1} already has invoice 100 (imported); an invno the ERP was told is "
        "never renumbered"]
    k = gw.sdk()
    k.add_art_no(qty=1, artno="ART-2")
    assert await gw.call(k.credit_part, "200", "CR-1") == "200"
    [_, own] = [r for r in (await gw.order(order_id))["refunds"]]
    code, report = await imports(gw, {"credits": [
        {"eid": 1234, "invno": "200", "credno": "OLD-9", "refund_id": own["refund_id"]}]})
    assert report["credits"][0]["message"] == (
        f"refund {own['refund_id']} is already booked as credit CR-1 on invoice 200")
    rno = (await gw.mapping(1234, "8000000000"))
    assert sorted(i["invno"] for i in rno["invoices"]) == ["100", "200"]
    assert [c["credno"] for i in rno["invoices"] for c in i["credits"]] == ["CR-1"]
    for bad in ({"invoices": {}}, {"refunds": []}, {"dry_run": "yes"}, [1]):
        resp = await treq.post(gw.admin + "/v1/imports", json=bad, headers=ADMIN)
        assert resp.code == 400, bad
        assert (await resp.json())["error"]


@pytest_twisted.ensureDeferred
async def test_invoice_imported_without_its_credit_still_counts_the_old_refund(
        gw: Harness) -> None:
    """Only the invoice imported: the first credit on it adopts the refund made before the
    migration (booked on this invoice, whose capture holds that article) and plans against
    the invoice as it is after that, so it cannot refund an article twice."""
    order_id = await klarna_order(gw)
    capture_id = await klarna(gw, order_id, "capture",
                              {"captured_amount": 35000, "order_lines": LINES})
    await klarna(gw, order_id, "refund", {"refunded_amount": 10000, "reference": "OLD-CR-1",
                                          "order_lines": [part("ART-1", 1)]})
    code, report = await imports(gw, {"invoices": [{"eid": 1234, "invno": "123456",
                                                    "order_id": order_id,
                                                    "capture_id": capture_id}]})
    assert code == 200 and report["counts"]["ok"] == 1, report
    k = gw.sdk()
    k.add_art_no(qty=2, artno="ART-1")  # one of the two was refunded before the migration
    f = await fault_of(gw, k.credit_part, "123456", "CR-1")
    assert f.faultCode == 9107 and "1 remain" in f.faultString
    assert (await gw.order(order_id))["refunded_amount"] == 10000
    assert await gw.call(k.credit_invoice, "123456", "CR-2") == "123456"
    order = await gw.order(order_id)
    assert order["refunded_amount"] == 35000
    assert {r["reference"]: r["refunded_amount"] for r in order["refunds"]}["CR-2"] == 25000
