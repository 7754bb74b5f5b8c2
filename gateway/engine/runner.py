"""The call engine: one short pipeline per legacy call.

    claim → read → plan → intent → send → outcome → reply

- **claim**: one read (:func:`gateway.store.journal.read_call`) finds the entry bound to
  the call's fingerprint and the order the call names; :func:`gateway.binding.decide`
  says what the call is: a new operation, or one bound to an identical call
  (:mod:`gateway.engine.twins`: join it in flight, wait for its delivery, replay a reply
  that never arrived, continue it after a takeover).
- **read** / **plan** / **intent** (:mod:`gateway.engine.planning`): the order as Klarna
  reports it now, the call's pure plan, and the entry with its steps, their idempotency
  keys and the order's lease, committed only if the order has not moved since the claim's
  read (else the call claims again).
- **send** / **outcome** (:mod:`gateway.engine.steps`): each step with its key; its success,
  its ledger rows and, for the last one, the entry's outcome in one commit.
- **reply**: the edge writes it; its delivery report ends the binding, carried by the
  process's next transaction (:mod:`gateway.store.delivery`).

A money call costs two durable commits. What a failure does to the entry is decided in
:mod:`gateway.engine.failures`, on either side of the intent.
"""
from __future__ import annotations

from typing import Any

from gateway.binding import Arrival, Decision, decide
from gateway.calls.registry import CallRegistry
from gateway.calls.spec import CallSpec
from gateway.config import Config, Merchant
from gateway.engine import decisions
from gateway.engine.answers import Answer
from gateway.engine.claim import Ticket, new_token, pause
from gateway.engine.continuation import Continuation
from gateway.engine.failures import Failures
from gateway.engine.planning import Planner, Prepared, reply_of
from gateway.engine.steps import StepSender
from gateway.engine.twins import Twins
from gateway.metrics import NO_METRICS, Metrics
from gateway.model import JournalEntry
from gateway.om.client import OmClient
from gateway.store import journal
from gateway.store.journal import Mark
from gateway.store.store import Store
from gateway.wire.values import LegacyCall


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
        failures = Failures(store)
        self.planner = Planner(store, om, clock, failures, self.lease_seconds, metrics)
        self.steps = StepSender(store, om, clock, failures, lease_seconds=self.lease_seconds,
                                give_up_seconds=s.give_up_seconds,
                                quiet_seconds=decisions.GIVE_UP_QUIET_SECONDS,
                                new_token=new_token)
        self.continuation = Continuation(config, store, clock, self.steps, failures, registry,
                                         metrics, lease_seconds=self.lease_seconds,
                                         budget=self.budget)
        self.twins = Twins(store, clock, self.continuation)

    async def run(self, merchant: Merchant, spec: CallSpec[Any], call: LegacyCall) -> Answer:
        """Run one authenticated call: its reply (with what its delivery report needs), or
        raise its fault."""
        t = Ticket.of(spec, call, self.clock.seconds() + self.budget, self.retry_window)
        watermark: int | None = None
        races = 0
        while True:
            if races > 1:  # lost the same race again: let the winner get on first
                await pause(self.clock, t.deadline, "the call kept meeting concurrent "
                                                    "changes of its order; retry the same call")
            view = await self.store.read_call(t.query())  # claim
            if watermark is None:
                watermark = view.watermark  # operations up to this one came before us
            elif view.newest is not None and view.newest.id > watermark:
                # An identical call made its operation while we were in flight: one
                # operation, its outcome is ours.
                return await self.twins.join(merchant, t, view.newest.id)
            holder = view.holder
            verdict = decide(None if holder is None else holder.binding, Arrival.FIRST,
                             self.clock.seconds(), t.window)
            if verdict.decision is not Decision.NEW:
                assert holder is not None
                answer = await self.twins.settle(merchant, t, holder, verdict)
            else:
                answer = await self._operate(merchant, t, view, verdict, watermark)
            if answer is not None:
                return answer
            races += 1  # lost a race (the order moved, an identical call got bound)

    async def _operate(self, merchant: Merchant, t: Ticket, view: journal.CallView,
                       verdict: Any, watermark: int) -> Answer | None:
        prepared = await self.planner.prepare(merchant, t, view, verdict)  # read, plan
        if not isinstance(prepared, Prepared):
            return prepared  # answered without sending anything, or claim again
        held = await self.planner.intend(t, prepared, view, verdict, watermark)  # intent
        if held is None:
            return None
        return await self.steps.send(merchant, t.spec, held, t.deadline,  # send, outcome
                                     reply_of(t.spec, t.call, held, prepared.ctx.order,
                                              prepared.plan.answer))

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

    async def resume(self, entry: JournalEntry) -> str:
        """Finish an unfinished entry (recovery): done, failed, pending or skipped."""
        return await self.continuation.resume(entry)
