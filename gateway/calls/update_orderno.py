"""``update_orderno`` (eid, digest, invno, orderid) → invno: change the merchant's order number.

REST: ``PATCH /orders/{id}/merchant-references`` with ``merchant_reference1`` = orderid, only
when it differs from the order's current one. The difference (a note in the journal): REST
merchant references belong to the whole order, so every invoice of the order shows the new
number, where v2 changed it on the one invoice named. An empty orderid clears
``merchant_reference1`` (the SDKs send ``''`` when asked to). The digest has no eid:
``invno:orderid`` (P2 drops an orderid of ``''`` or ``'0'``, P4 ``''``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.calls.spec import CallSpec, Target
from gateway.errors import InvalidParamsError
from gateway.model import MoneyKind
from gateway.translate.plan import OrderContext, Plan, RestStep, Result
from gateway.wire import params as p
from gateway.wire.digest import DigestParts, simple
from gateway.wire.values import LegacyCall

#: REST limit on ``merchant_reference1`` (docs/order-management.md#field-limits).
MAX_REFERENCE: Final = 255


@dataclass(frozen=True)
class UpdateOrderno(LegacyCall):
    invno: str
    orderid: str = ""

    method = "update_orderno"


def digest(params: Sequence[Any]) -> DigestParts:
    """``invno:orderid`` (p4, p5): no eid, filtered per SDK dialect."""
    return simple(params, 4, 5)


def decode(eid: int, version: str, params: Sequence[Any]) -> UpdateOrderno:
    p.digest(params[3])
    orderid = p.text(params[5], "orderid")
    if len(orderid) > MAX_REFERENCE:
        raise InvalidParamsError(f"orderid: {len(orderid)} characters, at most "
                                 f"{MAX_REFERENCE} allowed")
    return UpdateOrderno(eid=eid, client_version=version,
                         invno=p.identifier(params[4], "invno"), orderid=orderid)


def plan(call: UpdateOrderno, ctx: OrderContext) -> Plan:
    assert ctx.invoice is not None
    scope = (f"REST merchant references belong to the whole order: every invoice of order "
             f"{ctx.order_id} now shows it (v2 changed invoice {ctx.invoice.invno} only)")
    if call.orderid == (ctx.order.get("merchant_reference1") or ""):
        return Plan(notes=("merchant_reference1 already has this value: no request sent",))
    step = RestStep("PATCH", f"{ctx.base}/merchant-references",
                    {"merchant_reference1": call.orderid},
                    "set merchant_reference1" if call.orderid else "clear merchant_reference1")
    return Plan(steps=(step,), notes=(scope,))


def reply(call: UpdateOrderno, result: Result) -> Any:
    assert result.invno is not None
    return str(result.invno)


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "REST merchant references belong to the whole order: `merchant_reference1` changes, so every "
    "invoice of the order shows the new number (v2 changed the one invoice named).",
    "Sent only when it changes; an empty orderid clears it.",
)


SPEC = CallSpec(
    name="update_orderno", call_type=UpdateOrderno, eid_at=2, digest_at=3, arity=(6,),
    target=Target.INVOICE, money=MoneyKind.NONE, digest=digest, decode=decode,
    plan=plan, reply=reply,
    summary="PATCH merchant-references {merchant_reference1} (only if it changes; the "
            "whole order's) → invno",
    differences=DIFFERENCES,
)
