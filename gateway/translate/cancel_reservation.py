"""``cancel_reservation`` → ``POST cancel`` or ``POST release-remaining-authorization``.

A v2 merchant cancels "what is left of the reservation": before any capture that is a
REST cancel; after a partial capture it is a release of the uncaptured rest (REST refuses
cancel there). Cancelling an already cancelled order answers ``ok``, so a client retrying
after a lost answer does not get an error.
"""
from __future__ import annotations

from gateway.legacy.calls import CancelReservation
from gateway.translate.plan import OrderContext, Plan, RestStep
from gateway.translate.states import require_status


def plan(call: CancelReservation, ctx: OrderContext) -> Plan:
    status = ctx.status
    if status == "CANCELLED":
        return Plan(immediate_reply="ok", notes=("already cancelled: answered ok",))
    require_status(ctx.order, {"AUTHORIZED", "PART_CAPTURED"}, "cancel the reservation")
    base = f"/ordermanagement/v1/orders/{ctx.order_id}"
    if status == "AUTHORIZED":
        step = RestStep("POST", f"{base}/cancel", None, "cancel the uncaptured order",
                        {"kind": "status", "reservation_id": ctx.reservation.id,
                         "status": "CANCELLED"})
        return Plan(steps=(step,))
    step = RestStep("POST", f"{base}/release-remaining-authorization", None,
                    "release the uncaptured rest of a part-captured order",
                    {"kind": "status", "reservation_id": ctx.reservation.id,
                     "status": "CAPTURED"})
    return Plan(steps=(step,), notes=(
        "v2 cancel after a partial activation = REST release-remaining-authorization",))
