"""Route table of the emulated Klarna REST APIs and the Order Management handlers.

A handler turns one authenticated :class:`Call` into an :class:`Outcome` (the response plus,
for a mutation that took effect, the order it changed). Handlers never write to the network;
the resource owns faults, idempotency and delivery. Order and token births live in
``purchases.py``. Unknown orders, and orders of another
merchant, are indistinguishable: both are 404 with the endpoint's documented error code.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from gateway.sandbox import rules
from gateway.sandbox.calls import Call, Handler, Outcome, json_body
from gateway.sandbox.errors import OmError
from gateway.sandbox.orders import Capture, Order, OrderBook
from gateway.sandbox.purchases import (
    create_customer_token,
    create_order_from_authorization,
    create_order_from_customer_token,
    read_customer_token,
    update_customer_token_status,
)
from gateway.sandbox.response import empty_response, json_response
from gateway.sandbox.state import SandboxState
from gateway.sandbox.validation import (
    CAPTURE_REQUEST,
    CUSTOMER_DETAILS_REQUEST,
    EXTEND_DUE_DATE_REQUEST,
    MERCHANT_REFERENCES_REQUEST,
    REFUND_REQUEST,
    SHIPPING_INFO_REQUEST,
    UPDATE_AUTHORIZATION_REQUEST,
)

__all__ = ["ROUTES", "Call", "Handler", "Outcome", "Route", "match_route"]


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

def get_order(state: SandboxState, call: Call) -> Outcome:
    return Outcome(json_response(_order(state.book, call).to_json()))


def acknowledge(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call)
    order.acknowledged = True
    return Outcome(empty_response(), order.order_id)


def update_authorization(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call)
    rules.update_authorization(order, json_body(call, UPDATE_AUTHORIZATION_REQUEST))
    return Outcome(empty_response(), order.order_id)


def extend_authorization_time(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call)
    rules.extend_authorization_time(order, call.now)
    return Outcome(empty_response(), order.order_id)


def update_merchant_references(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call)
    rules.update_merchant_references(order, json_body(call, MERCHANT_REFERENCES_REQUEST))
    return Outcome(empty_response(), order.order_id)


def update_customer_details(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call)
    rules.update_customer_details(order, json_body(call, CUSTOMER_DETAILS_REQUEST))
    return Outcome(empty_response(), order.order_id)


def cancel(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call)
    rules.cancel(order)
    return Outcome(empty_response(), order.order_id)


def release_remaining_authorization(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call)
    rules.release_remaining_authorization(order)
    return Outcome(empty_response(), order.order_id)


def append_order_shipping_info(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call)
    rules.append_order_shipping_info(order, json_body(call, SHIPPING_INFO_REQUEST))
    return Outcome(empty_response(), order.order_id)


def create_capture(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call)
    new = rules.capture(order, json_body(call, CAPTURE_REQUEST), call.now,
                        state.book.new_capture_id)
    headers = (("Capture-Id", new.capture_id),
               ("Location", _location(call, order.order_id, "captures", new.capture_id)))
    return Outcome(empty_response(201, headers), order.order_id)


def list_captures(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call)
    return Outcome(json_response([c.to_json() for c in order.captures]))


def _capture_or_404(order: Order, call: Call) -> Capture:
    found = order.find_capture(call.params["capture_id"])
    if found is None:
        raise OmError(404, "NO_SUCH_CAPTURE",
                      f"Capture {call.params['capture_id']} cannot be found")
    return found


def get_capture(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call)
    return Outcome(json_response(_capture_or_404(order, call).to_json()))


def append_capture_shipping_info(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call)
    rules.append_capture_shipping_info(order, call.params["capture_id"],
                                       json_body(call, SHIPPING_INFO_REQUEST))
    return Outcome(empty_response(), order.order_id)


def trigger_send_out(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call)
    rules.trigger_send_out(order, call.params["capture_id"])
    return Outcome(empty_response(), order.order_id)


def extend_due_date_options(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call)
    _capture_or_404(order, call)
    options = [{"number_of_days": days, "amount": fee} for days, fee in rules.DUE_DATE_OPTIONS]
    return Outcome(json_response({"currency": order.purchase_currency, "options": options}))


def extend_due_date(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call)
    rules.extend_due_date(order, call.params["capture_id"],
                          json_body(call, EXTEND_DUE_DATE_REQUEST))
    return Outcome(empty_response(), order.order_id)


def create_refund(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call, "NOT_FOUND")
    new = rules.refund(order, json_body(call, REFUND_REQUEST), call.now,
                       state.book.new_refund_id)
    headers = (("Refund-Id", new.refund_id),
               ("Location", _location(call, order.order_id, "refunds", new.refund_id)))
    return Outcome(empty_response(201, headers), order.order_id)


def get_refund(state: SandboxState, call: Call) -> Outcome:
    order = _order(state.book, call, "NOT_FOUND")
    found = order.find_refund(call.params["refund_id"])
    if found is None:
        raise OmError(404, "NOT_FOUND", f"Refund {call.params['refund_id']} cannot be found "
                                        f"for order {order.order_id}")
    return Outcome(json_response(found.to_json()))


# --- routing ---

_ID = r"(?P<{}>[^/]+)"
_ORDER = "/ordermanagement/v1/orders/" + _ID.format("order_id")
_CAPTURE = _ORDER + "/captures/" + _ID.format("capture_id")
_TOKEN = "/customer-token/v1/tokens/" + _ID.format("token")


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
    _route("/payments/v1/authorizations/" + _ID.format("token") + "/customer-token",
           POST=create_customer_token),
    _route(_TOKEN, GET=read_customer_token),
    _route(_TOKEN + "/order", POST=create_order_from_customer_token),
    _route(_TOKEN + "/status", PATCH=update_customer_token_status),
)


def match_route(path: str) -> tuple[Route, dict[str, str]] | None:
    """The route for a raw (percent-encoded) path and its decoded parameters."""
    for route in ROUTES:
        found = route.pattern.match(path)
        if found:
            return route, {k: unquote(v) for k, v in found.groupdict().items()}
    return None
