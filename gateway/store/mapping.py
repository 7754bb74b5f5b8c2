"""Reservations (eid, rno ↔ order id), the per-order lease, and the number counters.

Transaction functions ``fn(conn, ...)``: the :class:`~gateway.store.store.Store` facade runs
each in one transaction off the reactor. The rules that keep mapping rows unique across
processes are database constraints (unique (eid, rno) and (eid, order_id)).
"""
from __future__ import annotations

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gateway.model import Reservation
from gateway.store import models as m
from gateway.store import rows
from gateway.store.sql import Sql, one

_R = m.reservations
_SEL_BY_RNO = select(_R).where(and_(_R.c.eid == bindparam("b_eid"), _R.c.rno == bindparam("b_rno")))
_SEL_BY_ORDER = select(_R).where(and_(_R.c.eid == bindparam("b_eid"),
                                      _R.c.order_id == bindparam("b_order")))
_SEL_BY_ID = select(_R).where(_R.c.id == bindparam("b_id"))
_UPD_STATUS = update(_R).where(_R.c.id == bindparam("b_id")).values(
    status=bindparam("b_status"), updated_at=bindparam("b_now"), version=_R.c.version + 1)
_LOCK = update(_R).where(and_(
    _R.c.id == bindparam("b_id"),
    or_(_R.c.lock_token.is_(None), _R.c.lock_until < bindparam("b_now"),
        _R.c.lock_token == bindparam("b_tok")))).values(lock_token=bindparam("b_tok"),
                                                        lock_until=bindparam("b_until"),
                                                        version=_R.c.version + 1)
_UNLOCK = update(_R).where(and_(_R.c.id == bindparam("b_id"),
                                _R.c.lock_token == bindparam("b_tok"))).values(
    lock_token=None, lock_until=None, version=_R.c.version + 1)
_RENEW = update(_R).where(and_(_R.c.id == bindparam("b_id"),
                               _R.c.lock_token == bindparam("b_tok"))).values(
    lock_until=bindparam("b_until"))
#: One statement per number: the counter row moved on, the number it held returned.
_TAKE_COUNTER = Sql("UPDATE counters SET next_value = next_value + 1 WHERE name = :name "
                    "RETURNING next_value - 1")
_NEXTVAL = {name: Sql(f"SELECT nextval('{name}_seq')") for name in ("rno", "invno")}


class ReservationConflictError(Exception):
    """The rno or order id is already registered for this eid (with another partner)."""


def next_number(conn: Connection, name: str, start: int) -> str:
    """A decimal number unique across every process sharing this database.

    PostgreSQL: ``nextval`` of a real sequence (never rolled back, never repeated).
    SQLite: a counter row updated inside the single-writer transaction.
    The configured ``start`` is an offset, so the first number handed out is ``start``.
    """
    if conn.dialect.name == "postgresql":
        n = one(conn, _NEXTVAL[name])[0]
    else:
        row = one(conn, _TAKE_COUNTER, {"name": name})
        if row is None:
            n = 1
            conn.execute(m.counters.insert().values(name=name, next_value=2))
        else:
            n = row[0]
    return str(start + int(n) - 1)


def register(conn: Connection, now: float, eid: int, order_id: str, rno: str | None,
             origin: str, status: str | None, rno_start: int) -> Reservation:
    """Register (eid, rno) ↔ order_id. Registering the same pair again is a no-op."""
    existing = conn.execute(select(_R).where(and_(
        _R.c.eid == eid, or_(_R.c.order_id == order_id, *([_R.c.rno == rno] if rno else [])),
    ))).all()
    for row in existing:
        if row.order_id == order_id and (rno is None or row.rno == rno):
            return rows.reservation(row)
    if existing:
        row = existing[0]
        what = "order_id" if row.order_id == order_id else "rno"
        raise ReservationConflictError(
            f"{what} already registered for eid {eid} (rno {row.rno} ↔ order {row.order_id})")
    if rno is None:
        rno = next_number(conn, "rno", rno_start)
    try:
        with conn.begin_nested():
            rid = conn.execute(_R.insert().values(
                eid=eid, rno=rno, order_id=order_id, status=status, origin=origin,
                created_at=now, updated_at=now)).inserted_primary_key[0]
    except IntegrityError:
        raise ReservationConflictError(f"rno {rno} or order {order_id} already registered "
                                       f"for eid {eid}") from None
    return Reservation(id=rid, eid=eid, rno=rno, order_id=order_id, status=status,
                       origin=origin, created_at=now)


