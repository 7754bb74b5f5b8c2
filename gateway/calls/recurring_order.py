"""The recurring purchase as a journaled call: one REST step that creates the order.

Declared like a legacy call (``gateway.calls.spec.CallSpec``) so the engine journals it,
sends it with an idempotency key committed first, recovers it after a crash and binds a
client's identical retry to it, but registered as *internal*: the XML-RPC edge never offers
it. ``activate: true`` is served afterwards by an ordinary full ``activate`` of the new
reservation (a keyed capture whose capture id becomes the invoice), not by
``auto_capture``, whose capture the create answer does not name.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.calls.spec import CallSpec, Target
from gateway.model import MoneyKind, OrderCreatedEffect, Origin
from gateway.translate.plan import OrderContext, Plan, RestStep, Result
from gateway.wire.digest import DigestParts
from gateway.wire.values import LegacyCall

#: The "client version" recorded for calls that arrive over KCO v2's recurring endpoint.
CLIENT: Final = "kco:recurring-order-v1"


@dataclass(frozen=True)
class RecurringOrder(LegacyCall):
    """``token``: the v2 recurring token as sent; ``customer_token``: what it maps to;
    ``order``: the ``customer_token_order`` body (already translated); ``activate``: the v2
    flag (captured after creation); ``body_sha256`` binds identical requests."""

    token: str
    customer_token: str
    activate: bool
    body_sha256: str
    order: dict[str, Any] = field(default_factory=dict)

    method = "recurring_order"


def plan(call: RecurringOrder, ctx: OrderContext) -> Plan:
    step = RestStep(
        "POST", f"/customer-token/v1/tokens/{call.customer_token}/order", dict(call.order),
        f"create a recurring order with customer token {call.customer_token} "
        f"({call.order.get('order_amount')} minor units)",
        OrderCreatedEffect(eid=call.eid, origin=Origin.RECURRING.value))
    notes = ["KCO v2 recurring order → Customer Token API; auto_capture off: an activation "
             "is a separate keyed capture"]
    if call.token != call.customer_token:
        notes.append(f"recurring token {call.token} maps to customer token "
                     f"{call.customer_token}")
    return Plan(steps=(step,), notes=tuple(notes))


def reply(call: RecurringOrder, result: Result) -> Any:
    """The v2 answer's body: ``reservation`` as a string (the invoice is added once the
    activation, a call of its own, has run)."""
    return {"reservation": str(result.rno)}


def _no_digest(params: Sequence[Any]) -> DigestParts:  # pragma: no cover - never on XML-RPC
    raise NotImplementedError("recurring orders arrive over REST, with a body digest")


def _no_decode(eid: int, version: str, params: Sequence[Any]) -> RecurringOrder:  # pragma: no cover
    raise NotImplementedError("recurring orders arrive over REST")


#: Where v2 and REST differ for every call of this method (``docs/translation.md`` and
#: ``explain`` show them; the plan's notes say what applied to one call).
DIFFERENCES: Final = (
    "REST creates the order with the Customer Token API (`POST "
    "/customer-token/v1/tokens/{customer_token}/order`), the cart converted exactly "
    "(docs/order-management.md#from-legacy-goods-to-order-lines).",
    "`activate: true` is then a full `activate` of the new reservation (a keyed capture whose id "
    "becomes the invoice), not REST's `auto_capture`, whose capture the create answer does not "
    "name.",
    "The v2 recurring token maps to a customer token registered on the admin API (or, with "
    "`pass_through`, one Klarna knows as that merchant's is used as it is).",
)


SPEC = CallSpec(
    name="recurring_order", call_type=RecurringOrder, eid_at=0, digest_at=0, arity=(),
    target=Target.NONE, money=MoneyKind.NONE, digest=_no_digest, decode=_no_decode,
    plan=plan, reply=reply,
    summary="POST /customer-token/v1/tokens/{customer_token}/order; with activate, then a "
            "full activate of the new reservation → {reservation, invoice}",
    differences=DIFFERENCES,
)
