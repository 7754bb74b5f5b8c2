"""The store's domain operations: mapping rows and the call journal.

Each public ``async def name(...)`` runs a nested ``name_txn(conn, ...)`` through
:meth:`Database.run_interaction`, so every SQL statement runs off the reactor in one
transaction. Results leave as frozen dataclasses. The rules that keep money safe across
processes are enforced by the database (unique keys, conditional updates), not by memory:

- a journal entry's ``inflight`` column is unique, so two identical calls cannot both run;
- a REST step's intent and idempotency key are committed before the request is sent;
- a step's outcome and the mapping rows it creates commit in one transaction.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gateway.store import models as m
from gateway.store.database import Database


# Hot-path statements, built once: building a Core statement per call costs several times
# more than executing it on SQLite (measured: 56 µs vs 14 µs for a select). Parameters are
# bound at execution; names are prefixed ``b_`` so they never collide with column names.
_J, _R, _S, _I, _C = m.journal, m.reservations, m.journal_steps, m.invoices, m.credits
_SEL_INFLIGHT = select(_J).where(_J.c.inflight == bindparam("b_fp"))
_SEL_JOURNAL = select(_J).where(_J.c.id == bindparam("b_id"))
_SEL_STEPS = select(_S).where(_S.c.journal_id == bindparam("b_id")).order_by(_S.c.step)
_INS_JOURNAL = _J.insert()
_SEL_RES_BY_RNO = select(_R).where(and_(_R.c.eid == bindparam("b_eid"),
                                        _R.c.rno == bindparam("b_rno")))
_SEL_RES_BY_ID = select(_R).where(_R.c.id == bindparam("b_id"))
_LOCK_ORDER = update(_R).where(and_(
    _R.c.id == bindparam("b_id"),
    or_(_R.c.lock_token.is_(None), _R.c.lock_until < bindparam("b_now"),
        _R.c.lock_token == bindparam("b_tok")))).values(lock_token=bindparam("b_tok"),
                                                        lock_until=bindparam("b_until"))
_UNLOCK_ORDER = update(_R).where(and_(_R.c.id == bindparam("b_id"),
                                      _R.c.lock_token == bindparam("b_tok"))).values(
    lock_token=None, lock_until=None)
_RENEW_ORDER = update(_R).where(and_(_R.c.id == bindparam("b_id"),
                                     _R.c.lock_token == bindparam("b_tok"))).values(
    lock_until=bindparam("b_until"))
_RENEW_JOURNAL = update(_J).where(and_(_J.c.id == bindparam("b_id"),
                                       _J.c.lease_token == bindparam("b_tok"),
                                       _J.c.state == "pending")).values(
    lease_until=bindparam("b_until"), updated_at=bindparam("b_now"))
_SEL_INVOICES = select(_I).where(_I.c.reservation_id == bindparam("b_id")).order_by(_I.c.id)
_SEL_CREDITS_OF = select(_C).where(_C.c.invoice_id.in_(bindparam("b_ids", expanding=True))
                                   ).order_by(_C.c.id)
_SEL_PENDING_PATHS = select(_S.c.path).select_from(_S.join(_J, _J.c.id == _S.c.journal_id)).where(
    and_(_J.c.order_id == bindparam("b_order"), _J.c.id != bindparam("b_id"),
         _J.c.state == "pending", _S.c.state == "planned"))
_INS_STEP = _S.insert()
_SEL_STEP = select(_S).where(and_(_S.c.journal_id == bindparam("b_id"),
                                  _S.c.step == bindparam("b_step")))
_UPD_JOURNAL = update(_J).where(_J.c.id == bindparam("b_id"))
_FINISH = update(_J).where(and_(_J.c.id == bindparam("b_id"), _J.c.state == "pending"))
_FINISH_TOKEN = update(_J).where(and_(_J.c.id == bindparam("b_id"), _J.c.state == "pending",
                                      _J.c.lease_token == bindparam("b_tok")))
_UPD_STEP = update(_S).where(and_(_S.c.journal_id == bindparam("b_id"),
                                  _S.c.step == bindparam("b_step")))
_UPD_RES = update(_R).where(_R.c.id == bindparam("b_id"))
_SEL_COUNTER = select(m.counters.c.next_value).where(m.counters.c.name == bindparam("b_name"))
_UPD_COUNTER = update(m.counters).where(m.counters.c.name == bindparam("b_name")).values(
    next_value=bindparam("b_next"))
_SEL_INVOICE = select(_I).where(and_(_I.c.eid == bindparam("b_eid"),
                                     _I.c.invno == bindparam("b_invno")))
_SEL_INVOICE_BY_CAPTURE = select(_I).where(and_(_I.c.order_id == bindparam("b_order"),
                                                _I.c.capture_id == bindparam("b_capture")))
_SEL_CREDIT_BY_REFUND = select(_C).where(and_(_C.c.order_id == bindparam("b_order"),
                                              _C.c.refund_id == bindparam("b_refund")))
_INS_INVOICE = _I.insert()
_INS_CREDIT = _C.insert()


class LeaseLostError(Exception):
    """This runner no longer owns the journal entry (its lease lapsed and another runner
    took over): it must stop without sending or finishing anything."""


class ClaimContendedError(Exception):
    """The call's fingerprint kept changing hands while we tried to claim it."""


