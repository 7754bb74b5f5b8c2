"""The gateway's neutral values: what the store remembers and what translators read.

Why a module of its own: the pure layers (``gateway.calls``, ``gateway.translate``) need the
reservation, invoice and credit values and the effect a REST step has, but must not import
the store (SQLAlchemy), the engine or Twisted. Everything here is a frozen dataclass or an
enum with no behaviour beyond small derived properties, so every layer can share it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from gateway.binding import Binding, Phase


class Origin(str, Enum):
    """How a reservation entered the mapping.

    Why: docs/legacy-protocol.md#reservation-and-invoice-numbers.
    """

    ADMIN = "admin"
    IMPORT = "import"
    PASS_THROUGH = "pass_through"
    SANDBOX = "sandbox"
    RECURRING = "recurring"


class LedgerOrigin(str, Enum):
    """Where an invoice's (or a credit's) number came from.

    ``gateway``: issued by the gateway for a capture/refund it made itself. ``adopted``: a
    capture/refund made outside the gateway, numbered by the gateway when it read the order
    (never told to the ERP, so an import may renumber it). ``import``: a number the ERP
    already holds from before the migration, bound to its capture/refund by an import.
    """

    GATEWAY = "gateway"
    ADOPTED = "adopted"
    IMPORT = "import"


class EntryState(str, Enum):
    """A journal entry seen from outside: unfinished, or finished one way or the other (its
    :class:`~gateway.binding.Phase` says more)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"

    @classmethod
    def of(cls, phase: Phase) -> EntryState:
        if phase.unfinished:
            return cls.PENDING
        return cls.FAILED if phase is Phase.FAILED else cls.DONE

    @property
    def phases(self) -> tuple[Phase, ...]:
        """The phases this state stands for (journal search filters by them)."""
        return tuple(p for p in Phase if EntryState.of(p) is self)


class StepState(str, Enum):
    """A journaled REST step: intent committed, applied, or never to be sent."""

    PLANNED = "planned"
    DONE = "done"
    ABANDONED = "abandoned"


class MoneyKind(str, Enum):
    """Whether a call (or a step) moves money, and which way."""

    NONE = "none"
    CAPTURE = "capture"
    REFUND = "refund"


@dataclass(frozen=True)
class Reservation:
    """(eid, rno) ↔ Klarna order id, with the last order status the gateway saw."""

    id: int
    eid: int
    rno: str
    order_id: str
    status: str | None
    origin: str
    created_at: float = 0.0
    merchant_ref1: str | None = None
    merchant_ref2: str | None = None


@dataclass(frozen=True)
class Credit:
    """One refund booked against an invoice (``invoice_id`` None: not allocated yet)."""

    id: int
    invoice_id: int | None
    refund_id: str
    credno: str
    refunded_amount: int
    lines: list[dict[str, Any]]
    adopted: bool
    origin: str = LedgerOrigin.GATEWAY.value


@dataclass(frozen=True)
class Invoice:
    """One legacy invoice = one capture, with what has been refunded on it."""

    id: int
    eid: int
    invno: str
    reservation_id: int
    order_id: str
    capture_id: str
    captured_amount: int
    refunded_amount: int
    lines: list[dict[str, Any]]
    refunded_qty: dict[str, int]
    adopted: bool
    credits: tuple[Credit, ...] = ()
    origin: str = LedgerOrigin.GATEWAY.value

    @property
    def refundable(self) -> int:
        return self.captured_amount - self.refunded_amount


# -- what a REST step changes in the mapping when it succeeds ----------------------------


@dataclass(frozen=True)
class CaptureEffect:
    """A capture: a new invoice bound to the created capture id. ``invno`` is issued when
    the plan is journaled, so a resumed entry answers with the same number."""

    reservation_id: int
    order_id: str
    status_after: str
    invno: str | None = None

    kind = MoneyKind.CAPTURE


@dataclass(frozen=True)
class RefundEffect:
    """A refund: a credit on that invoice, under the merchant's credit number."""

    invoice_id: int
    order_id: str
    credno: str = ""

    kind = MoneyKind.REFUND


@dataclass(frozen=True)
class StatusEffect:
    """A status change (cancel, release): the reservation's new status."""

    reservation_id: int
    status: str

    kind = MoneyKind.NONE


@dataclass(frozen=True)
class ReferencesEffect:
    """New merchant references (None: unchanged), kept so ``check_order_status`` can find
    the order by the merchant's order id."""

    reservation_id: int
    merchant_reference1: str | None = None
    merchant_reference2: str | None = None

    kind = MoneyKind.NONE


@dataclass(frozen=True)
class OrderCreatedEffect:
    """A new order (a recurring purchase): registered as a reservation under ``rno``, which
    is issued when the step is journaled, so a resumed entry answers with the same one."""

    eid: int
    origin: str
    rno: str | None = None

    kind = MoneyKind.NONE


Effect = CaptureEffect | RefundEffect | StatusEffect | ReferencesEffect | OrderCreatedEffect

_EFFECT_TYPES: dict[str, type] = {"capture": CaptureEffect, "refund": RefundEffect,
                                  "status": StatusEffect, "references": ReferencesEffect,
                                  "order_created": OrderCreatedEffect}


def effect_to_json(effect: Effect | None) -> dict[str, Any] | None:
    """The journal's JSON form: the fields plus ``kind`` (capture, refund, status)."""
    if effect is None:
        return None
    name = next(k for k, v in _EFFECT_TYPES.items() if isinstance(effect, v))
    return {"kind": name, **{k: getattr(effect, k) for k in effect.__dataclass_fields__}}


