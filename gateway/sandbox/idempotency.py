"""``Klarna-Idempotency-Key`` bookkeeping (docs/order-management.md#idempotency-in-the-sandbox).

A key is scoped per merchant + HTTP method + request path and honoured for 24 hours of
*sandbox* time after the first attempt. A replay gets the stored first response verbatim
(status, headers, body), whatever its own body says -- "only the key matters".

What gets stored is decided by the resource: the final answer of a request that was actually
processed, refusals included; never an injected fault (except that ``apply_then_fail``
stores the real success it hid, so the client's retry learns the truth).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.sandbox.response import SandboxResponse

KEY_TTL = timedelta(hours=24)

IdempotencyScope = tuple[int, str, str, str]
"""(merchant eid, method, path, key)."""


@dataclass(frozen=True)
class StoredResponse:
    response: SandboxResponse
    stored_at: datetime


class IdempotencyStore:
    """First responses by scope, expired lazily against the sandbox clock."""

    def __init__(self, ttl: timedelta = KEY_TTL) -> None:
        self._ttl = ttl
        self._records: dict[IdempotencyScope, StoredResponse] = {}

    def lookup(self, scope: IdempotencyScope, now: datetime) -> SandboxResponse | None:
        record = self._records.get(scope)
        if record is None:
            return None
        if now - record.stored_at >= self._ttl:
            del self._records[scope]
            return None
        return record.response

    def store(self, scope: IdempotencyScope, response: SandboxResponse, now: datetime) -> None:
        self._records[scope] = StoredResponse(response, now)

    def purge(self, now: datetime) -> None:
        """Drop expired records (keeps memory bounded in a long-running sandbox)."""
        for scope in [s for s, r in self._records.items() if now - r.stored_at >= self._ttl]:
            del self._records[scope]

    def clear(self) -> None:
        self._records.clear()

    def __len__(self) -> int:
        return len(self._records)
