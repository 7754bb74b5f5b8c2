"""A new operation: read → plan → intent.

The claim's read found no bound twin; what the call names is known (or is found now: an
invoice number, the merchant's order id, an order id used as the rno). The order is read
as Klarna reports it now (captures and refunds made elsewhere are adopted first), the
call's pure plan is asked what to send, and the intent commits the entry, its steps and
their idempotency keys and the order's lease, only if the order has not moved since the
claim's read. A plan with nothing to send is answered at once and recorded, never bound.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from gateway.binding import Verdict
from gateway.calls import profiles
from gateway.calls.spec import CallSpec, Target
from gateway.config import Merchant
from gateway.engine.answers import Answer
from gateway.engine.claim import (
    Held, Ticket, guard_unresolved_change, guard_unresolved_money, new_token, pause,
)
from gateway.engine.failures import Failures
from gateway.engine.resolve import Resolver
from gateway.errors import NotAllowedError, UpstreamUnavailableError
from gateway.metrics import Metrics
from gateway.om.client import DeadlineExceededError, OmClient, RestResponseError, \
    RestTransportError
from gateway.store import journal
from gateway.store.journal import OrderMovedError, OrderView, TwinBoundError
from gateway.store.store import Store
from gateway.translate.plan import OrderContext, Plan, Result, new_order
from gateway.wire.values import LegacyCall

log = Logger()

#: Builds the call's reply, given the order as it is after the steps (for calls whose
#: declaration says their reply reads it) or None.
ReplyOf = Callable[[dict[str, Any] | None], Any]


def reply_of(spec: CallSpec[Any], call: LegacyCall, held: Held, order: Any, answer: Any
             ) -> ReplyOf:
    """The reply the held entry's steps earn (from the call, the numbers issued with its
    intent and, for calls that say so, the order after the steps)."""
    def reply(after: dict[str, Any] | None) -> Any:
        return spec.reply(call, Result(invno=held.invno, rno=held.rno,
                                       order=after if after is not None else order,
                                       answer=answer))
    return reply


@dataclass(frozen=True)
class Prepared:
    """A plan with steps, and what its intent commits."""

    order: OrderView | None
    ctx: OrderContext
    plan: Plan
    #: The order's status and merchant references as read (kept on the reservation).
    facts: tuple[str | None, str | None, str | None] | None


class Planner:
    def __init__(self, store: Store, om: OmClient, clock: Any, failures: Failures,
                 lease_seconds: float, metrics: Metrics) -> None:
        self.store, self.om, self.clock, self.failures = store, om, clock, failures
        self.resolver = Resolver(store, om)
        self.lease_seconds = lease_seconds
        self.metrics = metrics

    async def prepare(self, merchant: Merchant, t: Ticket, view: journal.CallView,
                      verdict: Verdict) -> Prepared | Answer | None:
        """read → plan: a plan to journal, an answer (nothing to send), or None when the
        claim must be made again. A refusal is journaled and raised."""
        order = view.order
        try:
            if t.spec.target is not Target.NONE and order is None:
                order = await self._resolve(merchant, t)
            if order is not None and order.leased(self.clock.seconds()):
                await pause(self.clock, t.deadline, "another call on this reservation is "
                                                    "still in progress; retry")
                return None
            guard_unresolved_money(t.spec, order.unresolved if order else {})
            read = await self._read(merchant, t, order)
            if read is None:
                return None
            ctx, facts = read
            plan = self._plan(merchant, t, ctx)
            if not plan.steps:
                return await self._answer(t, order, ctx, plan, facts, view, verdict)
            guard_unresolved_change(t.spec, order.unresolved if order else {})
            if self.clock.seconds() >= t.deadline:  # its client may have given up: never
                raise UpstreamUnavailableError(  # send late (its retry is a new call)
                    "the call ran out of time before anything was sent; retry the same call")
        except Exception as e:  # noqa: BLE001 - every failure is classified in one place
            raise await self.failures.refused(t, order, e) from None
        return Prepared(order, ctx, plan, facts)

    async def intend(self, t: Ticket, p: Prepared, view: journal.CallView, verdict: Verdict,
                     watermark: int) -> Held | None:
        """Commit the entry, its steps and keys and the order's lease; None when the order
        moved, or an identical call got bound or made its operation, since the claim's
        first read (``watermark``)."""
        token, order = new_token(), p.order
        unbind = (view.holder.id, view.holder.binding.token) \
            if verdict.unbind and view.holder is not None else None
        intent = journal.Intent(
            t.call.eid, t.call.method, t.fingerprint, t.call_json, token,
            self.clock.seconds() + self.lease_seconds, p.plan.steps, p.plan.notes,
            rno=order.reservation.rno if order else None, invno=t.invno, order=order,
            facts=p.facts, allocate_invno=p.plan.allocate_invno,
            allocate_rno=p.plan.allocate_rno, unbind=unbind, watermark=watermark)
        try:
            made = await self.store.record_intent(intent)
        except (OrderMovedError, TwinBoundError):
            return None
        self._count_repairs(t, p.plan)
        return Held(made.journal_id, token, made.steps, t.call.eid,
                    order.reservation if order else None, invno=made.invno, rno=made.rno)

    def _count_repairs(self, t: Ticket, plan: Plan) -> None:
        """Text repairs of a journaled plan (once: a plan is journaled once; one whose
        repair failed is noted, not counted)."""
        for r in plan.repairs:
            if r.error is None:
                self.metrics.text_repair(t.call.eid, r.label, r.mode)

    async def _resolve(self, merchant: Merchant, t: Ticket) -> OrderView:
        """The call named no registered reservation directly: find or register it, read it."""
        reservation = await self.resolver.resolve(merchant, t.spec, t.call, t.deadline)
        order = (await self.store.read_call(t.query(reservation))).order
        assert order is not None
        return order

    async def _read(self, merchant: Merchant, t: Ticket, order: OrderView | None
                    ) -> tuple[OrderContext, tuple[Any, ...] | None] | None:
        """What the plan may look at: the order as Klarna reports it now, or nothing yet
        for a call that creates one. None: captures/refunds made elsewhere were adopted,
        so the order moved: claim again."""
        now = self.clock.seconds()
        if order is None:
            return OrderContext(reservation=new_order(t.call.eid), order={}, now=now), None
        got = await self._get_order(merchant, order.reservation.order_id, t.deadline)
        captures, refunds = list(got.get("captures") or []), list(got.get("refunds") or [])
        if len(captures) > order.captures_known or len(refunds) > order.refunds_known:
            if any(await self.store.adopt(order.reservation, captures, refunds)):
                log.info("adopted captures/refunds made outside the gateway on order "
                         "{order_id}", order_id=order.reservation.order_id, eid=t.call.eid,
                         rno=order.reservation.rno, method=t.call.method)
                return None
        facts = (None if got.get("status") is None else str(got["status"]),
                 got.get("merchant_reference1") or None, got.get("merchant_reference2") or None)
        return OrderContext(reservation=order.reservation, order=got, invoice=order.invoice,
                            now=now), facts

    async def _get_order(self, merchant: Merchant, order_id: str, deadline: float
                         ) -> dict[str, Any]:
        try:
            return await self.om.get_order(merchant, order_id, deadline=deadline)
        except RestResponseError as e:
            if e.retryable:
                raise DeadlineExceededError(RestTransportError(str(e))) from e
            raise

    @staticmethod
    def _plan(merchant: Merchant, t: Ticket, ctx: OrderContext) -> Plan:
        profiles.check(merchant.profile, t.call, ctx)
        try:
            return t.spec.plan(t.call, ctx)
        except ValueError as e:  # Klarna's own lines break their arithmetic
            raise NotAllowedError("cannot split the order's lines: Klarna's order lines do "
                                  "not follow total = quantity x unit_price - discount",
                                  debug_context=str(e)) from None

    async def _answer(self, t: Ticket, order: OrderView | None, ctx: OrderContext, plan: Plan,
                      facts: tuple[Any, ...] | None, view: journal.CallView,
                      verdict: Verdict) -> Answer:
        """Nothing to send (a read, or nothing changes): the reply, recorded, never bound."""
        reply = t.spec.reply(t.call, Result(invno=t.invno, order=ctx.order, answer=plan.answer))
        rno = order.reservation.rno if order else t.rno
        if verdict.unbind and view.holder is not None:
            await self.store.expire(view.holder.id, view.holder.binding.token)
        self._count_repairs(t, plan)
        jid = await self.store.record_answer(journal.Answered(
            t.call.eid, t.call.method, t.fingerprint, t.call_json, rno, t.invno,
            order.reservation.order_id if order else None,
            reply_json=json.dumps(reply, sort_keys=True, separators=(",", ":")),
            notes=plan.notes,
            facts=None if order is None or facts is None else (order.reservation.id, *facts)))
        return Answer(reply, jid, rno=rno, invno=t.invno)