def by_rno(conn: Connection, eid: int, rno: str) -> Reservation | None:
    row = conn.execute(_SEL_BY_RNO, {"b_eid": eid, "b_rno": rno}).first()
    return None if row is None else rows.reservation(row)


def by_order(conn: Connection, eid: int, order_id: str) -> Reservation | None:
    row = conn.execute(_SEL_BY_ORDER, {"b_eid": eid, "b_order": order_id}).first()
    return None if row is None else rows.reservation(row)


def by_id(conn: Connection, rid: int) -> Reservation:
    return rows.reservation(conn.execute(_SEL_BY_ID, {"b_id": rid}).one())


def listing(conn: Connection, eid: int | None = None, since: float | None = None,
            ) -> list[Reservation]:
    q = select(_R).order_by(_R.c.id)
    if eid is not None:
        q = q.where(_R.c.eid == eid)
    if since is not None:
        q = q.where(_R.c.updated_at >= since)
    return [rows.reservation(r) for r in conn.execute(q)]


def open_listing(conn: Connection, statuses: tuple[str, ...], eid: int | None = None,
                 after_id: int = 0, limit: int | None = None) -> list[Reservation]:
    """Reservations whose last known status is one of ``statuses``, or unknown (registered
    without a read): the ones whose order may still hold an authorization. Oldest first;
    ``after_id``/``limit`` page through them (keyset on the id), so a background reader
    never holds every reservation at once."""
    q = select(_R).where(or_(_R.c.status.is_(None), _R.c.status.in_(statuses)))
    if eid is not None:
        q = q.where(_R.c.eid == eid)
    if after_id:
        q = q.where(_R.c.id > after_id)
    q = q.order_by(_R.c.id)
    if limit is not None:
        q = q.limit(limit)
    return [rows.reservation(r) for r in conn.execute(q)]


def set_status(conn: Connection, now: float, rid: int, status: str) -> None:
    conn.execute(_UPD_STATUS, {"b_id": rid, "b_status": status, "b_now": now})


def set_facts(conn: Connection, now: float, rid: int, status: str | None, ref1: str | None,
              ref2: str | None) -> None:
    """What the gateway last read of the order: its status and merchant references."""
    conn.execute(update(_R).where(_R.c.id == rid).values(
        status=status, merchant_ref1=ref1 or None, merchant_ref2=ref2 or None,
        updated_at=now, version=_R.c.version + 1))


def set_refs(conn: Connection, now: float, rid: int, ref1: str | None, ref2: str | None
             ) -> None:
    """Merchant references a call just changed (None: unchanged)."""
    values: dict[str, object] = {"updated_at": now, "version": _R.c.version + 1}
    if ref1 is not None:
        values["merchant_ref1"] = ref1 or None
    if ref2 is not None:
        values["merchant_ref2"] = ref2 or None
    conn.execute(update(_R).where(_R.c.id == rid).values(**values))


def by_merchant_ref(conn: Connection, eid: int, ref: str) -> list[Reservation]:
    """Reservations whose order carries ``ref`` as merchant reference 1 or 2, newest first."""
    return [rows.reservation(r) for r in conn.execute(
        select(_R).where(and_(_R.c.eid == eid, or_(_R.c.merchant_ref1 == ref,
                                                   _R.c.merchant_ref2 == ref)))
        .order_by(_R.c.id.desc()))]


# -- the order lease: one legacy call per order at a time, across processes ------------


def acquire_lease(conn: Connection, now: float, rid: int, token: str, until: float) -> bool:
    """Take the per-order lease if it is free, expired, or already ours (atomic)."""
    return conn.execute(_LOCK, {"b_id": rid, "b_now": now, "b_tok": token,
                                "b_until": until}).rowcount == 1


def release_lease(conn: Connection, rid: int, token: str) -> None:
    conn.execute(_UNLOCK, {"b_id": rid, "b_tok": token})


def renew_lease(conn: Connection, rid: int, token: str, until: float) -> bool:
    return conn.execute(_RENEW, {"b_id": rid, "b_tok": token, "b_until": until}).rowcount == 1
