"""Order Management rules: who may do what, with Klarna's refusals.

Why these rules: docs/order-management.md#order-states.

Each function takes an already schema-validated body, checks the state machine and amount
rules, and either mutates the order or raises :class:`OmError` without touching it, so a
refusal never half-applies. Messages reuse Klarna's documented wording where it exists.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from gateway.sandbox.errors import OmError
from gateway.sandbox.orders import AUTHORIZATION_PERIOD, Capture, Order, Refund, Status
from gateway.sandbox.validation import check_line_arithmetic, check_lines_sum

#: Markets where a refund may carry a ``return_fee`` line (docs/order-management.md#return-fees).
RETURN_FEE_COUNTRIES = frozenset({"AT", "DE", "DK", "FI", "FR", "NL", "NO", "SE"})

#: Paid due-date extension options offered for every capture (amounts in minor units).
DUE_DATE_OPTIONS: tuple[tuple[int, int], ...] = ((7, 195), (14, 295), (30, 495))


def _not_allowed(message: str) -> OmError:
    return OmError(403, "NOT_ALLOWED", message)


def _state_word(order: Order) -> str | None:
    """The blocking state, as used in Klarna's "Order is cancelled." style messages."""
    if order.status is Status.CANCELLED:
        return "cancelled"
    if order.status is Status.EXPIRED:
        return "expired"
    if order.status is Status.CLOSED:
        return "closed"
    return None


def capture(order: Order, body: dict[str, Any], now: datetime,
            new_id: Callable[[], str]) -> Capture:
    """Create a capture (full or partial) while authorization remains.

    ``new_id`` is called only once the capture is allowed, so a refusal consumes no id (a
    seeded sandbox's capture ids do not depend on how many captures were refused).
    """
    amount = body["captured_amount"]
    lines = body.get("order_lines")

    def refuse(message: str) -> OmError:
        return OmError(403, "CAPTURE_NOT_ALLOWED", message)

    state = _state_word(order)
    if state:
        raise refuse(f"Order is {state}. Capture not possible.")
    if order.fraud_status == "PENDING":
        raise refuse("Order is pending a fraud decision. Capture not possible.")
    if order.fraud_status in ("REJECTED", "STOPPED"):
        raise refuse(f"Order fraud status is {order.fraud_status}. Capture not possible.")
    if order.status is Status.CAPTURED:
        raise refuse("Order is fully captured. Capture not possible.")
    if amount <= 0:
        raise refuse("Captured amount must be greater than 0. Capture not possible.")
    if amount > order.remaining_authorized_amount:
        raise refuse("Captured amount is higher than the remaining authorized amount. "
                     "Capture not possible.")
    check_lines_sum(lines, amount, "captured_amount")
    if order.capture_fails:
        raise refuse("Purchase for payment method failed. Capture not possible.")
    new = Capture(
        capture_id=new_id(),
        klarna_reference=f"{order.klarna_reference}-{len(order.captures) + 1}",
        captured_amount=amount,
        captured_at=now,
        description=body.get("description"),
        reference=body.get("reference"),
        order_lines=list(lines or []),
        billing_address=order.billing_address,
        shipping_address=order.shipping_address,
        shipping_info=list(body.get("shipping_info", [])),
    )
    order.captures.append(new)
    order.acknowledged = True
    order.settle_status()
    return new


