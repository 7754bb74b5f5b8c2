"""The ledger: invoices (one per capture) and credits (one per refund).

This is the gateway's money memory, not a cache: an invoice row lost is a merchant who can
never credit that invoice. Captures and refunds are recorded in the same transaction as the
journal step that made them; captures and refunds made outside the gateway are adopted by id
(never by position) when an order is read.
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gateway.model import (
    CaptureEffect, Credit, Invoice, LedgerOrigin, MoneyKind, RefundEffect, Reservation,
    StepState,
)
from gateway.store import models as m
from gateway.store import rows
from gateway.store.mapping import next_number
from gateway.store.sql import Sql, is_postgresql, one, run

_I, _C, _J, _S = m.invoices, m.credits, m.journal, m.journal_steps
_SEL_BY_INVNO = select(_I).where(and_(_I.c.eid == bindparam("b_eid"),
                                      _I.c.invno == bindparam("b_invno")))
_SEL_OF_RESERVATION = select(_I).where(_I.c.reservation_id == bindparam("b_id")).order_by(_I.c.id)
_SEL_CREDITS_OF = select(_C).where(_C.c.invoice_id.in_(bindparam("b_ids", expanding=True))
                                   ).order_by(_C.c.id)
_SEL_BY_CAPTURE = select(_I).where(and_(_I.c.order_id == bindparam("b_order"),
                                        _I.c.capture_id == bindparam("b_capture")))
_SEL_CREDIT_BY_REFUND = select(_C).where(and_(_C.c.order_id == bindparam("b_order"),
                                              _C.c.refund_id == bindparam("b_refund")))
_SEL_REFUND_IDS = select(_C.c.refund_id).where(_C.c.order_id == bindparam("b_order"))
#: Steps of unfinished entries on an order (other than the asking entry), by money kind
#: (``none``: changes of the order that move no money).
_SEL_UNRESOLVED = select(_S.c.money, func.count()).select_from(
    _S.join(_J, _J.c.id == _S.c.journal_id)).where(and_(
        _J.c.order_id == bindparam("b_order"), _J.c.id != bindparam("b_id"),
        _J.c.phase.in_(("running", "released")), _S.c.state == StepState.PLANNED.value,
        )).group_by(_S.c.money)


def by_invno(conn: Connection, eid: int, invno: str) -> Invoice | None:
    row = conn.execute(_SEL_BY_INVNO, {"b_eid": eid, "b_invno": invno}).first()
    if row is None:
        return None
    credits = tuple(rows.credit(c) for c in conn.execute(_SEL_CREDITS_OF, {"b_ids": [row.id]}))
    return rows.invoice(row, credits)


def of_reservation(conn: Connection, rid: int) -> list[Invoice]:
    invoice_rows = list(conn.execute(_SEL_OF_RESERVATION, {"b_id": rid}))
    if not invoice_rows:
        return []
    credits: dict[int, list[Credit]] = {}
    for c in conn.execute(_SEL_CREDITS_OF, {"b_ids": [r.id for r in invoice_rows]}):
        credits.setdefault(c.invoice_id, []).append(rows.credit(c))
    return [rows.invoice(r, tuple(credits.get(r.id, ()))) for r in invoice_rows]


def refund_ids(conn: Connection, order_id: str) -> set[str]:
    return {r.refund_id for r in conn.execute(_SEL_REFUND_IDS, {"b_order": order_id})}


def unresolved_money(conn: Connection, order_id: str, journal_id: int) -> dict[MoneyKind, int]:
    """Captures/refunds (and, under ``MoneyKind.NONE``, other changes) other entries
    journaled on this order whose outcome is not known."""
    return {MoneyKind(kind): n for kind, n in conn.execute(
        _SEL_UNRESOLVED, {"b_order": order_id, "b_id": journal_id})}


# -- recording what a journaled step did ----------------------------------------------
#
# Each runs inside the transaction that marks its step done (``journal.record_outcome``),
# only when that step was not done before, so a capture or refund is booked once.

#: A new invoice for the capture under the invno issued with the step; a capture that a read
#: adopted before our answer arrived is ours: it takes our invno.
_RECORD_CAPTURE = Sql("""
INSERT INTO invoices (eid, invno, reservation_id, order_id, capture_id, captured_amount,
  refunded_amount, lines_json, refunded_qty_json, adopted, journal_id, created_at, origin)
