"""How orders and customer tokens are born: Klarna Payments and the Customer Token API.

Routes handled here (shapes from ``klarna-payments.openapi.yml`` and
``klarna-customer-token.openapi.yml``):

* ``POST /payments/v1/authorizations/{t}/order``: one order per authorization token;
* ``POST /payments/v1/authorizations/{t}/customer-token``: one customer token per
  authorization token;
* ``POST /customer-token/v1/tokens/{t}/order``: a new (recurring) order on every call;
* ``GET /customer-token/v1/tokens/{t}`` and ``PATCH /customer-token/v1/tokens/{t}/status``.

The prefix of the token in the path selects the outcome, so tests can reach every fraud
state without a risk engine: ``pending-`` (fraud_status PENDING), ``rejected-`` (declined,
403 PAYMENT_METHOD_FAILED), ``capture-fails-`` (accepted, but captures are declined). A
customer token made from a ``pending-``/``capture-fails-`` authorization keeps that prefix in
its id, so its recurring orders behave the same way.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from gateway.sandbox import rules
from gateway.sandbox.calls import Call, Outcome, json_body
from gateway.sandbox.errors import OmError
from gateway.sandbox.orders import AUTHORIZATION_PERIOD, Order
from gateway.sandbox.response import empty_response, json_response
from gateway.sandbox.state import SandboxState
from gateway.sandbox.tokens import CustomerToken, TokenStatus, check_active, check_currency
from gateway.sandbox.validation import (
    CREATE_ORDER_REQUEST,
    CUSTOMER_TOKEN_CREATION_REQUEST,
    CUSTOMER_TOKEN_ORDER_REQUEST,
    TOKEN_STATUS_UPDATE_REQUEST,
    bad_value,
    check_line_arithmetic,
    check_line_tax,
)

#: Authorization/customer token prefixes that select the outcome of order creation.
PENDING_PREFIX = "pending-"
REJECTED_PREFIX = "rejected-"
CAPTURE_FAILS_PREFIX = "capture-fails-"
#: Prefixes an authorization passes on to the customer token made from it.
INHERITED_PREFIXES = (PENDING_PREFIX, CAPTURE_FAILS_PREFIX)

REDIRECT_BASE = "https://payments.playground.klarna.com/redirect/"


def _declined() -> OmError:
    """Klarna Payments' answer to a declined purchase."""
    return OmError(403, "PAYMENT_METHOD_FAILED", "Purchase for payment method failed",
                   fraud_status="REJECTED", reason="rejected")


def _check_order_amounts(body: dict[str, Any]) -> None:
    """Line arithmetic, per-line tax, and the order totals (Klarna Payments' rules)."""
    lines = body["order_lines"]
    check_line_arithmetic(lines)
    check_line_tax(lines)
    if sum(line["total_amount"] for line in lines) != body["order_amount"]:
        raise bad_value("order_amount")
    taxes = [line.get("total_tax_amount") for line in lines]
    if "order_tax_amount" in body and None not in taxes and sum(taxes) != body["order_tax_amount"]:
        raise bad_value("order_tax_amount")


def _order_created_body(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "redirect_url": REDIRECT_BASE + order.order_id,
        "fraud_status": order.fraud_status,
        "authorized_payment_method": {"type": "invoice", "number_of_days": 30},
    }


def auto_capture(order: Order, now: datetime, new_id: Callable[[], str]) -> None:
    """Capture the whole order in one capture, as ``auto_capture: true`` asks.

    Used at order birth and, for an order born PENDING, when the control API accepts it.
    An order of amount 0 has nothing to capture.
    """
    order.auto_capture_pending = False
    if order.order_amount <= 0:
        return
    rules.capture(order, {"captured_amount": order.order_amount,
                          "order_lines": order.order_lines}, now, new_id)


def _place_order(state: SandboxState, call: Call, body: dict[str, Any], *, token: str,
                 country: str, billing_address: dict[str, Any] | None,
                 customer: dict[str, Any] | None, locale: str | None) -> Order:
    """Book a new order for an accepted purchase (both APIs end here)."""
    capture_fails = token.startswith(CAPTURE_FAILS_PREFIX)
    wants_capture = bool(body.get("auto_capture", False))
    if wants_capture and capture_fails:
        # The purchase would be charged at once and the charge fails: no order at all,
        # rather than an order the merchant believes is paid.
        raise OmError(403, "PAYMENT_METHOD_FAILED",
                      "Purchase for payment method failed. Capture not possible.")
    book = state.book
    order = Order(
        order_id=book.new_order_id(),
        merchant_eid=call.merchant_eid,
        klarna_reference=book.new_klarna_reference(),
        created_at=call.now,
        expires_at=call.now + AUTHORIZATION_PERIOD,
        purchase_country=country,
        purchase_currency=body["purchase_currency"],
        locale=locale,
        order_amount=body["order_amount"],
        original_order_amount=body["order_amount"],
        order_lines=body["order_lines"],
        fraud_status="PENDING" if token.startswith(PENDING_PREFIX) else "ACCEPTED",
        billing_address=billing_address,
        shipping_address=body.get("shipping_address"),
        merchant_reference1=body.get("merchant_reference1"),
        merchant_reference2=body.get("merchant_reference2"),
        merchant_data=body.get("merchant_data"),
        customer=customer,
        capture_fails=capture_fails,
    )
    book.add(order)
    if wants_capture:
        if order.fraud_status == "PENDING":
            order.auto_capture_pending = True
        else:
            auto_capture(order, call.now, book.new_capture_id)
    return order


