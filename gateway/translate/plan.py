"""What a legacy call becomes in REST: a :class:`Plan` of :class:`RestStep` values.

Translators are pure: ``plan(call, ctx) -> Plan`` from the decoded legacy call and the order
as REST currently reports it (plus the gateway's own invoice rows). The engine journals the
steps (intent + idempotency key) before sending any, runs them in order, records each
step's ``effect`` in the same transaction as its success, and then builds the legacy reply
with :func:`gateway.translate.replies.reply_for`. A dry run prints the plan and its notes.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.store.store import Invoice, Reservation


@dataclass(frozen=True)
class RestStep:
    """One REST mutation. ``effect`` says what to record in the store when it succeeds:

    - ``{"kind": "capture", "reservation_id", "order_id"}``: a new invoice (invno issued at
      planning time) bound to the created capture;
    - ``{"kind": "refund", "invoice_id", "order_id", "credno"}``: a credit on that invoice;
    - ``{"kind": "status", "reservation_id", "status"}``: the reservation's new status.
    """

    http_method: str
    path: str
    body: dict[str, Any] | None
    purpose: str
    effect: dict[str, Any] | None = None


@dataclass(frozen=True)
class Plan:
    steps: tuple[RestStep, ...] = ()
    #: Where v2 and REST differ for this call (shown in the journal and dry runs).
    notes: tuple[str, ...] = ()
    #: Issue an invoice number when journaling this plan (activate).
    allocate_invno: bool = False
    #: The reply when there is nothing to send (e.g. cancelling a cancelled order).
    immediate_reply: Any = None


@dataclass(frozen=True)
class OrderContext:
    """What a translator may look at: the order as REST reports it now, and our rows."""

    reservation: Reservation
    order: Mapping[str, Any]
    invoices: tuple[Invoice, ...] = ()
    invoice: Invoice | None = None  # the invoice a credit/email call names
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def order_id(self) -> str:
        return self.reservation.order_id

    @property
    def status(self) -> str:
        return str(self.order.get("status", ""))


def qty_by_reference(parts: list[Mapping[str, Any]]) -> dict[str, int]:
    """Sum ``quantity`` per line ``reference`` over captures' or refunds' ``order_lines``,
    keyed exactly as :func:`gateway.translate.split.done_per_line` reads it."""
    from gateway.translate.split import quantities_by_ref

    return quantities_by_ref(line for part in parts for line in part.get("order_lines") or [])
