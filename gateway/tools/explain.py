"""``klarna-gateway explain REQUEST.xml``: the dry run migration teams read.

Takes a legacy XML-RPC request exactly as an ERP sent it (a captured body), checks it the
way the gateway would (method, eid, digest, parameters: the same :class:`Authenticator`),
reads the order over REST (GET only), and returns the REST requests the call would become,
with the v2/REST differences, without sending any mutation or writing anything. The
differences every call of the method has are its declaration's (``CallSpec.differences``),
the same text ``docs/translation.md`` is generated from; the plan's notes are this call's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.calls import profiles
from gateway.calls.spec import Target
from gateway.errors import (
    BadOrderNoError, GatewayError, UnknownInvoiceError, UnknownReservationError,
)
from gateway.model import Reservation
from gateway.translate.plan import OrderContext, Plan
from gateway.wire.parse import parse_method_call

if TYPE_CHECKING:
    from gateway.calls.registry import CallRegistry
    from gateway.config import Config
    from gateway.edge.auth import Authenticator
    from gateway.om.client import OmClient
    from gateway.store.store import Store


@dataclass(frozen=True)
class Explanation:
    method: str
    reservation: Reservation
    order: dict[str, Any]
    plan: Plan
    summary: str
    differences: tuple[str, ...] = ()

    def format(self) -> str:
        head = (f"eid {self.reservation.eid}, rno {self.reservation.rno} = order "
                f"{self.reservation.order_id} ({self.order.get('status')}, "
                f"{self.order.get('remaining_authorized_amount')} uncaptured)")
        return "\n".join([head, format_plan(self.method, self.plan, self.summary),
                          *format_differences(self.method, self.differences)])


def format_plan(method: str, plan: Plan, summary: str = "") -> str:
    lines = [f"{method} becomes:" + (f"   [{summary}]" if summary else "")]
    if not plan.steps:
        lines.append("  no REST request")
    for i, step in enumerate(plan.steps, start=1):
        lines.append(f"  {i}. {step.http_method} {step.path}   ({step.purpose})")
        if step.body is not None:
            body = json.dumps(step.body, indent=2, ensure_ascii=False)
            lines += ["     " + ln for ln in body.splitlines()]
    if plan.allocate_invno:
        lines.append("  an invoice number is issued when the plan is journaled")
    if plan.answer is not None:
        lines.append(f"  answer: {json.dumps(plan.answer, ensure_ascii=False)}")
    for note in plan.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def format_differences(method: str, differences: tuple[str, ...]) -> list[str]:
    """The declared v2/REST differences of ``method``, as ``explain`` prints them."""
    if not differences:
        return []
    return [f"v2 and REST differ (every {method}):", *(f"  - {d}" for d in differences)]


@dataclass(frozen=True)
class Explainer:
    """The dry run, with what it reads: the configuration (the XML depth limit), the edge's
    :class:`~gateway.edge.auth.Authenticator`, the calls as served (each merchant's text
    repair applied), the store (read only) and Klarna (GET only); ``clock`` dates the
    order read's deadline and the plan's ``now``."""

    config: Config
    authenticator: Authenticator
    registry: CallRegistry
    store: Store
    om: OmClient
    clock: Any

    async def explain(self, body: bytes) -> Explanation:
        """The plan a captured request would get now. Raises the GatewayError the call
        would get (its fault), or ``OmError`` when the order cannot be read."""
        method, params = parse_method_call(body, max_depth=self.config.gateway.max_xml_depth)
        authed = self.authenticator.authenticate(method, params)
        call, spec = authed.call, self.registry.spec(method)  # planned as served, not counted
        ref = spec.ref(call)
        store = self.store
        invoice = None
        reservation: Reservation | None = None
        if ref.target in (Target.INVOICE, Target.ANY_NUMBER):
            invoice = await store.get_invoice(call.eid, ref.value)
            if invoice is not None:
                reservation = await store.get_reservation_by_id(invoice.reservation_id)
            elif ref.target is Target.INVOICE:
                raise UnknownInvoiceError(f"invoice {ref.value} is unknown for eid {call.eid}")
        elif ref.target is Target.MERCHANT_ORDER:
            found = await store.find_by_merchant_ref(call.eid, ref.value)
            if not found:
                raise BadOrderNoError(f"no reservation of eid {call.eid} carries the order id "
                                      f"{ref.value}")
            reservation = found[0]
        if reservation is None:
            reservation = await store.get_reservation(call.eid, ref.value) or \
                await store.get_reservation_by_order(call.eid, ref.value)
            if reservation is None:
                raise UnknownReservationError(f"reservation {ref.value} is unknown for eid "
                                              f"{call.eid}")
        if ref.target is not Target.INVOICE:
            invoice = None
        order = await self.om.get_order(authed.merchant, reservation.order_id,
                                        deadline=self.clock.seconds() + 10)
        invoices = tuple(await store.invoices_for(reservation.id))
        ctx = OrderContext(reservation=reservation, order=order, invoices=invoices,
                           invoice=invoice, now=self.clock.seconds())
        profiles.check(authed.merchant.profile, call, ctx)
        plan = spec.plan(call, ctx)
        return Explanation(method=method, reservation=reservation, order=order, plan=plan,
                           summary=spec.summary, differences=spec.differences)


__all__ = ["Explainer", "Explanation", "GatewayError", "format_differences", "format_plan"]
