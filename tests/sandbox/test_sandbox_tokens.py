"""Customer Token API: token birth, recurring orders, lifecycle, ownership and control routes.

Every Klarna-API response here is also checked against the vendor OpenAPI files by the
``sandbox`` fixture (Payments for ``.../customer-token``, Customer Token for the rest).
"""
from __future__ import annotations

import re
from typing import Any

import pytest_twisted
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sandbox.support import (
    PAY_TOKEN,
    TOKEN,
    TOKEN_ORDER,
    TOKEN_STATUS,
    TOKENS,
    make_token,
    token_creation_body,
    token_order_body,
)
from tests.sandbox_fixtures import order_body, sample_lines

OM = "/ordermanagement/v1/orders/"
PAY = "/payments/v1/authorizations/{}/order"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


async def _error(sandbox: Any, method: str, path: str, body: Any = None,
                 merchant: int = 1234) -> tuple[int, str, str]:
    reply = await sandbox.request(method, path, json_body=body, merchant=merchant)
    document = reply.json()
    assert UUID.fullmatch(document["correlation_id"])
    return reply.status, document["error_code"], document["error_messages"][0]


# --- token birth (Klarna Payments purchaseToken) ---

@pytest_twisted.ensureDeferred
async def test_token_from_authorization_has_vendor_shape_and_reads_back(sandbox):
    """POST .../customer-token: 200 with a UUID token_id; GET token says ACTIVE/INVOICE."""
    body = token_creation_body(customer={"date_of_birth": "1980-01-31"})
    reply = await sandbox.request("POST", PAY_TOKEN.format("auth-1"), json_body=body)
    assert reply.status == 200, reply.body
    created = reply.json()
    assert UUID.fullmatch(created["token_id"])
    assert UUID.fullmatch(created["payment_method_reference"])
    assert created["redirect_url"].startswith("https://")
    assert created["billing_address"]["city"] == "Stockholm"
    assert created["customer"] == {"date_of_birth": "1980-01-31"}
    read = await sandbox.request("GET", TOKEN.format(created["token_id"]))
    assert read.status == 200 and read.headers["content-type"] == "application/json"
    assert read.json() == {"payment_method_type": "INVOICE", "status": "ACTIVE"}


@pytest_twisted.ensureDeferred
async def test_same_authorization_gives_the_same_token(sandbox):
    """Asking twice with one authorization returns the first token, whatever the body."""
    first = await sandbox.request("POST", PAY_TOKEN.format("auth-2"),
                                  json_body=token_creation_body())
    second = await sandbox.request("POST", PAY_TOKEN.format("auth-2"),
                                   json_body=token_creation_body(purchase_currency="EUR"))
    assert first.json() == second.json()
    other = await sandbox.request("POST", PAY_TOKEN.format("auth-3"),
                                  json_body=token_creation_body())
    assert other.json()["token_id"] != first.json()["token_id"]
    assert len(sandbox.resource.tokens.tokens) == 2


@pytest_twisted.ensureDeferred
async def test_token_creation_validation(sandbox):
    """customer_token_creation_request: required fields, the SUBSCRIPTION enum, lengths."""
    path = PAY_TOKEN.format("auth-bad")
    body = token_creation_body()
    del body["intended_use"]
    assert await _error(sandbox, "POST", path, body) == (
        400, "BAD_VALUE", "Missing value: intended_use")
    assert await _error(sandbox, "POST", path, token_creation_body(intended_use="ONE_OFF")) == (
        400, "BAD_VALUE", "Bad value: intended_use")
    status, code, message = await _error(sandbox, "POST", path,
                                         token_creation_body(description=""))
    assert (status, code) == (422, "UNPROCESSABLE_ENTITY") and "description" in message
    assert sandbox.resource.tokens.tokens == {}


