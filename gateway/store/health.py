"""Reads for the operator's gauges that the journal's own counts do not give.

Kept apart from ``gateway.store.journal`` (which owns every write to the journal): one read,
for ``klarna_gateway_journal_oldest_pending_seconds``, the gauge the alert "unfinished
journal entries older than the give-up time" compares with ``give_up_seconds``.
"""
from __future__ import annotations

from typing import Final

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from gateway.binding import Phase
from gateway.store.models import journal

#: The phases of an entry whose outcome is not known yet (recovery finishes them).
UNFINISHED: Final = tuple(p.value for p in Phase if p.unfinished)


def oldest_pending_age(conn: Connection, now: float) -> float:
    """Seconds since the oldest unfinished journal entry was created (0: none)."""
    created = conn.execute(select(func.min(journal.c.created_at)).where(
        journal.c.phase.in_(UNFINISHED))).scalar()
    return 0.0 if created is None else max(0.0, now - float(created))
