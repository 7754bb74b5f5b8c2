"""A call that found an identical call bound to its fingerprint.

:func:`gateway.binding.decide` said what it is: a twin in flight together with it (one
operation: wait and take its outcome), a wait for a reply being delivered (then decide
again), a retry of a reply that never arrived (handed over again, once, under a new
delivery token), or the continuation of an entry nobody holds.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway.binding import Arrival, Decision, Verdict, decide
from gateway.config import Merchant
from gateway.engine.answers import Answer, outcome
from gateway.engine.claim import Ticket, new_token, pause
from gateway.engine.continuation import Continuation
from gateway.errors import GatewayError
from gateway.store import journal
from gateway.store.store import Store

_BUSY = "an identical call is still in progress; retry the same call"


class Twins:
    def __init__(self, store: Store, clock: Any, continuation: Continuation) -> None:
        self.store, self.clock, self.continuation = store, clock, continuation

    async def settle(self, merchant: Merchant, t: Ticket, holder: journal.Bound,
                     verdict: Verdict) -> Answer | None:
        """The call's answer, or None to claim again."""
        seen_token = holder.binding.token
        if verdict.decision is Decision.JOIN:
            return await self.join(merchant, t, holder.id)
        answer = None
        if verdict.decision is Decision.REPLAY:
            answer = await self.replay(holder.id, seen_token, claim=True)
        elif verdict.decision is Decision.TAKEOVER:
            answer = await self.continuation.take_over(merchant, t, holder.id, seen_token)
        if verdict.decision in (Decision.REPLAY, Decision.TAKEOVER):
            # None: an identical call replayed or took it over first: that call and this one
            # are retries of the same operation, in flight together.
            return answer if answer is not None else await self.join(merchant, t, holder.id)
        await self.store.flush_reports()  # it may be our own delivery report it waits for
        await pause(self.clock, t.deadline, _BUSY)
        return None

    async def join(self, merchant: Merchant, t: Ticket, journal_id: int) -> Answer:
        """In flight together with an identical call: one operation, its outcome is ours."""
        while True:
            await pause(self.clock, t.deadline, _BUSY)
            seen = await self.store.seen(journal_id)
            verdict = decide(seen.binding, Arrival.JOINED, self.clock.seconds(), t.window)
            answer = None
            if verdict.decision is Decision.TAKEOVER:
                answer = await self.continuation.take_over(merchant, t, journal_id,
                                                           seen.binding.token)
            elif verdict.decision is Decision.REPLAY:
                answer = await self.replay(journal_id, seen.binding.token,
                                           claim=verdict.claim_delivery, seen=seen)
            if answer is not None:
                return answer

    async def replay(self, journal_id: int, seen_token: str | None, *, claim: bool,
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
        answer = Answer(None, journal_id, delivery, replayed=True, rno=seen.rno,
                        invno=seen.invno)
        try:
            reply = outcome(seen, journal_id, seen.rno, seen.invno)
        except GatewayError as fault:  # a recorded fault, handed over like a reply
            fault.handed_over = answer if delivery is not None else None
            raise
        return replace(answer, reply=reply)