@pytest_twisted.ensureDeferred
async def test_rejected_authorization_gives_no_token(sandbox):
    """A ``rejected-`` authorization is declined like an order: 403 PAYMENT_METHOD_FAILED."""
    reply = await sandbox.request("POST", PAY_TOKEN.format("rejected-a"),
                                  json_body=token_creation_body())
    assert reply.status == 403
    assert reply.json()["error_code"] == "PAYMENT_METHOD_FAILED"
    assert reply.json()["fraud_status"] == "REJECTED"
    assert sandbox.resource.tokens.tokens == {}


@pytest_twisted.ensureDeferred
async def test_outcome_prefix_is_inherited_by_the_token(sandbox):
    """A token made from a ``pending-`` authorization keeps the prefix and places PENDING
    orders; ``capture-fails-`` likewise gives orders whose captures are declined."""
    pending = (await sandbox.request("POST", PAY_TOKEN.format("pending-a"),
                                     json_body=token_creation_body())).json()["token_id"]
    assert pending.startswith("pending-") and UUID.fullmatch(pending[len("pending-"):])
    reply = await sandbox.request("POST", TOKEN_ORDER.format(pending),
                                  json_body=token_order_body())
    assert reply.json()["fraud_status"] == "PENDING"
    failing = (await sandbox.request("POST", PAY_TOKEN.format("capture-fails-a"),
                                     json_body=token_creation_body())).json()["token_id"]
    order_id = (await sandbox.request("POST", TOKEN_ORDER.format(failing),
                                      json_body=token_order_body())).json()["order_id"]
    capture = await sandbox.request("POST", f"{OM}{order_id}/captures",
                                    json_body={"captured_amount": 100})
    assert capture.status == 403 and capture.json()["error_code"] == "CAPTURE_NOT_ALLOWED"


# --- recurring orders ---

@pytest_twisted.ensureDeferred
async def test_token_order_takes_customer_data_from_the_token(sandbox):
    """The order's country, billing address, customer and locale come from the token;
    merchant references and shipping address from the request."""
    created = (await sandbox.request("POST", PAY_TOKEN.format("auth-4"), json_body=(
        token_creation_body(purchase_country="NO", locale="nb-NO",
                            billing_address={"given_name": "Ola", "country": "NO"},
                            customer={"date_of_birth": "1970-05-05"})))).json()
    reply = await sandbox.request("POST", TOKEN_ORDER.format(created["token_id"]),
                                  json_body=token_order_body(merchant_reference1="SUB-1",
                                                             merchant_reference2="ERP-1"))
    assert reply.status == 200, reply.body
    body = reply.json()
    assert set(body) == {"order_id", "redirect_url", "fraud_status",
                         "authorized_payment_method"}
    assert UUID.fullmatch(body["order_id"]) and body["fraud_status"] == "ACCEPTED"
    order = await sandbox.get_order(body["order_id"])
    assert (order["purchase_country"], order["locale"]) == ("NO", "nb-NO")
    assert order["billing_address"] == {"given_name": "Ola", "country": "NO"}
    assert order["customer"] == {"date_of_birth": "1970-05-05"}
    assert (order["merchant_reference1"], order["merchant_reference2"]) == ("SUB-1", "ERP-1")
    assert order["shipping_address"]["city"] == "Stockholm"
    assert order["status"] == "AUTHORIZED" and order["captures"] == []
    operations = await sandbox.control("GET", f"/sandbox/v1/orders/{body['order_id']}/operations")
    assert [op["path"] for op in operations.json()] == [
        TOKEN_ORDER.format(created["token_id"])]


