"""``invoice_part_amount`` (eid, invno, artnos, digest) → ``<int>``: what those articles are
worth on that invoice.

No REST mutation. The answer is exactly what ``credit_part`` with the same artnos would
refund on that invoice now: the listed quantities of the invoice's captured lines, after
what was already refunded of them, split with the same cumulative scheme
(:func:`gateway.translate.split.plan_partial_refund`), so asking first and crediting next
agree to the minor unit. The faults are credit_part's: 9108 for an artno not on the invoice,
9107 for a quantity above what is left of it (or a malformed list).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.calls.spec import CallSpec, Target
from gateway.model import MoneyKind
from gateway.translate.money import lines_total
from gateway.translate.plan import OrderContext, Plan, Result
from gateway.translate.split import plan_partial_refund
from gateway.wire import params as p
from gateway.wire.digest import DigestParts, artno_pairs, param
from gateway.wire.values import ArtNo, LegacyCall


@dataclass(frozen=True)
class InvoicePartAmount(LegacyCall):
    invno: str
    artnos: tuple[ArtNo, ...] = ()

    method = "invoice_part_amount"


def digest(params: Sequence[Any]) -> DigestParts:
    """``eid:invno:(artno:qty)*``, a concatenation no SDK filters (like credit_part)."""
    return DigestParts([param(params, 2), param(params, 3), *artno_pairs(param(params, 4))],
                       filtered=False)


def decode(eid: int, version: str, params: Sequence[Any]) -> InvoicePartAmount:
    p.digest(params[5])
    return InvoicePartAmount(eid=eid, client_version=version,
                             invno=p.identifier(params[3], "invno"),
                             artnos=p.artnos(params[4], "artnos"))


def plan(call: InvoicePartAmount, ctx: OrderContext) -> Plan:
    invoice = ctx.invoice
    assert invoice is not None
    amount = lines_total(plan_partial_refund(invoice.lines, invoice.refunded_qty,
                                             call.artnos))
    notes = [f"what credit_part of these artnos would refund on invoice {invoice.invno} "
             f"now: {amount} minor units (no REST request)"]
    if amount > invoice.refundable:
        notes.append(f"only {invoice.refundable} is left to refund on the invoice (other "
                     "credits, return_amount): credit_part of these artnos would get 2102")
    return Plan(answer=amount, notes=tuple(notes))


def reply(call: InvoicePartAmount, result: Result) -> Any:
    """An ``<int>`` of minor units (the SDKs divide it by 100)."""
    return int(result.answer)


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "Exactly what `credit_part` of those artnos would refund on that invoice now, split the same "
    "way, so asking first and crediting next agree to the minor unit.",
    "A figure larger than what is left to refund on the invoice is still answered (the credit "
    "would get 2102); an artno not on the invoice is 9108, too many units 9107.",
)


SPEC = CallSpec(
    name="invoice_part_amount", call_type=InvoicePartAmount, eid_at=2, digest_at=5,
    arity=(6,), target=Target.INVOICE, money=MoneyKind.NONE, digest=digest, decode=decode,
    plan=plan, reply=reply, read_only=True, line_keys=("artnos",),
    summary="GET order only: what credit_part of those artnos would refund on that "
            "invoice → <int> minor units",
    differences=DIFFERENCES,
)
