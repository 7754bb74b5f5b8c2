"""``text_repair`` per call: which fields, what each mode sends, what the notes say.

Pure: the calls' own plans, wrapped as the gateway serves them
(:func:`gateway.calls.text_repair.repairing`), on decoded calls and an order as REST
reports it. End to end (SDK, gateway, sandbox, journal, metric): tests/e2e/test_text_repair.py.
"""
from __future__ import annotations

from dataclasses import fields, replace
from decimal import Decimal
from typing import Any

import pytest

from gateway.calls import REGISTRY
from gateway.calls.activate import Activate
from gateway.calls.activate_reservation import ActivateReservation
from gateway.calls.credit_part import CreditPart
from gateway.calls.invoice_part_amount import InvoicePartAmount
from gateway.calls.return_amount import ReturnAmount
from gateway.calls.text_repair import repairing
from gateway.calls.update import Update
from gateway.errors import FaultCode, GatewayError
from gateway.model import Invoice, Reservation
from gateway.translate.plan import OrderContext, Plan
from gateway.translate.text import TextRepair
from gateway.wire.values import Address, ArtNo, Goods, ShipmentInfo

V = "python:api:3.1.0"
RES = Reservation(id=1, eid=1234, rno="r", order_id="o-1", status="AUTHORIZED", origin="admin")
ASA = "Ã\u0085sa"  # UTF-8 "Åsa" sent in an ISO-8859-1 request
MALMO = "MalmÃ¶"


def line(ref: str, qty: int = 1, unit: int = 10000, name: str = "Vara") -> dict[str, Any]:
    total = qty * unit
    return {"type": "physical", "reference": ref, "name": name, "quantity": qty,
            "unit_price": unit, "tax_rate": 2500, "total_amount": total,
            "total_discount_amount": 0, "total_tax_amount": total - round(total * 0.8)}


def context(*refs: str, invoice: bool = False) -> OrderContext:
    lines = [line(r) for r in refs or ("A",)]
    amount = sum(ln["total_amount"] for ln in lines)
    order = {"order_id": "o-1", "status": "CAPTURED" if invoice else "AUTHORIZED",
             "fraud_status": "ACCEPTED", "order_amount": amount,
             "captured_amount": amount if invoice else 0,
             "remaining_authorized_amount": 0 if invoice else amount, "order_lines": lines,
             "captures": [], "refunds": [], "created_at": "2026-01-01T12:00:00Z"}
    inv = Invoice(id=7, eid=1234, invno="9000000000", reservation_id=1, order_id="o-1",
                  capture_id="cap-1", captured_amount=amount, refunded_amount=0, lines=lines,
                  refunded_qty={}, adopted=False) if invoice else None
    return OrderContext(reservation=RES, order=order, invoice=inv, now=0.0)


def plan(call: Any, ctx: OrderContext, mode: str) -> Plan:
    spec = repairing(REGISTRY.spec_for(call), lambda eid: mode)
    return spec.plan(call, ctx)


def body(p: Plan, i: int = 0) -> dict[str, Any]:
    step = p.steps[i].body
    assert step is not None
    return step


def goods(artno: str, title: str) -> Goods:
    return Goods(artno=artno, title=title, price=10000, vat=Decimal(25), discount=Decimal(0),
                 flags=32, qty=1)


UPDATE = Update(1234, V, "r", goods=(goods("ART-1", "Blåbärssylt"), goods("SYLT-" + ASA, ASA)),
                dlv_addr=Address(fname=ASA, lname="Öberg", street="Storgatan", zip="12345",
                                 city=MALMO, company="SÃO PAULO AB", country=209))


def test_report_sends_as_received_and_notes_each_field() -> None:
    p = plan(UPDATE, context(), "report")
    lines = body(p, 0)["order_lines"]
    assert [ln["name"] for ln in lines] == ["Blåbärssylt", ASA]
    assert lines[1]["reference"] == "SYLT-" + ASA
    address = body(p, 1)["shipping_address"]
    assert (address["given_name"], address["city"]) == (ASA, MALMO)
    assert address["organization_name"] == "SÃO PAULO AB"  # right text: untouched, no note
    assert p.repairs == (
        TextRepair("goods_list[1].artno", "SYLT-" + ASA, "SYLT-Åsa", "report"),
        TextRepair("goods_list[1].title", ASA, "Åsa", "report"),
        TextRepair("dlv_addr.fname", ASA, "Åsa", "report"),
        TextRepair("dlv_addr.city", MALMO, "Malmö", "report"),
    )
    assert p.notes[-4:] == tuple(r.note for r in p.repairs)
    assert p.notes[-1] == "text repair (report): dlv_addr.city 'MalmÃ¶' → 'Malmö', sent as received"
    assert [r.label for r in p.repairs] == ["goods_list.artno", "goods_list.title",
                                            "dlv_addr.fname", "dlv_addr.city"]


