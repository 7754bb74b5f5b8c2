"""``credit_invoice`` (eid, invno, credno, digest) → invno: refund what is left of an invoice.

REST: ``POST /orders/{id}/refunds`` of everything not yet refunded on that invoice, with the
invoice's unrefunded lines when they add up to it. Nothing left → 2102.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.calls.credit_part import refund_step, reply
from gateway.calls.spec import CallSpec, Target
from gateway.errors import AmountError
from gateway.model import MoneyKind
from gateway.translate.money import lines_total
from gateway.translate.plan import OrderContext, Plan
from gateway.translate.split import remaining_lines
from gateway.translate.states import REFUNDABLE, require_status
from gateway.wire import params as p
from gateway.wire.digest import DigestParts, simple
from gateway.wire.values import LegacyCall


@dataclass(frozen=True)
class CreditInvoice(LegacyCall):
    invno: str
    credno: str = ""

    method = "credit_invoice"


def digest(params: Sequence[Any]) -> DigestParts:
    """``eid:invno`` (p2, p3)."""
    return simple(params, 2, 3)


def decode(eid: int, version: str, params: Sequence[Any]) -> CreditInvoice:
    p.digest(params[5])
    return CreditInvoice(eid=eid, client_version=version,
                         invno=p.identifier(params[3], "invno"),
                         credno=p.text(params[4], "credno"))


def plan(call: CreditInvoice, ctx: OrderContext) -> Plan:
    invoice = ctx.invoice
    assert invoice is not None
    require_status(ctx.order, REFUNDABLE, "credit the invoice")
    amount = invoice.refundable
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
    return Plan(steps=(refund_step(ctx, body, call.credno, "everything left"),), notes=notes)


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "A refund of everything not yet refunded on that invoice (captured − refunded on it), "
    "`credno` as the refund's `reference`.",
    "The invoice's unrefunded lines are sent only when they add up to that amount; otherwise the "
    "refund has no lines (a note says so).",
    "Nothing left to refund on the invoice is 2102.",
)


SPEC = CallSpec(
    name="credit_invoice", call_type=CreditInvoice, eid_at=2, digest_at=5, arity=(6,),
    target=Target.INVOICE, money=MoneyKind.REFUND, digest=digest, decode=decode,
    plan=plan, reply=reply,
    summary="POST refunds of everything not yet refunded on that invoice → invno",
    differences=DIFFERENCES,
)
