"""Plans of the seven older v2 calls: pure functions from a decoded call + the order to REST.

Each test states the REST the legacy call becomes, and its refusals (the fault each gives).
"""
from __future__ import annotations

import json
import re
import xmlrpc.client
from decimal import Decimal
from typing import Any

import pytest

from gateway.calls import REGISTRY
from gateway.calls.activate_reservation import ActivateReservation
from gateway.calls.change_reservation import ADD_AMOUNT, ChangeReservation
from gateway.calls.invoice_address import InvoiceAddress
from gateway.calls.invoice_amount import InvoiceAmount
from gateway.calls.invoice_part_amount import InvoicePartAmount
from gateway.calls.return_amount import ReturnAmount
from gateway.calls.update_orderno import UpdateOrderno
from gateway.errors import (
    AmountError, BadArtnoListError, FaultCode, GoodsListError, InvoiceDataError,
    NotAllowedError, UnknownArtnoError,
)
from gateway.model import CaptureEffect, Invoice, RefundEffect, Reservation, StatusEffect
from gateway.translate.money import inclusive_tax
from gateway.translate.plan import OrderContext, Plan, Result
from gateway.translate.split import part_of_line
from gateway.wire.values import Address, ArtNo, Goods, LegacyCall

RES = Reservation(id=1, eid=1234, rno="8000000000", order_id="o-1", status="AUTHORIZED",
                  origin="admin")
V = "php:api:2.4.0"
BASE = "/ordermanagement/v1/orders/o-1"


def plan_call(call: LegacyCall, c: OrderContext) -> Plan:
    return REGISTRY.spec_for(call).plan(call, c)


def reply_of(call: LegacyCall, plan: Plan, invno: str | None = None) -> Any:
    value = REGISTRY.spec_for(call).reply(call, Result(invno=invno, answer=plan.answer))
    xmlrpc.client.dumps((value,), methodresponse=True)  # marshals as XML-RPC
    return value


def line(ref: str, qty: int, unit: int, rate: int = 2500, discount: int = 0) -> dict[str, Any]:
    total = qty * unit - discount
    return {"type": "physical", "reference": ref, "name": ref, "quantity": qty,
            "unit_price": unit, "tax_rate": rate, "total_amount": total,
            "total_discount_amount": discount, "total_tax_amount": inclusive_tax(total, rate)}


def order(status: str = "AUTHORIZED", captured: int = 0, **extra: Any) -> dict[str, Any]:
    lines = extra.pop("order_lines", None) or [line("A", 2, 10000), line("B", 3, 5000, 1200)]
    amount = extra.pop("order_amount", sum(ln["total_amount"] for ln in lines))
    return {"order_id": "o-1", "status": status, "fraud_status": "ACCEPTED",
            "order_amount": amount, "captured_amount": captured,
            "remaining_authorized_amount": amount - captured, "order_lines": lines,
            "purchase_currency": "SEK", "purchase_country": "SE", "captures": [],
            "refunds": [], **extra}


def ctx(o: dict[str, Any], invoice: Invoice | None = None) -> OrderContext:
    return OrderContext(reservation=RES, order=o, invoice=invoice)


def invoice(lines: list[dict[str, Any]], refunded: int = 0,
            refunded_qty: dict[str, int] | None = None, capture_id: str = "cap-1") -> Invoice:
    return Invoice(id=7, eid=1234, invno="9000000001", reservation_id=1, order_id="o-1",
                   capture_id=capture_id,
                   captured_amount=sum(ln["total_amount"] for ln in lines),
                   refunded_amount=refunded, lines=lines, refunded_qty=refunded_qty or {},
                   adopted=False)


def goods(artno: str, qty: int, price: int = 10000, title: str = "T", vat: str = "25",
          flags: int = 32) -> Goods:
    return Goods(artno=artno, title=title, price=price, vat=Decimal(vat), discount=Decimal(0),
                 flags=flags, qty=qty)


# ---------------------------------------------------------------------------------------------
# activate_reservation
# ---------------------------------------------------------------------------------------------


def ar(*rows: Goods, **kw: Any) -> ActivateReservation:
    return ActivateReservation(1234, V, "8000000000", goods=rows, **kw)


