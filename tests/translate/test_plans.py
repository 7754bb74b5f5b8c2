"""The per-call plans: pure functions from a decoded call + the order to REST requests.

These are what migration teams read; each test states the REST the legacy call becomes.
"""
from __future__ import annotations

import json
import xmlrpc.client
from decimal import Decimal
from typing import Any

import pytest

from gateway.calls import REGISTRY
from gateway.calls.activate import Activate
from gateway.calls.cancel_reservation import CancelReservation
from gateway.calls.credit_invoice import CreditInvoice
from gateway.calls.credit_part import CreditPart
from gateway.calls.email_invoice import EmailInvoice
from gateway.calls.extend_expiry_date import ExtendExpiryDate
from gateway.calls.send_invoice import SendInvoice
from gateway.calls.update import Update
from gateway.errors import AmountError, NotAllowedError
from gateway.model import CaptureEffect, Invoice, Reservation
from gateway.translate.plan import OrderContext, Plan, Result
from gateway.wire.values import Address, ArtNo, Goods, LegacyCall

RES = Reservation(id=1, eid=1234, rno="8000000000", order_id="o-1", status="AUTHORIZED",
                  origin="admin")
V = "python:api:3.1.0"


def plan_call(call: LegacyCall, c: OrderContext) -> Plan:
    """The plan the call's registered declaration makes."""
    return REGISTRY.spec_for(call).plan(call, c)


def reply_for(method: str, *, invno: str | None, order: dict[str, Any] | None,
              call: LegacyCall | None = None) -> Any:
    return REGISTRY.spec(method).reply(call, Result(invno=invno, order=order))


def line(ref: str, qty: int, unit: int) -> dict[str, Any]:
    total = qty * unit
    return {"type": "physical", "reference": ref, "name": ref, "quantity": qty,
            "unit_price": unit, "tax_rate": 2500, "total_amount": total,
            "total_discount_amount": 0, "total_tax_amount": total - round(total * 0.8)}


def order(status: str = "AUTHORIZED", captured: int = 0, **extra: Any) -> dict[str, Any]:
    lines = [line("A", 2, 10000), line("B", 3, 5000)]
    return {"order_id": "o-1", "status": status, "fraud_status": "ACCEPTED",
            "order_amount": 35000, "captured_amount": captured,
            "remaining_authorized_amount": 35000 - captured, "order_lines": lines,
            "captures": [], "refunds": [], **extra}


def ctx(o: dict[str, Any], invoice: Invoice | None = None) -> OrderContext:
    return OrderContext(reservation=RES, order=o, invoice=invoice)


def test_full_activate_captures_remaining_amount_with_lines() -> None:
    """activate without artnos → POST captures {captured_amount: remaining, order_lines}."""
    plan = plan_call(Activate(1234, V, "8000000000"), ctx(order()))
    [step] = plan.steps
    assert (step.http_method, step.path) == ("POST", "/ordermanagement/v1/orders/o-1/captures")
    assert step.body is not None and step.body["captured_amount"] == 35000
    assert sum(ln["total_amount"] for ln in step.body["order_lines"]) == 35000
    assert plan.allocate_invno and step.effect == CaptureEffect(
        reservation_id=1, order_id="o-1", status_after="CAPTURED")
    json.dumps(step.body)  # JSON-safe: ints only


def test_partial_activate_and_refusals() -> None:
    """artnos → exactly those quantities; states and fraud refuse with 9103."""
    plan = plan_call(Activate(1234, V, "r", artnos=(ArtNo("B", 2),)), ctx(order()))
    assert plan.steps[0].body["captured_amount"] == 10000  # type: ignore[index]
    for o, word in ((order("CANCELLED"), "cancelled"), (order("EXPIRED"), "expired"),
                    (order("CAPTURED", 35000), "fully activated"),
                    (order(fraud_status="PENDING"), "PENDING")):
        with pytest.raises(NotAllowedError, match=word):
            plan_call(Activate(1234, V, "r"), ctx(o))


def test_cancel_plans() -> None:
    """AUTHORIZED → cancel; PART_CAPTURED → release; CANCELLED → 'ok' with no request."""
    assert plan_call(CancelReservation(1234, V, "r"), ctx(order())).steps[0].path.endswith("/cancel")
    part = plan_call(CancelReservation(1234, V, "r"), ctx(order("PART_CAPTURED", 5000)))
    assert part.steps[0].path.endswith("/release-remaining-authorization")
    done = plan_call(CancelReservation(1234, V, "r"), ctx(order("CANCELLED")))
    assert done.steps == () and reply_for("cancel_reservation", invno=None, order=None) == "ok"


