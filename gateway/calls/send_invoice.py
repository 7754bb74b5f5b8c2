"""``send_invoice`` (eid, invno, digest) → invno: v2's postal send-out.

Postal send-out does not exist in REST: the capture's customer communication is triggered
instead (``POST captures/{capture_id}/trigger-send-out``), and the journal says so.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from gateway.calls import email_invoice
from gateway.calls.spec import CallSpec, Target
from gateway.model import MoneyKind
from gateway.translate.plan import OrderContext, Plan
from gateway.wire import params as p
from gateway.wire.values import LegacyCall


@dataclass(frozen=True)
class SendInvoice(LegacyCall):
    invno: str

    method = "send_invoice"


def decode(eid: int, version: str, params: Sequence[Any]) -> SendInvoice:
    p.digest(params[4])
    return SendInvoice(eid=eid, client_version=version,
                       invno=p.identifier(params[3], "invno"))


def plan(call: SendInvoice, ctx: OrderContext) -> Plan:
    return replace(email_invoice.plan(call, ctx), notes=(
        "postal send-out does not exist in REST: triggered the capture's customer "
        "communication instead",))


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "REST has no postal send-out: the capture's customer communication is triggered instead, as "
    "for `email_invoice`, and the journal notes it.",
)


SPEC = CallSpec(
    name="send_invoice", call_type=SendInvoice, eid_at=2, digest_at=4, arity=(5,),
    target=Target.INVOICE, money=MoneyKind.NONE, digest=email_invoice.digest,
    decode=decode, plan=plan, reply=email_invoice.reply,
    summary="as email_invoice (no postal send-out in REST) → invno",
    differences=DIFFERENCES,
)
