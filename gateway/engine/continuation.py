"""Continuing an entry nobody holds: a client's retry takes it over, or recovery does.

The entry's steps were journaled with their idempotency keys before any was sent, so the
new runner sends the rest with the same keys (Klarna applies each at most once and answers
with the first outcome), under the order's lease, and records the outcome as any runner
does. Recovery has no client: its outcome waits ``undelivered`` for the client's retry.
"""
from __future__ import annotations

from typing import Any

from gateway.calls.registry import CallRegistry
from gateway.calls.spec import CallSpec, Target
from gateway.config import Config, Merchant
from gateway.engine.answers import Answer
from gateway.engine.claim import Held, Ticket, new_token, pause
from gateway.engine.failures import Failures
from gateway.engine.planning import reply_of
from gateway.engine.steps import StepSender
from gateway.errors import GatewayError, UpstreamUnavailableError
from gateway.metrics import Metrics
from gateway.model import JournalEntry
from gateway.store.store import Store
from gateway.wire.values import LegacyCall, from_json


class Continuation:
    def __init__(self, config: Config, store: Store, clock: Any, sender: StepSender,
                 failures: Failures, registry: CallRegistry, metrics: Metrics, *,
                 lease_seconds: float, budget: float) -> None:
        self.config, self.store, self.clock = config, store, clock
        self.sender, self.failures = sender, failures
        self.registry, self.metrics = registry, metrics
        self.lease_seconds, self.budget = lease_seconds, budget

    async def take_over(self, merchant: Merchant, t: Ticket, journal_id: int,
                        seen_token: str | None) -> Answer | None:
        """The client's retry continues the entry (None: someone else took it first)."""
        token = new_token()
        entry = await self.store.take_over(journal_id, seen_token, token, self.lease_seconds)
        if entry is None:
            return None
        self.metrics.takeover()
        return await self._continue(merchant, t.spec, t.call, entry, token, client=True,
                                    deadline=t.deadline)

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

    async def _continue(self, merchant: Merchant, spec: CallSpec[Any], call: LegacyCall,
                        entry: JournalEntry, token: str, *, client: bool, deadline: float
                        ) -> Answer:
        """Send the rest of a taken-over entry's steps with their journaled keys."""
        held = Held(entry.id, token, entry.steps, entry.eid, None, invno=entry.invno,
                    rno=entry.rno, client=client)
        if not entry.steps:  # journal v1 claimed before planning: nothing was ever sent
            await self.failures.quietly(self.store.fail(
                entry.id, token, None, int(UpstreamUnavailableError.fault_code),
                "timeout: the call ended before any request was sent"))
            raise UpstreamUnavailableError("the call ended before any request was sent; "
                                           "send it again")
        try:
            if spec.target is not Target.NONE and entry.order_id is not None:
                held.reservation = await self.store.get_reservation_by_order(entry.eid,
                                                                             entry.order_id)
                while await self.store.lease_order(held.reservation, held.entry_id, token,
                                                   self.lease_seconds) is None:
                    await pause(self.clock, deadline, "another call on this reservation is "
                                                      "still in progress; retry")
        except Exception as e:  # noqa: BLE001 - classified with the others
            raise await self.failures.failed(spec, held, e) from None
        return await self.sender.send(merchant, spec, held, deadline,
                                      reply_of(spec, call, held, None, None))
