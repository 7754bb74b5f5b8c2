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