def test_fix_sends_the_repaired_text_with_the_same_notes() -> None:
    p = plan(UPDATE, context(), "fix")
    lines = body(p, 0)["order_lines"]
    assert [(ln["reference"], ln["name"]) for ln in lines] == [("ART-1", "Blåbärssylt"),
                                                                ("SYLT-Åsa", "Åsa")]
    address = body(p, 1)["shipping_address"]
    assert (address["given_name"], address["city"]) == ("Åsa", "Malmö")
    assert address["organization_name"] == "SÃO PAULO AB"
    assert [r.mode for r in p.repairs] == ["fix"] * 4
    assert p.notes[-1] == "text repair (fix): dlv_addr.city 'MalmÃ¶' → 'Malmö', sent repaired"


def test_off_looks_at_nothing() -> None:
    p = plan(UPDATE, context(), "off")
    assert p.repairs == () and not any("text repair" in n for n in p.notes)
    assert body(p, 1)["shipping_address"]["city"] == MALMO


def test_right_text_gets_no_note() -> None:
    right = replace(UPDATE, goods=(goods("ART-1", "naïve Ærø"),),
                    dlv_addr=Address(fname="Åsa", city="SÃO PAULO", country=209))
    for mode in ("report", "fix"):
        p = plan(right, context(), mode)
        assert p.repairs == () and body(p, 1)["shipping_address"]["city"] == "SÃO PAULO"


def test_return_amount_description() -> None:
    call = ReturnAmount(1234, V, "9000000000", amount=5000, vat=Decimal(25), tax_rate=2500,
                        description="Rabatt fÃ¶r fÃ¶rsenad leverans")
    sent = body(plan(call, context(invoice=True), "report"))
    assert sent["description"] == call.description
    assert sent["order_lines"][0]["name"] == call.description
    fixed = plan(call, context(invoice=True), "fix")
    assert body(fixed)["description"] == "Rabatt för försenad leverans"
    assert body(fixed)["order_lines"][0]["name"] == "Rabatt för försenad leverans"
    assert [r.field for r in fixed.repairs] == ["description"]


def test_credit_goods_list_titles() -> None:
    call = CreditPart(1234, V, "9000000000", goods=(goods("FEE", "Ã\u0085terbetalning frakt"),))
    fixed = plan(call, context(invoice=True), "fix")
    assert body(fixed)["order_lines"][0]["name"] == "Återbetalning frakt"
    assert [r.field for r in fixed.repairs] == ["goods_list[0].title"]


@pytest.mark.parametrize("call", [
    Activate(1234, V, "r", shipment_info=ShipmentInfo(shipping_company="PostNord SmÃ¥paket",
                                                      tracking_no="123")),
    ActivateReservation(1234, V, "r", goods=(goods("A", "x"),),
                        shipment_info=ShipmentInfo(shipping_company="PostNord SmÃ¥paket",
                                                   tracking_no="123")),
])
def test_shipping_info(call: Any) -> None:
    sent = body(plan(call, context(), "report"))["shipping_info"][0]
    assert sent["shipping_company"] == "PostNord SmÃ¥paket"
    fixed = plan(call, context(), "fix")
    assert body(fixed)["shipping_info"][0]["shipping_company"] == "PostNord Småpaket"
    assert [r.field for r in fixed.repairs] == ["shipment_info.shipping_company"]


