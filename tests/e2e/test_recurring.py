"""KCO v2 recurring orders with the official ``klarnacheckout`` 3.0.1 client, unmodified.

The client posts to ``{base}/checkout/recurring/{token}/orders`` with KCO v2's body digest;
the gateway creates the order with the Customer Token API (sandbox), captures it when
``activate`` is true, registers the reservation (and invoice), and the legacy calls then
work on those numbers.
"""
from __future__ import annotations

import json
from typing import Any

import klarnacheckout
import pytest_twisted
import treq
from twisted.internet import threads

from tests.e2e.sdk import mutations
from tests.harness import ADMIN, Harness

SECRET = "sandbox-secret"


def v2_order(activate: bool, orderid1: str = "SUB-1001") -> dict[str, Any]:
    """The official example's body (kco_python docs/examples/create_recurring.py)."""
    return {
        "purchase_country": "se", "purchase_currency": "sek", "locale": "sv-se",
        "merchant": {"id": "1234"}, "activate": activate,
        "merchant_reference": {"orderid1": orderid1},
        "billing_address": {"given_name": "Testperson-se", "family_name": "Approved",
                            "street_address": "Stårgatan 1", "postal_code": "12345",
                            "city": "Ankeborg", "country": "se",
                            "email": "checkout-se@testdrive.klarna.com",
                            "phone": "070 111 11 11"},
        "cart": {"items": [
            {"reference": "123456789", "name": "Klarna t-shirt", "quantity": 2,
             "unit_price": 12300, "discount_rate": 1000, "tax_rate": 2500},
            {"type": "shipping_fee", "reference": "SHIPPING", "name": "Shipping Fee",
             "quantity": 1, "unit_price": 4900, "tax_rate": 2500}]},
    }


async def make_token(gw: Harness, token_id: str, status: str = "ACTIVE",
                     eid: int = 1234) -> None:
    resp = await treq.post(f"{gw.sandbox}/sandbox/v1/tokens", headers=ADMIN, json={
        "eid": eid, "token_id": token_id, "status": status, "purchase_country": "SE",
        "purchase_currency": "SEK", "locale": "sv-SE"})
    assert resp.code == 201, await resp.text()
    await resp.content()


def create(base: str, token: str, data: dict[str, Any]) -> dict[str, Any]:
    connector = klarnacheckout.create_connector(SECRET, base.rstrip("/"))
    order = klarnacheckout.RecurringOrder(connector, token)
    order.create(data)
    return dict(order.marshal())


def create_error(base: str, token: str, data: dict[str, Any],
                 secret: str = SECRET) -> klarnacheckout.HTTPResponseException:
    connector = klarnacheckout.create_connector(secret, base.rstrip("/"))
    try:
        klarnacheckout.RecurringOrder(connector, token).create(data)
    except klarnacheckout.HTTPResponseException as e:
        return e
    raise AssertionError("expected an HTTP error")


def fetch(base: str, token: str) -> dict[str, Any]:
    connector = klarnacheckout.create_connector(SECRET, base.rstrip("/"))
    status = klarnacheckout.RecurringStatus(connector, token)
    status.fetch()
    return dict(status.marshal())


@pytest_twisted.ensureDeferred
async def test_activated_recurring_order_then_legacy_calls(gw: Harness) -> None:
    """activate=true: 200 with reservation and invoice (strings); one order, captured once
    with the v2 cart's exact totals; credit_part works on the invoice afterwards."""
    await make_token(gw, "ct-activated")
    answer = await threads.deferToThread(create, gw.url, "ct-activated", v2_order(True))
    rno, invno = answer["reservation"], answer["invoice"]
    assert isinstance(rno, str) and isinstance(invno, str)
    mapping = await gw.mapping(1234, rno)
    order = await gw.order(mapping["order_id"])
    assert order["order_amount"] == 2 * 12300 - 2460 + 4900 == 27040
    assert order["captured_amount"] == 27040 and order["merchant_reference1"] == "SUB-1001"
    assert [i["invno"] for i in mapping["invoices"]] == [invno]
    k = gw.sdk()
    k.add_art_no(qty=1, artno="SHIPPING")
    assert await gw.call(k.credit_part, invno) == invno


@pytest_twisted.ensureDeferred
async def test_reservation_only_then_activated_with_the_legacy_sdk(gw: Harness) -> None:
    """activate=false: a reservation the legacy SDK activates later; a second identical
    request (its answer delivered) is a second purchase, as in v2."""
    await make_token(gw, "ct-reserve")
    first = await threads.deferToThread(create, gw.url, "ct-reserve", v2_order(False))
    assert set(first) == {"reservation"}
    risk, invno = await gw.call(gw.sdk().activate, first["reservation"])
    assert risk == "ok" and invno
    second = await threads.deferToThread(create, gw.url, "ct-reserve", v2_order(False))
    assert second["reservation"] != first["reservation"]