class ReservationConflictError(Exception):
    """The rno or order id is already registered for this eid (with another partner)."""


@dataclass(frozen=True)
class Reservation:
    id: int
    eid: int
    rno: str
    order_id: str
    status: str | None
    origin: str


@dataclass(frozen=True)
class Credit:
    id: int
    invoice_id: int | None
    refund_id: str
    credno: str
    refunded_amount: int
    lines: list[dict[str, Any]]
    adopted: bool


@dataclass(frozen=True)
class Invoice:
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


@dataclass(frozen=True)
class Step:
    journal_id: int
    step: int
    http_method: str
    path: str
    body: dict[str, Any] | None
    idempotency_key: str
    purpose: str
    effect: dict[str, Any] | None
    state: str
    result: dict[str, Any] | None
    #: When the step was planned (for a planned step: when its key was first committed).
    updated_at: float = 0.0


@dataclass(frozen=True)
class JournalEntry:
    id: int
    eid: int
    method: str
    fingerprint: str
    call: dict[str, Any]
    state: str
    reply: Any
    fault_code: int | None
    fault_string: str | None
    order_id: str | None
    lease_until: float | None
    created_at: float
    updated_at: float
    notes: list[str] = field(default_factory=list)
    steps: tuple[Step, ...] = ()


@dataclass(frozen=True)
class BeginResult:
    """What to do with a legacy call: ``run`` it (new or resumed), ``wait`` for its twin, or
    ``replay`` a twin's finished outcome."""

    action: str  # run | wait | replay
    entry: JournalEntry
    #: With ``action == "run"``: the reservation the call names (by rno, or by invno for
    #: invoice calls), the invoice, all invoices of the reservation, and whether this
    #: claim also took the order lease. ``None`` reservation = unknown rno/invno.
    reservation: Reservation | None = None
    invoice: Invoice | None = None
    invoices: tuple[Invoice, ...] = ()
    locked: bool = False
    #: Capture/refund steps of *other* unfinished entries on this order: money whose
    #: outcome is not known yet, so new captures/refunds must wait for it.
    pending_captures: int = 0
    pending_refunds: int = 0


def _loads(s: str | None) -> Any:
    return None if s is None else json.loads(s)


def _dumps(v: Any) -> str:
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def _reservation(row: Any) -> Reservation:
    return Reservation(id=row.id, eid=row.eid, rno=row.rno, order_id=row.order_id,
                       status=row.status, origin=row.origin)


def _credit(row: Any) -> Credit:
    return Credit(id=row.id, invoice_id=row.invoice_id, refund_id=row.refund_id,
                  credno=row.credno, refunded_amount=row.refunded_amount,
                  lines=json.loads(row.lines_json), adopted=bool(row.adopted))


def _invoice(row: Any, credits: tuple[Credit, ...] = ()) -> Invoice:
    return Invoice(id=row.id, eid=row.eid, invno=row.invno, reservation_id=row.reservation_id,
                   order_id=row.order_id, capture_id=row.capture_id,
                   captured_amount=row.captured_amount, refunded_amount=row.refunded_amount,
                   lines=json.loads(row.lines_json),
                   refunded_qty=json.loads(row.refunded_qty_json), adopted=bool(row.adopted),
                   credits=credits)


def _step(row: Any) -> Step:
    return Step(journal_id=row.journal_id, step=row.step, http_method=row.http_method,
                path=row.path, body=_loads(row.body_json), idempotency_key=row.idempotency_key,
                purpose=row.purpose, effect=_loads(row.effect_json), state=row.state,
                result=_loads(row.result_json), updated_at=row.updated_at)


def _entry(conn: Connection, row: Any) -> JournalEntry:
    steps = tuple(_step(s) for s in conn.execute(_SEL_STEPS, {"b_id": row.id}))
    return JournalEntry(
        id=row.id, eid=row.eid, method=row.method, fingerprint=row.fingerprint,
        call=json.loads(row.call_json), state=row.state, reply=_loads(row.reply_json),
        fault_code=row.fault_code, fault_string=row.fault_string, order_id=row.order_id,
        lease_until=row.lease_until, created_at=row.created_at, updated_at=row.updated_at,
        notes=_loads(row.notes_json) or [], steps=steps,
    )


def next_number_txn(conn: Connection, name: str, start: int) -> str:
    """A decimal number unique across every process sharing this database.

    PostgreSQL: ``nextval`` of a real sequence (never rolled back, never repeated).
    SQLite: a counter row updated inside the single-writer transaction.
    The configured ``start`` is an offset, so the first number handed out is ``start``.
    """
    if conn.dialect.name == "postgresql":
        n = conn.execute(text(f"SELECT nextval('{name}_seq')")).scalar_one()
    else:
        row = conn.execute(_SEL_COUNTER, {"b_name": name}).first()
        if row is None:
            n = 1
            conn.execute(m.counters.insert().values(name=name, next_value=2))
        else:
            n = row.next_value
            conn.execute(_UPD_COUNTER, {"b_name": name, "b_next": n + 1})
    return str(start + int(n) - 1)


