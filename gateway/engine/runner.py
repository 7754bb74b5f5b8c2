"""The call engine: one short path per legacy call.

    claim → resolve the reservation → lock the order → read/adopt → plan → journal
          → send the steps → finish

The edge hands :meth:`CallEngine.run` an authenticated, decoded call and its declaration
(``gateway.calls``); the engine claims it in the journal (identical calls are one
operation), resolves and locks its order, reads it over REST (adopting captures and refunds
made elsewhere), asks the call's pure ``plan`` what to send, commits the steps with their
idempotency keys, sends them, records each success with its ledger rows, and builds the
reply with the call's ``reply``. Every failure leaves through :meth:`_fail`, the one place
that decides what a failure does to the journal entry (``gateway.engine.faults``).

Money safety lives here and in the store, never in one process's memory:
- a step's idempotency key is committed before the request leaves, and reused by any retry,
  restart or other process resuming the entry;
- when the retry budget (default 7.5 s, under the SDKs' ~9 s) runs out, the entry stays
  pending with its lease released and the client gets 9119; its own retry of the same call
  lands on the same entry and continues it instead of starting a second operation;
- one legacy call at a time per order (the order lease), so per-invoice refund limits and
  partial-capture arithmetic see a consistent state;
- no new capture or refund while earlier money on the order is unresolved.
"""
from __future__ import annotations

import uuid
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from gateway.calls import profiles
from gateway.calls.registry import CallRegistry
from gateway.calls.spec import CallSpec, Ref, Target
from gateway.config import Config, Merchant
from gateway.engine import decisions
from gateway.engine.answers import Answer, answer_of, replay, twin_busy
from gateway.engine.claim import Claim
from gateway.engine.faults import (
    Disposition,
    GaveUpError,
    disposition,
    refusal,
    step_applied,
)
from gateway.engine.resolve import Resolver
from gateway.errors import (
    GatewayError,
    NotAllowedError,
    UpstreamUnavailableError,
)
from gateway.legacy.values import LegacyCall, from_json
from gateway.metrics import NO_METRICS, Metrics
from gateway.model import (
    CaptureEffect,
    EntryState,
    JournalEntry,
    OrderCreatedEffect,
    ReferencesEffect,
    RefundEffect,
    Reservation,
    StatusEffect,
    Step,
    StepState,
)
from gateway.om.client import (
    DeadlineExceededError,
    OmClient,
    RestResponseError,
    RestTransportError,
    created_id,
    created_order,
)
from gateway.store.journal import (
    Action,
    Begin,
    ClaimContendedError,
    LeaseLostError,
    Outcome,
)
from gateway.store.store import Store
from gateway.translate.plan import OrderContext, Plan, Result, new_order

log = Logger()


#: How often a call waiting for its identical twin (or for the order lease) looks again.
POLL_SECONDS = 0.05


