"""The sandbox's request log: every Klarna-API request as it arrived.

Regression suites and the gateway's rate-limit demo read it (``GET /sandbox/v1/requests``)
to see what Klarna would have seen: which merchant sent what, when, and which injected
fault answered it. Times are the host's clock (``reactor.seconds()``), not the sandbox
clock, which a suite may freeze or move: rates are measured in real seconds. The log keeps
the last :data:`MAX_REQUESTS` requests, in memory like everything else the sandbox holds.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Final

MAX_REQUESTS: Final = 100_000


@dataclass(frozen=True)
class Arrival:
    received_at: float
    eid: int | None  # the merchant whose credentials it carried
    method: str
    path: str
    fault: str | None  # the id of the injected fault that answered it

    def to_json(self) -> dict[str, Any]:
        return {"received_at": round(self.received_at, 6), "eid": self.eid,
                "method": self.method, "path": self.path, "fault": self.fault}


class RequestLog:
    def __init__(self, limit: int = MAX_REQUESTS) -> None:
        self._arrivals: deque[Arrival] = deque(maxlen=limit)

    def record(self, arrival: Arrival) -> None:
        self._arrivals.append(arrival)

    def clear(self) -> None:
        self._arrivals.clear()

    def to_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in self._arrivals]
