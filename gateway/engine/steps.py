"""Sending a held entry's journaled steps, in order, and recording each success.

Each step is sent with the idempotency key committed with it, so a retry, a restart or
another process resuming the entry cannot apply it twice. Before (re)sending an old step
the engine may first look for its effect on the order (:func:`decisions.step_decision`):
its key may have expired at Klarna, or it has been unresolved so long that it is given up
rather than sent late. The last step's success is recorded with the entry's outcome in the
same transaction.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.calls.spec import CallSpec
from gateway.config import Merchant
from gateway.engine import decisions, effects
from gateway.engine.answers import Answer
from gateway.engine.claim import Held
from gateway.engine.failures import Failures
from gateway.engine.faults import GaveUpError, refusal, step_applied
from gateway.engine.planning import ReplyOf
from gateway.errors import UpstreamUnavailableError
from gateway.model import Step, StepState
from gateway.om.client import DeadlineExceededError, OmClient, RestResponseError, \
    RestTransportError
from gateway.store import journal
from gateway.store.store import Store

@dataclass(frozen=True)
class Sent:
    """The held entry's steps are done and its outcome recorded: its reply and the token
    it is handed over under (None: nobody waits for it)."""

    reply: Any
    delivery: str | None


class StepSender:
    def __init__(self, store: Store, om: OmClient, clock: Any, failures: Failures, *,
                 lease_seconds: float, give_up_seconds: float, quiet_seconds: float,
                 new_token: Callable[[], str]) -> None:
        self.store, self.om, self.clock, self.failures = store, om, clock, failures
        self.lease_seconds = lease_seconds
        self.give_up_seconds = give_up_seconds
        self.quiet_seconds = quiet_seconds
        self.new_token = new_token

    async def send(self, merchant: Merchant, spec: CallSpec[Any], held: Held, deadline: float,
                   reply_of: ReplyOf) -> Answer:
        """send → outcome: the call's answer, or its fault (the entry ended or left
        resumable, as :class:`Failures` decides)."""
        try:
            sent = await self.send_all(merchant, spec, held, deadline, reply_of)
        except Exception as e:  # noqa: BLE001 - every failure is classified in one place
            raise await self.failures.failed(spec, held, e) from None
        return Answer(sent.reply, held.entry_id, sent.delivery, rno=held.rno,
                      invno=held.invno)

    async def send_all(self, merchant: Merchant, spec: CallSpec[Any], held: Held,
                       deadline: float, reply_of: ReplyOf) -> Sent:
        planned = [s for s in held.steps if s.state is StepState.PLANNED]
        applied = [step_applied(s) for s in held.steps if s.state is StepState.DONE]
        reply = None if spec.reply_reads_order else reply_of(None)
        if not planned:  # every step is recorded; only the outcome is missing
            return await self._finish_only(merchant, spec, held, deadline, reply, reply_of)
        for i, step in enumerate(planned):
            status, result = await self._apply(merchant, spec, held, step, deadline, applied,
                                               [s.purpose for s in planned[i:]])
            last = step is planned[-1]
            if last and reply is None:
                reply = reply_of(await self._order(merchant, held, deadline))
            sent = await self._record(held, step, status, result, reply if last else None)
            if sent is not None:
                return sent
            applied.append(step_applied(step))
        raise AssertionError("unreachable: the last step returns")

    async def _finish_only(self, merchant: Merchant, spec: CallSpec[Any], held: Held,
                           deadline: float, reply: Any, reply_of: ReplyOf) -> Sent:
        if reply is None:
            reply = reply_of(await self._order(merchant, held, deadline))
        delivery = self.new_token() if held.client else None
        owned = await self.store.finish(
            held, json.dumps(reply, sort_keys=True, separators=(",", ":")), delivery)
        if not owned:
            raise journal.LeaseLostError(f"journal {held.entry_id}")
        return Sent(reply, delivery)

    async def _order(self, merchant: Merchant, held: Held, deadline: float
                     ) -> dict[str, Any]:
        assert held.reservation is not None
        return await self.om.get_order(merchant, held.reservation.order_id, deadline=deadline)

    async def _record(self, held: Held, step: Step, status: int, result: dict[str, Any],
                      reply: Any) -> Sent | None:
        """Record the step's success; for the last step (``reply`` given), with the entry's
        outcome. A :class:`Sent` when the entry is done, None to go on. A runner that lost
        the lease records the success all the same (it happened) but stops: the entry's
        owner answers, its own client is told 9119 (it never hands over a reply it does
        not own)."""
        rule = effects.rule(step.effect)
        delivery = self.new_token() if held.client and reply is not None else None
        finish = None if reply is None else self.store.finishing(
            json.dumps(reply, sort_keys=True, separators=(",", ":")), delivery)
        done = journal.StepDone(
            held.entry_id, step.step, status, result,
            journal.Recording(held.eid, held.entry_id, step.effect,
                              step.body or {}, result),
            rule.record, held.token, held.reservation_id, finish=finish,
            renew_until=None if finish else self.clock.seconds() + self.lease_seconds)
        owned = await self.store.record_outcome(done)
        if not owned:
            raise journal.LeaseLostError(f"journal {held.entry_id}")
        return None if finish is None else Sent(reply, delivery)

    async def _apply(self, merchant: Merchant, spec: CallSpec[Any], held: Held, step: Step,
                     deadline: float, applied: list[str], not_applied: list[str]
                     ) -> tuple[int, dict[str, Any]]:
        """Settle, give up or send one step, as :func:`decisions.step_decision` says."""
        age = self.clock.seconds() - step.updated_at
        decision = decisions.step_decision(age, step.money,
                                           key_trust_seconds=decisions.KEY_TRUST_SECONDS,
                                           give_up_seconds=self.give_up_seconds,
                                           quiet_seconds=self.quiet_seconds)
        if decision.settle_first:
            found = await self._settle(merchant, held, step, deadline)
            if found is not None:
                return found
        if decision.give_up is not None:
            raise GaveUpError(f"'{step.purpose}': {decision.give_up}")
        if decision.hold is not None:
            raise UpstreamUnavailableError(f"'{step.purpose}': {decision.hold}")
        try:
            resp = await self.om.request(merchant, step.http_method, step.path, step.body,
                                         idempotency_key=step.idempotency_key,
                                         deadline=deadline)
        except RestResponseError as e:
            if e.retryable:
                raise DeadlineExceededError(RestTransportError(str(e))) from e
            if e.status == 403:
                found = await self._settle(merchant, held, step, deadline)
                if found is not None:
                    return found
            raise refusal(e, spec.target, applied, not_applied) from None
        return resp.status, effects.rule(step.effect).result(resp)

    async def _settle(self, merchant: Merchant, held: Held, step: Step, deadline: float
                      ) -> tuple[int, dict[str, Any]] | None:
        """Did the step already take effect? Looked up on the order itself: a capture or
        refund the ledger has no row for that matches the step exactly, or a status the
        order already has (used when its key may have expired, when it has been unresolved
        too long, and when Klarna refuses a status change)."""
        if held.reservation is None:  # an order being created: nothing to read yet
            return None
        order = await self._order(merchant, held, deadline)
        rule = effects.rule(step.effect)
        known = await self.store.known_ids(held.reservation, rule.known)
        found = rule.found(step.effect, step.body or {}, order, known)
        return None if found is None else (204 if not found else 201, found)