def test_activate_reservation_captures_rows_at_the_orders_amounts_then_releases() -> None:
    """Goods rows → POST captures of those quantities at the order lines' amounts (not the
    rows' prices), orderid1 → reference, ocr → description, shipinfo → shipping_info; the
    uncaptured rest → POST release-remaining-authorization; reply ["ok", invno]."""
    from gateway.wire.values import ShipmentInfo

    call = ar(goods("A", 1, price=9999), goods("", 2, title="B"), orderid1="ERP-1",
              ocr="OCR-9", shipment_info=ShipmentInfo(shipping_company="PostNord",
                                                      tracking_no="TR-1"))
    plan = plan_call(call, ctx(order()))
    capture, release = plan.steps
    assert (capture.http_method, capture.path) == ("POST", f"{BASE}/captures")
    o = order()
    assert capture.body == {
        "captured_amount": 20000,
        "order_lines": [part_of_line(o["order_lines"][0], 0, 1),
                        part_of_line(o["order_lines"][1], 0, 2)],
        "reference": "ERP-1", "description": "OCR-9",
        "shipping_info": [{"shipping_company": "PostNord", "tracking_number": "TR-1"}]}
    assert capture.effect == CaptureEffect(reservation_id=1, order_id="o-1",
                                           status_after="PART_CAPTURED")
    assert (release.http_method, release.path, release.body) == (
        "POST", f"{BASE}/release-remaining-authorization", None)
    assert release.effect == StatusEffect(reservation_id=1, status="CAPTURED")
    assert plan.allocate_invno
    assert any("9999" in n and "order's amounts" in n for n in plan.notes)
    assert any(n.startswith("not sent to REST") and "pno" in n for n in plan.notes)
    assert reply_of(call, plan, "9000000001") == ["ok", "9000000001"]
    json.dumps(capture.body)


def test_activate_reservation_preserve_and_everything_captured_send_no_release() -> None:
    """PRESERVE_RESERVATION (16) keeps the rest authorized; capturing everything leaves
    nothing to release."""
    kept = plan_call(ar(goods("A", 1), flags=16 | 8), ctx(order()))
    assert len(kept.steps) == 1 and any("PRESERVE" in n for n in kept.notes)
    assert any("SEND_BY_EMAIL" in n for n in kept.notes)
    everything = plan_call(ar(goods("A", 2), goods("B", 3)), ctx(order()))
    [step] = everything.steps
    assert step.body["captured_amount"] == 35000  # type: ignore[index]
    assert step.effect.status_after == "CAPTURED"  # type: ignore[union-attr]


def test_activate_reservation_after_a_partial_capture_takes_the_next_units() -> None:
    """Units already captured count: the next unit of A is split after them."""
    o = order("PART_CAPTURED", 10000, captures=[
        {"capture_id": "c0", "captured_amount": 10000,
         "order_lines": [part_of_line(line("A", 2, 10000), 0, 1)]}])
    plan = plan_call(ar(goods("A", 1), flags=16), ctx(o))
    assert plan.steps[0].body["order_lines"] == [  # type: ignore[index]
        part_of_line(o["order_lines"][0], 1, 1)]
    with pytest.raises(BadArtnoListError, match="1 remain"):
        plan_call(ar(goods("A", 2)), ctx(o))


def test_activate_reservation_notes_what_differs_from_the_order() -> None:
    """Currency, country, shipping address and pclass that differ are named in the notes."""
    addr = Address(fname="Åsa", lname="Ölund", street="Storgatan 1", zip="11122",
                   city="Stockholm", country=209)
    call = ar(goods("A", 1), currency=2, country=81, shipping=addr, pclass=7)
    notes = " | ".join(plan_call(call, ctx(order())).notes)
    assert "currency EUR differs" in notes and "country DE differs" in notes
    assert "shipping address differs" in notes and "pclass 7" in notes
    same = " | ".join(plan_call(ar(goods("A", 1), currency=0, country=209), ctx(
        order())).notes)
    assert "differs" not in same


