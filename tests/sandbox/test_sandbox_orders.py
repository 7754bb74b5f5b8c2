"""Order birth through Klarna Payments / Customer Token, and the order's JSON form."""
from __future__ import annotations

from datetime import timedelta

import pytest_twisted

from gateway.sandbox.clock import parse_timestamp
from tests.sandbox.support import make_token, token_order_body
from tests.sandbox_fixtures import order_body, sample_lines

PAY = "/payments/v1/authorizations/{}/order"
TOKEN = "/customer-token/v1/tokens/{}/order"
OM = "/ordermanagement/v1/orders/"


@pytest_twisted.ensureDeferred
async def test_payments_order_birth_returns_vendor_shape(sandbox):
    """A placed order answers 200 with order_id, redirect_url, fraud_status ACCEPTED."""
    reply = await sandbox.request("POST", PAY.format("tok-1"), json_body=order_body())
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["fraud_status"] == "ACCEPTED"
    assert body["redirect_url"].startswith("https://")
    assert body["authorized_payment_method"]["type"] == "invoice"
    assert body["order_id"]


@pytest_twisted.ensureDeferred
async def test_order_json_has_documented_fields(sandbox):
    """GET order returns the documented order fields, with 28-day expiry and a K-reference."""
    order_id = await sandbox.create_order(merchant_reference2="ERP-7", merchant_data="meta")
    order = await sandbox.get_order(order_id)
    assert order["order_id"] == order_id
    assert order["status"] == "AUTHORIZED"
    assert order["order_amount"] == order["original_order_amount"] == 10000
    assert order["captured_amount"] == order["refunded_amount"] == 0
    assert order["remaining_authorized_amount"] == 10000
    assert (order["purchase_currency"], order["purchase_country"], order["locale"]) == (
        "SEK", "SE", "sv-SE")
    assert order["merchant_reference1"] == "ON-1" and order["merchant_reference2"] == "ERP-7"
    assert order["merchant_data"] == "meta"
    assert len(order["klarna_reference"]) == 7 and order["klarna_reference"].isupper()
    assert order["initial_payment_method"]["type"] == "INVOICE"
    assert order["captures"] == [] and order["refunds"] == []
    assert order["billing_address"]["city"] == "Stockholm"
    assert order["shipping_address"]["country"] == "SE"
    created = parse_timestamp(order["created_at"])
    assert parse_timestamp(order["expires_at"]) - created == timedelta(days=28)
    assert created == sandbox.clock.now() or sandbox.clock.now() - created < timedelta(seconds=5)


@pytest_twisted.ensureDeferred
async def test_same_authorization_token_gives_same_order(sandbox):
    """Klarna Payments' create order is idempotent per authorization token."""
    first = await sandbox.request("POST", PAY.format("tok-same"), json_body=order_body())
    second = await sandbox.request("POST", PAY.format("tok-same"), json_body=order_body(500))
    assert first.json()["order_id"] == second.json()["order_id"]
    assert (await sandbox.get_order(first.json()["order_id"]))["order_amount"] == 10000


@pytest_twisted.ensureDeferred
async def test_customer_token_creates_a_new_order_each_time(sandbox):
    """Recurring orders: the same customer token places distinct orders."""
    token = await make_token(sandbox, "ct-1", purchase_country="NO", purchase_currency="SEK")
    first = await sandbox.request("POST", TOKEN.format(token), json_body=token_order_body())
    second = await sandbox.request("POST", TOKEN.format(token), json_body=token_order_body())
    assert first.status == second.status == 200
    assert first.json()["order_id"] != second.json()["order_id"]
    order = await sandbox.get_order(second.json()["order_id"])
    assert order["purchase_country"] == "NO"  # the token's, not the request's


@pytest_twisted.ensureDeferred
async def test_customer_token_requires_order_tax_amount(sandbox):
    """The customer-token order schema requires order_tax_amount (400 naming it)."""
    body = token_order_body()
    del body["order_tax_amount"]
    reply = await sandbox.request("POST", TOKEN.format(await make_token(sandbox, "ct-2")),
                                  json_body=body)
    assert reply.status == 400
    assert reply.json()["error_code"] == "BAD_VALUE"
    assert "order_tax_amount" in reply.json()["error_messages"][0]


@pytest_twisted.ensureDeferred
async def test_pending_prefix_gives_pending_fraud_status(sandbox):
    """Token prefix ``pending-`` places an order with fraud_status PENDING."""
    reply = await sandbox.request("POST", PAY.format("pending-1"), json_body=order_body())
    assert reply.json()["fraud_status"] == "PENDING"
    order = await sandbox.get_order(reply.json()["order_id"])
    assert order["fraud_status"] == "PENDING"


@pytest_twisted.ensureDeferred
async def test_rejected_prefix_refuses_the_order(sandbox):
    """Token prefix ``rejected-``: 403 PAYMENT_METHOD_FAILED with fraud_status REJECTED."""
    reply = await sandbox.request("POST", PAY.format("rejected-1"), json_body=order_body())
    assert reply.status == 403
    body = reply.json()
    assert body["error_code"] == "PAYMENT_METHOD_FAILED"
    assert body["fraud_status"] == "REJECTED" and body["reason"] == "rejected"
    assert body["correlation_id"]
    assert sandbox.resource.book.orders == {}


