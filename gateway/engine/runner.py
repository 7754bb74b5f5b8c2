"""The call engine: one short pipeline per legacy call.

    claim → read → plan → intent → send → outcome → reply

- **claim**: one read (:func:`gateway.store.journal.read_call`) finds the entry bound to
  the call's fingerprint and the order the call names; :func:`gateway.binding.decide`
  says what the call is: a new operation, a twin joining one in flight, a wait, a replay of
  a reply that never arrived, or the continuation of an entry nobody holds.
- **read**: the order as Klarna reports it now (captures and refunds made elsewhere are
  adopted first); **plan**: the call's pure plan; **intent**: the entry, its steps and
  their idempotency keys and the order's lease, committed only if the order has not moved
  since the claim's read (else the call reads again).
- **send** / **outcome**: each step with its key; its success, its ledger rows and, for the
  last one, the entry's outcome in one commit (:mod:`gateway.engine.steps`).
- **reply**: the edge writes it; its delivery report ends the binding, carried by the
  process's next transaction (:mod:`gateway.store.delivery`).

A money call costs two durable commits. Every failure leaves through one place per side
of the intent: before it nothing was sent and the call is journaled as refused
(:meth:`CallEngine._refused`); after it :meth:`CallEngine._failed` decides whether the entry
ends with the fault or stays resumable (9119: the client's retry continues it with the
same keys).
"""
from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from gateway.binding import Arrival, Decision, Verdict, decide
from gateway.calls import profiles
from gateway.calls.registry import CallRegistry
from gateway.calls.spec import CallSpec, Target
from gateway.config import Config, Merchant
from gateway.engine import decisions
from gateway.engine.answers import Answer, outcome
from gateway.engine.claim import (
    Held, Ticket, guard_unresolved_change, guard_unresolved_money, new_token,
)
from gateway.engine.faults import Disposition, disposition
from gateway.engine.resolve import Resolver
from gateway.engine.steps import ReplyOf, StepSender
from gateway.errors import (
    FaultCode, GatewayError, NotAllowedError, UpstreamUnavailableError,
)
from gateway.legacy.values import LegacyCall, from_json
from gateway.metrics import NO_METRICS, Metrics
from gateway.model import JournalEntry
from gateway.om.client import DeadlineExceededError, OmClient, RestResponseError, \
    RestTransportError
from gateway.store import journal
from gateway.store.journal import Mark, OrderMovedError, OrderView, TwinBoundError
from gateway.store.store import Store
from gateway.translate.plan import OrderContext, Plan, Result, new_order

log = Logger()

