"""``invoice_amount`` (eid, invno, digest) → ``<int>``: what the invoice amounts to now.

No REST mutation: the engine reads the order (adopting captures and refunds made elsewhere,
so the invoice's refunded total is current), and the answer is that invoice's captured
amount minus what was refunded on it, in minor units. That is v2's meaning: a v2 credit
lowered the invoice's total, so ``invoice_amount`` after ``credit_part`` answered the rest.
The SDKs divide the reply by 100 (PY ``result / 100.0``), so it must be a number: an
``<int>``, never a string.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.calls.spec import CallSpec, Target
from gateway.model import MoneyKind
from gateway.translate.plan import OrderContext, Plan, Result
from gateway.wire import params as p
from gateway.wire.digest import DigestParts, simple
from gateway.wire.values import LegacyCall


@dataclass(frozen=True)
class InvoiceAmount(LegacyCall):
    invno: str

    method = "invoice_amount"


def digest(params: Sequence[Any]) -> DigestParts:
    """``eid:invno`` (p2, p3), the SDKs' colon digest."""
    return simple(params, 2, 3)


def decode(eid: int, version: str, params: Sequence[Any]) -> InvoiceAmount:
    p.digest(params[4])
    return InvoiceAmount(eid=eid, client_version=version,
                         invno=p.identifier(params[3], "invno"))


def plan(call: InvoiceAmount, ctx: OrderContext) -> Plan:
    invoice = ctx.invoice
    assert invoice is not None
    net = invoice.captured_amount - invoice.refunded_amount
    return Plan(answer=net, notes=(
        f"v2 invoice_amount = the invoice's total after credits: captured "
        f"{invoice.captured_amount} − refunded {invoice.refunded_amount} on invoice "
        f"{invoice.invno} = {net} minor units (no REST request)",))


def reply(call: InvoiceAmount, result: Result) -> Any:
    """An ``<int>`` of minor units (the SDKs divide it by 100)."""
    return int(result.answer)


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "No REST request beyond reading the order (captures and refunds made elsewhere adopted "
    "first): the answer is the invoice's total after credits, captured − refunded on it, in "
    "minor units (v2's meaning).",
    "Worked out afresh on every call: an identical read is never answered from an earlier call.",
)


SPEC = CallSpec(
    name="invoice_amount", call_type=InvoiceAmount, eid_at=2, digest_at=4, arity=(5,),
    target=Target.INVOICE, money=MoneyKind.NONE, digest=digest, decode=decode,
    plan=plan, reply=reply, read_only=True,
    summary="GET order only: captured − refunded on that invoice → <int> minor units",
    differences=DIFFERENCES,
)
