"""Klarna-shaped refusals raised by the sandbox's domain code and rendered in one place.

Every 4xx/5xx the sandbox sends has Klarna's body shape (docs/order-management.md#errors):
``{"error_code": ..., "error_messages": [...], "correlation_id": "<uuid>"}``.

The correlation id is an argument, never made up here: it comes from the sandbox's
:class:`~gateway.sandbox.ids.IdSource`, so a seeded sandbox repeats it run after run.
"""
from __future__ import annotations

import json
from typing import Any

#: Generic error codes used for injected faults and transport-level refusals.
DEFAULT_ERROR: dict[int, tuple[str, str]] = {
    400: ("BAD_REQUEST", "Bad request"),
    401: ("UNAUTHORIZED", "Unauthorized"),
    403: ("FORBIDDEN", "Forbidden"),
    404: ("NOT_FOUND", "Not found"),
    405: ("METHOD_NOT_ALLOWED", "Method not allowed"),
    409: ("CONFLICT", "Conflict"),
    413: ("REQUEST_TOO_LARGE", "Request is too large"),
    422: ("UNPROCESSABLE_ENTITY", "Unprocessable entity"),
    429: ("TOO_MANY_REQUESTS", "Too many requests"),
    500: ("INTERNAL_SERVER_ERROR", "Unexpected server error"),
    502: ("TEMPORARILY_UNAVAILABLE", "Temporarily unavailable"),
    503: ("TEMPORARILY_UNAVAILABLE", "Temporarily unavailable"),
    504: ("TEMPORARILY_UNAVAILABLE", "Temporarily unavailable"),
}


class OmError(Exception):
    """A refusal with an HTTP status, a Klarna ``error_code`` and one message.

    ``extra`` holds additional body fields (Klarna Payments adds ``fraud_status`` and
    ``reason`` to a declined purchase).
    """

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self, correlation_id: str) -> bytes:
        return error_body(self.code, self.message, correlation_id, **self.extra)


def error_body(code: str, message: str, correlation_id: str, **extra: Any) -> bytes:
    """Serialize a Klarna error body."""
    document: dict[str, Any] = {
        "error_code": code,
        "error_messages": [message],
        "correlation_id": correlation_id,
    }
    document.update(extra)
    return json.dumps(document).encode("utf-8")


def default_error(status: int) -> tuple[str, str]:
    """The (error_code, message) the sandbox uses for a bare status, e.g. an injected 503."""
    if status in DEFAULT_ERROR:
        return DEFAULT_ERROR[status]
    if status >= 500:
        return "INTERNAL_SERVER_ERROR", "Unexpected server error"
    return "BAD_REQUEST", "Request refused"
