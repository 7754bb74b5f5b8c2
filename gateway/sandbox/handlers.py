"""Route table and per-endpoint handlers of the emulated Klarna REST APIs.

A handler turns one authenticated :class:`Call` into an :class:`Outcome` (the response plus,
for a mutation that took effect, the order it changed). Handlers never write to the network;
the resource owns faults, idempotency and delivery. Unknown orders, and orders of another
merchant, are indistinguishable: both are 404 with the endpoint's documented error code.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote

from gateway.sandbox import rules
from gateway.sandbox.errors import OmError
from gateway.sandbox.orders import AUTHORIZATION_PERIOD, Capture, Order, OrderBook
from gateway.sandbox.response import SandboxResponse, empty_response, json_response
from gateway.sandbox.validation import (
    CAPTURE_REQUEST,
    CREATE_ORDER_REQUEST,
    CUSTOMER_DETAILS_REQUEST,
    CUSTOMER_TOKEN_ORDER_REQUEST,
    EXTEND_DUE_DATE_REQUEST,
    MERCHANT_REFERENCES_REQUEST,
    REFUND_REQUEST,
    SHIPPING_INFO_REQUEST,
    UPDATE_AUTHORIZATION_REQUEST,
    Obj,
    bad_value,
    check_line_arithmetic,
    check_line_tax,
    validate,
)

#: Authorization/customer token prefixes that select the outcome of order creation.
PENDING_PREFIX = "pending-"
REJECTED_PREFIX = "rejected-"
CAPTURE_FAILS_PREFIX = "capture-fails-"


@dataclass(frozen=True)
class Call:
    """One authenticated request, decoded."""

    method: str
    path: str
    params: dict[str, str]
    body: bytes
    merchant_eid: int
    host: str
    now: datetime


@dataclass(frozen=True)
class Outcome:
    response: SandboxResponse
    #: The order a successful mutation changed (recorded in its operations log).
    applied_order_id: str | None = None


Handler = Callable[[OrderBook, Call], Outcome]


def _json_body(call: Call, spec: Obj) -> dict[str, Any]:
    if not call.body.strip():
        raise bad_value("body", "Missing value")
    try:
        document = json.loads(call.body)
    except (ValueError, UnicodeDecodeError):
        raise bad_value("body (not valid JSON)") from None
    cleaned: dict[str, Any] = validate(spec, document)
    return cleaned


def _order(book: OrderBook, call: Call, missing_code: str = "NO_SUCH_ORDER") -> Order:
    order = book.get(call.merchant_eid, call.params["order_id"], call.now)
    if order is None:
        order_id = call.params["order_id"]
        if missing_code == "NOT_FOUND":
            raise OmError(404, "NOT_FOUND", f"Order {order_id} not found")
        raise OmError(404, missing_code, f"Order {order_id} cannot be found")
    return order


def _location(call: Call, *segments: str) -> str:
    tail = "/".join(quote(s, safe="") for s in segments)
    return f"http://{call.host}/ordermanagement/v1/orders/{tail}"


# --- Order Management ---

def get_order(book: OrderBook, call: Call) -> Outcome:
    return Outcome(json_response(_order(book, call).to_json()))


def acknowledge(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call)
    order.acknowledged = True
    return Outcome(empty_response(), order.order_id)


def update_authorization(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call)
    rules.update_authorization(order, _json_body(call, UPDATE_AUTHORIZATION_REQUEST))
    return Outcome(empty_response(), order.order_id)


def extend_authorization_time(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call)
    rules.extend_authorization_time(order, call.now)
    return Outcome(empty_response(), order.order_id)


def update_merchant_references(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call)
    rules.update_merchant_references(order, _json_body(call, MERCHANT_REFERENCES_REQUEST))
    return Outcome(empty_response(), order.order_id)


def update_customer_details(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call)
    rules.update_customer_details(order, _json_body(call, CUSTOMER_DETAILS_REQUEST))
    return Outcome(empty_response(), order.order_id)


def cancel(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call)
    rules.cancel(order)
    return Outcome(empty_response(), order.order_id)


def release_remaining_authorization(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call)
    rules.release_remaining_authorization(order)
    return Outcome(empty_response(), order.order_id)


def append_order_shipping_info(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call)
    rules.append_order_shipping_info(order, _json_body(call, SHIPPING_INFO_REQUEST))
    return Outcome(empty_response(), order.order_id)


def create_capture(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call)
    new = rules.capture(order, _json_body(call, CAPTURE_REQUEST), call.now)
    headers = (("Capture-Id", new.capture_id),
               ("Location", _location(call, order.order_id, "captures", new.capture_id)))
    return Outcome(empty_response(201, headers), order.order_id)


def list_captures(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call)
    return Outcome(json_response([c.to_json() for c in order.captures]))


def _capture_or_404(order: Order, call: Call) -> Capture:
    found = order.find_capture(call.params["capture_id"])
    if found is None:
        raise OmError(404, "NO_SUCH_CAPTURE",
                      f"Capture {call.params['capture_id']} cannot be found")
    return found


def get_capture(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call)
    return Outcome(json_response(_capture_or_404(order, call).to_json()))


def append_capture_shipping_info(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call)
    rules.append_capture_shipping_info(order, call.params["capture_id"],
                                       _json_body(call, SHIPPING_INFO_REQUEST))
    return Outcome(empty_response(), order.order_id)


def trigger_send_out(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call)
    rules.trigger_send_out(order, call.params["capture_id"])
    return Outcome(empty_response(), order.order_id)


def extend_due_date_options(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call)
    _capture_or_404(order, call)
    options = [{"number_of_days": days, "amount": fee} for days, fee in rules.DUE_DATE_OPTIONS]
    return Outcome(json_response({"currency": order.purchase_currency, "options": options}))


def extend_due_date(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call)
    rules.extend_due_date(order, call.params["capture_id"],
                          _json_body(call, EXTEND_DUE_DATE_REQUEST))
    return Outcome(empty_response(), order.order_id)


def create_refund(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call, "NOT_FOUND")
    new = rules.refund(order, _json_body(call, REFUND_REQUEST), call.now)
    headers = (("Refund-Id", new.refund_id),
               ("Location", _location(call, order.order_id, "refunds", new.refund_id)))
    return Outcome(empty_response(201, headers), order.order_id)


def get_refund(book: OrderBook, call: Call) -> Outcome:
    order = _order(book, call, "NOT_FOUND")
    found = order.find_refund(call.params["refund_id"])
    if found is None:
        raise OmError(404, "NOT_FOUND", f"Refund {call.params['refund_id']} cannot be found "
                                        f"for order {order.order_id}")
    return Outcome(json_response(found.to_json()))


# --- order birth (Klarna Payments / Customer Token) ---

def _order_created_body(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "redirect_url": f"https://payments.playground.klarna.com/redirect/{order.order_id}",
        "fraud_status": order.fraud_status,
        "authorized_payment_method": {"type": "invoice", "number_of_days": 30},
    }


def _create_order(book: OrderBook, call: Call, spec: Obj) -> Outcome:
    token = call.params["token"]
    body = _json_body(call, spec)
    lines = body["order_lines"]
    check_line_arithmetic(lines)
    check_line_tax(lines)
    if sum(line["total_amount"] for line in lines) != body["order_amount"]:
        raise bad_value("order_amount")
    taxes = [line.get("total_tax_amount") for line in lines]
    if "order_tax_amount" in body and None not in taxes and sum(taxes) != body["order_tax_amount"]:
        raise bad_value("order_tax_amount")
    if token.startswith(REJECTED_PREFIX):
        raise OmError(403, "PAYMENT_METHOD_FAILED", "Purchase for payment method failed",
                      fraud_status="REJECTED", reason="rejected")
    country = body.get("purchase_country") or (body.get("billing_address") or {}).get(
        "country") or (body.get("shipping_address") or {}).get("country") or "US"
    order = Order(
        order_id=book.new_order_id(),
        merchant_eid=call.merchant_eid,
        klarna_reference=book.new_klarna_reference(),
        created_at=call.now,
        expires_at=call.now + AUTHORIZATION_PERIOD,
        purchase_country=country,
        purchase_currency=body["purchase_currency"],
        locale=body.get("locale"),
        order_amount=body["order_amount"],
        original_order_amount=body["order_amount"],
        order_lines=lines,
        fraud_status="PENDING" if token.startswith(PENDING_PREFIX) else "ACCEPTED",
        billing_address=body.get("billing_address"),
        shipping_address=body.get("shipping_address"),
        merchant_reference1=body.get("merchant_reference1"),
        merchant_reference2=body.get("merchant_reference2"),
        merchant_data=body.get("merchant_data"),
        customer=body.get("customer"),
        capture_fails=token.startswith(CAPTURE_FAILS_PREFIX),
    )
    book.add(order)
    return Outcome(json_response(_order_created_body(order)), order.order_id)


def create_order_from_authorization(book: OrderBook, call: Call) -> Outcome:
    """Klarna Payments: one order per authorization token; placing it again returns it."""
    existing = book.authorization_tokens.get((call.merchant_eid, call.params["token"]))
    if existing is not None and existing in book.orders:
        return Outcome(json_response(_order_created_body(book.orders[existing])))
    outcome = _create_order(book, call, CREATE_ORDER_REQUEST)
    assert outcome.applied_order_id is not None
    book.authorization_tokens[(call.merchant_eid, call.params["token"])] = outcome.applied_order_id
    return outcome


def create_order_from_customer_token(book: OrderBook, call: Call) -> Outcome:
    """Customer Token (recurring): every call is a new order."""
    return _create_order(book, call, CUSTOMER_TOKEN_ORDER_REQUEST)


# --- routing ---

_ID = r"(?P<{}>[^/]+)"
_ORDER = "/ordermanagement/v1/orders/" + _ID.format("order_id")
_CAPTURE = _ORDER + "/captures/" + _ID.format("capture_id")


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    handlers: dict[str, Handler]


def _route(pattern: str, **handlers: Handler) -> Route:
    return Route(re.compile(pattern + "$"), handlers)


ROUTES: tuple[Route, ...] = (
    _route(_ORDER, GET=get_order),
    _route(_ORDER + "/acknowledge", POST=acknowledge),
    _route(_ORDER + "/authorization", PATCH=update_authorization),
    _route(_ORDER + "/extend-authorization-time", POST=extend_authorization_time),
    _route(_ORDER + "/merchant-references", PATCH=update_merchant_references),
    _route(_ORDER + "/customer-details", PATCH=update_customer_details),
    _route(_ORDER + "/cancel", POST=cancel),
    _route(_ORDER + "/release-remaining-authorization", POST=release_remaining_authorization),
    _route(_ORDER + "/shipping-info", POST=append_order_shipping_info),
    _route(_ORDER + "/captures", POST=create_capture, GET=list_captures),
    _route(_CAPTURE, GET=get_capture),
    _route(_CAPTURE + "/shipping-info", POST=append_capture_shipping_info),
    _route(_CAPTURE + "/trigger-send-out", POST=trigger_send_out),
    _route(_CAPTURE + "/extend-due-date-options", GET=extend_due_date_options),
    _route(_CAPTURE + "/extend-due-date", PATCH=extend_due_date),
    _route(_ORDER + "/refunds", POST=create_refund),
    _route(_ORDER + "/refunds/" + _ID.format("refund_id"), GET=get_refund),
    _route("/payments/v1/authorizations/" + _ID.format("token") + "/order",
           POST=create_order_from_authorization),
    _route("/customer-token/v1/tokens/" + _ID.format("token") + "/order",
           POST=create_order_from_customer_token),
)


def match_route(path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for a raw (percent-encoded) path and its decoded parameters."""
    for route in ROUTES:
        found = route.pattern.match(path)
        if found:
            return route, {k: unquote(v) for k, v in found.groupdict().items()}
    return None