@pytest_twisted.ensureDeferred
async def test_token_mapping_status_and_refusals(gw: Harness) -> None:
    """A v2 token mapped to a customer token; the status GET; an unknown token 404; a wrong
    secret 401; a cancelled token 402 with Klarna's reason; a bad cart 400, all JSON."""
    await make_token(gw, "ct-mapped")
    resp = await treq.post(f"{gw.admin}/v1/recurring-tokens", headers=ADMIN, json={
        "eid": 1234, "recurring_token": "V2-TOKEN-77", "customer_token": "ct-mapped"})
    assert resp.code == 201, await resp.text()
    await resp.content()
    answer = await threads.deferToThread(create, gw.url, "V2-TOKEN-77", v2_order(False))
    assert (await gw.mapping(1234, answer["reservation"]))["origin"] == "recurring"
    status = await threads.deferToThread(fetch, gw.url, "V2-TOKEN-77")
    assert status["payment_method"]["type"] == "invoice"
    e = await threads.deferToThread(create_error, gw.url, "no-such-token", v2_order(False))
    assert e.code == 404 and "internal_message" in e.json
    e = await threads.deferToThread(create_error, gw.url, "ct-mapped", v2_order(False), "bad")
    assert e.code == 401
    await make_token(gw, "ct-cancelled", status="CANCELLED")
    e = await threads.deferToThread(create_error, gw.url, "ct-cancelled", v2_order(False))
    assert e.code == 402 and e.json["reason"] == "TOKEN_CANCELLED"
    bad = v2_order(False)
    bad["cart"]["items"][0]["quantity"] = "two"
    e = await threads.deferToThread(create_error, gw.url, "ct-mapped", bad)
    assert e.code == 400 and "cart.items[0].quantity" in e.json["internal_message"]


@pytest_twisted.ensureDeferred
async def test_a_lost_answer_is_replayed_to_the_identical_retry(gw: Harness) -> None:
    """Klarna creates the order but its answer is lost: the client gets 503 (outcome
    unknown). Its identical retry gets that order, created once."""
    await make_token(gw, "ct-retry")
    await gw.fault(method="POST", path="/customer-token/v1/tokens/ct-retry/order$",
                   action="apply_then_fail", status=503, times=1000)
    e = await threads.deferToThread(create_error, gw.url, "ct-retry", v2_order(True))
    assert e.code == 503
    await gw.clear_faults()
    answer = await threads.deferToThread(create, gw.url, "ct-retry", v2_order(True))
    mapping = await gw.mapping(1234, answer["reservation"])
    assert len(mapping["invoices"]) == 1
    ops = await gw.operations(mapping["order_id"])
    assert len(mutations(ops, "/captures")) == 1
    assert json.dumps(answer, ensure_ascii=True)  # plain JSON strings, as the clients need


@pytest_twisted.ensureDeferred
async def test_a_503_after_the_order_was_created_is_replayed_to_the_retry_at_once(
        gw: Harness) -> None:
    """The order is created but its activation does not finish (Klarna answers 503 to the
    capture for the whole budget): the client gets 503, and the created reservation's reply
    is recorded undelivered. The identical retry is given that reservation at once (not
    after the delivery grace) and continues the activation: one order, one capture."""
    import time

    await make_token(gw, "ct-503")
    engine = gw.gateway.engine
    assert engine is not None
    engine.budget = 1.5  # the activation gives up well inside the creation's delivery grace
    await gw.fault(method="POST", path="/captures$", action="fail", status=503, times=1000)
    e = await threads.deferToThread(create_error, gw.url, "ct-503", v2_order(True))
    assert e.code == 503 and "created" in e.json["internal_message"]
    await gw.clear_faults()
    started = time.monotonic()
    answer = await threads.deferToThread(create, gw.url, "ct-503", v2_order(True))
    assert time.monotonic() - started < 1.5  # before: waited out the 5 s delivery grace
    mapping = await gw.mapping(1234, answer["reservation"])
    assert [i["invno"] for i in mapping["invoices"]] == [answer["invoice"]]
    assert len(mutations(await gw.operations(mapping["order_id"]), "/captures")) == 1
    resp = await treq.get(f"{gw.admin}/v1/journal?eid=1234&method=recurring_order",
                          headers=ADMIN)
    assert len((await resp.json())["entries"]) == 1  # one purchase, its reply replayed