@pytest_twisted.ensureDeferred
async def test_auto_capture_captures_at_once(sandbox):
    """auto_capture: the order is born CAPTURED with one capture of the whole amount."""
    token = await make_token(sandbox)
    reply = await sandbox.request("POST", TOKEN_ORDER.format(token),
                                  json_body=token_order_body(7000, auto_capture=True))
    order = await sandbox.get_order(reply.json()["order_id"])
    assert order["status"] == "CAPTURED"
    assert order["captured_amount"] == 7000 and order["remaining_authorized_amount"] == 0
    [capture] = order["captures"]
    assert capture["captured_amount"] == 7000 and UUID.fullmatch(capture["capture_id"])
    assert capture["order_lines"] == order["order_lines"]
    assert capture["captured_at"] == order["created_at"]
    read = await sandbox.request("GET", f"{OM}{order['order_id']}/captures/"
                                        f"{capture['capture_id']}")
    assert read.status == 200
    refund = await sandbox.request("POST", f"{OM}{order['order_id']}/refunds",
                                   json_body={"refunded_amount": 7000})
    assert refund.status == 201
    # Klarna Payments' create_order honours auto_capture too.
    paid = await sandbox.create_order(amount=5000, auto_capture=True)
    assert (await sandbox.get_order(paid))["status"] == "CAPTURED"
    plain = await sandbox.create_order(amount=5000, auto_capture=False)
    assert (await sandbox.get_order(plain))["status"] == "AUTHORIZED"


@pytest_twisted.ensureDeferred
async def test_auto_capture_of_a_pending_order_waits_for_acceptance(sandbox):
    """A PENDING auto_capture order is captured when the fraud decision is ACCEPTED."""
    token = await make_token(sandbox, "pending-sub")
    order_id = (await sandbox.request("POST", TOKEN_ORDER.format(token), json_body=(
        token_order_body(auto_capture=True)))).json()["order_id"]
    order = await sandbox.get_order(order_id)
    assert (order["status"], order["fraud_status"], order["captures"]) == (
        "AUTHORIZED", "PENDING", [])
    await sandbox.control("POST", f"/sandbox/v1/orders/{order_id}/fraud_status",
                          {"fraud_status": "ACCEPTED"})
    order = await sandbox.get_order(order_id)
    assert order["status"] == "CAPTURED" and len(order["captures"]) == 1
    await sandbox.control("POST", f"/sandbox/v1/orders/{order_id}/fraud_status",
                          {"fraud_status": "ACCEPTED"})
    assert len((await sandbox.get_order(order_id))["captures"]) == 1


@pytest_twisted.ensureDeferred
async def test_auto_capture_with_failing_capture_places_no_order(sandbox):
    """``capture-fails-`` + auto_capture: 403 PAYMENT_METHOD_FAILED and no order."""
    token = await make_token(sandbox, "capture-fails-sub")
    status, code, _ = await _error(sandbox, "POST", TOKEN_ORDER.format(token),
                                   token_order_body(auto_capture=True))
    assert (status, code) == (403, "PAYMENT_METHOD_FAILED")
    assert sandbox.resource.book.orders == {}


@pytest_twisted.ensureDeferred
async def test_token_order_body_follows_the_customer_token_schema(sandbox):
    """customer_token_order limits: order_amount >= 1, line reference <= 256, line
    merchant_data <= 255, no return_fee lines, merchant_urls.confirmation required; fields
    outside the schema (purchase_country, billing_address) are ignored."""
    path = TOKEN_ORDER.format(await make_token(sandbox))
    status, code, message = await _error(sandbox, "POST", path,
                                         token_order_body(0, lines=sample_lines(0)))
    assert (status, code) == (422, "UNPROCESSABLE_ENTITY") and "order_amount" in message
    lines = sample_lines()
    lines[0]["reference"] = "r" * 257
    status, _, message = await _error(sandbox, "POST", path, token_order_body(lines=lines))
    assert status == 422 and "order_lines[0].reference" in message
    lines = sample_lines()
    lines[0]["merchant_data"] = "m" * 256
    status, _, message = await _error(sandbox, "POST", path, token_order_body(lines=lines))
    assert status == 422 and "order_lines[0].merchant_data" in message
    lines = sample_lines()
    lines[0]["type"] = "return_fee"
    assert await _error(sandbox, "POST", path, token_order_body(lines=lines)) == (
        400, "BAD_VALUE", "Bad value: order_lines[0].type")
    assert await _error(sandbox, "POST", path, token_order_body(merchant_urls={})) == (
        400, "BAD_VALUE", "Missing value: merchant_urls.confirmation")
    lines = sample_lines()
    lines[0]["total_amount"] = 9999
    assert await _error(sandbox, "POST", path, token_order_body(9999, lines=lines)) == (
        400, "BAD_VALUE", "Bad value: order_lines[0].total_amount")
    reply = await sandbox.request("POST", path, json_body={
        **order_body(), "purchase_country": "DE",
        "merchant_urls": {"confirmation": "https://shop.example/thanks"}})
    assert reply.status == 200
    assert (await sandbox.get_order(reply.json()["order_id"]))["purchase_country"] == "SE"