VALUES (:eid, :invno, :rid, :order_id, :capture_id, :amount, 0, :lines, '{}', :no,
  :jid, :now, 'gateway')
ON CONFLICT (order_id, capture_id) DO UPDATE SET invno = excluded.invno, adopted = :no,
  journal_id = excluded.journal_id, origin = 'gateway'
WHERE invoices.adopted = :yes AND invoices.invno <> excluded.invno""")


def record_capture(conn: Connection, now: float, eid: int, journal_id: int,
                   effect: CaptureEffect, body: dict[str, Any], capture_id: str) -> None:
    run(conn, _RECORD_CAPTURE, {
        "eid": eid, "invno": effect.invno, "rid": effect.reservation_id,
        "order_id": effect.order_id, "capture_id": capture_id,
        "amount": int(body["captured_amount"]),
        "lines": rows.dumps(body.get("order_lines") or []), "no": False, "yes": True,
        "jid": journal_id, "now": now})


_RECORD_CREDIT = Sql("""
INSERT INTO credits (eid, invoice_id, order_id, refund_id, credno, refunded_amount, lines_json,
  adopted, journal_id, created_at, origin)
VALUES (:eid, :invoice_id, :order_id, :refund_id, :credno, :amount, :lines, :no, :jid, :now,
  'gateway')