class Store:
    """The gateway's persistent memory. ``clock`` supplies ``seconds()`` (the reactor)."""

    def __init__(self, db: Database, clock: Any, *, rno_start: int = 8000000000,
                 invno_start: int = 9000000000) -> None:
        self.db = db
        self.clock = clock
        self.rno_start = rno_start
        self.invno_start = invno_start
        self._install_id: str | None = None

    # -- meta ---------------------------------------------------------------------------

    async def install_id(self) -> str:
        if self._install_id is None:
            self._install_id = await self.db.run_interaction("install_id", self.install_id_txn)
        return self._install_id

    @staticmethod
    def install_id_txn(conn: Connection) -> str:
        row = conn.execute(select(m.meta.c.value).where(m.meta.c.key == "install_id")).first()
        if row is None:
            value = str(uuid.uuid4())
            conn.execute(m.meta.insert().values(key="install_id", value=value))
            return value
        return str(row.value)

    def idempotency_key(self, install_id: str, journal_id: int, step: int) -> str:
        """Deterministic per (database, journal entry, step): any process resuming the entry
        sends the same key, so Klarna applies the mutation at most once."""
        return str(uuid.uuid5(uuid.UUID(install_id), f"journal:{journal_id}:step:{step}"))

    # -- reservations -------------------------------------------------------------------

    async def register_reservation(self, eid: int, order_id: str, rno: str | None,
                                   origin: str, status: str | None = None) -> Reservation:
        return await self.db.run_interaction("register_reservation",
                                             self.register_reservation_txn, eid, order_id,
                                             rno, origin, status)

    def register_reservation_txn(self, conn: Connection, eid: int, order_id: str,
                                 rno: str | None, origin: str,
                                 status: str | None = None) -> Reservation:
        """Register (eid, rno) ↔ order_id. Registering the same pair again is a no-op."""
        existing = conn.execute(select(m.reservations).where(and_(
            m.reservations.c.eid == eid,
            or_(m.reservations.c.order_id == order_id,
                *( [m.reservations.c.rno == rno] if rno else [] )),
        ))).all()
        for row in existing:
            if row.order_id == order_id and (rno is None or row.rno == rno):
                return _reservation(row)
        if existing:
            row = existing[0]
            what = "order_id" if row.order_id == order_id else "rno"
            raise ReservationConflictError(
                f"{what} already registered for eid {eid} (rno {row.rno} ↔ order {row.order_id})")
        if rno is None:
            rno = next_number_txn(conn, "rno", self.rno_start)
        now = self.clock.seconds()
        try:
            with conn.begin_nested():
                rid = conn.execute(m.reservations.insert().values(
                    eid=eid, rno=rno, order_id=order_id, status=status, origin=origin,
                    created_at=now, updated_at=now)).inserted_primary_key[0]
        except IntegrityError:
            raise ReservationConflictError(f"rno {rno} or order {order_id} already registered "
                                           f"for eid {eid}") from None
        return Reservation(id=rid, eid=eid, rno=rno, order_id=order_id, status=status,
                           origin=origin)

    async def get_reservation(self, eid: int, rno: str) -> Reservation | None:
        return await self.db.run_interaction("get_reservation", self.get_reservation_txn,
                                             eid, rno)

    @staticmethod
    def get_reservation_txn(conn: Connection, eid: int, rno: str) -> Reservation | None:
        row = conn.execute(_SEL_RES_BY_RNO, {"b_eid": eid, "b_rno": rno}).first()
        return None if row is None else _reservation(row)

    async def get_reservation_by_order(self, eid: int, order_id: str) -> Reservation | None:
        def txn(conn: Connection) -> Reservation | None:
            row = conn.execute(select(m.reservations).where(and_(
                m.reservations.c.eid == eid, m.reservations.c.order_id == order_id))).first()
            return None if row is None else _reservation(row)
        return await self.db.run_interaction("get_reservation_by_order", txn)

    async def get_reservation_by_id(self, rid: int) -> Reservation:
        def txn(conn: Connection) -> Reservation:
            return _reservation(conn.execute(
                select(m.reservations).where(m.reservations.c.id == rid)).one())
        return await self.db.run_interaction("get_reservation_by_id", txn)

    async def set_reservation_status(self, rid: int, status: str) -> None:
        def txn(conn: Connection) -> None:
            conn.execute(update(m.reservations).where(m.reservations.c.id == rid)
                         .values(status=status, updated_at=self.clock.seconds()))
        await self.db.run_interaction("set_reservation_status", txn)

    async def list_reservations(self, eid: int | None = None) -> list[Reservation]:
        def txn(conn: Connection) -> list[Reservation]:
            q = select(m.reservations).order_by(m.reservations.c.id)
            if eid is not None:
                q = q.where(m.reservations.c.eid == eid)
            return [_reservation(r) for r in conn.execute(q)]
        return await self.db.run_interaction("list_reservations", txn)

    # -- order locks --------------------------------------------------------------------

    async def acquire_order_lock(self, rid: int, token: str, ttl: float) -> bool:
        """Take the per-order lease if it is free or expired (atomic across processes)."""
        return await self.db.run_interaction("acquire_order_lock",
                                             self.acquire_order_lock_txn, rid, token, ttl)

    def acquire_order_lock_txn(self, conn: Connection, rid: int, token: str,
                               ttl: float) -> bool:
        now = self.clock.seconds()
        res = conn.execute(_LOCK_ORDER, {"b_id": rid, "b_now": now, "b_tok": token,
                                         "b_until": now + ttl})
        return res.rowcount == 1

    async def release_order_lock(self, rid: int, token: str) -> None:
        await self.db.run_interaction("release_order_lock", self.release_order_lock_txn,
                                      rid, token)

    @staticmethod
    def release_order_lock_txn(conn: Connection, rid: int, token: str) -> None:
        conn.execute(_UNLOCK_ORDER, {"b_id": rid, "b_tok": token})

    # -- invoices and credits -----------------------------------------------------------

    async def get_invoice(self, eid: int, invno: str) -> Invoice | None:
        return await self.db.run_interaction("get_invoice", self.get_invoice_txn, eid, invno)

    @staticmethod
    def get_invoice_txn(conn: Connection, eid: int, invno: str) -> Invoice | None:
        row = conn.execute(_SEL_INVOICE, {"b_eid": eid, "b_invno": invno}).first()
        if row is None:
            return None
        credits = tuple(_credit(c) for c in conn.execute(_SEL_CREDITS_OF, {"b_ids": [row.id]}))
        return _invoice(row, credits)

    async def invoices_for(self, rid: int) -> list[Invoice]:
        return await self.db.run_interaction("invoices_for", self.invoices_for_txn, rid)

    @staticmethod
    def invoices_for_txn(conn: Connection, rid: int) -> list[Invoice]:
        rows = list(conn.execute(_SEL_INVOICES, {"b_id": rid}))
        if not rows:
            return []
        credits: dict[int, list[Credit]] = {}
        for c in conn.execute(_SEL_CREDITS_OF, {"b_ids": [r.id for r in rows]}):
            credits.setdefault(c.invoice_id, []).append(_credit(c))
        return [_invoice(r, tuple(credits.get(r.id, ()))) for r in rows]

    async def known_refund_ids(self, order_id: str) -> set[str]:
        def txn(conn: Connection) -> set[str]:
            return {r.refund_id for r in conn.execute(
                select(m.credits.c.refund_id).where(m.credits.c.order_id == order_id))}
        return await self.db.run_interaction("known_refund_ids", txn)

    async def adopt(self, reservation: Reservation, captures: list[dict[str, Any]],
                    refunds: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """Record captures/refunds made outside the gateway; returns (new invnos, refund ids).

        Matching is by id only, never by position. A refund is attached to the invoice of
        the capture that holds its line references (Klarna's refund allocation), else left
        unattached (``invoice_id`` NULL) and reported by reconcile.
        """
        return await self.db.run_interaction("adopt", self.adopt_txn, reservation, captures,
                                             refunds)

    def adopt_txn(self, conn: Connection, reservation: Reservation,
                  captures: list[dict[str, Any]],
                  refunds: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        now = self.clock.seconds()
        known_captures = {r.capture_id: r for r in conn.execute(
            select(m.invoices).where(m.invoices.c.order_id == reservation.order_id))}
        new_invnos: list[str] = []
        for cap in captures:
            if cap["capture_id"] in known_captures:
                continue
            if self._capture_pending_txn(conn, reservation.order_id):
                # A journaled capture whose answer we have not seen yet may be this one:
                # leave it for that entry (or reconcile) to record under its own invno.
                continue
            invno = next_number_txn(conn, "invno", self.invno_start)
            try:
                with conn.begin_nested():
                    conn.execute(m.invoices.insert().values(
                        eid=reservation.eid, invno=invno, reservation_id=reservation.id,
                        order_id=reservation.order_id, capture_id=cap["capture_id"],
                        captured_amount=int(cap.get("captured_amount", 0)),
                        refunded_amount=0, lines_json=_dumps(cap.get("order_lines") or []),
                        refunded_qty_json="{}", adopted=True, created_at=now))
            except IntegrityError:
                continue  # another process recorded it first
            new_invnos.append(invno)
        known_refunds = {r.refund_id for r in conn.execute(
            select(m.credits.c.refund_id).where(m.credits.c.order_id == reservation.order_id))}
        new_refunds: list[str] = []
        if refunds and self._refund_pending_txn(conn, reservation.order_id):
            refunds = []
        for ref in refunds:
            if ref["refund_id"] in known_refunds:
                continue
            invoice = self._allocate_refund_txn(conn, reservation.order_id, ref)
            lines = ref.get("order_lines") or []
            try:
                with conn.begin_nested():
                    conn.execute(m.credits.insert().values(
                        eid=reservation.eid, invoice_id=None if invoice is None else invoice.id,
                        order_id=reservation.order_id, refund_id=ref["refund_id"],
                        credno=str(ref.get("reference") or ""),
                        refunded_amount=int(ref.get("refunded_amount", 0)),
                        lines_json=_dumps(lines), adopted=True, created_at=now))
            except IntegrityError:
                continue
            if invoice is not None:
                self._add_refund_to_invoice_txn(conn, invoice, int(ref.get("refunded_amount", 0)),
                                                lines)
            new_refunds.append(ref["refund_id"])
        return new_invnos, new_refunds

    @staticmethod
    def _capture_pending_txn(conn: Connection, order_id: str) -> bool:
        return conn.execute(select(func.count()).select_from(m.journal_steps.join(
            m.journal, m.journal.c.id == m.journal_steps.c.journal_id)).where(and_(
                m.journal.c.order_id == order_id, m.journal_steps.c.state == "planned",
                m.journal_steps.c.path.like("%/captures")))).scalar_one() > 0

    @staticmethod
    def _refund_pending_txn(conn: Connection, order_id: str) -> bool:
        return conn.execute(select(func.count()).select_from(m.journal_steps.join(
            m.journal, m.journal.c.id == m.journal_steps.c.journal_id)).where(and_(
                m.journal.c.order_id == order_id, m.journal_steps.c.state == "planned",
                m.journal_steps.c.path.like("%/refunds")))).scalar_one() > 0

    @staticmethod
    def _allocate_refund_txn(conn: Connection, order_id: str, ref: dict[str, Any]) -> Any:
        invoices = list(conn.execute(select(m.invoices).where(m.invoices.c.order_id == order_id)
                                     .order_by(m.invoices.c.id)))
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

    @staticmethod
    def _add_refund_to_invoice_txn(conn: Connection, invoice: Any, amount: int,
                                   lines: list[dict[str, Any]]) -> None:
        qty = json.loads(invoice.refunded_qty_json)
        for ln in lines:
            # Keyed as gateway.translate.split keys lines: the reference, "" without one.
            ref = ln.get("reference") if isinstance(ln.get("reference"), str) else ""
            qty[ref] = qty.get(ref, 0) + int(ln.get("quantity") or 0)
        conn.execute(update(m.invoices).where(m.invoices.c.id == invoice.id).values(
            refunded_amount=m.invoices.c.refunded_amount + amount, refunded_qty_json=_dumps(qty)))

    # -- journal ------------------------------------------------------------------------

    async def begin_call(self, *, eid: int, method: str, fingerprint: str,
                         call: dict[str, Any], lease_token: str, lease_seconds: float,
                         coalesce_seconds: float, rno: str | None = None,
                         invno: str | None = None) -> BeginResult:
        def txn(conn: Connection) -> BeginResult:
            begin = self.begin_call_txn(conn, eid, method, fingerprint, call, lease_token,
                                        lease_seconds, coalesce_seconds, rno, invno)
            if begin.action != "run":
                return begin
            return self._resolve_txn(conn, begin, eid, rno, invno, lease_token, lease_seconds)
        return await self.db.run_interaction("begin_call", txn)

    async def resolve(self, begin: BeginResult, eid: int, rno: str | None, invno: str | None,
                      token: str, ttl: float) -> BeginResult:
        """:meth:`_resolve_txn` on its own (recovery resuming an entry it took over)."""
        return await self.db.run_interaction("resolve", self._resolve_txn, begin, eid, rno,
                                             invno, token, ttl)

    def _resolve_txn(self, conn: Connection, begin: BeginResult, eid: int, rno: str | None,
                     invno: str | None, token: str, ttl: float) -> BeginResult:
        """Find the call's reservation/invoice and try to take the order lease, so the
        common case needs one transaction before the first REST request."""
        invoice = None
        if invno is not None:
            invoice = self.get_invoice_txn(conn, eid, invno)
            if invoice is None:
                return begin
            reservation = _reservation(conn.execute(
                _SEL_RES_BY_ID, {"b_id": invoice.reservation_id}).one())
        else:
            if rno is None:
                return begin
            reservation = self.get_reservation_txn(conn, eid, rno)
            if reservation is None:
                return begin
        locked = self.acquire_order_lock_txn(conn, reservation.id, token, ttl)
        if not locked:
            return replace(begin, reservation=reservation, invoice=invoice)
        invoices, captures, refunds = self.order_state_txn(conn, reservation, begin.entry.id)
        return replace(begin, reservation=reservation, invoice=invoice, invoices=invoices,
                       locked=True, pending_captures=captures, pending_refunds=refunds)

    async def order_state(self, reservation: Reservation, journal_id: int,
                          ) -> tuple[tuple[Invoice, ...], int, int]:
        return await self.db.run_interaction("order_state", self.order_state_txn,
                                             reservation, journal_id)

    def order_state_txn(self, conn: Connection, reservation: Reservation, journal_id: int,
                        ) -> tuple[tuple[Invoice, ...], int, int]:
        """(invoices, pending capture steps, pending refund steps of other entries)."""
        invoices = tuple(self.invoices_for_txn(conn, reservation.id))
        pending = conn.execute(_SEL_PENDING_PATHS, {"b_order": reservation.order_id,
                                                    "b_id": journal_id}).all()
        captures = sum(1 for r in pending if r.path.endswith("/captures"))
        refunds = sum(1 for r in pending if r.path.endswith("/refunds"))
        return invoices, captures, refunds

    def begin_call_txn(self, conn: Connection, eid: int, method: str, fingerprint: str,
                       call: dict[str, Any], lease_token: str, lease_seconds: float,
                       coalesce_seconds: float, rno: str | None,
                       invno: str | None) -> BeginResult:
        """Claim the call's fingerprint, or find the identical call that holds it.

        - no twin: insert a new pending entry holding ``inflight`` → run;
        - twin pending with a live lease (another request is working on it) → wait;
        - twin pending with an expired or released lease (crashed process, or a previous
          attempt that ran out of budget and answered 9119) → take the lease over and run:
          the client's retry continues the same operation with the same idempotency keys;
        - twin done within the coalescing window → replay its reply;
        - twin done longer ago → release its claim and start a new entry.
        """
        now = self.clock.seconds()
        for _ in range(3):
            row = conn.execute(_SEL_INFLIGHT, {"b_fp": fingerprint}).first()
            if row is not None:
                if row.state == "pending":
                    if row.lease_until is not None and row.lease_until > now \
                            and row.lease_token != lease_token:
                        return BeginResult("wait", _entry(conn, row))
                    res = conn.execute(update(m.journal).where(and_(
                        m.journal.c.id == row.id, m.journal.c.state == "pending",
                        or_(m.journal.c.lease_until.is_(None), m.journal.c.lease_until <= now,
                            m.journal.c.lease_token == lease_token),
                    )).values(lease_token=lease_token, lease_until=now + lease_seconds,
                              attempts=m.journal.c.attempts + 1, updated_at=now))
                    fresh = conn.execute(select(m.journal).where(m.journal.c.id == row.id)).one()
                    return BeginResult("run" if res.rowcount == 1 else "wait", _entry(conn, fresh))
                if row.state == "done" and (row.updated_at + coalesce_seconds > now
                                            or (row.retry_until or 0) > now):
                    return BeginResult("replay", _entry(conn, row))
                conn.execute(update(m.journal).where(m.journal.c.id == row.id)
                             .values(inflight=None))
            try:
                with conn.begin_nested():
                    jid = conn.execute(_INS_JOURNAL, {
                        "eid": eid, "method": method, "fingerprint": fingerprint,
                        "inflight": fingerprint, "call_json": _dumps(call), "rno": rno,
                        "invno": invno, "state": "pending", "lease_token": lease_token,
                        "lease_until": now + lease_seconds, "attempts": 1, "created_at": now,
                        "updated_at": now}).inserted_primary_key[0]
            except IntegrityError:
                continue  # another process claimed it between our read and insert
            # A new entry has no steps and holds exactly what was inserted: no re-read.
            return BeginResult("run", JournalEntry(
                id=jid, eid=eid, method=method, fingerprint=fingerprint, call=call,
                state="pending", reply=None, fault_code=None, fault_string=None,
                order_id=None, lease_until=now + lease_seconds, created_at=now,
                updated_at=now))
        row = conn.execute(select(m.journal).where(m.journal.c.inflight == fingerprint)).first()
        if row is None:
            raise ClaimContendedError(fingerprint)
        return BeginResult("wait", _entry(conn, row))

    async def get_entry(self, journal_id: int) -> JournalEntry:
        def txn(conn: Connection) -> JournalEntry:
            return _entry(conn, conn.execute(
                select(m.journal).where(m.journal.c.id == journal_id)).one())
        return await self.db.run_interaction("get_entry", txn)

    async def renew_lease(self, journal_id: int, lease_token: str, seconds: float) -> bool:
        def txn(conn: Connection) -> bool:
            now = self.clock.seconds()
            return conn.execute(update(m.journal).where(and_(
                m.journal.c.id == journal_id, m.journal.c.lease_token == lease_token,
                m.journal.c.state == "pending")).values(lease_until=now + seconds)).rowcount == 1
        return await self.db.run_interaction("renew_lease", txn)

    async def release_lease(self, journal_id: int, lease_token: str, *,
                            release: tuple[int, str] | None = None,
                            retry_window: float = 0.0) -> None:
        """Leave the entry pending but free: the client's retry (or recovery) resumes it.
        ``release=(reservation_id, token)`` frees the order lease too; ``retry_window``
        keeps the call's fingerprint bound to this entry that long (the client was told to
        retry the same call, so its retry must continue this operation, not start one)."""
        def txn(conn: Connection) -> None:
            if release is not None:
                self.release_order_lock_txn(conn, *release)
            now = self.clock.seconds()
            values: dict[str, Any] = {"lease_token": None, "lease_until": None,
                                      "updated_at": now}
            if retry_window:
                values["retry_until"] = now + retry_window
            conn.execute(update(m.journal).where(and_(
                m.journal.c.id == journal_id, m.journal.c.lease_token == lease_token,
            )).values(**values))
        await self.db.run_interaction("release_lease", txn)

    async def plan_steps(self, entry: JournalEntry, order_id: str | None,
                         steps: Sequence[Any], *, lease_token: str, lease_seconds: float,
                         order_lock: tuple[int, str] | None = None,
                         allocate_invno: bool = False,
                         notes: list[str] | None = None) -> JournalEntry:
        """Commit the REST steps (with their idempotency keys) before any is sent.

        ``steps`` are :class:`gateway.translate.plan.RestStep` values (anything with
        ``http_method``, ``path``, ``body``, ``purpose`` and ``effect``).

        With ``allocate_invno`` the next invoice number is issued now and written into each
        capture effect, so a resumed entry answers with the same invno.
        """
        install_id = await self.install_id()

        journal_id = entry.id

        def txn(conn: Connection) -> JournalEntry:
            # (journal_id, step) is the primary key: a second plan for one entry fails here.
            now = self.clock.seconds()
            self._renew_txn(conn, journal_id, lease_token, lease_seconds, order_lock, now)
            invno = next_number_txn(conn, "invno", self.invno_start) if allocate_invno else None
            planned: list[Step] = []
            for i, s in enumerate(steps, start=1):
                effect = dict(s.effect) if s.effect else None
                if effect is not None and effect.get("kind") == "capture":
                    effect["invno"] = invno
                key = self.idempotency_key(install_id, journal_id, i)
                conn.execute(_INS_STEP, {
                    "journal_id": journal_id, "step": i, "http_method": s.http_method,
                    "path": s.path, "body_json": None if s.body is None else _dumps(s.body),
                    "idempotency_key": key, "purpose": s.purpose,
                    "effect_json": None if effect is None else _dumps(effect),
                    "state": "planned", "updated_at": now})
                planned.append(Step(journal_id=journal_id, step=i, http_method=s.http_method,
                                    path=s.path, body=_loads(_dumps(s.body)) if s.body else None,
                                    idempotency_key=key, purpose=s.purpose, effect=effect,
                                    state="planned", result=None, updated_at=now))
            values: dict[str, Any] = {"order_id": order_id, "updated_at": now}
            if invno is not None:
                values["invno"] = invno
            if notes:
                values["notes_json"] = _dumps(notes)
            conn.execute(_UPD_JOURNAL, {"b_id": journal_id, **values})
            return replace(entry, order_id=order_id, steps=tuple(planned),
                           notes=list(notes or []), updated_at=now)
        return await self.db.run_interaction("plan_steps", txn)

    def _renew_txn(self, conn: Connection, journal_id: int, token: str, seconds: float,
                   order_lock: tuple[int, str] | None, now: float) -> None:
        """Extend our leases, or raise :class:`LeaseLostError` if we no longer hold them.

        Every write that lets a runner go on sending is fenced this way, so a runner that
        outlived its lease (a stalled request, a slow database) can never act after another
        runner took the entry over.
        """
        owned = conn.execute(_RENEW_JOURNAL, {"b_id": journal_id, "b_tok": token,
                                              "b_until": now + seconds,
                                              "b_now": now}).rowcount == 1
        if owned and order_lock is not None:
            owned = conn.execute(_RENEW_ORDER, {"b_id": order_lock[0], "b_tok": order_lock[1],
                                                "b_until": now + seconds}).rowcount == 1
        if not owned:
            raise LeaseLostError(f"journal {journal_id}")

    async def complete_step(self, journal_id: int, step: int, status: int,
                            result: dict[str, Any], *, finish: dict[str, Any] | None = None,
                            renew: tuple[str, float, tuple[int, str] | None] | None = None,
                            ) -> bool:
        """Mark a step done and record its effect (mapping rows) in the same transaction.

        Recording a REST success is always right (it happened), so it is not fenced. Then,
        fenced by the lease: ``finish`` (keyword arguments of :meth:`finish_call`) records
        the call's outcome in the same commit, or ``renew=(token, seconds, order_lock)``
        extends the leases for the next step. Returns False if the lease was lost.
        """
        def txn(conn: Connection) -> bool:
            self.complete_step_txn(conn, journal_id, step, status, result)
            if finish is not None:
                return self.finish_call_txn(conn, journal_id, **finish)
            if renew is not None:
                try:
                    with conn.begin_nested():
                        self._renew_txn(conn, journal_id, renew[0], renew[1], renew[2],
                                        self.clock.seconds())
                except LeaseLostError:
                    return False
            return True
        return await self.db.run_interaction("complete_step", txn)

    def complete_step_txn(self, conn: Connection, journal_id: int, step: int, status: int,
                          result: dict[str, Any]) -> None:
        now = self.clock.seconds()
        row = conn.execute(_SEL_STEP, {"b_id": journal_id, "b_step": step}).one()
        if row.state == "done":
            return
        entry = conn.execute(_SEL_JOURNAL, {"b_id": journal_id}).one()
        effect = _loads(row.effect_json) or {}
        body = _loads(row.body_json) or {}
        kind = effect.get("kind")
        if kind == "capture":
            self._record_capture_txn(conn, entry, effect, body, result, now)
        elif kind == "refund":
            self._record_refund_txn(conn, entry, effect, body, result, now)
        elif kind == "status":
            conn.execute(_UPD_RES, {"b_id": effect["reservation_id"],
                                    "status": effect["status"], "updated_at": now})
        conn.execute(_UPD_STEP, {"b_id": journal_id, "b_step": step, "state": "done",
                                 "response_status": status, "result_json": _dumps(result),
                                 "updated_at": now})

    @staticmethod
    def _record_capture_txn(conn: Connection, entry: Any, effect: dict[str, Any],
                            body: dict[str, Any], result: dict[str, Any], now: float) -> None:
        capture_id = result["capture_id"]
        if effect.get("status_after"):
            conn.execute(_UPD_RES, {"b_id": effect["reservation_id"],
                                    "status": effect["status_after"], "updated_at": now})
        existing = conn.execute(_SEL_INVOICE_BY_CAPTURE, {"b_order": effect["order_id"],
                                                          "b_capture": capture_id}).first()
        if existing is not None:
            if existing.invno != effect["invno"] and existing.adopted:
                # Adopted by a read before our answer arrived: it is ours; give it our invno.
                conn.execute(update(m.invoices).where(m.invoices.c.id == existing.id).values(
                    invno=effect["invno"], adopted=False, journal_id=entry.id))
            return
        conn.execute(_INS_INVOICE, {
            "eid": entry.eid, "invno": effect["invno"],
            "reservation_id": effect["reservation_id"], "order_id": effect["order_id"],
            "capture_id": capture_id, "captured_amount": int(body["captured_amount"]),
            "refunded_amount": 0, "lines_json": _dumps(body.get("order_lines") or []),
            "refunded_qty_json": "{}", "adopted": False, "journal_id": entry.id,
            "created_at": now})

    def _record_refund_txn(self, conn: Connection, entry: Any, effect: dict[str, Any],
                           body: dict[str, Any], result: dict[str, Any], now: float) -> None:
        refund_id = result["refund_id"]
        existing = conn.execute(_SEL_CREDIT_BY_REFUND, {"b_order": effect["order_id"],
                                                        "b_refund": refund_id}).first()
        if existing is not None:
            return
        invoice = conn.execute(select(m.invoices).where(
            m.invoices.c.id == effect["invoice_id"]).with_for_update()).one()
        lines = body.get("order_lines") or []
        conn.execute(m.credits.insert().values(
            eid=entry.eid, invoice_id=invoice.id, order_id=effect["order_id"],
            refund_id=refund_id, credno=str(effect.get("credno") or ""),
            refunded_amount=int(body["refunded_amount"]), lines_json=_dumps(lines),
            adopted=False, journal_id=entry.id, created_at=now))
        self._add_refund_to_invoice_txn(conn, invoice, int(body["refunded_amount"]), lines)

    async def finish_call(self, journal_id: int, *, reply: Any = None,
                          fault_code: int | None = None, fault_string: str | None = None,
                          notes: list[str] | None = None,
                          release: tuple[int, str] | None = None,
                          token: str | None = None) -> bool:
        """Record the outcome. A success keeps its ``inflight`` claim for the coalescing
        window (so a client retrying after a lost answer gets the same reply); a fault
        releases it at once. ``release=(reservation_id, token)`` frees the order lease in
        the same transaction. ``token`` fences the write: only the lease holder finishes
        (returns False otherwise, changing nothing)."""
        return await self.db.run_interaction("finish_call", self.finish_call_txn, journal_id,
                                             reply, fault_code, fault_string, notes, release,
                                             token)

    def finish_call_txn(self, conn: Connection, journal_id: int, reply: Any = None,
                        fault_code: int | None = None, fault_string: str | None = None,
                        notes: list[str] | None = None,
                        release: tuple[int, str] | None = None,
                        token: str | None = None) -> bool:
        if release is not None:
            self.release_order_lock_txn(conn, *release)
        now = self.clock.seconds()
        values: dict[str, Any] = {"updated_at": now, "lease_token": None,
                                  "lease_until": None}
        if fault_code is None:
            values.update(state="done", reply_json=_dumps(reply))
        else:
            values.update(state="failed", fault_code=fault_code, fault_string=fault_string,
                          inflight=None)
        if notes:
            values["notes_json"] = _dumps(notes)
        # The fence is part of the UPDATE itself: no window between checking the lease and
        # writing the outcome in which another runner could take the entry over.
        if token is not None:
            done = conn.execute(_FINISH_TOKEN, {"b_id": journal_id, "b_tok": token, **values})
        else:
            done = conn.execute(_FINISH, {"b_id": journal_id, **values})
        if done.rowcount != 1:
            return False
        if fault_code is not None:
            # Steps never sent (or refused) stay on record but no longer block adoption.
            conn.execute(update(m.journal_steps).where(and_(
                m.journal_steps.c.journal_id == journal_id,
                m.journal_steps.c.state == "planned")).values(state="abandoned",
                                                              updated_at=now))
        return True

    async def unfinished_entries(self, eid: int | None = None,
                                 since: float | None = None) -> list[JournalEntry]:
        """Pending entries nobody holds a live lease on (what recovery completes)."""
        def txn(conn: Connection) -> list[JournalEntry]:
            now = self.clock.seconds()
            q = select(m.journal).where(and_(
                m.journal.c.state == "pending",
                or_(m.journal.c.lease_until.is_(None), m.journal.c.lease_until <= now),
            )).order_by(m.journal.c.id)
            if eid is not None:
                q = q.where(m.journal.c.eid == eid)
            if since is not None:
                q = q.where(m.journal.c.created_at >= since)
            return [_entry(conn, r) for r in conn.execute(q)]
        return await self.db.run_interaction("unfinished_entries", txn)

    async def take_over(self, journal_id: int, lease_token: str,
                        lease_seconds: float) -> JournalEntry | None:
        """Take a lapsed lease; returns the entry as it is *now* (decide from this copy,
        never from the one a sweep listed earlier), or None if someone else holds it."""
        def txn(conn: Connection) -> JournalEntry | None:
            now = self.clock.seconds()
            taken = conn.execute(update(m.journal).where(and_(
                m.journal.c.id == journal_id, m.journal.c.state == "pending",
                or_(m.journal.c.lease_until.is_(None), m.journal.c.lease_until <= now),
            )).values(lease_token=lease_token, lease_until=now + lease_seconds,
                      attempts=m.journal.c.attempts + 1, updated_at=now)).rowcount == 1
            if not taken:
                return None
            return _entry(conn, conn.execute(
                select(m.journal).where(m.journal.c.id == journal_id)).one())
        return await self.db.run_interaction("take_over", txn)

    async def journal_for(self, eid: int, *, limit: int = 50) -> list[JournalEntry]:
        def txn(conn: Connection) -> list[JournalEntry]:
            return [_entry(conn, r) for r in conn.execute(
                select(m.journal).where(m.journal.c.eid == eid)
                .order_by(m.journal.c.id.desc()).limit(limit))]
        return await self.db.run_interaction("journal_for", txn)