@pytest_twisted.ensureDeferred
async def test_currency_must_match_the_token(sandbox):
    """An order in another currency than the token's: 403 PAYMENT_METHOD_CURRENCY_MISMATCH."""
    token = await make_token(sandbox, purchase_currency="SEK")
    status, code, _ = await _error(sandbox, "POST", TOKEN_ORDER.format(token),
                                   token_order_body(purchase_currency="EUR"))
    assert (status, code) == (403, "PAYMENT_METHOD_CURRENCY_MISMATCH")
    reply = await sandbox.request("POST", TOKEN_ORDER.format(token),
                                  json_body=token_order_body(purchase_currency="sek"))
    assert reply.status == 200


# --- ownership and lifecycle ---

@pytest_twisted.ensureDeferred
async def test_tokens_belong_to_their_merchant(sandbox):
    """Another merchant's token is 404 on every route, like an unknown token, and is left
    untouched; the documented error codes are used (TOKEN_NOT_FOUND for orders)."""
    token = await make_token(sandbox, eid=1234)
    for who, expected in ((5678, 404), (1234, 200)):
        reply = await sandbox.request("GET", TOKEN.format(token), merchant=who)
        assert reply.status == expected
    assert await _error(sandbox, "POST", TOKEN_ORDER.format(token), token_order_body(),
                        merchant=5678) == (404, "TOKEN_NOT_FOUND",
                                           f"Customer token {token} cannot be found")
    assert (await _error(sandbox, "GET", TOKEN.format(token), merchant=5678))[:2] == (
        404, "NOT_FOUND")
    assert (await _error(sandbox, "PATCH", TOKEN_STATUS.format(token), {"status": "CANCELLED"},
                         merchant=5678))[:2] == (404, "NOT_FOUND")
    assert (await sandbox.request("GET", TOKEN.format(token))).json()["status"] == "ACTIVE"
    assert (await _error(sandbox, "POST", TOKEN_ORDER.format("no-such-token"),
                         token_order_body()))[:2] == (404, "TOKEN_NOT_FOUND")
    assert sandbox.resource.book.orders == {}


@pytest_twisted.ensureDeferred
async def test_merchant_cancels_a_token(sandbox):
    """PATCH status CANCELLED: 202 with an empty body; the token reads CANCELLED and is
    refused with 403 TOKEN_CANCELLED; cancelling again is still 202."""
    token = await make_token(sandbox)
    reply = await sandbox.request("PATCH", TOKEN_STATUS.format(token),
                                  json_body={"status": "CANCELLED"})
    assert reply.status == 202 and reply.body == b""
    assert (await sandbox.request("GET", TOKEN.format(token))).json()["status"] == "CANCELLED"
    assert (await _error(sandbox, "POST", TOKEN_ORDER.format(token), token_order_body()))[:2] == (
        403, "TOKEN_CANCELLED")
    again = await sandbox.request("PATCH", TOKEN_STATUS.format(token),
                                  json_body={"status": "CANCELLED"})
    assert again.status == 202
    assert sandbox.resource.book.orders == {}


