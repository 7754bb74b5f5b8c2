"""Read-only queries for migration teams: journal search (keyset paging) and reservation
lookup by any number a merchant may hold.

Transaction functions ``fn(conn, now, ...)`` like the rest of the store, exposed by the
:class:`~gateway.store.store.Store` facade (``search_journal``, ``find_reservations``).
Nothing here writes.

Why keyset paging on the journal id (``id < before``) rather than OFFSET: the journal grows
while someone pages through it (every legacy call adds a row), and an offset would then
repeat or skip entries; the id never changes, so a cursor stays exact. Pages are newest
first. The indexes of migration 0003 serve the common filters (eid with the id order, rno,
invno, created_at; order_id was indexed by 0002).

The merchant order id (``orderid1``/``orderid2`` of ``activate`` and ``update``) lives only
in the journaled call JSON: it is matched with the database's own JSON functions (exact,
case-sensitive, on both SQLite and PostgreSQL), so combine it with ``eid`` on a large
journal.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import JSON, and_, cast, func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from gateway.model import EntryState, JournalEntry, Reservation, Step
from gateway.store import models as m
from gateway.store import rows

_J, _S, _R, _I = m.journal, m.journal_steps, m.reservations, m.invoices

#: The largest page a caller may ask for (exports page internally at this size).
MAX_LIMIT = 500

#: The call JSON keys that carry the merchant's own order id.
MERCHANT_REF_KEYS = ("orderid1", "orderid2")


@dataclass(frozen=True)
class ReservationScope:
    """Every journal entry about one reservation: named by its rno, planned on its order,
    or naming one of its invoices (a call that faulted before planning has no order id)."""

    rno: str
    order_id: str
    invnos: tuple[str, ...] = ()


@dataclass(frozen=True)
class JournalQuery:
    """Filters (all optional, combined with AND) and the page wanted.

    ``rno`` finds every call on that reservation (:func:`_on_rno`), not only the calls
    that name the rno. ``state``/``fault_code`` express the outcome: ``ok`` is
    ``state=DONE``, ``pending`` is ``state=PENDING``, a fault code is ``state=FAILED``
    with that code (a fault without a code: any failure). ``since`` is inclusive, ``until`` exclusive (epoch seconds).
    ``before`` is the keyset cursor: only entries with a smaller id.
    """

    eid: int | None = None
    method: str | None = None
    rno: str | None = None
    invno: str | None = None
    order_id: str | None = None
    merchant_order_id: str | None = None
    state: EntryState | None = None
    fault_code: int | None = None
    since: float | None = None
    until: float | None = None
    reservation: ReservationScope | None = None
    before: int | None = None
    limit: int = 50

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")


@dataclass(frozen=True)
class JournalPage:
    """One page, newest first; ``next_before`` is the cursor of the next page (None: last)."""

    entries: tuple[JournalEntry, ...]
    next_before: int | None


def merchant_ref(conn: Connection, key: str) -> ColumnElement[Any]:
    """``call_json ->> key`` in the connection's dialect (exact text comparison)."""
    if conn.dialect.name == "postgresql":
        return func.json_extract_path_text(cast(_J.c.call_json, JSON), key)
    return func.json_extract(_J.c.call_json, f"$.{key}")


def _on_rno(conn: Connection, rno: str, eid: int | None) -> ColumnElement[bool]:
    """Every entry about the reservation(s) with this rno: named by the rno, planned on its
    order, or naming one of its invoices (``credit_part``, ``email_invoice``… name only the
    invno). Scoped by eid: another merchant's order and invoices never match."""
    about: list[ColumnElement[bool]] = [_J.c.rno == rno]
    found = conn.execute(select(_R.c.id, _R.c.eid, _R.c.order_id).where(
        _R.c.rno == rno, *([] if eid is None else [_R.c.eid == eid]))).all()
    for res in found:
        invnos = select(_I.c.invno).where(_I.c.reservation_id == res.id)
        about.append(and_(_J.c.eid == res.eid, or_(_J.c.order_id == res.order_id,
                                                   _J.c.invno.in_(invnos))))
    return or_(*about)


