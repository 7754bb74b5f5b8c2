"""Imports: bind the numbers a merchant's ERP holds from before the migration to Klarna.

Three kinds of row (:mod:`gateway.model`): a reservation (rno ↔ order), an invoice (invno ↔
capture) and a credit (credno ↔ refund, on the order of an invoice). The caller
(:mod:`gateway.tools.imports`) has read the row's order over REST with the merchant's
credentials; a row only *names* a capture or refund, its money and lines come from Klarna
(:class:`~gateway.model.OrderFacts`).

One row, one savepoint (:func:`import_row`): a row applies whole or, refused with the reason
(:class:`Refused`), changes nothing. A dry run (:func:`preview`) applies every row in order
in one transaction that is then rolled back, so a credit sees the invoice imported a few
rows earlier, and nothing stays.

Why this is safe on a live gateway, and twice:
- the same row again finds itself and is ``unchanged``; a conflicting one is refused;
- the order lease: a row on an order a legacy call holds is refused (import it again), and
  the reservation row stays locked (``FOR UPDATE``) until the transaction ends, so no call
  reads the ledger half-imported;
- money of a journaled call whose outcome is unknown blocks rows of that kind on the order
  (the capture or refund named may be that call's);
- adoption by another process (a call reading the order, ``reconcile``) can race us to the
  same capture or refund without the lease: the unique constraints decide, and the loser
  reads again and finds the row already there (an adopted capture is renumbered to the
  imported invno, an adopted refund is claimed as the imported credit).
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select, true, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gateway.model import (
    CreditImport, ImportKind, ImportOutcome, ImportRow, ImportStatus, InvoiceImport,
    LedgerOrigin, MoneyKind, OrderFacts, Origin, Reservation, ReservationImport,
)
from gateway.store import ledger, mapping, rows
from gateway.store import models as m
from gateway.store.mapping import ReservationConflictError

_R, _I, _C = m.reservations, m.invoices, m.credits
#: How often a row reads again after losing a unique-constraint race, before giving up.
_ATTEMPTS = 3
_IMPORT = LedgerOrigin.IMPORT.value
_ORIGIN_WORDS = {LedgerOrigin.GATEWAY.value: "issued by the gateway",
                 LedgerOrigin.ADOPTED.value: "adopted", _IMPORT: "imported"}


class Refused(Exception):
    """The row does not check out: its savepoint is rolled back and the message reported."""


@dataclass(frozen=True)
class _Numbers:
    """Whether this transaction may issue numbers (a dry run may not: a PostgreSQL
    sequence is never rolled back)."""

    rno_start: int
    issue: bool


def import_row(conn: Connection, now: float, row: ImportRow, facts: OrderFacts,
               rno_start: int, *, issue_numbers: bool = True) -> ImportOutcome:
    """Apply one row checked against ``facts``, in a savepoint: whole, or not at all."""
    apply = _APPLY[row.kind]
    try:
        with conn.begin_nested():
            return apply(conn, now, row, facts, _Numbers(rno_start, issue_numbers))
    except Refused as e:
        return ImportOutcome(ImportStatus.REFUSED, str(e))


def preview(conn: Connection, now: float, items: Sequence[tuple[ImportRow, OrderFacts]],
            rno_start: int) -> list[ImportOutcome]:
    """A dry run: the rows applied in order, then all rolled back."""
    outer = conn.begin_nested()
    try:
        return [import_row(conn, now, row, facts, rno_start, issue_numbers=False)
                for row, facts in items]
    finally:
        outer.rollback()


def _ok(message: str, **details: Any) -> ImportOutcome:
    return ImportOutcome(ImportStatus.OK, message, details)


def _unchanged(message: str, **details: Any) -> ImportOutcome:
    return ImportOutcome(ImportStatus.UNCHANGED, message, details)


# -- reservations -----------------------------------------------------------------------


def _reservation(conn: Connection, now: float, row: ReservationImport, facts: OrderFacts,
                 numbers: _Numbers) -> ImportOutcome:
    existing = mapping.by_rno(conn, row.eid, row.rno)
    if existing is not None and existing.order_id == row.order_id:
        return _unchanged(f"rno {row.rno} ↔ order {row.order_id} already registered",
                          rno=row.rno)
    try:
        mapping.register(conn, now, row.eid, row.order_id, row.rno, Origin.IMPORT.value,
                         facts.status, numbers.rno_start)
    except ReservationConflictError as e:
        raise Refused(f"conflicts with an existing mapping: {e}") from None
    return _ok(f"rno {row.rno} ↔ order {row.order_id} ({facts.status})", rno=row.rno)


def _order_reservation(conn: Connection, now: float, eid: int, facts: OrderFacts,
                       numbers: _Numbers) -> tuple[Reservation, bool]:
    """The reservation of (eid, order), locked against legacy calls until this transaction
    ends; registered on the way (origin import, rno issued) if the ERP had none. Returns
    (reservation, registered now)."""
    where = and_(_R.c.eid == eid, _R.c.order_id == facts.order_id)
    for _ in range(_ATTEMPTS):
        found = conn.execute(select(_R).where(where).with_for_update()).first()
        if found is not None:
            return _require_free(found, now), False
        rno = None if numbers.issue else f"dry-run-{uuid.uuid4().hex}"
        try:
            res = mapping.register(conn, now, eid, facts.order_id, rno, Origin.IMPORT.value,
                                   facts.status, numbers.rno_start)
        except ReservationConflictError:
            continue  # registered concurrently: lock that one
        return res, True
    raise Refused(f"order {facts.order_id} kept being registered concurrently; "
                  "import this row again")


def _require_free(row: Any, now: float) -> Reservation:
    if row.lock_token is not None and row.lock_until is not None and row.lock_until >= now:
        raise Refused(f"a legacy call on order {row.order_id} (rno {row.rno}) is in "
                      "progress; import this row again")
    return rows.reservation(row)


def _require_settled(conn: Connection, order_id: str, kind: MoneyKind, what: str) -> None:
    if ledger.unresolved_money(conn, order_id, -1).get(kind):
        raise Refused(f"an earlier {what} on order {order_id} has an unknown outcome (the "
                      f"{kind.value} may be this one); import this row again once it has "
                      "settled (klarna-gateway reconcile settles it)")


def _registered(res: Reservation, registered: bool, numbers: _Numbers) -> dict[str, Any]:
    if not registered:
        return {"rno": res.rno}
    return {"rno": res.rno if numbers.issue else None, "reservation_registered": True}


def _registered_note(res: Reservation, registered: bool, numbers: _Numbers) -> str:
    if not registered:
        return ""
    rno = res.rno if numbers.issue else "issued on import"
    return f"; reservation registered (rno {rno})"


# -- invoices ---------------------------------------------------------------------------


def _invoice(conn: Connection, now: float, row: InvoiceImport, facts: OrderFacts,
             numbers: _Numbers) -> ImportOutcome:
    capture = facts.captures.get(row.capture_id)
    if capture is None:
        raise Refused(f"capture {row.capture_id} is not on order {row.order_id}")
    registered = False
    for _ in range(_ATTEMPTS):
        named = conn.execute(select(_I).where(and_(_I.c.eid == row.eid,
                                                   _I.c.invno == row.invno))).first()
        held = conn.execute(select(_I).where(and_(_I.c.order_id == row.order_id,
                                                  _I.c.capture_id == row.capture_id))).first()
        if named is not None and held is not None and named.id == held.id:
            return _unchanged(f"invno {row.invno} ↔ capture {row.capture_id} already "
                              f"({_ORIGIN_WORDS.get(named.origin, named.origin)})")
        if named is not None:
            raise Refused(f"invno {row.invno} is already used by eid {row.eid} for capture "
                          f"{named.capture_id} of order {named.order_id}")
        if held is not None and held.eid != row.eid:
            raise Refused(f"capture {row.capture_id} is booked for another merchant")
        if held is not None and not held.adopted:
            raise Refused(f"capture {row.capture_id} already has invoice {held.invno} "
                          f"({_ORIGIN_WORDS.get(held.origin, held.origin)}); an invno the "
                          "ERP was told is never renumbered")
        res, new = _order_reservation(conn, now, row.eid, facts, numbers)
        registered = registered or new
        _require_settled(conn, row.order_id, MoneyKind.CAPTURE, "activation")
        outcome = _renumber(conn, row, held) if held is not None else \
            _insert_invoice(conn, now, row, res, capture)
        if outcome is None:
            continue  # lost a race on a unique constraint: read again
        _moved(conn, now, res.id)
        return ImportOutcome(outcome.status,
                             outcome.message + _registered_note(res, registered, numbers),
                             {**outcome.details, **_registered(res, registered, numbers)})
    raise Refused(f"capture {row.capture_id} kept changing concurrently; import this row "
                  "again")


def _insert_invoice(conn: Connection, now: float, row: InvoiceImport, res: Reservation,
                    capture: dict[str, Any]) -> ImportOutcome | None:
    amount = int(capture.get("captured_amount") or 0)
    try:
        with conn.begin_nested():
            conn.execute(_I.insert().values(
                eid=row.eid, invno=row.invno, reservation_id=res.id, order_id=row.order_id,
                capture_id=row.capture_id, captured_amount=amount, refunded_amount=0,
                lines_json=rows.dumps(capture.get("order_lines") or []),
                refunded_qty_json="{}", adopted=False, journal_id=None, created_at=now,
                origin=_IMPORT))
    except IntegrityError:
        return None
    return _ok(f"invno {row.invno} ↔ capture {row.capture_id} of order {row.order_id} "
               f"({amount} captured)", captured_amount=amount)


def _renumber(conn: Connection, row: InvoiceImport, held: Any) -> ImportOutcome | None:
    """The gateway adopted this capture under a number it never told the ERP: the ERP's
    own number for it replaces that one."""
    try:
        with conn.begin_nested():
            changed = conn.execute(update(_I).where(and_(
                _I.c.id == held.id, _I.c.adopted == true())).values(
                invno=row.invno, adopted=False, origin=_IMPORT)).rowcount
    except IntegrityError:
        return None  # the invno was taken meanwhile
    if changed != 1:
        return None
    return _ok(f"invno {row.invno} ↔ capture {row.capture_id} of order {row.order_id} "
               f"({held.captured_amount} captured): replaces invno {held.invno}, which the "
               "gateway gave the capture when it adopted it (never told to the ERP)",
               captured_amount=held.captured_amount, renumbered_from=held.invno)


# -- credits ----------------------------------------------------------------------------


def _credit(conn: Connection, now: float, row: CreditImport, facts: OrderFacts,
            numbers: _Numbers) -> ImportOutcome:
    refund = facts.refunds.get(row.refund_id)
    for _ in range(_ATTEMPTS):
        inv = conn.execute(select(_I).where(and_(_I.c.eid == row.eid,
                                                 _I.c.invno == row.invno))).first()
        if inv is None:
            raise Refused(f"invoice {row.invno} is unknown for eid {row.eid}: import it "
                          "first (eid,invno,order_id,capture_id)")
        if inv.order_id != facts.order_id:
            raise Refused(f"invoice {row.invno} is on order {inv.order_id}, not on "
                          f"{facts.order_id}")
        if refund is None:
            raise Refused(f"refund {row.refund_id} is not on order {inv.order_id} (the "
                          f"order of invoice {row.invno})")
        booked = conn.execute(select(_C).where(and_(
            _C.c.order_id == inv.order_id, _C.c.refund_id == row.refund_id))).first()
        if booked is not None and not booked.adopted:
            if booked.invoice_id == inv.id and booked.credno == row.credno:
                return _unchanged(f"credno {_credno(row.credno)} ↔ refund {row.refund_id} "
                                  f"on invoice {row.invno} already")
            raise Refused(f"refund {row.refund_id} is already booked as credit "
                          f"{_credno(booked.credno)} on invoice "
                          f"{_invno_of(conn, booked.invoice_id)}")
        _lock_reservation(conn, now, inv.reservation_id)
        if booked is None:
            _require_settled(conn, inv.order_id, MoneyKind.REFUND, "credit")
        inv = conn.execute(select(_I).where(_I.c.id == inv.id).with_for_update()).one()
        outcome = _claim(conn, row, inv, booked) if booked is not None else \
            _insert_credit(conn, now, row, inv, refund)
        if outcome is not None:
            return outcome
    raise Refused(f"refund {row.refund_id} kept changing concurrently; import this row "
                  "again")


def _lock_reservation(conn: Connection, now: float, rid: int) -> Reservation:
    """The reservation, refused while a legacy call holds its order; its version moves (a
    credit is about to change what its invoices have left to refund)."""
    found = _require_free(conn.execute(select(_R).where(_R.c.id == rid).with_for_update()
                                       ).one(), now)
    _moved(conn, now, rid)
    return found


def _moved(conn: Connection, now: float, rid: int) -> None:
    """What the gateway knows of the order changes: a call that read it before this import
    must read it again before it commits its intent (``reservations.version``)."""
    conn.execute(update(_R).where(_R.c.id == rid).values(version=_R.c.version + 1,
                                                         updated_at=now))


def _credno(credno: str) -> str:
    return credno or "(no credno)"


def _invno_of(conn: Connection, invoice_id: int | None) -> str:
    if invoice_id is None:
        return "(none yet)"
    return str(conn.execute(select(_I.c.invno).where(_I.c.id == invoice_id)).scalar_one())


def _require_fits(inv: Any, row: CreditImport, amount: int,
                  lines: list[dict[str, Any]]) -> None:
    """What is left to refund on the invoice, in amount and per captured reference."""
    left = inv.captured_amount - inv.refunded_amount
    if amount > left:
        raise Refused(f"refund {row.refund_id} ({amount}) does not fit invoice {row.invno}: "
                      f"{left} is left to refund on it")
    captured = ledger.qty_by_reference(json.loads(inv.lines_json))
    refunded = json.loads(inv.refunded_qty_json)
    for ref, n in ledger.qty_by_reference(lines).items():
        if ref and ref in captured and refunded.get(ref, 0) + n > captured[ref]:
            raise Refused(f"refund {row.refund_id} refunds {n} × {ref}, invoice {row.invno} "
                          f"has {captured[ref] - refunded.get(ref, 0)} of it left to refund")


def _credit_ok(row: CreditImport, amount: int, left: int, note: str = "",
               **details: Any) -> ImportOutcome:
    return _ok(f"credno {_credno(row.credno)} ↔ refund {row.refund_id} on invoice "
               f"{row.invno} ({amount} refunded, {left} left to refund on it)"
               + (f"; {note}" if note else ""),
               refunded_amount=amount, left_to_refund=left, **details)


def _insert_credit(conn: Connection, now: float, row: CreditImport, inv: Any,
                   refund: dict[str, Any]) -> ImportOutcome | None:
    amount = int(refund.get("refunded_amount") or 0)
    lines = list(refund.get("order_lines") or [])
    _require_fits(inv, row, amount, lines)
    try:
        with conn.begin_nested():
            conn.execute(_C.insert().values(
                eid=row.eid, invoice_id=inv.id, order_id=inv.order_id,
                refund_id=row.refund_id, credno=row.credno, refunded_amount=amount,
                lines_json=rows.dumps(lines), adopted=False, journal_id=None,
                created_at=now, origin=_IMPORT))
    except IntegrityError:
        return None  # adopted or imported meanwhile: read again
    ledger.add_refund_to_invoice(conn, inv, amount, lines)
    return _credit_ok(row, amount, inv.captured_amount - inv.refunded_amount - amount)


def _claim(conn: Connection, row: CreditImport, inv: Any, booked: Any) -> ImportOutcome | None:
    """The gateway adopted this refund (and guessed its invoice): the ERP's credit number
    and invoice replace the guess, provided it fits that invoice."""
    amount, lines = int(booked.refunded_amount), json.loads(booked.lines_json)
    moved = booked.invoice_id != inv.id
    if moved:
        _require_fits(inv, row, amount, lines)
    old = None
    if moved and booked.invoice_id is not None:
        old = conn.execute(select(_I).where(_I.c.id == booked.invoice_id)
                           .with_for_update()).one()
    changed = conn.execute(update(_C).where(and_(_C.c.id == booked.id, _C.c.adopted == true()))
                           .values(invoice_id=inv.id, credno=row.credno, adopted=False,
                                   origin=_IMPORT)).rowcount
    if changed != 1:
        return None
    left = inv.captured_amount - inv.refunded_amount
    if not moved:
        return _credit_ok(row, amount, left, "the gateway had adopted this refund on this "
                                             "invoice: now booked under the ERP's credno")
    if old is not None:
        ledger.add_refund_to_invoice(conn, old, amount, lines, sign=-1)
    ledger.add_refund_to_invoice(conn, inv, amount, lines)
    where = f"on invoice {old.invno}" if old is not None else "without an invoice"
    return _credit_ok(row, amount, left - amount, f"the gateway had adopted this refund "
                      f"{where}: moved to invoice {row.invno}",
                      moved_from=None if old is None else old.invno)


_APPLY: dict[ImportKind, Callable[..., ImportOutcome]] = {
    ImportKind.RESERVATION: _reservation,
    ImportKind.INVOICE: _invoice,
    ImportKind.CREDIT: _credit,
}