@pytest.mark.parametrize(("call", "o", "error", "text"), [
    (ar(goods("NOPE", 1)), order(), UnknownArtnoError, "NOPE"),
    (ar(goods("A", 3)), order(), BadArtnoListError, "3 requested, 2 remain"),
    (ar(goods("A", 0)), order(), AmountError, "qty 0"),
    (ar(Goods("A", "T", 100, Decimal(25), Decimal(150), 32, 1)), order(), GoodsListError,
     "goods_list[0] (reference 'A'): discount 150"),
    (ar(goods("A", 1)), order("CANCELLED"), NotAllowedError, "cancelled"),
    (ar(goods("A", 1)), order("CAPTURED", 35000), NotAllowedError, "fully activated"),
    (ar(goods("A", 1)), order(fraud_status="PENDING"), NotAllowedError, "PENDING"),
    (ar(goods("A", 1)), order(fraud_status="REJECTED"), NotAllowedError, "REJECTED"),
    (ar(goods("A", 2)), order(order_amount=15000, order_lines=[line("A", 2, 10000)]),
     AmountError, "only 15000 remains"),
])
def test_activate_reservation_refusals(call: ActivateReservation, o: dict[str, Any],
                                       error: type[Exception], text: str) -> None:
    """Unknown row 9108, too many 9107, nothing to capture 2102, a bad row 3210 naming it,
    states and fraud 9103."""
    with pytest.raises(error, match=re.escape(text)):
        plan_call(call, ctx(o))


# ---------------------------------------------------------------------------------------------
# change_reservation
# ---------------------------------------------------------------------------------------------


def cr(amount: int, flags: int = 0) -> ChangeReservation:
    return ChangeReservation(1234, V, "8000000000", amount=amount, flags=flags)


def test_change_reservation_decrease_adds_one_discount_line() -> None:
    """NEW_AMOUNT below the order amount → PATCH authorization, the lines + one discount
    line (reference change_reservation) adding up to the target."""
    plan = plan_call(cr(30000), ctx(order(order_lines=[line("A", 2,10000),
                                                       line("B", 3, 5000)])))
    [step] = plan.steps
    assert (step.http_method, step.path) == ("PATCH", f"{BASE}/authorization")
    body = step.body
    assert body is not None and body["order_amount"] == 30000
    adj = body["order_lines"][-1]
    assert adj == {"type": "discount", "reference": "change_reservation",
                   "name": "Reservation change", "quantity": 1, "unit_price": -5000,
                   "tax_rate": 2500, "total_amount": -5000, "total_discount_amount": 0,
                   "total_tax_amount": -1000}
    assert sum(ln["total_amount"] for ln in body["order_lines"]) == 30000
    assert step.effect is None and reply_of(cr(30000), plan) == "ok"


def test_change_reservation_replaces_its_earlier_line_and_increases_with_a_surcharge() -> None:
    """A second change replaces the earlier adjustment line; an increase is a surcharge
    line; ADD_AMOUNT adds to the order amount; mixed tax rates → an untaxed line, noted."""
    earlier = [line("A", 2, 10000), line("B", 3, 5000),
               {**line("change_reservation", 1, -5000), "type": "discount"}]
    o = order(order_lines=earlier)
    assert o["order_amount"] == 30000
    plan = plan_call(cr(5000, ADD_AMOUNT), ctx(o))
    lines = plan.steps[0].body["order_lines"]  # type: ignore[index]
    assert [ln["reference"] for ln in lines] == ["A", "B"]  # 35000: no adjustment needed
    up = plan_call(cr(40000), ctx(o))
    body = up.steps[0].body
    assert body["order_amount"] == 40000  # type: ignore[index]
    assert body["order_lines"][-1]["type"] == "surcharge"  # type: ignore[index]
    assert body["order_lines"][-1]["total_amount"] == 5000  # type: ignore[index]
    assert any("may refuse an increase" in n for n in up.notes)
    mixed = plan_call(cr(30000), ctx(order()))
    adj = mixed.steps[0].body["order_lines"][-1]  # type: ignore[index]
    assert adj["tax_rate"] == 0 and adj["total_tax_amount"] == 0
    assert any("several tax rates" in n for n in mixed.notes)


