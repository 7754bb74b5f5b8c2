"""Recovery of unfinished journal entries (on start, periodically, and from ``reconcile``).

An entry is unfinished when it is pending and nobody holds a live lease on it: its process
died, or its retry budget ran out and the client was told 9119. Its REST steps were
journaled with their idempotency keys before they were sent, so resuming re-sends them
with the same keys: Klarna applies each at most once and answers with the first outcome.
"""
from __future__ import annotations

from collections import Counter

from twisted.logger import Logger

from gateway.engine.runner import CallEngine

log = Logger()


async def recover_unfinished(engine: CallEngine, *, eid: int | None = None,
                             since: float | None = None) -> Counter[str]:
    """Resume every unfinished entry once; returns counts of outcomes."""
    outcomes: Counter[str] = Counter()
    for entry in await engine.store.unfinished_entries(eid=eid, since=since):
        try:
            outcome = await engine.resume(entry)
        except Exception:  # noqa: BLE001 - one bad entry must not stop the others
            log.failure("resuming journal entry {journal_id} failed", journal_id=entry.id,
                        eid=entry.eid, method=entry.method, rno=entry.rno,
                        invno=entry.invno)
            outcome = "error"
        outcomes[outcome] += 1
        engine.metrics.recovery(outcome)
        log.info("journal entry {journal_id} ({method}) resumed: {outcome}",
                 journal_id=entry.id, eid=entry.eid, rno=entry.rno, invno=entry.invno,
                 method=entry.method, outcome=outcome)
    return outcomes