def _state_is(state: EntryState) -> ColumnElement[bool]:
    """As :attr:`JournalEntry.state`: a finished entry holding a fault failed."""
    finished = _J.c.phase.notin_([p.value for p in EntryState.PENDING.phases])
    if state is EntryState.PENDING:
        return ~finished
    failed = and_(finished, or_(_J.c.phase == "failed", _J.c.fault_code.is_not(None)))
    return failed if state is EntryState.FAILED else and_(finished, ~failed)


def _conditions(conn: Connection, q: JournalQuery) -> list[ColumnElement[bool]]:
    c: list[ColumnElement[bool]] = []
    for column, value in ((_J.c.eid, q.eid), (_J.c.method, q.method),
                          (_J.c.invno, q.invno), (_J.c.order_id, q.order_id)):
        if value is not None:
            c.append(column == value)
    if q.rno is not None:
        c.append(_on_rno(conn, q.rno, q.eid))
    if q.merchant_order_id is not None:
        c.append(or_(*(merchant_ref(conn, k) == q.merchant_order_id
                       for k in MERCHANT_REF_KEYS)))
    if q.state is not None:
        c.append(_state_is(q.state))
    if q.fault_code is not None:
        c.append(_J.c.fault_code == q.fault_code)
    if q.since is not None:
        c.append(_J.c.created_at >= q.since)
    if q.until is not None:
        c.append(_J.c.created_at < q.until)
    if q.reservation is not None:
        s = q.reservation
        about = [_J.c.rno == s.rno, _J.c.order_id == s.order_id]
        if s.invnos:
            about.append(_J.c.invno.in_(s.invnos))
        c.append(or_(*about))
    if q.before is not None:
        c.append(_J.c.id < q.before)
    return c


def _steps_of(conn: Connection, ids: list[int]) -> dict[int, tuple[Step, ...]]:
    """The steps of many entries in one query (a page must not cost a query per entry)."""
    found: dict[int, list[Step]] = {}
    if ids:
        for r in conn.execute(select(_S).where(_S.c.journal_id.in_(ids))
                              .order_by(_S.c.journal_id, _S.c.step)):
            found.setdefault(r.journal_id, []).append(rows.step(r))
    return {k: tuple(v) for k, v in found.items()}


def journal(conn: Connection, now: float, query: JournalQuery) -> JournalPage:
    """One page of journal entries matching ``query``, with their REST steps."""
    stmt = select(_J).where(*_conditions(conn, query)).order_by(
        _J.c.id.desc()).limit(query.limit + 1)
    found = conn.execute(stmt).all()
    more = len(found) > query.limit
    found = found[:query.limit]
    steps = _steps_of(conn, [r.id for r in found])
    entries = tuple(replace(rows.entry(conn, r, with_steps=False), steps=steps.get(r.id, ()))
                    for r in found)
    return JournalPage(entries, entries[-1].id if more and entries else None)


def reservations(conn: Connection, now: float, text: str, eid: int | None = None,
                 limit: int = 50) -> list[Reservation]:
    """Reservations a merchant might mean by ``text``: its rno, its Klarna order id, one of
    its invoice numbers, or a merchant order id (orderid1/orderid2) a journaled call on it
    carried. ``eid`` (a merchant's console session) restricts the search to that merchant."""
    def scoped(column: Any) -> list[ColumnElement[bool]]:
        return [] if eid is None else [column == eid]

    by_invoice = select(_I.c.reservation_id).where(_I.c.invno == text, *scoped(_I.c.eid))
    ref = or_(*(merchant_ref(conn, k) == text for k in MERCHANT_REF_KEYS))
    named = select(_J.c.eid, _J.c.rno, _J.c.order_id).where(ref, *scoped(_J.c.eid)
                                                             ).distinct().limit(limit)
    clauses = [_R.c.rno == text, _R.c.order_id == text, _R.c.id.in_(by_invoice)]
    for k in conn.execute(named).all():
        same = [_R.c.rno == k.rno] if k.rno else []
        same += [_R.c.order_id == k.order_id] if k.order_id else []
        if same:
            clauses.append(and_(_R.c.eid == k.eid, or_(*same)))
    stmt = select(_R).where(or_(*clauses), *scoped(_R.c.eid)).order_by(
        _R.c.id.desc()).limit(limit)
    return [rows.reservation(r) for r in conn.execute(stmt)]