def test_change_reservation_after_a_capture_counts_from_what_is_captured() -> None:
    """NEW_AMOUNT is the new uncaptured rest: target = captured + amount. Target =
    captured → release-remaining-authorization; below captured → 2102."""
    o = order("PART_CAPTURED", 20000, order_lines=[line("A", 2, 10000), line("B", 3, 5000)])
    plan = plan_call(cr(10000), ctx(o))
    assert plan.steps[0].body["order_amount"] == 30000  # type: ignore[index]
    release = plan_call(cr(0), ctx(o))
    [step] = release.steps
    assert step.path == f"{BASE}/release-remaining-authorization"
    assert step.effect == StatusEffect(reservation_id=1, status="CAPTURED")
    with pytest.raises(AmountError, match="below the 20000 already activated"):
        plan_call(cr(-25000, ADD_AMOUNT), ctx(o))


def test_change_reservation_unchanged_and_refusals() -> None:
    """Same amount → 'ok' and no request; 0 with nothing captured, beyond 200 000 000 →
    2102; cancelled, fully captured or fraud-rejected → 9103."""
    same = plan_call(cr(35000), ctx(order()))
    assert same.steps == () and "no request" in same.notes[0]
    assert plan_call(cr(0, ADD_AMOUNT), ctx(order())).steps == ()
    with pytest.raises(AmountError, match="cannot be changed to 0"):
        plan_call(cr(0), ctx(order()))
    with pytest.raises(AmountError, match="beyond the limit"):
        plan_call(cr(200_000_001), ctx(order()))
    for o, word in ((order("CANCELLED"), "cancelled"), (order("CAPTURED", 35000), "fully"),
                    (order(fraud_status="REJECTED"), "REJECTED")):
        with pytest.raises(NotAllowedError, match=word):
            plan_call(cr(1000), ctx(o))


def test_change_reservation_of_an_order_without_lines_sends_the_amount_only() -> None:
    plan = plan_call(cr(1000), ctx(order(order_lines=[line("X", 1, 5000)], order_amount=5000)
                                   | {"order_lines": []}))
    assert plan.steps[0].body == {"order_amount": 1000}


# ---------------------------------------------------------------------------------------------
# return_amount
# ---------------------------------------------------------------------------------------------


def ra(amount: int, vat: str = "25", flags: int = 32, description: str = "") -> ReturnAmount:
    from gateway.translate.money import percent_hundredths

    rate = percent_hundredths(Decimal(vat))
    assert rate is not None
    return ReturnAmount(1234, V, "9000000001", amount=amount, vat=Decimal(vat),
                        tax_rate=rate, flags=flags, description=description)


def test_return_amount_refunds_one_line_on_that_invoice() -> None:
    """INC_VAT: G = amount; one physical line 'return_amount' named by the description (or
    'Discount'); RefundEffect on the invoice so the ledger books it."""
    inv = invoice([line("A", 2, 10000)])
    plan = plan_call(ra(2500, description="goodwill"), ctx(order("CAPTURED", 20000), inv))
    [step] = plan.steps
    assert (step.http_method, step.path) == ("POST", f"{BASE}/refunds")
    assert step.body == {
        "refunded_amount": 2500, "description": "goodwill",
        "order_lines": [{"type": "physical", "reference": "return_amount", "name": "goodwill",
                         "quantity": 1, "unit_price": 2500, "tax_rate": 2500,
                         "total_amount": 2500, "total_discount_amount": 0,
                         "total_tax_amount": 500}]}
    assert step.effect == RefundEffect(invoice_id=7, order_id="o-1", credno="")
    assert reply_of(ra(2500), plan, "9000000001") == "9000000001"
    default = plan_call(ra(100), ctx(order("CAPTURED", 20000), inv)).steps[0].body
    assert default["order_lines"][0]["name"] == "Discount"  # type: ignore[index]
    assert "description" not in default  # type: ignore[operator]


