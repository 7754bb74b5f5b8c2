"""``credit_part`` and ``credit_invoice`` → ``POST /orders/{id}/refunds`` against one invoice.

Bookkeeping is per invoice (= per capture): a credit never refunds more of a line than was
captured on that invoice minus what was already refunded on it, and the refund's order
lines carry the captured references so Klarna allocates it to the right capture. The
merchant's credit number travels as the refund ``reference``.
"""
from __future__ import annotations

from typing import Any

from gateway.errors import AmountError, BadArtnoListError
from gateway.legacy.calls import CreditInvoice, CreditPart
from gateway.translate.money import goods_to_order_lines, lines_total
from gateway.translate.plan import OrderContext, Plan, RestStep
from gateway.translate.split import plan_partial_refund, remaining_lines
from gateway.translate.states import require_status

_REFUNDABLE = {"PART_CAPTURED", "CAPTURED", "CANCELLED", "EXPIRED", "CLOSED", "AUTHORIZED"}


def _step(ctx: OrderContext, body: dict[str, Any], credno: str, what: str) -> RestStep:
    assert ctx.invoice is not None
    if credno:
        body["reference"] = credno
    return RestStep(
        "POST", f"/ordermanagement/v1/orders/{ctx.order_id}/refunds", body,
        purpose=f"refund {what} of invoice {ctx.invoice.invno} ({body['refunded_amount']} minor units)",
        effect={"kind": "refund", "invoice_id": ctx.invoice.id, "order_id": ctx.order_id,
                "credno": credno},
    )


def _refundable(ctx: OrderContext) -> int:
    assert ctx.invoice is not None
    return ctx.invoice.captured_amount - ctx.invoice.refunded_amount


def plan_credit_part(call: CreditPart, ctx: OrderContext) -> Plan:
    invoice = ctx.invoice
    assert invoice is not None
    require_status(ctx.order, _REFUNDABLE, "credit the invoice")
    if not call.artnos and not call.goods:
        raise BadArtnoListError("credit_part needs artnos or a goods list")
    lines: list[dict[str, Any]] = []
    if call.artnos:
        lines += plan_partial_refund(invoice.lines, invoice.refunded_qty, call.artnos)
    notes: list[str] = []
    if call.goods:
        lines += goods_to_order_lines(call.goods)
        notes.append("credit_part goods list refunded as extra refund lines")
    amount = lines_total(lines)
    if amount <= 0:
        raise AmountError("the credit adds up to nothing to refund")
    if amount > _refundable(ctx):
        raise AmountError(f"the credit amounts to {amount}, only {_refundable(ctx)} "
                          f"is left to refund on invoice {invoice.invno}")
    return Plan(steps=(_step(ctx, {"refunded_amount": amount, "order_lines": lines},
                             call.credno, "listed articles"),), notes=tuple(notes))


def plan_credit_invoice(call: CreditInvoice, ctx: OrderContext) -> Plan:
    invoice = ctx.invoice
    assert invoice is not None
    require_status(ctx.order, _REFUNDABLE, "credit the invoice")
    amount = _refundable(ctx)
    if amount <= 0:
        raise AmountError(f"nothing left to refund on invoice {invoice.invno}")
    body: dict[str, Any] = {"refunded_amount": amount}
    notes: tuple[str, ...] = ()
    try:
        rest = remaining_lines(invoice.lines, invoice.refunded_qty)
    except ValueError:  # lines of an adopted capture may not follow the line identity
        rest = []
    if rest and lines_total(rest) == amount:
        body["order_lines"] = rest
    else:
        notes = ("refund sent without order lines: the invoice's unrefunded lines do not "
                 "add up to its unrefunded amount",)
    return Plan(steps=(_step(ctx, body, call.credno, "everything left"),), notes=notes)
