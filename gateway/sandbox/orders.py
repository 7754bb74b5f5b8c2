"""The sandbox's in-memory order book: orders, captures, refunds and their JSON forms.

Amounts are integers in minor units. Derived amounts (captured, refunded, remaining) are
computed from the captures and refunds rather than stored, so they can never disagree.
Expiry is evaluated lazily: :meth:`OrderBook.get` turns an authorized order whose
``expires_at`` has passed into ``EXPIRED`` before anyone looks at it
(docs/order-management.md#expiry-and-extension).

Everything lives in process memory and vanishes on restart; that is intended for a sandbox.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from gateway.sandbox.clock import format_timestamp
from gateway.sandbox.ids import IdSource

AUTHORIZATION_PERIOD = timedelta(days=28)
MAX_AUTHORIZATION_AGE = timedelta(days=180)


class Status(StrEnum):
    AUTHORIZED = "AUTHORIZED"
    PART_CAPTURED = "PART_CAPTURED"
    CAPTURED = "CAPTURED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    CLOSED = "CLOSED"


FRAUD_STATUSES = ("ACCEPTED", "PENDING", "REJECTED", "STOPPED")


def _drop_none(document: dict[str, Any]) -> dict[str, Any]:
    """Omit absent optional fields: the response schema types them as non-null."""
    return {key: value for key, value in document.items() if value is not None}


@dataclass
class Capture:
    capture_id: str
    klarna_reference: str
    captured_amount: int
    captured_at: datetime
    description: str | None
    reference: str | None
    order_lines: list[dict[str, Any]]
    billing_address: dict[str, Any] | None
    shipping_address: dict[str, Any] | None
    shipping_info: list[dict[str, Any]] = field(default_factory=list)
    refunded_amount: int = 0
    due_date_extension_days: int = 0

    @property
    def room(self) -> int:
        """What can still be refunded against this capture."""
        return self.captured_amount - self.refunded_amount

    def references(self) -> set[str]:
        return {line["reference"] for line in self.order_lines if "reference" in line}

    def to_json(self) -> dict[str, Any]:
        return _drop_none({
            "capture_id": self.capture_id,
            "klarna_reference": self.klarna_reference,
            "captured_amount": self.captured_amount,
            "captured_at": format_timestamp(self.captured_at),
            "description": self.description,
            "reference": self.reference,
            "order_lines": self.order_lines,
            "refunded_amount": self.refunded_amount,
            "billing_address": self.billing_address,
            "shipping_address": self.shipping_address,
            "shipping_info": self.shipping_info,
        })


@dataclass
class Refund:
    refund_id: str
    refunded_amount: int
    refunded_at: datetime
    description: str | None
    reference: str | None
    order_lines: list[dict[str, Any]]
    #: (capture_id, amount) pairs: how the refund was allocated to captures.
    allocations: list[tuple[str, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return _drop_none({
            "refund_id": self.refund_id,
            "refunded_amount": self.refunded_amount,
            "refunded_at": format_timestamp(self.refunded_at),
            "description": self.description,
            "reference": self.reference,
            "order_lines": self.order_lines,
        })


@dataclass(frozen=True)
class Operation:
    """One applied mutation, kept so reliability tests can prove exactly-once application."""

    method: str
    path: str
    idempotency_key: str | None
    status: int
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path,
                "idempotency_key": self.idempotency_key, "status": self.status,
                "at": format_timestamp(self.at)}


@dataclass
class Order:
    order_id: str
    merchant_eid: int
    klarna_reference: str
    created_at: datetime
    expires_at: datetime
    purchase_country: str
    purchase_currency: str
    locale: str | None
    order_amount: int
    original_order_amount: int
    order_lines: list[dict[str, Any]]
    fraud_status: str = "ACCEPTED"
    status: Status = Status.AUTHORIZED
    billing_address: dict[str, Any] | None = None
    shipping_address: dict[str, Any] | None = None
    merchant_reference1: str | None = None
    merchant_reference2: str | None = None
    merchant_data: str | None = None
    customer: dict[str, Any] | None = None
    captures: list[Capture] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    shipping_info: list[dict[str, Any]] = field(default_factory=list)
    released: bool = False
    acknowledged: bool = False
    #: Set by the ``capture-fails-`` token prefix: every capture is declined.
    capture_fails: bool = False
    #: ``auto_capture`` was asked while ``fraud_status`` was PENDING: the full capture is
    #: made when the control API accepts the order.
    auto_capture_pending: bool = False
    operations: list[Operation] = field(default_factory=list)

    @property
    def captured_amount(self) -> int:
        return sum(c.captured_amount for c in self.captures)

    @property
    def refunded_amount(self) -> int:
        return sum(r.refunded_amount for r in self.refunds)

    @property
    def remaining_authorized_amount(self) -> int:
        if self.released or self.status in (Status.CANCELLED, Status.EXPIRED, Status.CLOSED):
            return 0
        return max(self.order_amount - self.captured_amount, 0)

    @property
    def authorization_cap(self) -> datetime:
        """The latest ``expires_at`` an extension may reach (creation + 180 days)."""
        return self.created_at + MAX_AUTHORIZATION_AGE

    def refresh(self, now: datetime) -> None:
        """Apply time: an uncaptured remainder past ``expires_at`` expires the order."""
        if self.status in (Status.AUTHORIZED, Status.PART_CAPTURED) and now >= self.expires_at:
            self.status = Status.EXPIRED

    def settle_status(self) -> None:
        """Recompute AUTHORIZED / PART_CAPTURED / CAPTURED after amounts changed."""
        captured = self.captured_amount
        if self.released or (captured > 0 and captured >= self.order_amount):
            self.status = Status.CAPTURED
        elif captured > 0:
            self.status = Status.PART_CAPTURED
        else:
            self.status = Status.AUTHORIZED

    def find_capture(self, capture_id: str) -> Capture | None:
        return next((c for c in self.captures if c.capture_id == capture_id), None)

    def find_refund(self, refund_id: str) -> Refund | None:
        return next((r for r in self.refunds if r.refund_id == refund_id), None)

    def to_json(self) -> dict[str, Any]:
        return _drop_none({
            "order_id": self.order_id,
            "status": self.status.value,
            "fraud_status": self.fraud_status,
            "order_amount": self.order_amount,
            "original_order_amount": self.original_order_amount,
            "captured_amount": self.captured_amount,
            "refunded_amount": self.refunded_amount,
            "remaining_authorized_amount": self.remaining_authorized_amount,
            "purchase_currency": self.purchase_currency,
            "purchase_country": self.purchase_country,
            "locale": self.locale,
            "order_lines": self.order_lines,
            "merchant_reference1": self.merchant_reference1,
            "merchant_reference2": self.merchant_reference2,
            "klarna_reference": self.klarna_reference,
            "customer": self.customer,
            "billing_address": self.billing_address,
            "shipping_address": self.shipping_address,
            "created_at": format_timestamp(self.created_at),
            "expires_at": format_timestamp(self.expires_at),
            "captures": [c.to_json() for c in self.captures],
            "refunds": [r.to_json() for r in self.refunds],
            "shipping_info": self.shipping_info,
            "merchant_data": self.merchant_data,
            "initial_payment_method": {"type": "INVOICE", "description": "Pay later"},
        })


class OrderBook:
    """All orders of one sandbox, keyed by order id and owned by one merchant (eid).

    Args:
        ids: where order, capture and refund ids and Klarna references come from; default
            an unseeded :class:`IdSource`.
    """

    def __init__(self, ids: IdSource | None = None) -> None:
        self.ids = ids if ids is not None else IdSource()
        self.orders: dict[str, Order] = {}
        #: (eid, authorization token) -> order id: placing an order twice with the same
        #: authorization token gives the same order (Klarna Payments' create order is
        #: idempotent per token).
        self.authorization_tokens: dict[tuple[int, str], str] = {}
        self._references: set[str] = set()

    def clear(self) -> None:
        self.orders.clear()
        self.authorization_tokens.clear()
        self._references.clear()

    def new_order_id(self) -> str:
        return self.ids.order_id()

    def new_capture_id(self) -> str:
        return self.ids.capture_id()

    def new_refund_id(self) -> str:
        return self.ids.refund_id()

    def new_klarna_reference(self) -> str:
        while True:
            reference = self.ids.reference()
            if reference not in self._references:
                self._references.add(reference)
                return reference

    def add(self, order: Order) -> None:
        self.orders[order.order_id] = order

    def get(self, eid: int, order_id: str, now: datetime) -> Order | None:
        """The merchant's order, refreshed to ``now``; another merchant's order is None."""
        order = self.orders.get(order_id)
        if order is None or order.merchant_eid != eid:
            return None
        order.refresh(now)
        return order

    def get_any(self, order_id: str, now: datetime) -> Order | None:
        """An order regardless of merchant (control API only)."""
        order = self.orders.get(order_id)
        if order is not None:
            order.refresh(now)
        return order
