"""The control API: bearer auth, clock, reset, operations log and fraud resolution."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest_twisted

from gateway.sandbox.clock import parse_timestamp

OM = "/ordermanagement/v1/orders/"


@pytest_twisted.ensureDeferred
async def test_control_requires_the_admin_token(sandbox):
    """Missing, wrong or Basic credentials on /sandbox/v1 are 401."""
    for path in ("/sandbox/v1/clock", "/sandbox/v1/faults", "/sandbox/v1/reset"):
        assert (await sandbox.control("GET", path, token="wrong")).status == 401
        reply = await sandbox.request("GET", path, merchant=None)
        assert reply.status == 401 and reply.json()["error_code"] == "UNAUTHORIZED"
        assert (await sandbox.request("GET", path, merchant=1234)).status == 401


@pytest_twisted.ensureDeferred
async def test_clock_get_advance_and_set(sandbox):
    """GET returns now (ISO Z); POST advance_seconds / now move it; the resource sees it."""
    reply = await sandbox.control("GET", "/sandbox/v1/clock")
    assert reply.status == 200
    before = parse_timestamp(reply.json()["now"])
    assert reply.json()["now"].endswith("Z")
    reply = await sandbox.control("POST", "/sandbox/v1/clock", {"advance_seconds": 3600})
    after = parse_timestamp(reply.json()["now"])
    assert timedelta(seconds=3599) <= after - before <= timedelta(seconds=3605)
    reply = await sandbox.control("POST", "/sandbox/v1/clock", {"now": "2030-01-02T03:04:05Z"})
    assert reply.status == 200
    assert parse_timestamp(reply.json()["now"]) - datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC) < (
        timedelta(seconds=2))
    order_id = await sandbox.create_order()
    created = (await sandbox.get_order(order_id))["created_at"]
    assert created.startswith("2030-01-02T03:04:")


@pytest_twisted.ensureDeferred
async def test_clock_freeze_and_bad_input(sandbox):
    """``frozen`` stops the clock; malformed clock requests are 400."""
    reply = await sandbox.control("POST", "/sandbox/v1/clock",
                                  {"now": "2031-05-05T00:00:00+02:00", "frozen": True})
    assert reply.json() == {"now": "2031-05-04T22:00:00Z", "frozen": True}
    assert sandbox.clock.now() == datetime(2031, 5, 4, 22, tzinfo=UTC)
    for body in ({}, {"now": "yesterday"}, {"advance_seconds": "1"}, {"frozen": "yes"}):
        assert (await sandbox.control("POST", "/sandbox/v1/clock", body)).status == 400
    reply = await sandbox.control("POST", "/sandbox/v1/clock", {"frozen": False})
    assert reply.json()["frozen"] is False


@pytest_twisted.ensureDeferred
async def test_reset_forgets_orders_keys_and_faults(sandbox):
    """POST /sandbox/v1/reset: 204, orders, idempotency records and faults are gone."""
    order_id = await sandbox.create_order()
    await sandbox.request("POST", f"{OM}{order_id}/captures", json_body={"captured_amount": 1},
                          idempotency_key="k")
    await sandbox.add_fault(path="nothing-matches-this", action="fail")
    assert (await sandbox.control("POST", "/sandbox/v1/reset")).status == 204
    assert (await sandbox.request("GET", f"{OM}{order_id}")).status == 404
    assert (await sandbox.control("GET", "/sandbox/v1/faults")).json() == []
    assert len(sandbox.resource.idempotency) == 0


@pytest_twisted.ensureDeferred
async def test_operations_log_lists_applied_mutations_only(sandbox):
    """Refusals and reads are not operations; applied mutations are, with key and time."""
    sandbox.clock.freeze()
    order_id = await sandbox.create_order(token="tok-ops")
    await sandbox.request("POST", f"{OM}{order_id}/captures", json_body={"captured_amount": 99999})
    await sandbox.request("POST", f"{OM}{order_id}/captures", json_body={"captured_amount": 100},
                          idempotency_key="c1")
    await sandbox.request("GET", f"{OM}{order_id}")
    await sandbox.request("PATCH", f"{OM}{order_id}/merchant-references",
                          json_body={"merchant_reference1": "m"})
    reply = await sandbox.control("GET", f"/sandbox/v1/orders/{order_id}/operations")
    now = sandbox.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    assert reply.json() == [
        {"method": "POST", "path": "/payments/v1/authorizations/tok-ops/order",
         "idempotency_key": None, "status": 200, "at": now},
        {"method": "POST", "path": f"{OM}{order_id}/captures", "idempotency_key": "c1",
         "status": 201, "at": now},
        {"method": "PATCH", "path": f"{OM}{order_id}/merchant-references",
         "idempotency_key": None, "status": 204, "at": now},
    ]
    missing = await sandbox.control("GET", "/sandbox/v1/orders/nope/operations")
    assert missing.status == 404


@pytest_twisted.ensureDeferred
async def test_fraud_status_endpoint_validates(sandbox):
    """Only ACCEPTED/PENDING/REJECTED/STOPPED are accepted; unknown orders are 404."""
    order_id = await sandbox.create_order()
    reply = await sandbox.control("POST", f"/sandbox/v1/orders/{order_id}/fraud_status",
                                  {"fraud_status": "MAYBE"})
    assert reply.status == 400
    reply = await sandbox.control("POST", "/sandbox/v1/orders/nope/fraud_status",
                                  {"fraud_status": "ACCEPTED"})
    assert reply.status == 404
    reply = await sandbox.control("POST", f"/sandbox/v1/orders/{order_id}/fraud_status",
                                  {"fraud_status": "PENDING"})
    assert reply.json() == {"order_id": order_id, "fraud_status": "PENDING"}


@pytest_twisted.ensureDeferred
async def test_unknown_control_endpoint(sandbox):
    """Unknown control paths are 404, wrong methods 405."""
    assert (await sandbox.control("GET", "/sandbox/v1/nothing")).status == 404
    assert (await sandbox.control("PUT", "/sandbox/v1/faults")).status == 405
    assert (await sandbox.control("GET", "/sandbox/v1/reset")).status == 405