@pytest_twisted.ensureDeferred
async def test_status_update_validation(sandbox):
    """Only CANCELLED may be asked for; anything else is 400 BAD_VALUE naming ``status``."""
    token = await make_token(sandbox)
    path = TOKEN_STATUS.format(token)
    assert await _error(sandbox, "PATCH", path, {"status": "ACTIVE"}) == (
        400, "BAD_VALUE", "Bad value: status")
    assert await _error(sandbox, "PATCH", path, {}) == (400, "BAD_VALUE", "Missing value: status")
    reply = await sandbox.request("PATCH", path, data=b"not json")
    assert reply.status == 400 and reply.json()["error_code"] == "BAD_VALUE"
    reply = await sandbox.request("POST", path, json_body={"status": "CANCELLED"})
    assert reply.status == 405 and reply.headers["allow"] == "PATCH"
    assert (await sandbox.request("GET", TOKEN.format(token))).json()["status"] == "ACTIVE"


@pytest_twisted.ensureDeferred
async def test_suspended_token_is_refused_until_klarna_lifts_it(sandbox):
    """A SUSPENDED token (set by the control API, playing Klarna) gives 403 TOKEN_SUSPENDED."""
    token = await make_token(sandbox, status="SUSPENDED")
    assert (await sandbox.request("GET", TOKEN.format(token))).json()["status"] == "SUSPENDED"
    assert (await _error(sandbox, "POST", TOKEN_ORDER.format(token), token_order_body()))[:2] == (
        403, "TOKEN_SUSPENDED")
    reply = await sandbox.control("POST", f"{TOKENS}/{token}/status", {"status": "ACTIVE"})
    assert reply.status == 200 and reply.json()["status"] == "ACTIVE"
    reply = await sandbox.request("POST", TOKEN_ORDER.format(token), json_body=token_order_body())
    assert reply.status == 200


@pytest_twisted.ensureDeferred
async def test_token_posts_honour_idempotency_keys(sandbox):
    """Klarna-Idempotency-Key on token birth, recurring order and status change: a replay
    returns the stored first answer and applies nothing."""
    first = await sandbox.request("POST", PAY_TOKEN.format("auth-k"),
                                  json_body=token_creation_body(), idempotency_key="t1")
    replay = await sandbox.request("POST", PAY_TOKEN.format("auth-k"), json_body={},
                                   idempotency_key="t1")
    assert (replay.status, replay.body) == (first.status, first.body)
    token = first.json()["token_id"]
    cancel = await sandbox.request("PATCH", TOKEN_STATUS.format(token),
                                   json_body={"status": "ACTIVE"}, idempotency_key="s1")
    assert cancel.status == 400
    again = await sandbox.request("PATCH", TOKEN_STATUS.format(token),
                                  json_body={"status": "CANCELLED"}, idempotency_key="s1")
    assert (again.status, again.body) == (cancel.status, cancel.body)
    assert (await sandbox.request("GET", TOKEN.format(token))).json()["status"] == "ACTIVE"


# --- control routes ---

@pytest_twisted.ensureDeferred
async def test_control_token_routes(sandbox):
    """POST /sandbox/v1/tokens creates a token with a chosen id, owner and status; GET and
    POST .../status inspect and change it; bad input is refused."""
    reply = await sandbox.control("POST", TOKENS, {"eid": 5678, "token_id": "ct-chosen",
                                                   "status": "CANCELLED",
                                                   "purchase_currency": "EUR"})
    assert reply.status == 201
    assert reply.json() == {
        "token_id": "ct-chosen", "eid": 5678, "status": "CANCELLED",
        "payment_method_type": "INVOICE", "purchase_country": "SE",
        "purchase_currency": "EUR", "locale": "sv-SE",
        "created_at": reply.json()["created_at"]}
    assert (await sandbox.control("GET", f"{TOKENS}/ct-chosen")).json()["eid"] == 5678
    generated = (await sandbox.control("POST", TOKENS, {"eid": 1234})).json()
    assert UUID.fullmatch(generated["token_id"]) and generated["status"] == "ACTIVE"
    refusals = [
        ({"eid": 1234, "token_id": "ct-chosen"}, 409),
        ({"eid": 9999}, 400),
        ({}, 400),
        ({"eid": 1234, "status": "EXPIRED"}, 400),
        ({"eid": 1234, "token_id": "has/slash"}, 400),
        ({"eid": "1234"}, 400),
    ]
    for body, status in refusals:
        reply = await sandbox.control("POST", TOKENS, body)
        assert reply.status == status, (body, reply.body)
        assert reply.json()["error_code"]
    assert (await sandbox.control("GET", f"{TOKENS}/nope")).status == 404
    assert (await sandbox.control("POST", f"{TOKENS}/ct-chosen/status",
                                  {"status": "PAUSED"})).status == 400
    assert (await sandbox.control("GET", TOKENS)).status == 405
    assert (await sandbox.control("DELETE", f"{TOKENS}/ct-chosen")).status == 405
    assert (await sandbox.control("POST", TOKENS, {"eid": 1234}, token="wrong")).status == 401