def test_update_sends_only_what_changes() -> None:
    """Goods → PATCH authorization; a dlv_addr → customer-details (shipping only);
    orderids → merchant-references; bill_addr copy of dlv_addr is no billing change."""
    addr = Address(fname="Åsa", lname="Öberg", street="Storgatan", house_number="3",
                   zip="12345", city="Malmö", country=209)
    call = Update(1234, V, "r", goods=(Goods("A", "Äpple", 12500, Decimal(25), Decimal(0), 32, 1),),
                  dlv_addr=addr, bill_addr=addr, orderid1="ERP-1")
    plan = plan_call(call, ctx(order(merchant_reference1="OLD")))
    paths = [s.path.rsplit("/", 1)[1] for s in plan.steps]
    assert paths == ["authorization", "customer-details", "merchant-references"]
    assert plan.steps[0].body == {"order_amount": 12500, "order_lines": plan.steps[0].body["order_lines"]}  # type: ignore[index]
    assert "billing_address" not in (plan.steps[1].body or {})
    assert plan.steps[2].body == {"merchant_reference1": "ERP-1"}
    same = plan_call(Update(1234, V, "r", orderid1="OLD"), ctx(order(merchant_reference1="OLD")))
    assert same.steps == () and "nothing changes" in same.notes[-1]
    with pytest.raises(AmountError):
        plan_call(Update(1234, V, "r", goods=call.goods), ctx(order("PART_CAPTURED", 20000)))


def invoice(captured_lines: list[dict[str, Any]], refunded: int = 0,
            refunded_qty: dict[str, int] | None = None) -> Invoice:
    return Invoice(id=7, eid=1234, invno="9000000000", reservation_id=1, order_id="o-1",
                   capture_id="cap-1",
                   captured_amount=sum(ln["total_amount"] for ln in captured_lines),
                   refunded_amount=refunded, lines=captured_lines,
                   refunded_qty=refunded_qty or {}, adopted=False)


def test_credit_plans_are_bounded_by_the_invoice() -> None:
    """credit_part refunds that invoice's lines; credit_invoice the rest; credno = reference."""
    inv = invoice([line("A", 2, 10000)])
    o = order("PART_CAPTURED", 20000)
    part = plan_call(CreditPart(1234, V, "9000000000", artnos=(ArtNo("A", 1),), credno="C1"),
                     ctx(o, inv))
    assert part.steps[0].body == {"refunded_amount": 10000, "reference": "C1",  # type: ignore[index]
                                  "order_lines": part.steps[0].body["order_lines"]}  # type: ignore[index]
    rest = plan_call(CreditInvoice(1234, V, "9000000000"),
                     ctx(o, invoice([line("A", 2, 10000)], 10000, {"A": 1})))
    assert rest.steps[0].body["refunded_amount"] == 10000  # type: ignore[index]
    with pytest.raises(AmountError):
        plan_call(CreditInvoice(1234, V, "9000000000"),
                  ctx(o, invoice([line("A", 2, 10000)], 20000, {"A": 2})))


def test_extend_and_sendout_plans_and_replies_are_xmlrpc_safe() -> None:
    """extend → POST extend-authorization-time; send_invoice notes the postal difference;
    every reply shape marshals as XML-RPC."""
    assert plan_call(ExtendExpiryDate(1234, V, "r"), ctx(order())).steps[0].path.endswith(
        "/extend-authorization-time")
    inv = invoice([line("A", 1, 100)])
    assert plan_call(EmailInvoice(1234, V, "9000000000"), ctx(order(), inv)).steps[0].path.endswith(
        "/captures/cap-1/trigger-send-out")
    assert "postal" in plan_call(SendInvoice(1234, V, "9000000000"), ctx(order(), inv)).notes[0]
    for method, kw in (("activate", {"invno": "9000000000", "order": None}),
                       ("cancel_reservation", {"invno": None, "order": None}),
                       ("credit_part", {"invno": "9000000000", "order": None}),
                       ("extend_expiry_date",
                        {"invno": None, "order": {"expires_at": "2026-07-01T10:00:00Z"}})):
        xmlrpc.client.dumps((reply_for(method, **kw),), methodresponse=True)
    assert reply_for("extend_expiry_date", invno=None,
                     order={"expires_at": "2026-07-01T10:00:00Z"}) == "20260701T120000"