def _allocate(order: Order, amount: int, lines: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """Spread a refund over captures: those holding a refunded line's ``reference`` first
    (Klarna's refund-allocation rule), then the oldest capture with room."""
    preferred: list[Capture] = []
    for line in lines:
        reference = line.get("reference")
        if reference is None:
            continue
        for cap in order.captures:
            if reference in cap.references() and cap not in preferred:
                preferred.append(cap)
                break
    ordering = preferred + [c for c in order.captures if c not in preferred]
    allocations: list[tuple[str, int]] = []
    left = amount
    for cap in ordering:
        if left == 0:
            break
        share = min(cap.room, left)
        if share > 0:
            allocations.append((cap.capture_id, share))
            left -= share
    return allocations


def refund(order: Order, body: dict[str, Any], now: datetime,
           new_id: Callable[[], str]) -> Refund:
    """Create a refund against what was captured and not yet refunded (``new_id`` as in
    :func:`capture`)."""
    amount = body["refunded_amount"]
    lines = body.get("order_lines")

    def refuse(message: str) -> OmError:
        return OmError(403, "REFUND_NOT_ALLOWED", message)

    if not order.captures:
        raise refuse("Order has no captures. Refund not possible")
    if amount <= 0:
        raise refuse("Refunded amount must be greater than 0. Refund not possible.")
    if amount > order.captured_amount - order.refunded_amount:
        raise refuse("Refunded amount is higher than the captured amount. Refund not possible.")
    if lines and any(line.get("type") == "return_fee" for line in lines):
        if len(order.captures) != 1 or order.status is not Status.CAPTURED:
            raise refuse("A return fee requires an order fully captured in one capture. "
                         "Refund not possible.")
        if order.purchase_country.upper() not in RETURN_FEE_COUNTRIES:
            raise refuse("Return fees are not available in this market. Refund not possible.")
    check_lines_sum(lines, amount, "refunded_amount")
    allocations = _allocate(order, amount, lines or [])
    for capture_id, share in allocations:
        cap = order.find_capture(capture_id)
        assert cap is not None
        cap.refunded_amount += share
    new = Refund(
        refund_id=new_id(),
        refunded_amount=amount,
        refunded_at=now,
        description=body.get("description"),
        reference=body.get("reference"),
        order_lines=list(lines or []),
        allocations=allocations,
    )
    order.refunds.append(new)
    return new


def cancel(order: Order) -> None:
    """Cancel an order that has no captures."""
    if order.captures:
        raise OmError(403, "CANCEL_NOT_ALLOWED",
                      "Order has previous captures. Cancel not possible.")
    state = _state_word(order)
    if state:
        raise OmError(403, "CANCEL_NOT_ALLOWED", f"Order is {state}. Cancel not possible.")
    order.status = Status.CANCELLED


def release_remaining_authorization(order: Order) -> None:
    """End the uncaptured rest of a part-captured order: remaining 0, status CAPTURED."""
    suffix = "Remaining authorization cannot be released."
    state = _state_word(order)
    if state:
        raise _not_allowed(f"Order is {state}. {suffix}")
    if order.status is Status.CAPTURED:
        raise _not_allowed(f"Order is fully captured. {suffix}")
    if not order.captures:
        raise _not_allowed(f"Order has no captures. {suffix}")
    order.released = True
    order.settle_status()


def extend_authorization_time(order: Order, now: datetime) -> None:
    """Push ``expires_at`` to call time + 28 days, never past creation + 180 days."""
    suffix = "Authorization time cannot be extended."
    state = _state_word(order)
    if state:
        raise _not_allowed(f"Order is {state}. {suffix}")
    if order.status is Status.CAPTURED:
        raise _not_allowed(f"Order is fully captured. {suffix}")
    cap = order.authorization_cap
    if order.expires_at >= cap:
        raise _not_allowed("Order has reached the maximum authorization time of 180 days. "
                           + suffix)
    order.expires_at = max(order.expires_at, min(now + AUTHORIZATION_PERIOD, cap))


def update_authorization(order: Order, body: dict[str, Any]) -> None:
    """Replace order_amount and order lines (absent lines delete the old ones)."""
    suffix = "Order authorization cannot be updated"
    amount = body["order_amount"]
    lines = body.get("order_lines", [])
    state = _state_word(order)
    if state:
        raise _not_allowed(f"Order is {state}. {suffix}")
    if order.status is Status.CAPTURED:
        raise _not_allowed(f"Order is fully captured. {suffix}")
    if order.fraud_status in ("REJECTED", "STOPPED"):
        raise _not_allowed(f"Order was rejected by the risk assessment. {suffix}")
    if amount < order.captured_amount:
        raise _not_allowed(f"Resulting authorization amount {amount} cannot be less than the "
                           f"captured amount {order.captured_amount} for order. {suffix}")
    check_line_arithmetic(lines)
    if lines and sum(line["total_amount"] for line in lines) != amount:
        raise OmError(400, "BAD_VALUE",
                      "Bad value: order_lines (the sum of total_amount must equal order_amount)")
    order.order_amount = amount
    order.order_lines = list(lines)
    order.settle_status()


def update_merchant_references(order: Order, body: dict[str, Any]) -> None:
    """Present fields overwrite (``""`` clears), absent fields stay."""
    if order.status is Status.CANCELLED:
        raise _not_allowed("Can not update a cancelled order")
    if "merchant_reference1" in body:
        order.merchant_reference1 = body["merchant_reference1"]
    if "merchant_reference2" in body:
        order.merchant_reference2 = body["merchant_reference2"]


def update_customer_details(order: Order, body: dict[str, Any]) -> None:
    """Update the shipping address field by field; billing address changes are refused."""
    suffix = "Customer details cannot be updated."
    state = _state_word(order)
    if state:
        raise _not_allowed(f"Order is {state}. {suffix}")
    if order.fraud_status in ("REJECTED", "STOPPED"):
        raise _not_allowed(f"Order was rejected by the risk assessment. {suffix}")
    billing = body.get("billing_address")
    if billing is not None and billing != (order.billing_address or {}):
        raise _not_allowed(f"Billing address cannot be updated for user account order. {suffix}")
    shipping = body.get("shipping_address")
    if shipping is not None:
        merged = dict(order.shipping_address or {})
        merged.update(shipping)
        order.shipping_address = merged


def append_order_shipping_info(order: Order, body: dict[str, Any]) -> None:
    order.shipping_info.extend(body["shipping_info"])


def find_capture_for_update(order: Order, capture_id: str, what: str) -> Capture:
    """The capture to change, or Klarna's refusal (403 when the order has no captures)."""
    if not order.captures:
        raise _not_allowed(f"Order has no captures. {what}")
    found = order.find_capture(capture_id)
    if found is None:
        raise OmError(404, "NO_SUCH_CAPTURE", f"Capture could not be found. {what} {capture_id}")
    return found


def append_capture_shipping_info(order: Order, capture_id: str, body: dict[str, Any]) -> None:
    cap = find_capture_for_update(order, capture_id,
                                  "Shipping info cannot be added to capture")
    cap.shipping_info.extend(body["shipping_info"])


def trigger_send_out(order: Order, capture_id: str) -> None:
    find_capture_for_update(order, capture_id, "Send out cannot be triggered for capture")


def extend_due_date(order: Order, capture_id: str, body: dict[str, Any]) -> None:
    cap = find_capture_for_update(order, capture_id, "Due date cannot be extended for capture")
    days = body["number_of_days"]
    if days not in {d for d, _ in DUE_DATE_OPTIONS}:
        raise _not_allowed(f"Extension of due date by {days} days is not offered for this capture.")
    if cap.due_date_extension_days:
        raise _not_allowed("Due date has already been extended for this capture.")
    cap.due_date_extension_days = days