def test_an_artno_is_repaired_only_to_name_the_line_klarna_holds() -> None:
    """The ERP sends the mis-encoded artno of a line whose reference is right at Klarna
    (the shop wrote it, or update did in fix mode): fix names that line; report notes it
    and sends it as received (no such line: 9108). An artno naming its line as received is
    never touched."""
    call = Activate(1234, V, "r", artnos=(ArtNo("SYLT-" + ASA, 1),))
    fixed = plan(call, context("SYLT-Åsa", "B"), "fix")
    assert [ln["reference"] for ln in body(fixed)["order_lines"]] == ["SYLT-Åsa"]
    assert fixed.repairs == (TextRepair("artnos[0].artno", "SYLT-" + ASA, "SYLT-Åsa", "fix"),)
    with pytest.raises(GatewayError) as info:
        plan(call, context("SYLT-Åsa", "B"), "report")
    assert info.value.fault_code == FaultCode.UNKNOWN_ARTNO
    as_received = plan(call, context("SYLT-" + ASA, "SYLT-Åsa"), "fix")
    assert [ln["reference"] for ln in body(as_received)["order_lines"]] == ["SYLT-" + ASA]
    assert as_received.repairs == ()
    reservation = ActivateReservation(1234, V, "r", goods=(goods("SYLT-" + ASA, "x"),))
    assert [ln["reference"] for ln in body(plan(reservation, context("SYLT-Åsa"), "fix"))[
        "order_lines"]] == ["SYLT-Åsa"]
    credit = CreditPart(1234, V, "9000000000", artnos=(ArtNo("SYLT-" + ASA, 1),))
    assert [ln["reference"] for ln in body(plan(credit, context("SYLT-Åsa", invoice=True),
                                                "fix"))["order_lines"]] == ["SYLT-Åsa"]
    part = InvoicePartAmount(1234, V, "9000000000", artnos=(ArtNo("SYLT-" + ASA, 1),))
    assert plan(part, context("SYLT-Åsa", invoice=True), "fix").answer == 10000


def test_a_failing_repair_sends_the_original_with_a_note(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    from gateway.translate import text

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("ftfy broke")
    monkeypatch.setattr(text.ftfy, "fix_encoding_and_explain", broken)
    p = plan(UPDATE, context(), "fix")
    assert body(p, 1)["shipping_address"]["city"] == MALMO
    assert "text repair (fix): dlv_addr.city could not be checked (RuntimeError: ftfy broke); " \
           "sent as received" in p.notes


#: String fields that are not free text for a customer's eyes: identifiers the ERP finds its
#: orders and credits by (changing them would lose the ERP's own lookups), or values that
#: are not sent to REST at all.
NOT_FREE_TEXT = {
    "rno", "invno", "id", "orderid", "orderid1", "orderid2", "credno", "ocr",
    "reference", "reference_code", "cust_no", "client_ip", "comment", "other_info",
    "shipping", "billing",  # activate_reservation: v2 re-sent them; REST keeps the order's
    "artnos",  # line keys (declared as such where they name order lines)
}


@pytest.mark.parametrize("name", sorted(REGISTRY.served))
def test_every_text_field_a_call_sends_is_declared(name: str) -> None:
    """Each served call's text fields are either declared free text (or line keys), or
    named above as not free text: a new call cannot forget its customer-facing text."""
    spec = REGISTRY.spec(name)
    textual = {f.name for f in fields(spec.call_type)
               if any(t in str(f.type) for t in ("str", "Goods", "Address", "ShipmentInfo",
                                                 "ArtNo"))} - {"client_version"}
    undeclared = textual - set(spec.free_text) - set(spec.line_keys) - NOT_FREE_TEXT
    assert not undeclared, f"{name}: declare {sorted(undeclared)} in free_text or line_keys"


def test_only_text_a_request_carries_is_noted() -> None:
    """bill_addr as the SDK's copy of dlv_addr is not sent: its repairs are not noted
    (dlv_addr's are, once). An address equal to the order's is not sent either."""
    dlv = Address(fname=ASA, city=MALMO, country=209)
    copy = replace(UPDATE, goods=(), dlv_addr=dlv, bill_addr=dlv)
    for mode in ("report", "fix"):
        assert [r.field for r in plan(copy, context(), mode).repairs] == [
            "dlv_addr.fname", "dlv_addr.city"]
    ctx = context()
    same = replace(ctx, order={**ctx.order, "shipping_address": {
        "given_name": ASA, "city": MALMO, "country": "SE"}})
    p = plan(replace(copy, bill_addr=None), same, "report")
    assert p.steps == () and p.repairs == ()
