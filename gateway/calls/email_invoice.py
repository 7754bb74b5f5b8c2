"""``email_invoice`` (eid, invno, digest) → invno: send the invoice to the customer again.

REST: ``POST /orders/{id}/captures/{capture_id}/trigger-send-out``, the one "resend customer
communication" per capture. ``send_invoice`` (postal) reuses this plan with a note.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.calls.spec import CallSpec, Target
from gateway.model import MoneyKind
from gateway.translate.plan import OrderContext, Plan, RestStep, Result
from gateway.wire import params as p
from gateway.wire.digest import DigestParts, simple
from gateway.wire.values import LegacyCall


@dataclass(frozen=True)
class EmailInvoice(LegacyCall):
    invno: str

    method = "email_invoice"


def digest(params: Sequence[Any]) -> DigestParts:
    """``eid:invno`` (p2, p3)."""
    return simple(params, 2, 3)


def decode(eid: int, version: str, params: Sequence[Any]) -> EmailInvoice:
    p.digest(params[4])
    return EmailInvoice(eid=eid, client_version=version,
                        invno=p.identifier(params[3], "invno"))


def plan(call: LegacyCall, ctx: OrderContext) -> Plan:
    assert ctx.invoice is not None
    step = RestStep(
        "POST", f"{ctx.base}/captures/{ctx.invoice.capture_id}/trigger-send-out", None,
        f"resend the customer communication of invoice {ctx.invoice.invno}")
    return Plan(steps=(step,))


def reply(call: LegacyCall, result: Result) -> Any:
    assert result.invno is not None
    return str(result.invno)


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "REST e-mails no invoice: `POST captures/{capture_id}/trigger-send-out` has Klarna send the "
    "customer communication of the invoice's capture again.",
)


SPEC = CallSpec(
    name="email_invoice", call_type=EmailInvoice, eid_at=2, digest_at=4, arity=(5,),
    target=Target.INVOICE, money=MoneyKind.NONE, digest=digest, decode=decode,
    plan=plan, reply=reply,
    summary="POST captures/{capture_id}/trigger-send-out → invno",
    differences=DIFFERENCES,
)
