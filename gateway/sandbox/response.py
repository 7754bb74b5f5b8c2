"""An HTTP answer as plain data, so it can be stored for idempotent replays and inspected.

Handlers build a :class:`SandboxResponse` instead of writing to the request; the resource
decides afterwards whether to send it, delay it, store it or replace it with an injected
fault. Keeping it immutable means a stored replay is byte-for-byte the first answer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.sandbox.errors import OmError, default_error, error_body

JSON_TYPE = "application/json"


@dataclass(frozen=True)
class SandboxResponse:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def json_response(document: Any, status: int = 200) -> SandboxResponse:
    return SandboxResponse(status, (("Content-Type", JSON_TYPE),),
                           json.dumps(document).encode("utf-8"))


def empty_response(status: int = 204, headers: tuple[tuple[str, str], ...] = ()) -> SandboxResponse:
    return SandboxResponse(status, headers, b"")


def error_response(error: OmError, correlation_id: str,
                   headers: tuple[tuple[str, str], ...] = ()) -> SandboxResponse:
    return SandboxResponse(error.status, (("Content-Type", JSON_TYPE), *headers),
                           error.body(correlation_id))


def status_error_response(status: int, correlation_id: str) -> SandboxResponse:
    """A Klarna-shaped error for a bare status (injected faults, 405, 413...)."""
    code, message = default_error(status)
    return SandboxResponse(status, (("Content-Type", JSON_TYPE),),
                           error_body(code, message, correlation_id))
