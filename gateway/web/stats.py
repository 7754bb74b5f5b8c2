"""What one bounded listener counted, for metrics and tests: connections open, accepted
and refused at the cap, refusals per reason, body bytes buffered and bytes discarded after a
refusal. Kept by :class:`~gateway.web.site.GuardedSite`, added to by its channels."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gateway.web.refusal import RefusalReason

__all__ = ["ListenerStats"]


@dataclass
class ListenerStats:
    """Counters of one guarded listener, for metrics and tests.

    Attributes:
        open_connections: connections currently open (what the cap is compared with).
        accepted_connections: connections accepted under the cap since the site was built.
        refused_connections: connections closed at once because the cap was reached.
        refused_requests: refusals written, per reason.
        body_bytes_buffered: request-body bytes handed to ``request.content`` (what the
            listener stored). A refused request adds nothing beyond ``max_body_bytes``.
        discarded_bytes: bytes read and thrown away after a refusal (the lingering drain).
    """

    open_connections: int = 0
    accepted_connections: int = 0
    refused_connections: int = 0
    refused_requests: Counter[RefusalReason] = field(default_factory=Counter)
    body_bytes_buffered: int = 0
    discarded_bytes: int = 0
