"""Refusals: the answer a guarded listener gives instead of handling a request.

A refusal is written straight to the transport, before the request reaches any resource and
before its body is read, so it is plain bytes (status, headers, body) rather than something
rendered through ``twisted.web``. Each listener chooses its own shape per reason: the admin
API and the sandbox answer with HTTP error statuses, while the legacy XML-RPC edge answers
HTTP 200 with a ``<fault>`` body, because that is what old merchant clients can show.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from twisted.web.http import RESPONSES
from twisted.web.server import Request

__all__ = [
    "Authorize",
    "Refusal",
    "RefusalFactory",
    "RefusalReason",
    "default_refusal",
]


class RefusalReason(enum.Enum):
    """Why a request is refused; the value is the status the default refusal uses."""

    #: ``authorize(request)`` returned false (or raised: the listener fails closed).
    UNAUTHORIZED = 401
    #: The request (line, headers and body) was not complete within the deadline, or it
    #: stalled longer than the idle timeout half-way.
    TIMEOUT = 408
    #: Declared ``Content-Length`` over ``max_body_bytes``, or a chunked body whose running
    #: total went over it.
    TOO_LARGE = 413


#: ``authorize(request) -> bool``, evaluated once the request's headers are complete and before
#: a byte of its body is read. ``request.method``, ``uri``, ``path``, ``clientproto``,
#: ``requestHeaders``/``getHeader()``, ``getUser()``/``getPassword()`` (HTTP Basic) and
#: ``getClientAddress()`` are valid; ``args``, ``content`` and ``postpath`` are not (they are
#: only built once the whole request is in). It runs on the reactor thread: it must be quick
#: and must not block. Returning ``False`` refuses with :attr:`RefusalReason.UNAUTHORIZED`.
Authorize = Callable[[Request], bool]

#: ``refusal(reason, request) -> Refusal | None``: the answer for a refused request; ``None``
#: falls back to :func:`default_refusal`. ``request`` is ``None`` when a deadline expires
#: before the request line was complete; otherwise its headers may still be partial (for
#: :attr:`RefusalReason.TIMEOUT`).
RefusalFactory = Callable[[RefusalReason, "Request | None"], "Refusal | None"]

_TOKEN: Final = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FORBIDDEN_VALUE_BYTES: Final = (b"\r", b"\n", b"\x00")
#: Framing headers the listener always writes itself.
_FRAMING: Final = frozenset({b"content-length", b"connection", b"transfer-encoding"})


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)


@dataclass(frozen=True, init=False)
class Refusal:
    """One refusal response: status, extra headers, body.

    The listener adds ``Content-Length`` and ``Connection: close`` itself (and drops any
    ``Content-Length``, ``Connection`` or ``Transfer-Encoding`` given here), since the
    connection is always closed after a refusal. Header names and values may be given as
    ``str`` (encoded as Latin-1) or ``bytes``; a name that is not an HTTP token or a value
    with CR, LF or NUL is rejected here, so a refusal can never split the response.
    """

    status: int
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()

    def __init__(self, status: int, body: bytes = b"",
                 headers: Iterable[tuple[bytes | str, bytes | str]] = ()) -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"a refusal needs a final HTTP status (200-599), got {status!r}")
        if not isinstance(body, bytes):
            raise TypeError(f"a refusal body must be bytes, got {type(body).__name__}")
        normalised: list[tuple[bytes, bytes]] = []
        for name, value in headers:
            raw_name, raw_value = _as_bytes(name), _as_bytes(value)
            if not _TOKEN.match(raw_name):
                raise ValueError(f"invalid header name {raw_name!r}")
            if any(bad in raw_value for bad in _FORBIDDEN_VALUE_BYTES):
                raise ValueError(f"invalid value for header {raw_name!r}")
            normalised.append((raw_name, raw_value))
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "headers", tuple(normalised))

    def encode(self) -> bytes:
        """The complete HTTP/1.1 response, ready for ``transport.write``."""
        phrase = RESPONSES.get(self.status, b"Unknown Status")
        head = [b"HTTP/1.1 %d %s" % (self.status, phrase)]
        head.extend(name + b": " + value for name, value in self.headers
                    if name.lower() not in _FRAMING)
        head.append(b"Content-Length: %d" % len(self.body))
        head.append(b"Connection: close")
        return b"\r\n".join(head) + b"\r\n\r\n" + self.body


_DEFAULT_TEXT: Final = {
    RefusalReason.UNAUTHORIZED: b"401 Unauthorized: missing or wrong credentials\n",
    RefusalReason.TIMEOUT: b"408 Request Timeout: the request was not received in time\n",
    RefusalReason.TOO_LARGE: b"413 Content Too Large: the request body is over the limit\n",
}


def default_refusal(reason: RefusalReason, request: Request | None = None) -> Refusal:
    """A short ``text/plain`` answer with the reason's status (401, 408 or 413).

    No ``WWW-Authenticate`` header: only the listener knows its scheme, so a listener with
    ``authorize`` should supply its own 401 (see :class:`Refusal`).
    """
    return Refusal(reason.value, _DEFAULT_TEXT[reason],
                   ((b"Content-Type", b"text/plain; charset=utf-8"),))