ON CONFLICT (order_id, refund_id) DO NOTHING""")
_INVOICE_FOR_UPDATE = {
    False: Sql("SELECT id, refunded_qty_json FROM invoices WHERE id = :id"),
    True: Sql("SELECT id, refunded_qty_json FROM invoices WHERE id = :id FOR UPDATE")}


def record_refund(conn: Connection, now: float, eid: int, journal_id: int,
                  effect: RefundEffect, body: dict[str, Any], refund_id: str) -> None:
    """A credit on the effect's invoice, and the invoice's refunded totals."""
    lines = body.get("order_lines") or []
    amount = int(body["refunded_amount"])
    if run(conn, _RECORD_CREDIT, {
            "eid": eid, "invoice_id": effect.invoice_id, "order_id": effect.order_id,
            "refund_id": refund_id, "credno": str(effect.credno or ""), "amount": amount,
            "lines": rows.dumps(lines), "no": False, "jid": journal_id,
            "now": now}).rowcount != 1:
        return  # recorded before (adopted, or an earlier runner)
    iid, qty_json = one(conn, _INVOICE_FOR_UPDATE[is_postgresql(conn)],
                        {"id": effect.invoice_id})
    add_refund_to_invoice(conn, _Qty(iid, qty_json), amount, lines)


class _Qty:
    """The two columns :func:`add_refund_to_invoice` reads."""

    def __init__(self, id: int, refunded_qty_json: str) -> None:  # noqa: A002
        self.id, self.refunded_qty_json = id, refunded_qty_json


def qty_by_reference(lines: list[dict[str, Any]]) -> dict[str, int]:
    """Quantities per line reference, keyed as :mod:`gateway.translate.split` keys lines:
    the reference, ``""`` without one."""
    qty: dict[str, int] = {}
    for ln in lines:
        named = ln.get("reference")
        ref = named if isinstance(named, str) else ""
        qty[ref] = qty.get(ref, 0) + int(ln.get("quantity") or 0)
    return qty


def add_refund_to_invoice(conn: Connection, invoice: Any, amount: int,
                          lines: list[dict[str, Any]], sign: int = 1) -> None:
    """Book a refund's amount and quantities on an invoice row (``sign=-1``: take them off
    again, when a refund is moved to the invoice the merchant booked it on)."""
    qty = json.loads(invoice.refunded_qty_json)
    for ref, n in qty_by_reference(lines).items():
        qty[ref] = qty.get(ref, 0) + sign * n
        if sign < 0 and qty[ref] == 0:
            del qty[ref]
    conn.execute(update(_I).where(_I.c.id == invoice.id).values(
        refunded_amount=_I.c.refunded_amount + sign * amount,
        refunded_qty_json=rows.dumps(qty)))


# -- adoption of captures and refunds made outside the gateway -------------------------


def adopt(conn: Connection, now: float, reservation: Reservation,
          captures: list[dict[str, Any]], refunds: list[dict[str, Any]],
          invno_start: int) -> tuple[list[str], list[str]]:
    """Record captures/refunds made outside the gateway; returns (new invnos, refund ids).

    A capture or refund is left alone while a journaled one of the same kind on this order
    is unresolved: it may be that one, which its entry (or reconcile) records under its own
    invno. A refund goes to the invoice whose capture holds its line references (Klarna's
    allocation), else the first with room, else stays unattached for reconcile to report.
    """
    pending = unresolved_money(conn, reservation.order_id, -1)
    new_invnos = [] if pending.get(MoneyKind.CAPTURE) else \
        _adopt_captures(conn, now, reservation, captures, invno_start)
    new_refunds = [] if pending.get(MoneyKind.REFUND) else \
        _adopt_refunds(conn, now, reservation, refunds)
    if new_invnos or new_refunds:  # what the ledger knows of the order moved
        conn.execute(update(m.reservations).where(m.reservations.c.id == reservation.id)
                     .values(version=m.reservations.c.version + 1, updated_at=now))
    return new_invnos, new_refunds


def _adopt_captures(conn: Connection, now: float, reservation: Reservation,
                    captures: list[dict[str, Any]], invno_start: int) -> list[str]:
    known = {r.capture_id for r in conn.execute(
        select(_I.c.capture_id).where(_I.c.order_id == reservation.order_id))}
    new: list[str] = []
    for cap in captures:
        if cap["capture_id"] in known:
            continue
        invno = next_number(conn, "invno", invno_start)
        try:
            with conn.begin_nested():
                conn.execute(_I.insert().values(
                    eid=reservation.eid, invno=invno, reservation_id=reservation.id,
                    order_id=reservation.order_id, capture_id=cap["capture_id"],
                    captured_amount=int(cap.get("captured_amount", 0)), refunded_amount=0,
                    lines_json=rows.dumps(cap.get("order_lines") or []),
                    refunded_qty_json="{}", adopted=True, created_at=now,
                    origin=LedgerOrigin.ADOPTED.value))
        except IntegrityError:
            continue  # another process recorded it first
        new.append(invno)
    return new


def _adopt_refunds(conn: Connection, now: float, reservation: Reservation,
                   refunds: list[dict[str, Any]]) -> list[str]:
    known = refund_ids(conn, reservation.order_id)
    new: list[str] = []
    for ref in refunds:
        if ref["refund_id"] in known:
            continue
        invoice = _allocate_refund(conn, reservation.order_id, ref)
        lines = ref.get("order_lines") or []
        amount = int(ref.get("refunded_amount", 0))
        try:
            with conn.begin_nested():
                conn.execute(_C.insert().values(
                    eid=reservation.eid, invoice_id=None if invoice is None else invoice.id,
                    order_id=reservation.order_id, refund_id=ref["refund_id"],
                    credno=str(ref.get("reference") or ""), refunded_amount=amount,
                    lines_json=rows.dumps(lines), adopted=True, created_at=now,
                    origin=LedgerOrigin.ADOPTED.value))
        except IntegrityError:
            continue
        if invoice is not None:
            add_refund_to_invoice(conn, invoice, amount, lines)
        new.append(ref["refund_id"])
    return new


def _allocate_refund(conn: Connection, order_id: str, ref: dict[str, Any]) -> Any:
    invoices = list(conn.execute(select(_I).where(_I.c.order_id == order_id).order_by(_I.c.id)))
    refs = {ln.get("reference") for ln in ref.get("order_lines") or []}
    amount = int(ref.get("refunded_amount", 0))
    for inv in invoices:
        lines = json.loads(inv.lines_json)
        if refs and refs <= {ln.get("reference") for ln in lines} \
                and inv.captured_amount - inv.refunded_amount >= amount:
            return inv
    for inv in invoices:
        if inv.captured_amount - inv.refunded_amount >= amount:
            return inv
    return None