@pytest_twisted.ensureDeferred
async def test_customer_token_rejected_prefix(sandbox):
    """The rejected prefix works for customer-token orders too."""
    token = await make_token(sandbox, "rejected-ct")
    reply = await sandbox.request("POST", TOKEN.format(token), json_body=token_order_body())
    assert reply.status == 403 and reply.json()["fraud_status"] == "REJECTED"


async def _refused(sandbox, body, status=400):
    reply = await sandbox.request("POST", PAY.format("tok-bad"), json_body=body)
    assert reply.status == status, reply.body
    return reply.json()


@pytest_twisted.ensureDeferred
async def test_order_birth_validation_names_the_field(sandbox):
    """Bad create-order bodies get BAD_VALUE / UNPROCESSABLE_ENTITY naming the field."""
    lines = sample_lines(10000)
    lines[0]["total_amount"] = 9999
    error = await _refused(sandbox, order_body(9999, lines=lines))
    assert error["error_messages"] == ["Bad value: order_lines[0].total_amount"]

    lines = sample_lines(10000)
    lines[0]["total_tax_amount"] = 5
    error = await _refused(sandbox, order_body(lines=lines))
    assert error["error_messages"] == ["Bad value: order_lines[0].total_tax_amount"]

    error = await _refused(sandbox, order_body(amount=10000, lines=sample_lines(9000)))
    assert error["error_messages"] == ["Bad value: order_amount"]

    error = await _refused(sandbox, order_body(order_tax_amount=1))
    assert error["error_messages"] == ["Bad value: order_tax_amount"]

    body = order_body()
    del body["purchase_currency"]
    error = await _refused(sandbox, body)
    assert error["error_messages"] == ["Missing value: purchase_currency"]

    error = await _refused(sandbox, order_body(purchase_country="Sweden"), 422)
    assert error["error_code"] == "UNPROCESSABLE_ENTITY"
    assert "purchase_country" in error["error_messages"][0]

    error = await _refused(sandbox, order_body(merchant_reference1="x" * 256), 422)
    assert error["error_messages"] == [
        "The size of the merchant_reference1 value must be between 0 and 255"]

    error = await _refused(sandbox, order_body(order_lines=[]), 422)
    assert "order_lines" in error["error_messages"][0]


@pytest_twisted.ensureDeferred
async def test_order_birth_rejects_malformed_json(sandbox):
    """A body that is not JSON is a 400 BAD_VALUE."""
    reply = await sandbox.request("POST", PAY.format("tok-x"), data=b"{not json",
                                  headers={"Content-Type": "application/json"})
    assert reply.status == 400 and reply.json()["error_code"] == "BAD_VALUE"
    reply = await sandbox.request("POST", PAY.format("tok-x"), data=b"[1, 2]")
    assert reply.status == 400 and reply.json()["error_messages"] == ["Bad value: body"]


@pytest_twisted.ensureDeferred
async def test_discount_line_arithmetic(sandbox):
    """total_amount = quantity x unit_price - total_discount_amount is accepted."""
    lines = [{"type": "physical", "reference": "A", "name": "Shoes", "quantity": 3,
              "unit_price": 1000, "total_discount_amount": 500, "total_amount": 2500,
              "tax_rate": 0, "total_tax_amount": 0}]
    reply = await sandbox.request("POST", PAY.format("tok-d"),
                                  json_body=order_body(2500, lines=lines))
    assert reply.status == 200, reply.body


@pytest_twisted.ensureDeferred
async def test_customer_date_of_birth_must_be_a_date(sandbox):
    """customer.date_of_birth must be a real YYYY-MM-DD date; a valid one is shown on the order."""
    reply = await sandbox.request("POST", PAY.format("tok-dob"),
                                  json_body=order_body(customer={"date_of_birth": "1980-13-45"}))
    assert reply.status == 400
    assert reply.json()["error_messages"] == ["Bad value: customer.date_of_birth"]
    order_id = await sandbox.create_order(customer={"date_of_birth": "1980-01-31"})
    assert (await sandbox.get_order(order_id))["customer"] == {"date_of_birth": "1980-01-31"}


def test_sandbox_imports_only_config_and_errors_of_the_gateway():
    """Hard rule: the emulator shares no code with the gateway client (gateway.om, translate,
    legacy, store, engine...): of the gateway it may import only gateway.config,
    gateway.errors and gateway.web (the neutral listener bounds every listener uses),
    besides its own modules."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "gateway" / "sandbox"
    allowed = ("gateway.config", "gateway.errors", "gateway.web")
    checked = 0
    for source in package.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, (source.name, "relative import")
                names = [node.module or ""]
                if node.module == "gateway":
                    names = [f"gateway.{alias.name}" for alias in node.names]
            for name in names:
                if name == "gateway" or name.startswith("gateway."):
                    checked += 1
                    assert name in allowed or name.startswith("gateway.sandbox"), (
                        source.name, name)
    assert checked > 20
