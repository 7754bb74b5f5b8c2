"""What a legacy call becomes in REST: a :class:`Plan` of :class:`RestStep` values.

Plans are pure: each call module's ``plan(call, ctx) -> Plan`` reads the decoded legacy call
and the order as REST currently reports it (plus the gateway's own invoice rows) and returns
the REST mutations to send. The engine journals the steps (intent + idempotency key) before
sending any, runs them in order, records each step's typed ``effect`` in the same
transaction as its success, and builds the legacy reply from a :class:`Result` with the call
module's ``reply``. A dry run (``explain``) prints the plan and its notes.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.model import (
    CaptureEffect, Effect, Invoice, KlarnaOrder, MoneyKind, OrderCreatedEffect, Reservation,
    money_kind,
)
from gateway.translate.text import TextRepair


@dataclass(frozen=True)
class RestStep:
    """One REST mutation, and what to record in the store when it succeeds."""

    http_method: str
    path: str
    body: dict[str, Any] | None
    purpose: str
    effect: Effect | None = None

    @property
    def money(self) -> MoneyKind:
        return money_kind(self.effect)


@dataclass(frozen=True)
class Plan:
    steps: tuple[RestStep, ...] = ()
    #: Where v2 and REST differ for this call (shown in the journal and dry runs).
    notes: tuple[str, ...] = ()
    #: What the plan worked out for the reply (an amount, an address, a status), for calls
    #: that read rather than change; the call's ``reply`` formats it.
    answer: Any = None
    #: Mis-encoded free text found in the call (``gateway.calls.text_repair``): each is also
    #: one of ``notes``; what the ``klarna_gateway_text_repairs_total`` metric counts.
    repairs: tuple[TextRepair, ...] = ()

    @property
    def allocate_invno(self) -> bool:
        """Issue an invoice number when journaling this plan (a capture creates an invoice)."""
        return any(isinstance(s.effect, CaptureEffect) for s in self.steps)

    @property
    def allocate_rno(self) -> bool:
        """Issue a reservation number when journaling this plan (it creates an order)."""
        return any(isinstance(s.effect, OrderCreatedEffect) for s in self.steps)


@dataclass(frozen=True)
class Result:
    """What a call produced, from which every call module builds its legacy reply."""

    #: The invoice the call is about: the one it names, or the one its capture created.
    invno: str | None = None
    #: The reservation number of an order the call created.
    rno: str | None = None
    #: The order: as read for planning, or re-read after the steps when the call's
    #: declaration says its reply needs it (``CallSpec.reply_reads_order``).
    order: Mapping[str, Any] | None = None
    #: The plan's :attr:`Plan.answer`.
    answer: Any = None


def new_order(eid: int) -> Reservation:
    """The reservation of an order a call is about to create (it has no number or id yet):
    what a creating call's plan finds in ``OrderContext.reservation``."""
    return Reservation(id=0, eid=eid, rno="", order_id="", status=None, origin="new")


@dataclass(frozen=True)
class OrderContext:
    """What a plan may look at: the order as REST reports it now, and the gateway's rows."""

    reservation: Reservation
    order: Mapping[str, Any]
    invoices: tuple[Invoice, ...] = ()
    invoice: Invoice | None = None  # the invoice a credit/email call names
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: The gateway's clock (epoch seconds) when the call is planned.
    now: float | None = None
    #: Klarna's clock (epoch seconds) when the order was read: the ``Date`` of the answer.
    #: Every rule that compares a time with one of the order's own timestamps
    #: (``created_at``, ``expires_at``) reads this, never ``now``. Left unset, it is the
    #: order's ``klarna_time`` when the order is a :class:`~gateway.model.KlarnaOrder` (what
    #: the REST client's ``get_order`` returns), else the gateway's clock (``now``).
    klarna_now: float | None = None

    def __post_init__(self) -> None:
        if self.klarna_now is None:
            answered = self.order.klarna_time if isinstance(self.order, KlarnaOrder) else None
            object.__setattr__(self, "klarna_now", self.now if answered is None else answered)

    @property
    def order_id(self) -> str:
        return self.reservation.order_id

    @property
    def status(self) -> str:
        return str(self.order.get("status", ""))

    @property
    def base(self) -> str:
        """The order's REST path, for building step paths."""
        return f"/ordermanagement/v1/orders/{self.order_id}"


def qty_by_reference(parts: list[Mapping[str, Any]]) -> dict[str, int]:
    """Sum ``quantity`` per line ``reference`` over captures' or refunds' ``order_lines``,
    keyed exactly as :func:`gateway.translate.split.done_per_line` reads it."""
    from gateway.translate.split import quantities_by_ref

    return quantities_by_ref(line for part in parts for line in part.get("order_lines") or [])
