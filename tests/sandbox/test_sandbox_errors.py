"""Authentication, merchant isolation, 404/405/413 and the documented error-code table."""
from __future__ import annotations

import pytest_twisted

from tests.sandbox_fixtures import basic_auth, order_body

OM = "/ordermanagement/v1/orders/"


def error_of(reply):
    body = reply.json()
    assert isinstance(body["correlation_id"], str) and body["correlation_id"]
    return reply.status, body["error_code"]


@pytest_twisted.ensureDeferred
async def test_missing_or_wrong_credentials_are_401(sandbox):
    """No Authorization, a wrong password, an unknown user or a Bearer token: 401."""
    order_id = await sandbox.create_order()
    path = f"{OM}{order_id}"
    for authorization in (None, basic_auth("PK1234_sandbox", "wrong"),
                          basic_auth("nobody", "sandbox-password"),
                          basic_auth("PK1234_sandbox", "sandbox-password-2"),
                          f"Bearer {sandbox.admin_token}"):
        reply = await sandbox.request("GET", path, merchant=None, authorization=authorization)
        assert error_of(reply) == (401, "UNAUTHORIZED")
        assert reply.headers["www-authenticate"].startswith("Basic")
    reply = await sandbox.request("POST", "/payments/v1/authorizations/t/order",
                                  json_body=order_body(), merchant=None)
    assert reply.status == 401


@pytest_twisted.ensureDeferred
async def test_merchants_are_isolated(sandbox):
    """Merchant 5678 gets 404 for every operation on an order of merchant 1234, and vice versa."""
    mine = await sandbox.create_order(merchant=1234)
    theirs = await sandbox.create_order(merchant=5678)
    assert (await sandbox.get_order(theirs, merchant=5678))["order_id"] == theirs
    cases = [
        ("GET", "", None, "NO_SUCH_ORDER"),
        ("GET", "/captures", None, "NO_SUCH_ORDER"),
        ("POST", "/captures", {"captured_amount": 1}, "NO_SUCH_ORDER"),
        ("POST", "/refunds", {"refunded_amount": 1}, "NOT_FOUND"),
        ("POST", "/cancel", None, "NO_SUCH_ORDER"),
        ("PATCH", "/merchant-references", {"merchant_reference1": "x"}, "NO_SUCH_ORDER"),
        ("POST", "/acknowledge", None, "NO_SUCH_ORDER"),
    ]
    for method, suffix, body, code in cases:
        reply = await sandbox.request(method, f"{OM}{mine}{suffix}", json_body=body,
                                      merchant=5678)
        assert error_of(reply) == (404, code), (method, suffix)
        reply = await sandbox.request(method, f"{OM}{theirs}{suffix}", json_body=body,
                                      merchant=1234)
        assert error_of(reply) == (404, code), (method, suffix)
    order = await sandbox.get_order(mine)
    assert order["status"] == "AUTHORIZED" and order["merchant_reference1"] == "ON-1"


@pytest_twisted.ensureDeferred
async def test_unknown_order_capture_and_refund_ids(sandbox):
    """404 NO_SUCH_ORDER / NO_SUCH_CAPTURE / NOT_FOUND for unknown ids."""
    order_id = await sandbox.create_order()
    assert error_of(await sandbox.request("GET", f"{OM}missing")) == (404, "NO_SUCH_ORDER")
    assert error_of(await sandbox.request("GET", f"{OM}{order_id}/captures/nope")) == (
        404, "NO_SUCH_CAPTURE")
    assert error_of(await sandbox.request("GET", f"{OM}{order_id}/refunds/nope")) == (
        404, "NOT_FOUND")
    assert error_of(await sandbox.request("GET", f"{OM}missing/refunds/nope")) == (
        404, "NOT_FOUND")
    reply = await sandbox.request("GET", f"{OM}{order_id}/captures/nope/extend-due-date-options")
    assert error_of(reply) == (404, "NO_SUCH_CAPTURE")


@pytest_twisted.ensureDeferred
async def test_unknown_paths_and_methods(sandbox):
    """Unknown path: 404 NOT_FOUND; known path, wrong method: 405 with Allow."""
    order_id = await sandbox.create_order()
    assert error_of(await sandbox.request("GET", "/ordermanagement/v2/orders")) == (
        404, "NOT_FOUND")
    reply = await sandbox.request("DELETE", f"{OM}{order_id}")
    assert error_of(reply) == (405, "METHOD_NOT_ALLOWED") and reply.headers["allow"] == "GET"
    reply = await sandbox.request("GET", f"{OM}{order_id}/cancel")
    assert error_of(reply) == (405, "METHOD_NOT_ALLOWED")


@pytest_twisted.ensureDeferred
async def test_legacy_capture_customer_details_is_404(sandbox):
    """The retired PATCH captures/{id}/customer-details answers 404 NOT_FOUND."""
    order_id = await sandbox.create_order()
    capture = await sandbox.request("POST", f"{OM}{order_id}/captures",
                                    json_body={"captured_amount": 100})
    reply = await sandbox.request(
        "PATCH", f"{OM}{order_id}/captures/{capture.headers['capture-id']}/customer-details",
        json_body={"billing_address": {"city": "Lund"}})
    assert error_of(reply) == (404, "NOT_FOUND")


@pytest_twisted.ensureDeferred
async def test_body_over_one_megabyte_is_413(sandbox):
    """A body above 1 MB is refused with 413 REQUEST_TOO_LARGE and nothing is applied."""
    order_id = await sandbox.create_order()
    big = b'{"captured_amount": 100, "description": "' + b"x" * (1024 * 1024) + b'"}'
    reply = await sandbox.request("POST", f"{OM}{order_id}/captures", data=big,
                                  idempotency_key="big-1")
    assert error_of(reply) == (413, "REQUEST_TOO_LARGE")
    assert reply.json()["error_messages"] == ["Request is too large"]
    assert (await sandbox.get_order(order_id))["captured_amount"] == 0
    # 413 is an edge refusal, not stored: the same key with a sane body is processed.
    reply = await sandbox.request("POST", f"{OM}{order_id}/captures",
                                  json_body={"captured_amount": 100}, idempotency_key="big-1")
    assert reply.status == 201


@pytest_twisted.ensureDeferred
async def test_exactly_one_megabyte_is_accepted(sandbox):
    """The limit is inclusive: a 1 MB body is processed (here refused by validation, 422)."""
    order_id = await sandbox.create_order()
    head, tail = b'{"captured_amount": 100, "description": "', b'"}'
    body = head + b"x" * (1024 * 1024 - len(head) - len(tail)) + tail
    assert len(body) == 1024 * 1024
    reply = await sandbox.request("POST", f"{OM}{order_id}/captures", data=body)
    assert error_of(reply) == (422, "UNPROCESSABLE_ENTITY")


@pytest_twisted.ensureDeferred
async def test_missing_body_is_400(sandbox):
    """Endpoints that need a JSON body answer 400 BAD_VALUE when it is missing."""
    order_id = await sandbox.create_order()
    reply = await sandbox.request("PATCH", f"{OM}{order_id}/authorization")
    assert error_of(reply) == (400, "BAD_VALUE")
    assert reply.json()["error_messages"] == ["Missing value: body"]