def effect_from_json(data: dict[str, Any] | None) -> Effect | None:
    """Inverse of :func:`effect_to_json`."""
    if not data:
        return None
    cls = _EFFECT_TYPES[str(data["kind"])]
    return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})  # type: ignore[no-any-return]


def money_kind(effect: Effect | None) -> MoneyKind:
    return MoneyKind.NONE if effect is None else effect.kind


@dataclass(frozen=True)
class Step:
    """One journaled REST mutation with its idempotency key (committed before sending)."""

    journal_id: int
    step: int
    http_method: str
    path: str
    body: dict[str, Any] | None
    idempotency_key: str
    purpose: str
    effect: Effect | None
    state: StepState
    result: dict[str, Any] | None
    #: When the step was planned (for a planned step: when its key was first committed).
    updated_at: float = 0.0

    @property
    def money(self) -> MoneyKind:
        return money_kind(self.effect)


@dataclass(frozen=True)
class JournalEntry:
    """One legacy call that passed authentication, and what became of it."""

    id: int
    eid: int
    method: str
    fingerprint: str
    call: dict[str, Any]
    phase: Phase
    reply: Any
    fault_code: int | None
    fault_string: str | None
    order_id: str | None
    created_at: float
    updated_at: float
    #: The invoice this call is about: named by the call, or issued when it was planned.
    invno: str | None = None
    rno: str | None = None
    notes: list[str] = field(default_factory=list)
    steps: tuple[Step, ...] = ()
    #: The current phase's token (a lease token while running, a delivery token while
    #: replying) and its end; when the phase last changed.
    token: str | None = None
    until: float | None = None
    phase_at: float = 0.0
    #: When the entry's reply reached its client's connection (None: not, or not yet).
    delivered_at: float | None = None
    attempts: int = 0

    @property
    def state(self) -> EntryState:
        """Unfinished, done, or failed: a finished entry that holds a fault failed, whatever
        its phase (one recovery ended is kept bound for the client's retry)."""
        if self.fault_code is not None and not self.phase.unfinished:
            return EntryState.FAILED
        return EntryState.of(self.phase)

    @property
    def finished(self) -> bool:
        return not self.phase.unfinished

    @property
    def binding(self) -> Binding:
        return Binding(self.phase, self.token, self.until, self.phase_at)


# -- importing what an ERP holds from before the migration ------------------------------


class ImportKind(str, Enum):
    """What one import row binds: rno ↔ order, invno ↔ capture, or credno ↔ refund."""

    RESERVATION = "reservation"
    INVOICE = "invoice"
    CREDIT = "credit"


@dataclass(frozen=True)
class ReservationImport:
    """(eid, rno) ↔ order_id, as the ERP knows it."""

    eid: int
    rno: str
    order_id: str

    kind = ImportKind.RESERVATION


@dataclass(frozen=True)
class InvoiceImport:
    """An invno Klarna issued before the migration ↔ the capture it became. Only names the
    capture: its amount and lines are read from Klarna."""

    eid: int
    invno: str
    order_id: str
    capture_id: str

    kind = ImportKind.INVOICE


@dataclass(frozen=True)
class CreditImport:
    """A credit booked before the migration (``credno`` may be empty) ↔ the refund it
    became, on the order of invoice ``invno``. Only names the refund."""

    eid: int
    invno: str
    credno: str
    refund_id: str

    kind = ImportKind.CREDIT


ImportRow = ReservationImport | InvoiceImport | CreditImport


@dataclass(frozen=True)
class OrderFacts:
    """What an import checks a row against: the order as Klarna answered it, read with the
    merchant's credentials (captures and refunds by id)."""

    order_id: str
    status: str | None
    captures: dict[str, dict[str, Any]]
    refunds: dict[str, dict[str, Any]]

    @classmethod
    def of(cls, order_id: str, order: dict[str, Any]) -> OrderFacts:
        return cls(order_id=order_id,
                   status=None if order.get("status") is None else str(order["status"]),
                   captures={str(c["capture_id"]): c for c in order.get("captures") or []},
                   refunds={str(r["refund_id"]): r for r in order.get("refunds") or []})


class ImportStatus(str, Enum):
    """One row's outcome: applied (or, in a dry run, would be), already so, or refused."""

    OK = "ok"
    UNCHANGED = "unchanged"
    REFUSED = "refused"


@dataclass(frozen=True)
class ImportOutcome:
    """One row's line in the report. ``details``: the facts a client may want by name
    (``rno`` issued or matched, ``captured_amount``, ``renumbered_from``…)."""

    status: ImportStatus
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class KlarnaOrder(dict[str, Any]):
    """An order as Klarna answered a GET of it, with the time of that answer on Klarna's
    clock (``klarna_time``: its ``Date`` header in epoch seconds; ``None`` when missing or
    unreadable).

    Why the answer's time travels with the order: rules that compare a time with one of
    the order's own timestamps (``created_at``, ``expires_at``) must use the clock that
    wrote them, Klarna's, not the gateway host's (off by minutes, or by a year against a
    seeded sandbox frozen at its epoch). A plain ``dict`` in every other respect: JSON,
    comparison and copies see only the order (a copy drops the time).
    """

    def __init__(self, order: Any = (), klarna_time: float | None = None) -> None:
        super().__init__(order)
        self.klarna_time = klarna_time
