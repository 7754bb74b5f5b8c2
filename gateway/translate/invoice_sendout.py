"""``email_invoice`` / ``send_invoice`` → ``POST captures/{capture_id}/trigger-send-out``.

REST has one "resend customer communication" per capture; there is no postal send-out, so
``send_invoice`` triggers the same communication (noted in the journal).
"""
from __future__ import annotations

from gateway.legacy.calls import EmailInvoice, SendInvoice
from gateway.translate.plan import OrderContext, Plan, RestStep


def plan(call: EmailInvoice | SendInvoice, ctx: OrderContext) -> Plan:
    assert ctx.invoice is not None
    notes: tuple[str, ...] = ()
    if isinstance(call, SendInvoice):
        notes = ("postal send-out does not exist in REST: triggered the capture's "
                 "customer communication instead",)
    step = RestStep(
        "POST", f"/ordermanagement/v1/orders/{ctx.order_id}/captures/"
        f"{ctx.invoice.capture_id}/trigger-send-out", None,
        f"resend the customer communication of invoice {ctx.invoice.invno}")
    return Plan(steps=(step,), notes=notes)