@pytest_twisted.ensureDeferred
async def test_reset_forgets_tokens(sandbox):
    """POST /sandbox/v1/reset: tokens (and the authorization -> token link) are gone."""
    created = (await sandbox.request("POST", PAY_TOKEN.format("auth-r"),
                                     json_body=token_creation_body())).json()
    assert (await sandbox.control("POST", "/sandbox/v1/reset")).status == 204
    assert (await sandbox.request("GET", TOKEN.format(created["token_id"]))).status == 404
    again = await sandbox.request("POST", PAY_TOKEN.format("auth-r"),
                                  json_body=token_creation_body())
    assert again.json()["token_id"] != created["token_id"]


# --- lifecycle as a property ---

ACTIONS = st.lists(st.one_of(
    st.just(("order",)), st.just(("read",)), st.just(("merchant_cancel",)),
    st.tuples(st.just("klarna"), st.sampled_from(("ACTIVE", "SUSPENDED", "CANCELLED"))),
    st.tuples(st.just("foreign"), st.sampled_from(("order", "read", "cancel")))),
    min_size=1, max_size=10)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(actions=ACTIONS)
@pytest_twisted.ensureDeferred
async def test_token_lifecycle_matches_a_model(sandbox, actions):
    """Against a one-variable model: orders succeed exactly when the token is ACTIVE, refusals
    name the status, the other merchant always gets 404 and changes nothing."""
    await sandbox.control("POST", "/sandbox/v1/reset")
    token = await make_token(sandbox)
    status = "ACTIVE"
    orders = 0
    for action in actions:
        if action[0] == "order":
            reply = await sandbox.request("POST", TOKEN_ORDER.format(token),
                                          json_body=token_order_body())
            if status == "ACTIVE":
                assert reply.status == 200
                orders += 1
            else:
                assert (reply.status, reply.json()["error_code"]) == (403, f"TOKEN_{status}")
        elif action[0] == "read":
            reply = await sandbox.request("GET", TOKEN.format(token))
            assert reply.json()["status"] == status
        elif action[0] == "merchant_cancel":
            reply = await sandbox.request("PATCH", TOKEN_STATUS.format(token),
                                          json_body={"status": "CANCELLED"})
            assert reply.status == 202
            status = "CANCELLED"
        elif action[0] == "klarna":
            reply = await sandbox.control("POST", f"{TOKENS}/{token}/status",
                                          {"status": action[1]})
            assert reply.status == 200
            status = action[1]
        else:
            method, path, body = {
                "order": ("POST", TOKEN_ORDER, token_order_body()),
                "read": ("GET", TOKEN, None),
                "cancel": ("PATCH", TOKEN_STATUS, {"status": "CANCELLED"}),
            }[action[1]]
            reply = await sandbox.request(method, path.format(token), json_body=body,
                                          merchant=5678)
            assert reply.status == 404
    assert len(sandbox.resource.book.orders) == orders
    assert not sandbox.violations, sandbox.violations
