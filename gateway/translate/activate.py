"""``activate`` → ``POST /orders/{id}/captures`` (full or by artno).

Full activation captures exactly ``remaining_authorized_amount`` (never a recomputed sum:
rounding drift is how captures get refused). Partial activation captures the listed
quantities of the lines whose ``reference`` is the artno, split so that a line captured in
several parts sums exactly to the line (``gateway.translate.split``).
"""
from __future__ import annotations

from typing import Any

from gateway.errors import AmountError
from gateway.legacy.calls import Activate, ReservationFlag
from gateway.translate.money import lines_total
from gateway.translate.plan import OrderContext, Plan, RestStep, qty_by_reference
from gateway.translate.shipping import shipment_info_to_rest
from gateway.translate.split import plan_partial_capture, remaining_lines
from gateway.translate.states import require_fraud_accepted, require_status


def plan(call: Activate, ctx: OrderContext) -> Plan:
    order = ctx.order
    require_status(order, {"AUTHORIZED", "PART_CAPTURED"}, "activate")
    require_fraud_accepted(order, "activate")
    remaining = int(order.get("remaining_authorized_amount", 0))
    if remaining <= 0:
        raise AmountError("nothing left to activate on this reservation")
    notes: list[str] = []
    order_lines = list(order.get("order_lines") or [])
    captured_qty = qty_by_reference(list(order.get("captures") or []))
    body: dict[str, Any]
    if call.artnos:
        lines = plan_partial_capture(order_lines, captured_qty, call.artnos)
        amount = lines_total(lines)
        if amount <= 0:
            raise AmountError("the listed articles add up to nothing to capture")
        if amount > remaining:
            raise AmountError(f"the listed articles amount to {amount}, "
                              f"only {remaining} remains authorized")
        body = {"captured_amount": amount, "order_lines": lines}
    else:
        body = {"captured_amount": remaining}
        try:
            rest = remaining_lines(order_lines, captured_qty)
        except ValueError:  # Klarna's own lines break their arithmetic: send none
            rest = []
        if rest and lines_total(rest) == remaining:
            body["order_lines"] = rest
        else:
            notes.append("full activation captured remaining_authorized_amount without "
                         "order lines: the uncaptured lines do not add up to it")
    if call.orderid1:
        body["reference"] = call.orderid1
    if call.ocr:
        body["description"] = call.ocr
    shipping = shipment_info_to_rest(call.shipment_info)
    if shipping:
        body["shipping_info"] = shipping
    if call.flags & ReservationFlag.TEST_MODE:
        notes.append("TEST_MODE flag recorded; REST has no per-capture test mode")
    if call.flags & (ReservationFlag.SEND_BY_EMAIL | ReservationFlag.SEND_BY_MAIL):
        notes.append("SEND_BY_EMAIL/MAIL: no extra call, a capture notifies the customer")
    if call.flags & ReservationFlag.PRESERVE_RESERVATION:
        notes.append("PRESERVE_RESERVATION is the REST default: the rest stays authorized")
    step = RestStep(
        "POST", f"/ordermanagement/v1/orders/{ctx.order_id}/captures", body,
        purpose=("capture " + ("listed articles" if call.artnos else "everything uncaptured")
                 + f" ({body['captured_amount']} minor units)"),
        effect={"kind": "capture", "reservation_id": ctx.reservation.id,
                "order_id": ctx.order_id,
                "status_after": ("CAPTURED" if body["captured_amount"] == remaining
                                 else "PART_CAPTURED")},
    )
    return Plan(steps=(step,), notes=tuple(notes), allocate_invno=True)
