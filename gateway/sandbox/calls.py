"""What a handler receives and returns, shared by the Order Management and purchase handlers.

A handler turns one authenticated :class:`Call` into an :class:`Outcome` (the response plus,
for a mutation that took effect, the order it changed). Handlers never write to the network;
the resource owns faults, idempotency and delivery.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.web import json_body as bounded_json
from gateway.sandbox.response import SandboxResponse
from gateway.sandbox.state import SandboxState
from gateway.sandbox.validation import Obj, bad_value, validate


@dataclass(frozen=True)
class Call:
    """One authenticated request, decoded."""

    method: str
    path: str
    params: dict[str, str]
    body: bytes
    merchant_eid: int
    host: str
    now: datetime


@dataclass(frozen=True)
class Outcome:
    response: SandboxResponse
    #: The order a successful mutation changed (recorded in its operations log).
    applied_order_id: str | None = None


Handler = Callable[[SandboxState, Call], Outcome]


def json_body(call: Call, spec: Obj) -> dict[str, Any]:
    """The request body, parsed and validated against ``spec`` (unknown fields dropped).

    Raises:
        OmError: 400 BAD_VALUE (missing/unparsable body, wrong types) or 422.
    """
    if not call.body.strip():
        raise bad_value("body", "Missing value")
    try:
        document = bounded_json.loads(call.body)
    except bounded_json.JsonBodyError as e:
        raise bad_value(f"body ({e})") from None
    cleaned: dict[str, Any] = validate(spec, document)
    return cleaned