#: How often a call waiting for its identical twin (or for the order's lease) looks again.
POLL_SECONDS = 0.05


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class CallEngine:
    """Runs legacy calls. One per process; stateless apart from its collaborators."""

    def __init__(self, config: Config, store: Store, om: OmClient, clock: Any,
                 registry: CallRegistry, metrics: Metrics = NO_METRICS) -> None:
        self.config, self.store, self.om, self.clock = config, store, om, clock
        self.registry, self.metrics = registry, metrics
        s = config.gateway
        self.budget = s.retry_budget_seconds
        self.lease_seconds = s.retry_budget_seconds + 2 * s.rest_timeout_seconds + 1.0
        self.retry_window = s.retry_window_seconds
        self.resolver = Resolver(store, om)
        self.steps = StepSender(store, om, clock,
                                lease_seconds=self.lease_seconds,
                                give_up_seconds=s.give_up_seconds,
                                quiet_seconds=decisions.GIVE_UP_QUIET_SECONDS,
                                new_token=new_token)

    # -- the edge's entry point ------------------------------------------------------------

    async def run(self, merchant: Merchant, spec: CallSpec[Any], call: LegacyCall) -> Answer:
        """Run one authenticated call: its reply (with what its delivery report needs), or
        raise its fault."""
        t = Ticket.of(spec, call, self.clock.seconds() + self.budget, self.retry_window)
        while True:
            view = await self.store.read_call(t.query())
            holder = view.holder
            verdict = decide(None if holder is None else holder.binding, Arrival.FIRST,
                             self.clock.seconds(), t.window)
            if verdict.decision is Decision.NEW:
                answer = await self._operate(merchant, t, view, verdict)
            else:
                assert holder is not None
                answer = await self._bound(merchant, t, holder, verdict)
            if answer is not None:
                return answer
            # Lost a race (the order moved, an identical call got bound): claim again.

    async def delivered(self, answer: Answer) -> None:
        """The answer's reply reached its client's connection: the binding ends."""
        if answer.delivery is not None:
            self.store.report(Mark(answer.journal_id, answer.delivery, True,
                                   self.clock.seconds()))

    async def undelivered(self, answer: Answer) -> None:
        """The connection was gone before the reply: the next identical call gets it."""
        if answer.delivery is not None:
            self.store.report(Mark(answer.journal_id, answer.delivery, False,
                                   self.clock.seconds()))

    # -- a call bound to an earlier entry ----------------------------------------------------

    async def _bound(self, merchant: Merchant, t: Ticket, holder: journal.Bound,
                     verdict: Verdict) -> Answer | None:
        seen_token = holder.binding.token
        if verdict.decision is Decision.JOIN:
            return await self._join(merchant, t, holder.id)
        if verdict.decision is Decision.REPLAY:
            return await self._replay(holder.id, seen_token, claim=True)
        if verdict.decision is Decision.TAKEOVER:
            return await self._take_over(merchant, t, holder.id, seen_token)
        await self.store.flush_reports()  # it may be our own delivery report it waits for
        await self._pause(t, "an identical call is still in progress; retry the same call")
        return None

    async def _join(self, merchant: Merchant, t: Ticket, journal_id: int) -> Answer:
        """In flight together with an identical call: one operation, its outcome is ours."""
        while True:
            await self._pause(t, "an identical call is still in progress; retry the same call")
            seen = await self.store.seen(journal_id)
            verdict = decide(seen.binding, Arrival.JOINED, self.clock.seconds(), t.window)
            answer = None
            if verdict.decision is Decision.TAKEOVER:
                answer = await self._take_over(merchant, t, journal_id, seen.binding.token)
            elif verdict.decision is Decision.REPLAY:
                answer = await self._replay(journal_id, seen.binding.token,
                                            claim=verdict.claim_delivery, seen=seen)
            if answer is not None:
                return answer

    async def _replay(self, journal_id: int, seen_token: str | None, *, claim: bool,
                      seen: journal.Seen | None = None) -> Answer | None:
        """Hand a finished entry's outcome over again; with ``claim``, under a new delivery
        token (None when another call changed the entry first)."""
        delivery = None
        if claim:
            delivery = new_token()
            seen = await self.store.replay(journal_id, seen_token, delivery)
            if seen is None:
                return None
        assert seen is not None
        reply = outcome(seen, journal_id, seen.rno, seen.invno)
        return Answer(reply, journal_id, delivery, replayed=True, rno=seen.rno,
                      invno=seen.invno)

    async def _take_over(self, merchant: Merchant, t: Ticket, journal_id: int,
                         seen_token: str | None) -> Answer | None:
        token = new_token()
        entry = await self.store.take_over(journal_id, seen_token, token, self.lease_seconds)
        if entry is None:
            return None
        self.metrics.takeover()
        return await self._continue(merchant, t.spec, t.call, entry, token, client=True,
                                    deadline=t.deadline)

    # -- a new operation ----------------------------------------------------------------------

    async def _operate(self, merchant: Merchant, t: Ticket, view: journal.CallView,
                       verdict: Verdict) -> Answer | None:
        """read → plan → intent → send: None when the claim must be made again."""
        order = view.order
        try:
            if t.spec.target is not Target.NONE and order is None:
                order = await self._resolve(merchant, t)
            if order is not None and order.leased(self.clock.seconds()):
                await self._pause(t, "another call on this reservation is still in progress; "
                                     "retry")
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
            raise await self._refused(t, order, e) from None
        held = await self._intend(t, order, plan, facts, view, verdict)
        if held is None:
            return None
        return await self._send(merchant, t.spec, held, t.deadline, self._reply_of(
            t.spec, t.call, held, ctx.order, plan.answer))

    async def _resolve(self, merchant: Merchant, t: Ticket) -> OrderView:
        """The call named no registered reservation directly (an invoice number, a merchant
        order id, an order id used as the rno): find or register it, and read it."""
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

    def _plan(self, merchant: Merchant, t: Ticket, ctx: OrderContext) -> Plan:
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
        jid = await self.store.record_answer(journal.Answered(
            t.call.eid, t.call.method, t.fingerprint, t.call_json, rno, t.invno,
            order.reservation.order_id if order else None, reply_json=_json(reply),
            notes=plan.notes,
            facts=None if order is None or facts is None else (order.reservation.id, *facts)))
        return Answer(reply, jid, rno=rno, invno=t.invno)

    async def _intend(self, t: Ticket, order: OrderView | None, plan: Plan,
                      facts: tuple[Any, ...] | None, view: journal.CallView, verdict: Verdict
                      ) -> Held | None:
        """Commit the entry, its steps and keys and the order's lease; None when the order
        moved or an identical call got bound since the claim's read."""
        token = new_token()
        unbind = (view.holder.id, view.holder.binding.token) \
            if verdict.unbind and view.holder is not None else None
        intent = journal.Intent(
            t.call.eid, t.call.method, t.fingerprint, t.call_json, token,
            self.clock.seconds() + self.lease_seconds, plan.steps, plan.notes,
            rno=order.reservation.rno if order else None, invno=t.invno, order=order,
            facts=facts, allocate_invno=plan.allocate_invno, allocate_rno=plan.allocate_rno,
            unbind=unbind)
        try:
            made = await self.store.record_intent(intent)
        except (OrderMovedError, TwinBoundError):
            return None
        return Held(made.journal_id, token, made.steps, t.call.eid,
                    order.reservation if order else None, invno=made.invno, rno=made.rno)

    @staticmethod
    def _reply_of(spec: CallSpec[Any], call: LegacyCall, held: Held,
                  order: Any, answer: Any) -> ReplyOf:
        """The reply the held entry's steps earn (with the order after them, for calls
        whose declaration says their reply reads it)."""
        def reply(after: dict[str, Any] | None) -> Any:
            return spec.reply(call, Result(invno=held.invno, rno=held.rno,
                                           order=after if after is not None else order,
                                           answer=answer))
        return reply

    # -- sending, and what a failure does to the entry ------------------------------------

    async def _send(self, merchant: Merchant, spec: CallSpec[Any], held: Held, deadline: float,
                    reply_of: ReplyOf) -> Answer:
        try:
            sent = await self.steps.send_all(merchant, spec, held, deadline, reply_of)
        except Exception as e:  # noqa: BLE001 - every failure is classified in one place
            raise await self._failed(spec, held, e) from None
        return Answer(sent.reply, held.entry_id, sent.delivery, rno=held.rno,
                      invno=held.invno)

    async def _failed(self, spec: CallSpec[Any], held: Held, e: Exception) -> Exception:
        """After the intent: end the entry with the fault, or leave it resumable (outcome
        unknown: the client's retry continues it); the exception to raise."""
        failure = disposition(e, spec.target)
        rid = held.reservation_id
        if failure.fault is not None:
            failure.fault.context = {"journal_id": held.entry_id, "invno": held.invno,
                                     "rno": held.rno}
        if failure.disposition is Disposition.FINISH:
            assert failure.fault is not None
            await self._quietly(self.store.fail(held.entry_id, held.token, rid,
                                                int(failure.fault.fault_code),
                                                failure.fault.fault_string))
        elif failure.disposition is Disposition.LOST:
            await self._quietly(self.store.release(held.entry_id, held.token, rid))
        else:
            if failure.disposition is Disposition.BUG:
                log.failure("journal entry {journal_id} crashed", journal_id=held.entry_id,
                            eid=held.eid, invno=held.invno, rno=held.rno)
            await self._quietly(self.store.release(held.entry_id, held.token, rid))
        return failure.fault if failure.fault is not None else e

    async def _refused(self, t: Ticket, order: OrderView | None, e: Exception) -> Exception:
        """Before the intent nothing was sent: journal the call as refused; the exception
        to raise (a bug is logged and raised as it is)."""
        failure = disposition(e, t.spec.target)
        fault = failure.fault
        if fault is None:
            log.failure("legacy call {method} crashed before sending anything",
                        method=t.call.method, eid=t.call.eid)
        rno = order.reservation.rno if order else t.rno
        code = int(fault.fault_code) if fault else int(FaultCode.INTERNAL_ERROR)
        text = fault.fault_string if fault else "internal_error: internal error"
        jid = await self._quietly(self.store.record_answer(journal.Answered(
            t.call.eid, t.call.method, t.fingerprint, t.call_json, rno, t.invno,
            order.reservation.order_id if order else None, fault_code=code,
            fault_string=text)))
        if fault is None:
            return e
        fault.context = {"journal_id": jid, "invno": t.invno, "rno": rno}
        return fault

    async def _quietly(self, write: Any) -> Any:
        """Run a bookkeeping write; if the database fails it, log and go on, so the client
        still gets the real outcome (leases then lapse on their own)."""
        try:
            return await write
        except Exception:  # noqa: BLE001
            log.failure("journal write failed; leases will lapse on their own")
            return None

    # -- continuing an entry (a takeover, or recovery) -------------------------------------------

    async def _continue(self, merchant: Merchant, spec: CallSpec[Any], call: LegacyCall,
                        entry: JournalEntry, token: str, *, client: bool, deadline: float
                        ) -> Answer:
        """Send the rest of a taken-over entry's steps with their journaled keys."""
        held = Held(entry.id, token, entry.steps, entry.eid, None, invno=entry.invno,
                    rno=entry.rno, client=client)
        try:
            if spec.target is not Target.NONE and entry.order_id is not None:
                held.reservation = await self.store.get_reservation_by_order(entry.eid,
                                                                             entry.order_id)
                await self._lease_order(held, deadline)
        except Exception as e:  # noqa: BLE001 - classified with the others
            raise await self._failed(spec, held, e) from None
        return await self._send(merchant, spec, held, deadline,
                                self._reply_of(spec, call, held, None, None))

    async def _lease_order(self, held: Held, deadline: float) -> None:
        assert held.reservation is not None
        while await self.store.lease_order(held.reservation, held.entry_id, held.token,
                                           self.lease_seconds) is None:
            if self.clock.seconds() >= deadline:
                raise UpstreamUnavailableError(
                    "another call on this reservation is still in progress; retry")
            await self._sleep(POLL_SECONDS)

    async def resume(self, entry: JournalEntry) -> str:
        """Finish an unfinished entry left by a crash or an exhausted budget (recovery).

        Returns a one-word outcome for reports: done, failed, pending or skipped.
        """
        merchant = self.config.merchant(entry.eid)
        if merchant is None or not self.registry.runs(entry.method):
            return "skipped"
        token = new_token()
        fresh = await self.store.take_over(entry.id, entry.token, token, self.lease_seconds)
        if fresh is None:
            return "skipped"
        self.metrics.takeover()
        spec = self.registry.spec(fresh.method)
        call = from_json(spec.call_type, {k: v for k, v in fresh.call.items() if k != "method"})
        try:
            await self._continue(merchant, spec, call, fresh, token, client=False,
                                 deadline=self.clock.seconds() + self.budget)
        except UpstreamUnavailableError:
            return "pending"
        except GatewayError:
            return "failed"
        return "done"

    # -- time ------------------------------------------------------------------------------

    async def _pause(self, t: Ticket, why: str) -> None:
        """Wait a little before looking again, within the call's budget."""
        if self.clock.seconds() >= t.deadline:
            raise UpstreamUnavailableError(why)
        await self._sleep(POLL_SECONDS)

    def _sleep(self, seconds: float) -> defer.Deferred[None]:
        return task.deferLater(self.clock, seconds, lambda: None)
