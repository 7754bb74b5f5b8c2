"""``credit_part`` (eid, invno, artnos, credno, digest [, 0, goods_list]) → invno: a partial refund.

REST: ``POST /orders/{id}/refunds`` against one invoice. Bookkeeping is per invoice (= per
capture): a credit never refunds more of a line than was captured on that invoice minus what
was already refunded on it, and the refund's order lines carry the captured references so
Klarna allocates it to the right capture. The trailing goods list (restocking fees and the
like) is refunded as extra lines. The merchant's credit number travels as ``reference``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.calls.spec import CallSpec, Target
from gateway.errors import AmountError, BadArtnoListError, InvalidParamsError
from gateway.model import MoneyKind, RefundEffect
from gateway.translate.money import goods_to_order_lines, lines_total
from gateway.translate.plan import OrderContext, Plan, RestStep, Result
from gateway.translate.split import plan_partial_refund
from gateway.translate.states import REFUNDABLE, require_status
from gateway.wire import params as p
from gateway.wire.digest import DigestParts, artno_pairs, param
from gateway.wire.values import ArtNo, Goods, LegacyCall


@dataclass(frozen=True)
class CreditPart(LegacyCall):
    invno: str
    artnos: tuple[ArtNo, ...] = ()
    credno: str = ""
    goods: tuple[Goods, ...] = ()

    method = "credit_part"


def digest(params: Sequence[Any]) -> DigestParts:
    """``eid:invno:artno:qty…``, a concatenation no SDK filters."""
    return DigestParts([param(params, 2), param(params, 3), *artno_pairs(param(params, 4))],
                       filtered=False)


def decode(eid: int, version: str, params: Sequence[Any]) -> CreditPart:
    p.digest(params[6])
    goods: tuple[Goods, ...] = ()
    if len(params) == 9:
        marker = params[7]
        if isinstance(marker, bool) or marker not in (0, "0"):
            raise InvalidParamsError("parameter 7 of credit_part must be 0")
        goods = p.goods_list(params[8], "goods_list")
    return CreditPart(
        eid=eid,
        client_version=version,
        invno=p.identifier(params[3], "invno"),
        artnos=p.artnos(params[4], "artnos"),
        credno=p.text(params[5], "credno"),
        goods=goods,
    )


def refund_step(ctx: OrderContext, body: dict[str, Any], credno: str, what: str) -> RestStep:
    """The refund of ``body`` against the call's invoice (shared with credit_invoice)."""
    assert ctx.invoice is not None
    if credno:
        body["reference"] = credno
    return RestStep(
        "POST", f"{ctx.base}/refunds", body,
        purpose=f"refund {what} of invoice {ctx.invoice.invno} "
                f"({body['refunded_amount']} minor units)",
        effect=RefundEffect(invoice_id=ctx.invoice.id, order_id=ctx.order_id, credno=credno),
    )


def plan(call: CreditPart, ctx: OrderContext) -> Plan:
    invoice = ctx.invoice
    assert invoice is not None
    require_status(ctx.order, REFUNDABLE, "credit the invoice")
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
    if amount > invoice.refundable:
        raise AmountError(f"the credit amounts to {amount}, only {invoice.refundable} "
                          f"is left to refund on invoice {invoice.invno}")
    return Plan(steps=(refund_step(ctx, {"refunded_amount": amount, "order_lines": lines},
                                   call.credno, "listed articles"),), notes=tuple(notes))


def reply(call: LegacyCall, result: Result) -> Any:
    assert result.invno is not None
    return str(result.invno)


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "A refund against one invoice (one capture): each artno names that invoice's captured lines "
    "by `reference`, never more units than were captured on it minus what was refunded on it "
    "(9107); an artno not on the invoice is 9108.",
    "The refund's lines carry the captured references, which is how Klarna books the refund on "
    "that invoice's capture (docs/order-management.md#partial-captures-and-refunds).",
    "The trailing goods list (restocking fees and the like) is refunded as extra lines, built by "
    "the goods → lines rules (docs/order-management.md#from-legacy-goods-to-order-lines).",
    "Neither artnos nor a goods list is 9107; more than is left to refund on the invoice is "
    "2102.",
    "`credno` travels as the refund's `reference`.",
)


SPEC = CallSpec(
    name="credit_part", call_type=CreditPart, eid_at=2, digest_at=6, arity=(7, 9),
    target=Target.INVOICE, money=MoneyKind.REFUND, digest=digest, decode=decode,
    plan=plan, reply=reply, free_text=("goods",), line_keys=("artnos",),
    summary="POST refunds with that invoice's lines (+ trailing goods list), "
            "reference = credno → invno",
    differences=DIFFERENCES,
)