@pytest.mark.parametrize(("amount", "vat", "gross", "rate"), [
    (2000, "25", 2500, 2500),
    (1001, "12.5", 1126, 1250),  # 1126.125 → 1126
    (1, "50", 2, 5000),  # 1.5 rounds half away from zero
    (999, "0", 999, 0),
    (1000, "15.5999999999999996447286321199499070644378662109375", 1156, 1560),  # PHP 15.6
])
def test_return_amount_excluding_vat(amount: int, vat: str, gross: int, rate: int) -> None:
    """flags 0: G = round_half_away(amount × (100 + vat) / 100), exactly; tax_rate = vat × 100."""
    inv = invoice([line("A", 2, 10000)])
    body = plan_call(ra(amount, vat, flags=0), ctx(order("CAPTURED", 20000), inv)).steps[0].body
    assert body is not None and body["refunded_amount"] == gross
    [ln] = body["order_lines"]
    assert ln["tax_rate"] == rate and ln["total_tax_amount"] == inclusive_tax(gross, rate)


def test_return_amount_refusals() -> None:
    """amount ≤ 0 or G above what is left on the invoice (after earlier credits) → 2102."""
    inv = invoice([line("A", 2, 10000)], refunded=15000, refunded_qty={"A": 1})
    o = order("CAPTURED", 20000)
    for amount in (0, -5):
        with pytest.raises(AmountError, match="greater than 0"):
            plan_call(ra(amount), ctx(o, inv))
    assert plan_call(ra(5000), ctx(o, inv)).steps[0].body["refunded_amount"] == 5000  # type: ignore[index]
    with pytest.raises(AmountError, match="only 5000 is left"):
        plan_call(ra(5001), ctx(o, inv))
    with pytest.raises(AmountError, match="5001 including VAT"):
        plan_call(ra(4001, flags=0), ctx(o, inv))


# ---------------------------------------------------------------------------------------------
# update_orderno
# ---------------------------------------------------------------------------------------------


def test_update_orderno_patches_merchant_reference1_only_when_it_changes() -> None:
    inv = invoice([line("A", 1, 100)])
    call = UpdateOrderno(1234, V, "9000000001", orderid="ERP-42")
    plan = plan_call(call, ctx(order("CAPTURED", 100, merchant_reference1="OLD"), inv))
    [step] = plan.steps
    assert (step.http_method, step.path, step.body) == (
        "PATCH", f"{BASE}/merchant-references", {"merchant_reference1": "ERP-42"})
    assert "whole order" in plan.notes[0]
    assert reply_of(call, plan, "9000000001") == "9000000001"
    same = plan_call(call, ctx(order("CAPTURED", 100, merchant_reference1="ERP-42"), inv))
    assert same.steps == ()
    clear = plan_call(UpdateOrderno(1234, V, "9000000001", orderid=""),
                      ctx(order("CAPTURED", 100, merchant_reference1="OLD"), inv))
    assert clear.steps[0].body == {"merchant_reference1": ""}
    assert plan_call(UpdateOrderno(1234, V, "9000000001", orderid=""),
                     ctx(order("CAPTURED", 100), inv)).steps == ()


# ---------------------------------------------------------------------------------------------
# invoice_amount, invoice_part_amount
# ---------------------------------------------------------------------------------------------


def test_invoice_amount_is_captured_minus_refunded_on_that_invoice() -> None:
    inv = invoice([line("A", 2, 10000)], refunded=2500)
    call = InvoiceAmount(1234, V, "9000000001")
    plan = plan_call(call, ctx(order("CAPTURED", 20000), inv))
    assert plan.steps == () and plan.answer == 17500 and "v2" in plan.notes[0]
    value = reply_of(call, plan)
    assert value == 17500 and type(value) is int
    from gateway.tools.explain import format_plan

    text = format_plan("invoice_amount", plan)
    assert "no REST request" in text and "answer: 17500" in text


