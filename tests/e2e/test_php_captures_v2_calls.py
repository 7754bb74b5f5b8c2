"""The PHP 2.4.0 wire captures of the seven older v2 calls, replayed byte for byte as raw
HTTP/1.0 requests (what P2 sends over plain http) through the real gateway and sandbox.

The captures name reservation 8000000001 and invoice 9000000001, and their digests (secret
``sandbox-secret``) cover those numbers, so the numbers cannot be changed; the test makes
them exist instead, each in the way an operator migrating a merchant would:

- the reservation: an order created in the sandbox (Klarna Payments) and registered through
  the admin API under the merchant-chosen rno ``8000000001`` (``POST /v1/reservations``);
- the invoice: invoice numbers are issued from ``[gateway] invno_start``, the setting that
  exists so the gateway's numbers continue an ERP's own; this gateway runs with
  ``invno_start = 9000000001`` (a fresh database per test), so the capture the replayed
  ``activate_reservation`` makes is invoice 9000000001, without activating twice.
"""
from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest_twisted
import treq

from gateway.config import load_config
from tests.e2e.sdk import mutations
from tests.e2e.test_php_wire import php
from tests.harness import ADMIN, REST_AUTH, SANDBOX_CONFIG, Harness, order_line, start_gateway

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures" / "php-2.4.0"
RNO, INVNO = "8000000001", "9000000001"
ADDRESS = {"given_name": "Åsa", "family_name": "Ölund", "street_address": "Storgatan 1",
           "postal_code": "11122", "city": "Stockholm", "country": "SE",
           "email": "asa@example.com", "phone": "0701234567"}


@pytest_twisted.async_yield_fixture
async def gw_9000000001(tmp_path: Any) -> AsyncIterator[Harness]:
    """A gateway whose first invoice number is 9000000001."""
    config = load_config(SANDBOX_CONFIG)
    config = replace(config, gateway=replace(config.gateway, invno_start=int(INVNO)))
    h = await start_gateway(f"sqlite:///{tmp_path}/gateway.db", config)
    try:
        yield h
    finally:
        await h.gateway.stop()
    assert not h.violations, "\n".join(h.violations)


async def reservation_8000000001(gw: Harness) -> str:
    """An order with line A1 (the captures' artno), registered as rno 8000000001."""
    lines = [order_line("A1", "Widget", 2, 10000), order_line("B1", "Gadget", 1, 5000)]
    body = {"purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
            "order_amount": 25000, "order_tax_amount": sum(ln["total_tax_amount"]
                                                           for ln in lines),
            "order_lines": lines, "billing_address": ADDRESS, "shipping_address": ADDRESS}
    resp = await treq.post(
        f"{gw.sandbox}/payments/v1/authorizations/auth-{uuid.uuid4()}/order", json=body,
        auth=REST_AUTH[1234])
    created = await resp.json()
    assert resp.code == 200, created
    resp = await treq.post(f"{gw.admin}/v1/reservations", headers=ADMIN,
                           json={"eid": 1234, "order_id": created["order_id"], "rno": RNO})
    registered = await resp.json()
    assert resp.code == 201 and registered["rno"] == RNO, registered
    return str(created["order_id"])


async def replay(gw: Harness, name: str) -> Any:
    return await php(gw, (CAPTURES / name).read_bytes())


@pytest_twisted.ensureDeferred
async def test_php_240_captures_of_the_v2_calls(gw_9000000001: Harness) -> None:
    gw = gw_9000000001
    order_id = await reservation_8000000001(gw)

    # change_reservation NEW_AMOUNT 15000: a discount line brings the order to 15000.
    assert await replay(gw, "18-change_reservation.xml") == "ok"
    order = await gw.order(order_id)
    assert order["order_amount"] == 15000
    assert order["order_lines"][-1]["reference"] == "change_reservation"

    # activate_reservation of A1 × 1 (flags 0): capture 10000, the rest (5000) released.
    assert await replay(gw, "19-activate_reservation.xml") == ["ok", INVNO]
    order = await gw.order(order_id)
    assert order["status"] == "CAPTURED" and order["captured_amount"] == 10000
    [capture] = order["captures"]
    assert [(ln["reference"], ln["quantity"]) for ln in capture["order_lines"]] == [("A1", 1)]

    # The reads: ints and exactly six address elements with an int country.
    amount = await replay(gw, "11-invoice_amount.xml")
    assert amount == 10000 and type(amount) is int
    part = await replay(gw, "12-invoice_part_amount.xml")
    assert part == 10000 and type(part) is int
    address = await replay(gw, "13-invoice_address.xml")
    assert address == ["Åsa", "Ölund", "Storgatan 1", "11122", "Stockholm", 209]

    # update_orderno → merchant_reference1; return_amount 2500 incl. 25 % VAT "goodwill".
    assert await replay(gw, "14-update_orderno.xml") == INVNO
    assert (await gw.order(order_id))["merchant_reference1"] == "ERP-42"
    assert await replay(gw, "15-return_amount.xml") == INVNO
    order = await gw.order(order_id)
    [refund] = order["refunds"]
    assert refund["refunded_amount"] == 2500 and refund["description"] == "goodwill"
    assert refund["order_lines"][0]["name"] == "goodwill"

    # The same invoice_amount body again answers the amount after the return (a read is
    # never replayed from the first call).
    assert await replay(gw, "11-invoice_amount.xml") == 7500
    ops = await gw.operations(order_id)
    assert [len(mutations(ops, suffix)) for suffix in (
        "/authorization", "/captures", "/release-remaining-authorization",
        "/merchant-references", "/refunds")] == [1, 1, 1, 1, 1]


@pytest_twisted.ensureDeferred
async def test_php_240_captures_for_numbers_the_gateway_does_not_know(gw: Harness) -> None:
    """Without the reservation and the invoice, the same captures (valid digests) answer
    9109 and 8101, as PHP reads faults: an int faultCode and `symbol: message`."""
    import xmlrpc.client

    expected = {"18-change_reservation.xml": 9109, "19-activate_reservation.xml": 9109,
                "11-invoice_amount.xml": 8101, "12-invoice_part_amount.xml": 8101,
                "13-invoice_address.xml": 8101, "14-update_orderno.xml": 8101,
                "15-return_amount.xml": 8101}
    for name, code in expected.items():
        try:
            await replay(gw, name)
        except xmlrpc.client.Fault as f:
            assert f.faultCode == code, (name, f.faultString)
            assert f.faultString.startswith(("rno: ", "unknown_invoice: "))
        else:
            raise AssertionError(f"{name}: expected fault {code}")