# --- Klarna Payments ---

def create_order_from_authorization(state: SandboxState, call: Call) -> Outcome:
    """Klarna Payments: one order per authorization token; placing it again returns it."""
    book = state.book
    token = call.params["token"]
    existing = book.authorization_tokens.get((call.merchant_eid, token))
    if existing is not None and existing in book.orders:
        return Outcome(json_response(_order_created_body(book.orders[existing])))
    body = json_body(call, CREATE_ORDER_REQUEST)
    _check_order_amounts(body)
    if token.startswith(REJECTED_PREFIX):
        raise _declined()
    country = body.get("purchase_country") or (body.get("billing_address") or {}).get(
        "country") or (body.get("shipping_address") or {}).get("country") or "US"
    order = _place_order(state, call, body, token=token, country=country,
                         billing_address=body.get("billing_address"),
                         customer=body.get("customer"), locale=body.get("locale"))
    book.authorization_tokens[(call.merchant_eid, token)] = order.order_id
    return Outcome(json_response(_order_created_body(order)), order.order_id)


def _token_created_body(token: CustomerToken) -> dict[str, Any]:
    document: dict[str, Any] = {
        "token_id": token.token_id,
        "redirect_url": REDIRECT_BASE + token.token_id,
        "payment_method_reference": token.payment_method_reference,
    }
    if token.billing_address:
        document["billing_address"] = token.billing_address
    if token.customer and "date_of_birth" in token.customer:
        document["customer"] = {"date_of_birth": token.customer["date_of_birth"]}
    return document


def create_customer_token(state: SandboxState, call: Call) -> Outcome:
    """Klarna Payments ``purchaseToken``: turn an authorization into a customer token.

    Asking again with the same authorization returns the same token (whatever the body).
    """
    authorization = call.params["token"]
    existing = state.tokens.by_authorization.get((call.merchant_eid, authorization))
    if existing is not None and existing in state.tokens.tokens:
        return Outcome(json_response(_token_created_body(state.tokens.tokens[existing])))
    body = json_body(call, CUSTOMER_TOKEN_CREATION_REQUEST)
    if authorization.startswith(REJECTED_PREFIX):
        raise _declined()
    prefix = next((p for p in INHERITED_PREFIXES if authorization.startswith(p)), "")
    token = CustomerToken(
        token_id=prefix + state.ids.customer_token_id(),
        merchant_eid=call.merchant_eid,
        purchase_country=body["purchase_country"],
        purchase_currency=body["purchase_currency"],
        created_at=call.now,
        locale=body["locale"],
        description=body["description"],
        intended_use=body["intended_use"],
        billing_address=body.get("billing_address"),
        customer=body.get("customer"),
        payment_method_reference=state.ids.payment_method_reference(),
        authorization_token=authorization,
    )
    state.tokens.add(token)
    state.tokens.by_authorization[(call.merchant_eid, authorization)] = token.token_id
    return Outcome(json_response(_token_created_body(token)))


# --- Customer Token API ---

def _token(state: SandboxState, call: Call, code: str, message: str) -> CustomerToken:
    token = state.tokens.get(call.merchant_eid, call.params["token"])
    if token is None:
        raise OmError(404, code, message)
    return token


def create_order_from_customer_token(state: SandboxState, call: Call) -> Outcome:
    """A recurring order: every call is a new order, charged to the token's customer.

    Country, billing address and customer come from the token (the request schema has no
    such fields). Refusals, in order: unknown token 404 TOKEN_NOT_FOUND; token not ACTIVE
    403 TOKEN_CANCELLED / TOKEN_SUSPENDED; body 400/422; currency other than the token's 403
    PAYMENT_METHOD_CURRENCY_MISMATCH; ``rejected-`` token 403 PAYMENT_METHOD_FAILED.
    """
    token_id = call.params["token"]
    token = _token(state, call, "TOKEN_NOT_FOUND", f"Customer token {token_id} cannot be found")
    check_active(token)
    body = json_body(call, CUSTOMER_TOKEN_ORDER_REQUEST)
    _check_order_amounts(body)
    check_currency(token, body["purchase_currency"])
    if token_id.startswith(REJECTED_PREFIX):
        raise _declined()
    country = (token.billing_address or {}).get("country") or token.purchase_country
    order = _place_order(state, call, body, token=token_id, country=country,
                         billing_address=token.billing_address, customer=token.customer,
                         locale=body.get("locale") or token.locale)
    return Outcome(json_response(_order_created_body(order)), order.order_id)


def read_customer_token(state: SandboxState, call: Call) -> Outcome:
    """``readCustomerToken``: the token's status and payment method type."""
    token = _token(state, call, "NOT_FOUND", "Invalid customer-token ID")
    return Outcome(json_response(token.to_json()))


def update_customer_token_status(state: SandboxState, call: Call) -> Outcome:
    """``patchCustomerToken``: the merchant cancels a token (202, empty body).

    Cancelling is final and repeatable: a cancelled (or suspended) token can be cancelled
    again and still answers 202.
    """
    token = _token(state, call, "NOT_FOUND", "Invalid token ID")
    json_body(call, TOKEN_STATUS_UPDATE_REQUEST)
    token.status = TokenStatus.CANCELLED
    return Outcome(empty_response(202))
