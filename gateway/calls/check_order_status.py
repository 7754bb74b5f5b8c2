"""``check_order_status`` (eid, digest, id, type) → ``<int>``: the credit decision on an order.

The id is a reservation or invoice number (type 0) or the merchant's own order id (type 1).
REST: ``GET order``, nothing else: ``fraud_status`` ACCEPTED → 1, PENDING → 2, REJECTED or
STOPPED → 3 (v2's ACCEPTED/PENDING/DENIED). Order Management cannot search by the merchant's
order id, so type 1 finds orders whose ``merchant_reference1/2`` the gateway has read (on
registration, on every call that reads the order, and after ``update``/``update_orderno``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.calls.spec import CallSpec, Ref, Target
from gateway.errors import UnknownTypeError
from gateway.model import MoneyKind
from gateway.translate.plan import OrderContext, Plan, Result
from gateway.wire import params as p
from gateway.wire.digest import DigestParts, simple
from gateway.wire.values import LegacyCall

#: check_order_status ``type``: 0 invoice or reservation number, 1 the merchant's order id.
BY_NUMBER: Final = 0
BY_ORDER_ID: Final = 1

#: REST fraud_status → v2 order status (1 ACCEPTED, 2 PENDING, 3 DENIED).
STATUS_CODES: Final = {"ACCEPTED": 1, "PENDING": 2, "REJECTED": 3, "STOPPED": 3}


@dataclass(frozen=True)
class CheckOrderStatus(LegacyCall):
    id: str
    type: int = BY_NUMBER

    method = "check_order_status"


def digest(params: Sequence[Any]) -> DigestParts:
    """``eid:id`` (p2, p4)."""
    return simple(params, 2, 4)


def decode(eid: int, version: str, params: Sequence[Any]) -> CheckOrderStatus:
    p.digest(params[3])
    kind = p.integer(params[5], "type")
    if kind not in (BY_NUMBER, BY_ORDER_ID):
        raise UnknownTypeError(f"type must be 0 (invoice or reservation number) or 1 (order "
                               f"id), not {kind}")
    return CheckOrderStatus(eid=eid, client_version=version,
                            id=p.identifier(params[4], "id"), type=kind)


def locate(call: CheckOrderStatus) -> Ref:
    return Ref(Target.ANY_NUMBER if call.type == BY_NUMBER else Target.MERCHANT_ORDER, call.id)


def plan(call: CheckOrderStatus, ctx: OrderContext) -> Plan:
    fraud = ctx.order.get("fraud_status")
    notes = ["v2's status was the credit decision; REST's fraud_status is its counterpart"]
    if fraud not in STATUS_CODES:
        notes.append(f"fraud_status {fraud!r} is not one v2 knew: answered 1 (ACCEPTED)")
    return Plan(notes=tuple(notes), answer=STATUS_CODES.get(str(fraud), 1))


def reply(call: CheckOrderStatus, result: Result) -> Any:
    """An ``<int>``: integrators compare it with ``== KlarnaFlags::ACCEPTED``."""
    return int(result.answer)


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "v2's status was its credit decision; REST's counterpart is the order's `fraud_status`: "
    "ACCEPTED → 1, PENDING → 2, REJECTED or STOPPED → 3, any other value → 1 (noted).",
    "Type 0 takes a reservation or an invoice number (neither: 9109).",
    "Type 1, the merchant's order id, finds only orders whose `merchant_reference1`/`2` the "
    "gateway has read (at registration, on every call that reads the order, after `update` and "
    "`update_orderno`): Order Management cannot search by them; none is 9111.",
)


SPEC = CallSpec(
    name="check_order_status", call_type=CheckOrderStatus, eid_at=2, digest_at=3, arity=(6,),
    target=Target.LOOKUP, money=MoneyKind.NONE, digest=digest, decode=decode, plan=plan,
    reply=reply, locate=locate,
    summary="GET order; fraud_status ACCEPTED/PENDING/REJECTED → 1/2/3 (by rno, invno or the "
            "merchant's order id)",
    differences=DIFFERENCES,
)
