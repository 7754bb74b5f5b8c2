"""What a call answers: its reply and the journal entry it belongs to, a finished twin's
outcome given again, and when an identical twin must still be waited for (pure)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.engine.faults import replayed_fault
from gateway.errors import GatewayError, UpstreamUnavailableError
from gateway.model import EntryState, JournalEntry, Reservation


@dataclass(frozen=True)
class Answer:
    """A call's reply and the journal entry it belongs to (``replayed``: the outcome of an
    earlier identical call whose reply had not reached its client)."""

    reply: Any
    journal_id: int
    replayed: bool = False
    rno: str | None = None
    invno: str | None = None

    def context(self) -> dict[str, Any]:
        """What the call was about, for logs and metrics."""
        return {"journal_id": self.journal_id, "rno": self.rno, "invno": self.invno,
                "replayed": self.replayed}


def twin_busy(entry: JournalEntry, now: float, together: bool) -> bool:
    """Whether an identical twin must still be waited for: while it runs (a live lease);
    and, for a call that came after it finished, while its reply is being written."""
    if entry.state is EntryState.PENDING:
        return entry.lease_until is not None and entry.lease_until > now
    return not together and entry.state is EntryState.DONE and entry.delivered_at is None \
        and entry.delivering_until is not None and entry.delivering_until > now


def replay(entry: JournalEntry) -> Any:
    """The outcome of a finished identical call, given again."""
    if entry.state is EntryState.DONE:
        return entry.reply
    fault: GatewayError
    if entry.state is EntryState.FAILED and entry.fault_code is not None:
        fault = replayed_fault(entry.fault_code, entry.fault_string or "")
    else:
        fault = UpstreamUnavailableError("the call is still in progress; retry the same call")
    fault.context = {"journal_id": entry.id, "rno": entry.rno, "invno": entry.invno}
    raise fault


def answer_of(entry: JournalEntry, reply: Any, *, replayed: bool = False,
               reservation: Reservation | None = None) -> Answer:
    return Answer(reply, entry.id, replayed=replayed,
                  rno=entry.rno or (reservation.rno if reservation else None),
                  invno=entry.invno)
