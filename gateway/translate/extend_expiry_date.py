"""``extend_expiry_date`` → ``POST extend-authorization-time``, then the new ``expires_at``.

REST answers 204 with no date, so the engine reads the order again and the reply is its
``expires_at`` in Europe/Stockholm wall time, ``YYYYMMDDTHHMMSS`` (what the SDKs parse).
"""
from __future__ import annotations

from gateway.legacy.calls import ExtendExpiryDate
from gateway.translate.plan import OrderContext, Plan, RestStep
from gateway.translate.states import require_status


def plan(call: ExtendExpiryDate, ctx: OrderContext) -> Plan:
    require_status(ctx.order, {"AUTHORIZED", "PART_CAPTURED"}, "extend the expiry date")
    step = RestStep("POST", f"/ordermanagement/v1/orders/{ctx.order_id}/extend-authorization-time",
                    None, "extend the authorization time")
    return Plan(steps=(step,), notes=(
        "REST extends to the call day + the merchant's period, capped at creation + 180 days",))