class CallEngine:
    """Runs legacy calls. One per process; stateless apart from its collaborators."""

    def __init__(self, config: Config, store: Store, om: OmClient, clock: Any,
                 registry: CallRegistry, metrics: Metrics = NO_METRICS) -> None:
        self.config = config
        self.metrics = metrics
        self.store = store
        self.om = om
        self.clock = clock
        self.registry = registry
        s = config.gateway
        self.budget = s.retry_budget_seconds
        self.lease_seconds = s.retry_budget_seconds + 2 * s.rest_timeout_seconds + 1.0
        self.retry_window = s.retry_window_seconds
        self.give_up_seconds = s.give_up_seconds
        self.resolver = Resolver(store, om)
        self.give_up_quiet_seconds = decisions.GIVE_UP_QUIET_SECONDS

    # -- the edge's entry point ------------------------------------------------------------

    async def run(self, merchant: Merchant, spec: CallSpec[Any], call: LegacyCall) -> Answer:
        """Run one authenticated call: its reply (with the journal entry that owns it, to
        record its delivery), or raises its fault."""
        deadline = self.clock.seconds() + self.budget
        fingerprint = decisions.fingerprint(call)
        token = uuid.uuid4().hex
        ref = spec.ref(call)
        while True:
            # A read is answered afresh every time: it is never bound to an earlier entry.
            begin = await self._claim(call, ref, fingerprint, token,
                                      0.0 if spec.read_only else self.retry_window)
            if begin.action is Action.REPLAY:
                return answer_of(begin.entry, replay(begin.entry), replayed=True)
            if begin.action is Action.RUN:
                if begin.entry.attempts > 1:  # a lapsed or released entry, continued
                    self.metrics.takeover()
                claim = Claim.from_begin(begin, token, client=True)
                reply = await self._run_claimed(merchant, spec, call, claim, deadline)
                return answer_of(claim.entry, reply, reservation=claim.reservation)
            # In flight together (the twin was running when we came): one operation, its
            # outcome is ours. Else its reply is being written: did it reach its client?
            together = begin.entry.state is EntryState.PENDING
            entry = await self._wait_for_twin(begin.entry, deadline, together)
            if entry.finished and together:
                if entry.state is EntryState.DONE and entry.delivered_at is None:
                    # Did the twin's reply arrive? Then pass it on, marked as being delivered.
                    entry = await self._wait_for_twin(entry, deadline, together=False)
                    if entry.delivered_at is None:
                        await self.store.mark_replaying(entry.id)
                return answer_of(entry, replay(entry), replayed=True)
            # Else claim again: delivered (a new operation), or replay it, marked.

    async def delivered(self, answer: Answer) -> None:
        """The answer's reply reached its client's connection: record it in the journal
        (the binding of identical calls ends; the next one is a new operation)."""
        await self.store.mark_delivered(answer.journal_id)

    async def undelivered(self, answer: Answer) -> None:
        """The answer's reply could not be written (the client went away): the next
        identical call gets it, at once."""
        await self.store.mark_undelivered(answer.journal_id)

    async def _claim(self, call: LegacyCall, ref: Ref, fingerprint: str, token: str,
                     retry_window: float) -> Begin:
        try:
            return await self.store.begin_call(
                eid=call.eid, method=call.method, fingerprint=fingerprint,
                call=decisions.call_json(call), token=token, lease_seconds=self.lease_seconds,
                retry_window=retry_window,
                rno=_rno_of(ref), invno=ref.value if ref.target is Target.INVOICE else None)
        except ClaimContendedError:
            raise UpstreamUnavailableError("an identical call is starting elsewhere; "
                                           "retry the same call") from None

    async def _wait_for_twin(self, entry: JournalEntry, deadline: float, together: bool
                             ) -> JournalEntry:
        """An identical call is in flight (wait for its outcome or for its lease to lapse), or
        its reply is being written to its client (wait for that delivery to be recorded)."""
        while twin_busy(entry, self.clock.seconds(), together):
            if self.clock.seconds() >= deadline:
                raise UpstreamUnavailableError(
                    "an identical call is still in progress; retry the same call")
            await self._sleep(POLL_SECONDS)
            entry = await self.store.get_entry(entry.id)
        return entry

    # -- one claimed journal entry ---------------------------------------------------------

    async def _run_claimed(self, merchant: Merchant, spec: CallSpec[Any], call: LegacyCall,
                           claim: Claim, deadline: float) -> Any:
        try:
            if spec.target is not Target.NONE:
                if claim.reservation is None:
                    claim.reservation = await self.resolver.resolve(merchant, spec, call, deadline)
                if not claim.locked:
                    await self._lock_order(claim, deadline)
            if not claim.entry.steps:
                plan, result = await self._plan(merchant, spec, call, claim, deadline)
                if not plan.steps:
                    return await self._finish_without_steps(spec, call, claim, plan, result)
            return await self._send_steps(merchant, spec, call, claim, deadline)
        except Exception as e:  # noqa: BLE001 - every failure is classified in one place
            raise await self._fail(spec, call, claim, e) from None

    async def _fail(self, spec: CallSpec[Any], call: LegacyCall, claim: Claim,
                    e: Exception) -> Exception:
        """Record what a failure does to the entry; returns the exception to raise."""
        failure = disposition(e, spec.target)
        fence = claim.fence
        if failure.fault is not None:
            failure.fault.context = {
                "journal_id": claim.entry.id, "invno": claim.entry.invno,
                "rno": claim.reservation.rno if claim.reservation else claim.entry.rno}
        if failure.disposition is Disposition.FINISH:
            assert failure.fault is not None
            await self._quietly(self.store.finish_call(fence.journal_id, Outcome(
                fault_code=int(failure.fault.fault_code),
                fault_string=failure.fault.fault_string), fence=fence))
        elif failure.disposition is Disposition.RESUMABLE:
            # Unknown outcome: keep the entry pending and resumable, free its leases so the
            # client's retry continues it at once.
            await self._quietly(self.store.release_lease(fence))
        elif failure.disposition is Disposition.LOST:
            if fence.reservation_id is not None:
                await self._quietly(self.store.release_order_lock(fence.reservation_id,
                                                                  fence.token))
        else:
            # A bug: keep the entry pending (recoverable), free the leases, log, and let the
            # edge answer its generic internal fault.
            log.failure("journal entry {journal_id} ({method}) crashed",
                        journal_id=claim.entry.id, eid=call.eid, invno=claim.entry.invno,
                        rno=claim.reservation.rno if claim.reservation else claim.entry.rno,
                        method=call.method)
            await self._quietly(self.store.release_lease(fence))
            return e
        assert failure.fault is not None
        return failure.fault

    async def _quietly(self, cleanup: Any) -> None:
        """Run a cleanup write; if the database fails it, log and go on, so the client still
        gets the real outcome (leases then lapse on their own)."""
        try:
            await cleanup
        except Exception:  # noqa: BLE001
            log.failure("cleanup write failed; leases will lapse on their own")

    # -- resolve and lock ------------------------------------------------------------------

    async def _lock_order(self, claim: Claim, deadline: float) -> None:
        assert claim.reservation is not None
        while True:
            state = await self.store.lock_order(claim.reservation, claim.entry.id, claim.token,
                                                self.lease_seconds)
            if state is not None:
                claim.locked_with(state["invoices"], state["unresolved"])
                return
            if self.clock.seconds() >= deadline:
                raise UpstreamUnavailableError(
                    "another call on this reservation is still in progress; retry")
            await self._sleep(POLL_SECONDS)

    # -- plan ------------------------------------------------------------------------------

    async def _plan(self, merchant: Merchant, spec: CallSpec[Any], call: LegacyCall,
                    claim: Claim, deadline: float) -> tuple[Plan, Result]:
        """Read the order, plan the call, and journal the steps (keys before sending)."""
        claim.guard_unresolved_money(spec)
        ctx = await self._context(merchant, spec, call, claim, deadline)
        profiles.check(merchant.profile, call, ctx)
        try:
            plan = spec.plan(call, ctx)
        except ValueError as e:  # Klarna's own lines break their arithmetic
            raise NotAllowedError("cannot split the order's lines: Klarna's order lines do "
                                  "not follow total = quantity x unit_price - discount",
                                  debug_context=str(e)) from None
        order = ctx.order
        if plan.steps:
            claim.guard_unresolved_change(spec)
            claim.entry = await self.store.plan_steps(
                claim.fence, self.lease_seconds, entry=claim.entry,
                order_id=ctx.reservation.order_id, steps=plan.steps,
                allocate_invno=plan.allocate_invno, allocate_rno=plan.allocate_rno,
                notes=plan.notes,
                reply=lambda invno, rno: None if spec.reply_reads_order else spec.reply(
                    call, Result(invno=invno, rno=rno, order=order, answer=plan.answer)))
        ref = spec.ref(call)
        return plan, Result(invno=ref.value if ref.target is Target.INVOICE else None,
                            order=order, answer=plan.answer)

    async def _context(self, merchant: Merchant, spec: CallSpec[Any], call: LegacyCall,
                       claim: Claim, deadline: float) -> OrderContext:
        """What the plan may look at: the order as Klarna reports it now (read, with what
        was made elsewhere adopted), or nothing yet for a call that creates the order."""
        if spec.target is Target.NONE:
            return OrderContext(reservation=new_order(call.eid), order={},
                                now=self.clock.seconds())
        assert claim.reservation is not None
        order = await self._read_order(merchant, claim, deadline)
        ref = spec.ref(call)
        # The invoice as read under the order lease (and after adoption), not as resolved
        # before the lease: a credit finished in between must count.
        invoice = next((i for i in claim.invoices if i.invno == ref.value), claim.invoice) \
            if ref.target is Target.INVOICE else None
        return OrderContext(reservation=claim.reservation, order=order,
                            invoices=claim.invoices, invoice=invoice, now=self.clock.seconds())

    async def _finish_without_steps(self, spec: CallSpec[Any], call: LegacyCall, claim: Claim,
                                    plan: Plan, result: Result) -> Any:
        """A plan with nothing to send (a read, or nothing changes): reply and finish."""
        reply = spec.reply(call, result)
        await self.store.finish_call(claim.entry.id, Outcome(reply=reply, notes=plan.notes,
                                                             to_client=claim.client),
                                     fence=claim.fence)
        return reply

    async def _read_order(self, merchant: Merchant, claim: Claim,
                          deadline: float) -> dict[str, Any]:
        """GET the order; adopt captures/refunds made outside the gateway before acting."""
        reservation = claim.reservation
        assert reservation is not None
        try:
            order = await self.om.get_order(merchant, reservation.order_id, deadline=deadline)
        except RestResponseError as e:
            if e.retryable:
                raise DeadlineExceededError(RestTransportError(str(e))) from e
            raise
        captures = list(order.get("captures") or [])
        refunds = list(order.get("refunds") or [])
        if captures or refunds:
            invnos, refund_ids = await self.store.adopt(reservation, captures, refunds)
            if invnos or refund_ids:
                claim.invoices = tuple(await self.store.invoices_for(reservation.id))
                if claim.invoice is not None:  # an adopted refund may be booked on it now
                    claim.invoice = next((i for i in claim.invoices
                                          if i.id == claim.invoice.id), claim.invoice)
                log.info("adopted captures {invnos} and refunds {refunds} made outside the "
                         "gateway on order {order_id}", invnos=invnos, refunds=refund_ids,
                         order_id=reservation.order_id, journal_id=claim.entry.id,
                         eid=reservation.eid, rno=reservation.rno, method=claim.entry.method)
        if (order.get("status"), order.get("merchant_reference1") or None,
                order.get("merchant_reference2") or None) != (
                reservation.status, reservation.merchant_ref1, reservation.merchant_ref2):
            await self.store.record_order_facts(reservation.id, order)
        return order

    # -- send ------------------------------------------------------------------------------

    async def _send_steps(self, merchant: Merchant, spec: CallSpec[Any], call: LegacyCall,
                          claim: Claim, deadline: float) -> Any:
        """Send every planned step in order. The reply was built when the steps were
        journaled, so the last step's commit also records the outcome (unless the reply needs
        the order as it is afterwards: then it is read and built now)."""
        steps = claim.entry.steps
        applied = [step_applied(s) for s in steps if s.state is StepState.DONE]
        planned = [s for s in steps if s.state is StepState.PLANNED]
        early = claim.entry.reply
        finished = False
        for i, step in enumerate(planned):
            finish = Outcome(reply=early, to_client=claim.client) \
                if early is not None and step is planned[-1] else None
            await self._apply(merchant, spec, claim, step, deadline, finish=finish,
                              applied=applied, not_applied=[s.purpose for s in planned[i:]])
            applied.append(step_applied(step))
            finished = finish is not None
        reply = early
        if reply is None:
            assert claim.reservation is not None
            after = await self.om.get_order(merchant, claim.reservation.order_id,
                                            deadline=deadline)
            invno = claim.entry.invno or (spec.ref(call).value
                                          if spec.target is Target.INVOICE else None)
            reply = spec.reply(call, Result(invno=invno, order=after))
        if not finished:
            await self.store.finish_call(claim.entry.id,
                                         Outcome(reply=reply, to_client=claim.client),
                                         fence=claim.fence)
        return reply

    async def _apply(self, merchant: Merchant, spec: CallSpec[Any], claim: Claim, step: Step,
                     deadline: float, *, finish: Outcome | None, applied: list[str],
                     not_applied: list[str]) -> None:
        """Settle, give up or send one step, as :func:`decisions.step_decision` says."""
        age = self.clock.seconds() - (step.updated_at or claim.entry.created_at)
        decision = decisions.step_decision(age, step.money,
                                           key_trust_seconds=decisions.KEY_TRUST_SECONDS,
                                           give_up_seconds=self.give_up_seconds,
                                           quiet_seconds=self.give_up_quiet_seconds)
        if decision.settle_first and await self._settle(merchant, claim, step, deadline,
                                                        finish):
            return
        if decision.give_up is not None:
            raise GaveUpError(f"'{step.purpose}': {decision.give_up}")
        if decision.hold is not None:
            raise UpstreamUnavailableError(f"'{step.purpose}': {decision.hold}")
        try:
            await self._send(merchant, claim, step, deadline, finish)
        except RestResponseError as e:
            if e.retryable:
                raise DeadlineExceededError(RestTransportError(str(e))) from e
            if e.status == 403 and await self._settle(merchant, claim, step, deadline, finish):
                return
            raise refusal(e, spec.target, applied, not_applied) from None

    async def _send(self, merchant: Merchant, claim: Claim, step: Step, deadline: float,
                    finish: Outcome | None) -> None:
        resp = await self.om.request(merchant, step.http_method, step.path, step.body,
                                     idempotency_key=step.idempotency_key, deadline=deadline)
        result: dict[str, Any] = {}
        if isinstance(step.effect, CaptureEffect):
            result["capture_id"] = created_id(resp, "capture")
        elif isinstance(step.effect, RefundEffect):
            result["refund_id"] = created_id(resp, "refund")
        elif isinstance(step.effect, OrderCreatedEffect):
            result.update(created_order(resp))
        await self._complete(claim, step, resp.status, result, finish)

    async def _settle(self, merchant: Merchant, claim: Claim, step: Step, deadline: float,
                      finish: Outcome | None) -> bool:
        """Decide from the order itself whether a journaled step already took effect.

        Used when the step's key may have expired at Klarna, when a capture/refund has been
        unresolved too long, and when a status change is refused: a capture or refund the
        store has no row for, matching the step exactly (:func:`decisions.same_money`), is
        this step's; a cancel/release whose target status the order already has is done.
        """
        if claim.reservation is None:  # an order being created: nothing to read yet
            return False
        order = await self.om.get_order(merchant, claim.reservation.order_id,
                                        deadline=deadline)
        found = await self._find_effect(claim.reservation, step, order)
        if found is None:
            return False
        status, result = found
        await self._complete(claim, step, status, result, finish)
        return True

    async def _find_effect(self, reservation: Reservation, step: Step, order: dict[str, Any]
                           ) -> tuple[int, dict[str, Any]] | None:
        effect, body = step.effect, step.body or {}
        if isinstance(effect, StatusEffect):
            return (204, {}) if order.get("status") == effect.status else None
        if isinstance(effect, ReferencesEffect):
            return (204, {}) if all(order.get(k) == v for k, v in body.items()) else None
        if isinstance(effect, CaptureEffect):
            known = {i.capture_id for i in await self.store.invoices_for(reservation.id)}
            for cap in order.get("captures") or []:
                if cap["capture_id"] not in known and \
                        decisions.same_money(cap, body, "captured_amount"):
                    return 201, {"capture_id": cap["capture_id"]}
        if isinstance(effect, RefundEffect):
            known_refunds = await self.store.known_refund_ids(reservation.order_id)
            for ref in order.get("refunds") or []:
                if ref["refund_id"] not in known_refunds and \
                        decisions.same_money(ref, body, "refunded_amount"):
                    return 201, {"refund_id": ref["refund_id"]}
        return None

    async def _complete(self, claim: Claim, step: Step, status: int, result: dict[str, Any],
                        finish: Outcome | None) -> None:
        """Record a step's success; stop if our lease is gone (another runner owns it)."""
        owned = await self.store.complete_step(
            step.journal_id, step.step, status, result, fence=claim.fence, finish=finish,
            renew_seconds=None if finish is not None else self.lease_seconds)
        if not owned and finish is None:
            raise LeaseLostError(f"journal {step.journal_id}")

    # -- recovery --------------------------------------------------------------------------

    async def resume(self, entry: JournalEntry) -> str:
        """Finish an unfinished journal entry left by a crash or an exhausted budget.

        Returns a one-word outcome for reports: done, failed, pending or skipped.
        """
        merchant = self.config.merchant(entry.eid)
        if merchant is None or not self.registry.runs(entry.method):
            return "skipped"
        token = uuid.uuid4().hex
        fresh = await self.store.take_over(entry.id, token, self.lease_seconds)
        if fresh is None:
            return "skipped"
        self.metrics.takeover()
        if not fresh.steps:  # decide from the entry as it is now, not as the sweep listed it
            await self.store.finish_call(fresh.id, Outcome(
                fault_code=int(UpstreamUnavailableError.fault_code),
                fault_string="timeout: the call ended before any request was sent"))
            return "failed"
        spec = self.registry.spec(fresh.method)
        call = from_json(spec.call_type, {k: v for k, v in fresh.call.items() if k != "method"})
        ref = spec.ref(call)
        begin = await self.store.resolve(
            Begin(Action.RUN, fresh), call.eid,
            _rno_of(ref),
            ref.value if ref.target is Target.INVOICE else None, token, self.lease_seconds)
        try:
            await self._run_claimed(merchant, spec, call, Claim.from_begin(begin, token),
                                    self.clock.seconds() + self.budget)
        except UpstreamUnavailableError:
            return "pending"
        except GatewayError:
            return "failed"
        return "done"

    def _sleep(self, seconds: float) -> defer.Deferred[None]:
        return task.deferLater(self.clock, seconds, lambda: None)


def _rno_of(ref: Ref) -> str | None:
    """The number to try as a reservation number in the claiming transaction."""
    return ref.value if ref.target in (Target.RESERVATION, Target.ANY_NUMBER) else None
