"""Which order states allow which legacy operation, and the 9103 message naming why not.

One table so that every call refuses the same state with the same words; back-offices show
these messages to operators, and the code (9103) is what their software branches on.
"""
from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from gateway.errors import NotAllowedError

_STATE_TEXT = {
    "CANCELLED": "the reservation is cancelled",
    "EXPIRED": "the reservation has expired",
    "CAPTURED": "the reservation is already fully activated",
    "CLOSED": "the order is closed",
    "PART_CAPTURED": "the reservation is partly activated",
    "AUTHORIZED": "the reservation is not activated",
}


def require_status(order: Mapping[str, Any], allowed: Set[str], action: str) -> None:
    """Raise 9103 unless the order's status is one of ``allowed``."""
    status = str(order.get("status", ""))
    if status not in allowed:
        why = _STATE_TEXT.get(status, f"the order status is {status or 'unknown'}")
        raise NotAllowedError(f"cannot {action}: {why}")


def require_fraud_accepted(order: Mapping[str, Any], action: str) -> None:
    """PENDING means "retry later"; REJECTED/STOPPED are final. Both are 9103."""
    fraud = str(order.get("fraud_status", "ACCEPTED"))
    if fraud == "PENDING":
        raise NotAllowedError(f"cannot {action}: fraud review is PENDING, retry later")
    if fraud in ("REJECTED", "STOPPED"):
        raise NotAllowedError(f"cannot {action}: the order was {fraud} by fraud review")


#: Order states in which an invoice (a capture) can be credited.
REFUNDABLE = frozenset({"PART_CAPTURED", "CAPTURED", "CANCELLED", "EXPIRED", "CLOSED",
                        "AUTHORIZED"})
