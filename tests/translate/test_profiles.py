"""Every difference between the default and the v2-strict profile, one test each.

Each rule of ``gateway.calls.profiles.STRICT_RULES`` has a scenario here: under v2-strict
the call gets v2's fault; under the default profile the same call in the same state is
planned (REST's laxer answer). The table of docs/translation.md is the same list, row for
row.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.calls import REGISTRY, profiles
from gateway.calls.activate import Activate
from gateway.calls.cancel_reservation import CancelReservation
from gateway.calls.credit_invoice import CreditInvoice
from gateway.calls.credit_part import CreditPart
from gateway.calls.email_invoice import EmailInvoice
from gateway.calls.update import Update
from gateway.errors import FaultCode, GatewayError
from gateway.model import Invoice, KlarnaOrder, Reservation
from gateway.translate.expiry import parse_rest_timestamp
from gateway.translate.plan import OrderContext
from gateway.wire.values import ArtNo, LegacyCall

TRANSLATION = Path(__file__).resolve().parents[2] / "docs" / "translation.md"
V = "python:api:3.1.0"
RES = Reservation(id=1, eid=1234, rno="r", order_id="o-1", status="AUTHORIZED", origin="admin")
PLACED = "2026-06-01T10:00:00Z"
T0 = parse_rest_timestamp(PLACED).timestamp()


def line(ref: str, qty: int, unit: int) -> dict[str, Any]:
    total = qty * unit
    return {"type": "physical", "reference": ref, "name": ref, "quantity": qty,
            "unit_price": unit, "tax_rate": 2500, "total_amount": total,
            "total_discount_amount": 0, "total_tax_amount": total - round(total * 0.8)}


def order(status: str = "AUTHORIZED", captured: int = 0) -> dict[str, Any]:
    return {"order_id": "o-1", "status": status, "fraud_status": "ACCEPTED",
            "order_amount": 20000, "captured_amount": captured,
            "remaining_authorized_amount": 20000 - captured,
            "order_lines": [line("A", 2, 10000)], "captures": [], "refunds": [],
            "created_at": PLACED}


def invoice(refunded: int = 0) -> Invoice:
    return Invoice(id=7, eid=1234, invno="9000000000", reservation_id=1, order_id="o-1",
                   capture_id="cap-1", captured_amount=20000, refunded_amount=refunded,
                   lines=[line("A", 2, 10000)], refunded_qty={"A": refunded // 10000},
                   adopted=False)


Scenario = Callable[[], tuple[LegacyCall, OrderContext, FaultCode]]

SCENARIOS: dict[str, Scenario] = {
    "update-after-activation": lambda: (
        Update(1234, V, "r", orderid1="NEW"),
        OrderContext(reservation=RES, order=order("PART_CAPTURED", 10000), now=T0 + 7200),
        FaultCode.NOT_ALLOWED_OPERATION),
    "activation-delay": lambda: (
        Activate(1234, V, "r"),
        OrderContext(reservation=RES, order=order(), now=T0 + 600),
        FaultCode.NOT_ALLOWED_OPERATION),
    "cancel-cancelled": lambda: (
        CancelReservation(1234, V, "r"),
        OrderContext(reservation=RES, order=order("CANCELLED"), now=T0 + 7200),
        FaultCode.NOT_ALLOWED_OPERATION),
    "credit-unknown-artno": lambda: (
        CreditPart(1234, V, "9000000000", artnos=(ArtNo("ZZ", 1),)),
        OrderContext(reservation=RES, order=order("CAPTURED", 20000), invoice=invoice(),
                     now=T0 + 7200),
        FaultCode.BAD_ARTNOLIST),
    "fully-credited-invoice": lambda: (
        EmailInvoice(1234, V, "9000000000"),
        OrderContext(reservation=RES, order=order("CAPTURED", 20000),
                     invoice=invoice(refunded=20000), now=T0 + 7200),
        FaultCode.INVOICE_NOT_ACTIVE),
}


def test_every_rule_has_a_scenario_and_a_documented_row() -> None:
    assert set(SCENARIOS) == {r.id for r in profiles.STRICT_RULES}
    text = TRANSLATION.read_text(encoding="utf-8")
    for row in profiles.doc_rows():
        assert row in text, f"docs/translation.md's profile table lacks: {row}"


@pytest.mark.parametrize("rule_id", sorted(SCENARIOS))
def test_strict_refuses_with_v2_fault_default_plans(rule_id: str) -> None:
    call, ctx, fault = SCENARIOS[rule_id]()
    with pytest.raises(GatewayError) as info:
        profiles.check("v2-strict", call, ctx)
    assert info.value.fault_code == fault
    profiles.check("default", call, ctx)  # the default profile lets it through...
    try:  # ...to the REST-friendly plan (which may still refuse in its own words)
        REGISTRY.spec_for(call).plan(call, ctx)
    except GatewayError as e:
        assert e.fault_code != fault or rule_id == "cancel-cancelled", e


def test_strict_allows_what_v2_allowed() -> None:
    """The rules bite only in their state: before activation, after 30 minutes, on an
    invoice with money left, with known artnos."""
    ctx = OrderContext(reservation=RES, order=order(), now=T0 + 1801)
    profiles.check("v2-strict", Activate(1234, V, "r"), ctx)
    profiles.check("v2-strict", Update(1234, V, "r", orderid1="X"), ctx)
    profiles.check("v2-strict", CancelReservation(1234, V, "r"), ctx)
    captured = OrderContext(reservation=RES, order=order("CAPTURED", 20000),
                            invoice=invoice(10000), now=T0 + 7200)
    profiles.check("v2-strict", CreditPart(1234, V, "9", artnos=(ArtNo("A", 1),)), captured)
    profiles.check("v2-strict", CreditInvoice(1234, V, "9"), captured)


def test_the_activation_delay_reads_klarnas_clock_not_the_gateways() -> None:
    """Klarna's clock (the Date of the order's GET, carried by the order the REST client
    returns) decides; the gateway's clock only stands in when Klarna's time is unknown."""
    strict = "v2-strict"
    call = Activate(1234, V, "r")
    young = KlarnaOrder(order(), klarna_time=T0 + 600)
    with pytest.raises(GatewayError) as info:  # the gateway's clock says a day later
        profiles.check(strict, call, OrderContext(reservation=RES, order=young,
                                                  now=T0 + 86400))
    assert info.value.fault_code == FaultCode.NOT_ALLOWED_OPERATION
    assert "retry in 20 min" in info.value.fault_string
    old = KlarnaOrder(order(), klarna_time=T0 + 1801)  # the gateway's clock lags behind
    profiles.check(strict, call, OrderContext(reservation=RES, order=old, now=T0 - 3600))
    explicit = OrderContext(reservation=RES, order=order(), now=T0, klarna_now=T0 + 1801)
    profiles.check(strict, call, explicit)
    no_date = OrderContext(reservation=RES, order=KlarnaOrder(order()), now=T0 + 60)
    assert no_date.klarna_now == T0 + 60
    with pytest.raises(GatewayError):
        profiles.check(strict, call, no_date)