def test_invoice_part_amount_is_what_credit_part_would_refund() -> None:
    """The same split as credit_part (the last unit of a discounted line gets the rest);
    faults 9108 / 9107 as credit_part's."""
    discounted = line("A", 3, 1000, discount=100)
    inv = invoice([discounted, line("B", 1, 5000)], refunded=967, refunded_qty={"A": 1})
    c = ctx(order("CAPTURED", inv.captured_amount), inv)
    call = InvoicePartAmount(1234, V, "9000000001", artnos=(ArtNo("A", 2), ArtNo("B", 1)))
    plan = plan_call(call, c)
    expected = part_of_line(discounted, 1, 2)["total_amount"] + 5000
    assert plan.steps == () and plan.answer == expected == 1933 + 5000
    assert reply_of(call, plan) == expected
    with pytest.raises(UnknownArtnoError):
        plan_call(InvoicePartAmount(1234, V, "9000000001", artnos=(ArtNo("Z", 1),)), c)
    with pytest.raises(BadArtnoListError, match="3 requested, 2 remain"):
        plan_call(InvoicePartAmount(1234, V, "9000000001", artnos=(ArtNo("A", 3),)), c)
    with pytest.raises(BadArtnoListError, match="empty"):
        plan_call(InvoicePartAmount(1234, V, "9000000001"), c)


def test_invoice_part_amount_notes_when_credit_part_would_be_refused() -> None:
    inv = invoice([line("A", 1, 10000)], refunded=2500, refunded_qty={"return_amount": 1})
    plan = plan_call(InvoicePartAmount(1234, V, "9000000001", artnos=(ArtNo("A", 1),)),
                     ctx(order("CAPTURED", 10000), inv))
    assert plan.answer == 10000 and "2102" in plan.notes[-1]


# ---------------------------------------------------------------------------------------------
# invoice_address
# ---------------------------------------------------------------------------------------------

PERSON = {"given_name": "Åsa", "family_name": "Ölund", "street_address": "Storgatan 1",
          "street_address2": "c/o X", "postal_code": "111 22", "city": "Stockholm",
          "country": "SE", "email": "a@example.se"}


def ia(o: dict[str, Any], inv: Invoice) -> Any:
    call = InvoiceAddress(1234, V, "9000000001")
    return reply_of(call, plan_call(call, ctx(o, inv)))


def test_invoice_address_from_the_capture_else_the_order() -> None:
    """The capture's billing address wins; without it, the order's; 6 elements, int
    country; a company is ["", organization_name, ...]."""
    inv = invoice([line("A", 1, 100)])
    cap = {"capture_id": "cap-1", "captured_amount": 100, "billing_address": PERSON}
    other = {"capture_id": "cap-2", "billing_address": {**PERSON, "given_name": "Bo"}}
    o = order("CAPTURED", 100, captures=[other, cap],
              billing_address={**PERSON, "given_name": "Changed"})
    assert ia(o, inv) == ["Åsa", "Ölund", "Storgatan 1", "111 22", "Stockholm", 209]
    o2 = order("CAPTURED", 100, captures=[{"capture_id": "cap-1"}],
               billing_address={**PERSON, "country": "no"})
    assert ia(o2, inv) == ["Åsa", "Ölund", "Storgatan 1", "111 22", "Stockholm", 164]
    firm = {**PERSON, "organization_name": "Företaget AB", "country": "GB"}
    row = ia(order("CAPTURED", 100, captures=[{**cap, "billing_address": firm}]), inv)
    assert row == ["", "Företaget AB", "Storgatan 1", "111 22", "Stockholm", 229]
    assert len(row) == 6 and type(row[5]) is int


@pytest.mark.parametrize("o", [
    order("CAPTURED", 100, captures=[{"capture_id": "cap-1"}]),
    order("CAPTURED", 100, billing_address={}),
    order("CAPTURED", 100, billing_address={**PERSON, "country": "XX"}),
    order("CAPTURED", 100, billing_address={**PERSON, "country": None}),
])
def test_invoice_address_without_a_readable_address_is_8999(o: dict[str, Any]) -> None:
    with pytest.raises(InvoiceDataError) as info:
        ia(o, invoice([line("A", 1, 100)]))
    assert info.value.fault_code == FaultCode.MISC_INVOICE_ERROR == 8999
    assert info.value.fault_string.startswith("misc_invoice_error: invoice 9000000001")


def test_read_calls_are_declared_read_only() -> None:
    """Read calls are never replayed from an earlier identical call; mutations are."""
    read = {name for name, spec in REGISTRY.served.items() if spec.read_only}
    assert read == {"invoice_amount", "invoice_part_amount", "invoice_address"}
