"""What a call answers: its reply and the journal entry it belongs to, and a finished
entry's outcome given again (pure)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.engine.faults import replayed_fault
from gateway.errors import GatewayError, UpstreamUnavailableError
from gateway.store.journal import Seen


@dataclass(frozen=True)
class Answer:
    """A call's reply and the journal entry it belongs to.

    ``delivery``: the token the reply is handed over under (its delivery report presents
    it); None when the entry is not bound (a read, a call with nothing to send, a recorded
    fault passed on). ``replayed``: the outcome of an earlier identical call whose reply had
    not reached its client."""

    reply: Any
    journal_id: int
    delivery: str | None = None
    replayed: bool = False
    rno: str | None = None
    invno: str | None = None

    def context(self) -> dict[str, Any]:
        """What the call was about, for logs and metrics."""
        return {"journal_id": self.journal_id, "rno": self.rno, "invno": self.invno,
                "replayed": self.replayed}


def outcome(seen: Seen, journal_id: int, rno: str | None, invno: str | None) -> Any:
    """A finished entry's reply, or its fault raised again for the caller."""
    if seen.reply_json is not None:
        return json.loads(seen.reply_json)
    fault: GatewayError
    if seen.fault_code is not None:
        fault = replayed_fault(seen.fault_code, seen.fault_string or "")
    else:
        fault = UpstreamUnavailableError("the call is still in progress; retry the same call")
    fault.context = {"journal_id": journal_id, "rno": rno, "invno": invno}
    raise fault
