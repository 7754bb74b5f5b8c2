"""``ListenerLimits`` and ``Refusal``: defaults, validation, encoding."""
from __future__ import annotations

import dataclasses

import pytest

from gateway.web import ListenerLimits, Refusal, RefusalReason, default_refusal


def test_defaults_are_production_sane() -> None:
    limits = ListenerLimits()
    assert limits.request_deadline_seconds == 30.0
    assert limits.idle_timeout_seconds == 15.0
    assert limits.max_connections == 512
    assert limits.max_body_bytes == 1024 * 1024
    assert limits.refusal_linger_seconds == 2.0
    assert limits.refusal_drain_bytes == 8 * 1024 * 1024
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_connections = 1  # type: ignore[misc]


@pytest.mark.parametrize("field,value", [
    ("request_deadline_seconds", 0), ("request_deadline_seconds", -1.0),
    ("request_deadline_seconds", float("inf")), ("request_deadline_seconds", float("nan")),
    ("idle_timeout_seconds", 0), ("idle_timeout_seconds", None),
    ("max_connections", 0), ("max_connections", 1.5), ("max_connections", True),
    ("max_body_bytes", -1), ("max_body_bytes", "1"),
    ("refusal_linger_seconds", -0.1), ("refusal_drain_bytes", -1),
])
def test_invalid_limits_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        ListenerLimits(**{field: value})  # type: ignore[arg-type]


def test_refusal_encodes_a_closing_response_with_its_own_framing() -> None:
    refusal = Refusal(401, b"no", [("WWW-Authenticate", 'Bearer realm="admin"'),
                                   (b"Content-Length", b"999"), ("connection", "keep-alive")])
    assert refusal.encode() == (
        b"HTTP/1.1 401 Unauthorized\r\n"
        b'WWW-Authenticate: Bearer realm="admin"\r\n'
        b"Content-Length: 2\r\n"
        b"Connection: close\r\n\r\nno")
    assert refusal.headers[0] == (b"WWW-Authenticate", b'Bearer realm="admin"')


@pytest.mark.parametrize("headers", [
    [("X-Evil", "a\r\nSet-Cookie: x=1")], [("Bad Name", "v")], [("X", "nul\x00")],
])
def test_refusal_rejects_headers_that_could_split_the_response(
        headers: list[tuple[str, str]]) -> None:
    with pytest.raises(ValueError):
        Refusal(400, b"", headers)


@pytest.mark.parametrize("status", [100, 199, 600, True])
def test_refusal_needs_a_final_status(status: int) -> None:
    with pytest.raises(ValueError):
        Refusal(status)


def test_default_refusals_use_the_reason_status() -> None:
    for reason, status in [(RefusalReason.UNAUTHORIZED, 401), (RefusalReason.TIMEOUT, 408),
                           (RefusalReason.TOO_LARGE, 413)]:
        refusal = default_refusal(reason)
        assert refusal.status == status
        assert refusal.encode().startswith(b"HTTP/1.1 %d " % status)
