"""The admin HTTP API of a running gateway (real listener, real store, real sandbox)."""
from __future__ import annotations

import pytest_twisted
import treq

from tests.harness import ADMIN, Harness


@pytest_twisted.ensureDeferred
async def test_register_and_show_reservations(gw: Harness) -> None:
    """POST /v1/reservations checks the order exists for that merchant; conflicts are 409;
    GET shows the mapping with invoices and credits; /healthz needs no token."""
    order_id = await gw.create_unregistered_order()
    url = gw.admin + "/v1/reservations"
    resp = await treq.post(url, json={"eid": 1234, "order_id": order_id, "rno": "2400000001"},
                           headers=ADMIN)
    assert resp.code == 201
    assert await resp.json() == {"eid": 1234, "rno": "2400000001", "order_id": order_id}
    resp = await treq.post(url, json={"eid": 1234, "order_id": "nope"}, headers=ADMIN)
    assert resp.code == 422
    await resp.content()
    other = await gw.create_unregistered_order(eid=5678)
    resp = await treq.post(url, json={"eid": 1234, "order_id": other}, headers=ADMIN)
    assert resp.code == 422  # another merchant's order does not exist for 1234
    await resp.content()
    second = await gw.create_unregistered_order()
    resp = await treq.post(url, json={"eid": 1234, "order_id": second, "rno": "2400000001"},
                           headers=ADMIN)
    assert resp.code == 409
    await resp.content()
    _, invno = await gw.call(gw.sdk().activate, "2400000001")
    shown = await gw.mapping(1234, "2400000001")
    assert shown["invoices"][0]["invno"] == invno and shown["status"] == "CAPTURED"
    resp = await treq.get(gw.admin + "/v1/journal/1234", headers=ADMIN)
    journal = await resp.json()
    [call] = [c for c in journal["calls"] if c["method"] == "activate"]
    assert call["rest_steps"][0]["path"].endswith("/captures") and call["state"] == "done"
    resp = await treq.get(gw.admin + "/healthz")
    assert resp.code == 200 and (await resp.json()) == {"status": "ok"}


@pytest_twisted.ensureDeferred
async def test_admin_needs_the_bearer_token(gw: Harness) -> None:
    """Without or with a wrong token: 401, nothing registered."""
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        resp = await treq.post(gw.admin + "/v1/reservations",
                               json={"eid": 1234, "order_id": "x"}, headers=headers)
        assert resp.code == 401
        await resp.content()
    resp = await treq.get(gw.admin + "/v1/nothing", headers=ADMIN)
    assert resp.code == 404
    await resp.content()


@pytest_twisted.ensureDeferred
async def test_sandbox_order_route_validates(gw: Harness) -> None:
    """POST /v1/sandbox/orders names missing fields; pending- tokens give PENDING orders."""
    resp = await treq.post(gw.admin + "/v1/sandbox/orders", json={"eid": 1234}, headers=ADMIN)
    assert resp.code == 400 and "purchase_country" in (await resp.json())["error"]
    created = await gw.create_order(token="pending-1")
    assert created["fraud_status"] == "PENDING"


@pytest_twisted.ensureDeferred
async def test_a_merchant_out_of_request_slots_is_a_clear_503(gw: Harness) -> None:
    """Registering an order, or creating a sandbox order, while the merchant may not send
    (Klarna asked it to wait 60 s): 503 naming the rate limit, nothing sent, never a 500."""
    assert gw.gateway.parts is not None
    await gw.gateway.parts.limiter.pause(1234, 60.0)
    order_id = await gw.create_unregistered_order()
    resp = await treq.post(gw.admin + "/v1/reservations", json={"eid": 1234,
                                                                "order_id": order_id},
                           headers=ADMIN)
    body = await resp.json()
    assert resp.code == 503 and "rest_rate_limit" in body["error"], body
    assert [r for r in await gw.requests(order_id) if r["method"] == "GET"] == []
    resp = await treq.post(gw.admin + "/v1/sandbox/orders", json={
        "eid": 1234, "purchase_country": "SE", "purchase_currency": "SEK", "locale": "sv-SE",
        "order_amount": 100, "order_tax_amount": 0, "order_lines": [
            {"type": "physical", "reference": "A", "name": "A", "quantity": 1,
             "unit_price": 100, "tax_rate": 0, "total_amount": 100,
             "total_discount_amount": 0, "total_tax_amount": 0}]}, headers=ADMIN)
    body = await resp.json()
    assert resp.code == 503 and "rest_rate_limit" in body["error"], body
