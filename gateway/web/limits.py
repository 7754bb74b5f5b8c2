"""``ListenerLimits``: the numbers that bound one HTTP listener.

One frozen value per listener, so the legacy edge, the admin API and the sandbox can each be
given their own bounds from configuration without sharing mutable state. The defaults are
meant for production: every one of them bounds a resource a client could otherwise hold for
free (a connection slot, a file descriptor, memory or a temp file).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_IDLE_TIMEOUT_SECONDS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REFUSAL_DRAIN_BYTES",
    "DEFAULT_REFUSAL_LINGER_SECONDS",
    "DEFAULT_REQUEST_DEADLINE_SECONDS",
    "ListenerLimits",
]

DEFAULT_REQUEST_DEADLINE_SECONDS: Final = 30.0
DEFAULT_IDLE_TIMEOUT_SECONDS: Final = 15.0
DEFAULT_MAX_CONNECTIONS: Final = 512
DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
DEFAULT_REFUSAL_LINGER_SECONDS: Final = 2.0
DEFAULT_REFUSAL_DRAIN_BYTES: Final = 8 * 1024 * 1024


@dataclass(frozen=True)
class ListenerLimits:
    """Bounds for one listener; see :func:`gateway.web.guarded_site`.

    Attributes:
        request_deadline_seconds: total time a client has to deliver one request, request
            line, headers and body together, counted from the request's first byte. However
            slowly bytes trickle in, a request not complete by then is answered 408 (the
            :class:`~gateway.web.RefusalReason.TIMEOUT` refusal) and its connection closed.
            The deadline stops when the last body byte arrives: the handler itself may run
            as long as it needs (a legacy money call must complete once started).
        idle_timeout_seconds: how long a connection may sit without sending a byte while no
            request is being answered: after connecting, between keep-alive requests, and
            between two bytes of one request. An idle connection with no request under way
            is closed silently (HTTP lets a server close an idle keep-alive connection); a
            request that stalls mid-way is answered 408 like a missed deadline.
        max_connections: connections this listener keeps open at once. A connection over
            the cap is aborted (TCP reset) as soon as it is accepted, without reading or
            writing a byte: no 503, because a response written before the request is read
            would mostly be destroyed by the reset anyway, and the refusal must cost nothing.
            Mind the process's file-descriptor limit (``ulimit -n``): it must cover the sum
            of every listener's cap plus the outgoing connections.
        max_body_bytes: largest request body accepted. A larger declared ``Content-Length``
            is refused (413) as soon as the headers are in, a chunked body as soon as its
            running total passes the limit; nothing over the limit is ever buffered.
        refusal_linger_seconds: after a refusal (401, 408, 413) is written, the server sends
            FIN and keeps reading, discarding every byte, for at most this long, then
            aborts. Closing a socket that still has unread request bytes makes the kernel
            send a reset, which can destroy the refusal before a client that writes its
            whole body before reading ever sees it; a short drain lets the client read the
            answer. Discarded bytes cost no memory. ``0`` closes at once.
        refusal_drain_bytes: the drain also stops (the connection is aborted) once this many
            bytes have been discarded, so a client streaming at loopback or LAN speed costs
            at most this much reading; a client still writing past it was never going to read
            the answer.
    """

    request_deadline_seconds: float = DEFAULT_REQUEST_DEADLINE_SECONDS
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    refusal_linger_seconds: float = DEFAULT_REFUSAL_LINGER_SECONDS
    refusal_drain_bytes: int = DEFAULT_REFUSAL_DRAIN_BYTES

    def __post_init__(self) -> None:
        for name in ("request_deadline_seconds", "idle_timeout_seconds"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        linger = self.refusal_linger_seconds
        if not _is_number(linger) or not math.isfinite(linger) or linger < 0:
            raise ValueError(
                f"refusal_linger_seconds must be a number of seconds >= 0, got {linger!r}")
        if not _is_int(self.max_connections) or self.max_connections < 1:
            raise ValueError(f"max_connections must be an integer >= 1, "
                             f"got {self.max_connections!r}")
        for name in ("max_body_bytes", "refusal_drain_bytes"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
