"""The call journal: one entry per authenticated legacy call, one row per REST step.

A money call costs two durable commits (docs/architecture.md#a-calls-path-two-durable-commits):

1. :func:`read_call` (no write): the entry bound to the call's fingerprint, if any, and the
   order the call names as the gateway knows it (its ``version``, its lease, the money
   other entries left unresolved on it) in one statement.
2. :func:`record_intent`: the new entry (``running``, bound to its fingerprint), its REST
   steps and their idempotency keys, and the order's lease, in one transaction before the
   first request leaves; it commits only if the order's version has not moved since the read
   and no identical call got bound meanwhile.
3. :func:`record_outcome`: a step's success with its ledger rows and, for the last step,
   the entry's outcome and the order lease released, in one transaction.

Everything a database must guarantee across processes is a constraint or a guarded write:
at most one bound entry per fingerprint (a partial unique index); every change of phase a
compare-and-set on the entry's token (:mod:`gateway.binding`), so a late or foreign writer
changes nothing; a step's success is recorded whoever holds the entry (it happened), its
outcome only by the lease holder. Reports of delivery (:class:`Mark`) are not written on
the reply's path: the next transaction of the process carries them.

The statements of the per-call transactions are fixed SQL (:mod:`gateway.store.sql`); the
rarer paths (takeover, recovery listings) use SQLAlchemy Core.
"""
from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.engine import Connection

from gateway.binding import Binding, Event, Phase, sources, transitions
from gateway.model import (
    CaptureEffect, Effect, Invoice, JournalEntry, MoneyKind, OrderCreatedEffect, Reservation,
    Step, StepState, effect_to_json, money_kind,
)
from gateway.store import ledger, mapping, rows
from gateway.store import models as m
from gateway.store.sql import Sql, integrity_error, one, run, run_many

_J, _S = m.journal, m.journal_steps


def _in(phases: Sequence[str]) -> str:
    return ", ".join(f"'{p}'" for p in phases)


#: The LAPSED guard of :mod:`gateway.binding`: a lease (``running``) or a delivery grace
#: (``replying``) whose ``until`` has passed.
_LAPSED = " AND (phase NOT IN ('running', 'replying') OR until <= :now)"
#: What a waiting twin reads of an entry (:class:`Seen`).
_SEEN_COLS = "phase, token, until, phase_at, reply_json, fault_code, fault_string, rno, invno"


class TwinBoundError(Exception):
    """An identical call got bound to its fingerprint between our read and our intent."""


class OrderMovedError(Exception):
    """The order changed (or its lease was taken) between our read and our intent."""


class LeaseLostError(Exception):
    """This runner no longer owns the journal entry (another runner took it over): it must
    stop without sending or finishing anything."""


# -- the call's first read ------------------------------------------------------------------


@dataclass(frozen=True)
class CallQuery:
    """What to read for an arriving call: the binding of its fingerprint (``bind``) and the
    reservation it names (by ``rno``, or by ``invno`` for invoice calls)."""

    eid: int
    fingerprint: str
    rno: str | None = None
    invno: str | None = None
    bind: bool = True


@dataclass(frozen=True)
class Bound:
    """The entry bound to a fingerprint."""

    id: int
    binding: Binding


@dataclass(frozen=True)
class OrderView:
    """The order a call names, as the gateway knows it at the read."""

    reservation: Reservation
    version: int
    lease_token: str | None
    lease_until: float | None
    #: Steps other unfinished entries journaled on this order, by money kind.
    unresolved: dict[MoneyKind, int]
    #: How many captures/refunds of the order the ledger holds (a read of the order that
    #: shows more holds some made elsewhere: they are adopted before planning).
    captures_known: int
    refunds_known: int
    invoice: Invoice | None = None

    def leased(self, now: float, token: str | None = None) -> bool:
        """Another call holds the order's lease now."""
        return self.lease_token is not None and self.lease_token != token and \
            self.lease_until is not None and self.lease_until >= now


@dataclass(frozen=True)
class CallView:
    """What the claim's read found: the newest *operation* for the call's fingerprint (an
    entry that journaled steps: answers and refusals are not operations), in whatever
    phase, and the order the call names."""

    newest: Bound | None
    order: OrderView | None

    @property
    def holder(self) -> Bound | None:
        """The entry bound to the fingerprint (an identical call belongs to it), if any:
        only the newest operation can be bound."""
        return self.newest if self.newest is not None and self.newest.binding.phase.bound \
            else None

    @property
    def watermark(self) -> int:
        """The newest operation's id: one newer than this, made after the read, was made
        by an identical call in flight together with this one (its twin)."""
        return 0 if self.newest is None else self.newest.id


#: An entry that is an operation: it journaled steps, or it is bound (journal v1 bound
#: successes that sent nothing too).
_OPERATION = ("(n.phase IN ('running', 'released', 'replying', 'undelivered') OR EXISTS "
              "(SELECT 1 FROM journal_steps ns WHERE ns.journal_id = n.id))")
#: The newest operation for ``:fp`` (``ix_journal_fingerprint`` is (fingerprint, id)).
_NEWEST_OPERATION = f"SELECT max(n.id) FROM journal n WHERE n.fingerprint = :fp AND {_OPERATION}"
_UNFINISHED_SQL = "('running', 'released')"
_RES_COLS = ("id", "eid", "rno", "order_id", "status", "origin", "created_at",
             "merchant_ref1", "merchant_ref2", "version", "lock_token", "lock_until")
_INV_COLS = ("id", "eid", "invno", "reservation_id", "order_id", "capture_id",
             "captured_amount", "refunded_amount", "lines_json", "refunded_qty_json",
             "adopted", "origin")


def _unresolved(kind: str) -> str:
    return (f"(SELECT count(*) FROM journal_steps s JOIN journal j ON j.id = s.journal_id "
            f"WHERE j.order_id = r.order_id AND j.phase IN {_UNFINISHED_SQL} "
            f"AND s.state = 'planned' AND s.money = '{kind}')")


def _read_sql(by_invoice: bool) -> Sql:
    named = ("LEFT JOIN invoices iv ON iv.eid = :eid AND iv.invno = :invno "
             "LEFT JOIN reservations r ON r.id = iv.reservation_id") if by_invoice else \
        "LEFT JOIN reservations r ON r.eid = :eid AND r.rno = :rno"
    invoice_cols = ", " + ", ".join(f"iv.{c}" for c in _INV_COLS) if by_invoice else ""
    return Sql(f"""
SELECT h.id, h.phase, h.token, h.until, h.phase_at, h.delivered_at,
       {", ".join(f"r.{c}" for c in _RES_COLS)},
       {_unresolved("capture")}, {_unresolved("refund")}, {_unresolved("none")},
       (SELECT count(*) FROM invoices i WHERE i.order_id = r.order_id),
       (SELECT count(*) FROM credits c WHERE c.order_id = r.order_id){invoice_cols}
FROM (SELECT 1 AS one) o
LEFT JOIN journal h ON :bind = 1 AND h.id = ({_NEWEST_OPERATION})
{named}""")


_READ_BY_RNO, _READ_BY_INVOICE = _read_sql(False), _read_sql(True)
_CREDITS_OF = Sql("SELECT id, invoice_id, refund_id, credno, refunded_amount, lines_json, "
                  "adopted, origin FROM credits WHERE invoice_id = :id ORDER BY id")


def read_call(conn: Connection, now: float, q: CallQuery) -> CallView:
    """The binding of the call's fingerprint and the order it names, in one statement
    (two for an invoice call: the invoice's credits)."""
    by_invoice = q.invno is not None
    row = one(conn, _READ_BY_INVOICE if by_invoice else _READ_BY_RNO, {
        "eid": q.eid, "rno": q.rno, "invno": q.invno, "fp": q.fingerprint,
        "bind": 1 if q.bind else 0})
    newest = None if row[0] is None else Bound(row[0], Binding(
        Phase(row[1]), row[2], row[3], row[4], delivered=row[5] is not None
        and Phase(row[1]).unfinished))
    res = row[6:18]
    if res[0] is None:
        return CallView(newest, None)
    capture, refund, change, captures, refunds = row[18:23]
    invoice = None
    if by_invoice:
        invoice = _invoice_of(conn, row[23:])
    unresolved = {k: n for k, n in ((MoneyKind.CAPTURE, capture), (MoneyKind.REFUND, refund),
                                    (MoneyKind.NONE, change)) if n}
    reservation = Reservation(*res[:9])
    return CallView(newest, OrderView(reservation, int(res[9]), res[10], res[11], unresolved,
                                      int(captures), int(refunds), invoice))


def _invoice_of(conn: Connection, cols: Sequence[Any]) -> Invoice:
    (iid, eid, invno, rid, order_id, capture_id, captured, refunded, lines, qty, adopted,
     origin) = cols
    credits = tuple(rows.credit(_Row(("id", "invoice_id", "refund_id", "credno",
                                      "refunded_amount", "lines_json", "adopted", "origin"), c))
                    for c in run(conn, _CREDITS_OF, {"id": iid}).fetchall())
    return Invoice(id=iid, eid=eid, invno=invno, reservation_id=rid, order_id=order_id,
                   capture_id=capture_id, captured_amount=captured, refunded_amount=refunded,
                   lines=rows.loads(lines), refunded_qty=rows.loads(qty), adopted=bool(adopted),
                   credits=credits, origin=origin)


class _Row:
    """Attribute access over a DBAPI tuple, for the row converters of :mod:`rows`."""

    def __init__(self, names: Sequence[str], values: Sequence[Any]) -> None:
        self.__dict__.update(zip(names, values))


# -- delivery reports, carried by the next transaction -------------------------------------


@dataclass(frozen=True)
class Mark:
    """A delivery report: the reply handed over under ``token`` reached its client
    (``delivered``) or not, at ``at``. Applied by compare-and-set on the token (DELIVERED
    and UNDELIVERED of :mod:`gateway.binding`), so a late report of an earlier hand-over
    changes nothing."""

    journal_id: int
    token: str
    delivered: bool
    at: float


_MARK_DELIVERED = Sql(f"""
UPDATE journal SET phase = 'delivered', delivered_at = :at, phase_at = :at, until = NULL,
  updated_at = :at
WHERE id = :id AND token = :token AND phase IN ({_in(sources(Event.DELIVERED))})""")
_MARK_UNDELIVERED = Sql(f"""
UPDATE journal SET phase = 'undelivered', phase_at = :at, until = NULL, updated_at = :at
WHERE id = :id AND token = :token AND phase IN ({_in(sources(Event.UNDELIVERED))})""")


def apply_marks(conn: Connection, marks: Sequence[Mark]) -> None:
    """Apply delivery reports (in this transaction)."""
    if not marks:
        return
    run_many(conn, _MARK_DELIVERED, [_mark_params(k) for k in marks if k.delivered])
    run_many(conn, _MARK_UNDELIVERED, [_mark_params(k) for k in marks if not k.delivered])


def _mark_params(k: Mark) -> dict[str, Any]:
    return {"id": k.journal_id, "token": k.token, "at": k.at}


# -- the intent: a new entry, its steps and keys, the order lease ----------------------------


@dataclass(frozen=True)
class Intent:
    """A new operation about to send ``steps`` (``gateway.translate.plan.RestStep``)."""

    eid: int
    method: str
    fingerprint: str
    call_json: str
    token: str
    until: float
    steps: Sequence[Any]
    notes: Sequence[str] = ()
    rno: str | None = None
    invno: str | None = None
    #: The order named (None: the call creates one) and the version its plan read.
    order: OrderView | None = None
    #: What the plan read of the order (status, merchant references), kept on the row.
    facts: tuple[str | None, str | None, str | None] | None = None
    allocate_invno: bool = False
    allocate_rno: bool = False
    #: A bound entry whose retry window has passed, whose binding ends now (EXPIRE):
    #: (id, token seen).
    unbind: tuple[int, str | None] | None = None
    #: The claim's :attr:`CallView.watermark`: the intent is refused if an operation for
    #: the same fingerprint was made since (the two calls were in flight together).
    watermark: int = 0


@dataclass(frozen=True)
class Intended:
    journal_id: int
    invno: str | None
    rno: str | None
    steps: tuple[Step, ...]


_TAKE_ORDER = Sql("""
UPDATE reservations SET lock_token = :token, lock_until = :until, version = version + 1,
  status = :status, merchant_ref1 = :ref1, merchant_ref2 = :ref2, updated_at = :now
WHERE id = :id AND version = :version
  AND (lock_token IS NULL OR lock_until < :now OR lock_token = :token)""")
_INSERT_ENTRY = Sql(f"""
INSERT INTO journal (eid, method, fingerprint, call_json, rno, invno, order_id, phase, token,
  until, phase_at, notes_json, attempts, created_at, updated_at)
SELECT :eid, :method, CAST(:fp AS VARCHAR(64)), :call, :rno, :invno, :order_id, :phase,
  :token, :until, :now, :notes, 1, :now, :now
WHERE NOT EXISTS (SELECT 1 FROM journal n WHERE n.fingerprint = :fp AND n.id > :watermark
  AND {_OPERATION})
RETURNING id""")
_INSERT_STEP = Sql("""
INSERT INTO journal_steps (journal_id, step, http_method, path, body_json, idempotency_key,
  purpose, effect_json, money, state, updated_at)
VALUES (:jid, :step, :method, :path, :body, :key, :purpose, :effect, :money, 'planned', :now)""")


#: Ending a binding whose window passed (EXPIRE) or whose reply was delivered (SETTLE).



def record_intent(conn: Connection, now: float, intent: Intent, install_id: str,
                  starts: dict[str, int]) -> Intended:
    """Commit the new entry and its steps with their keys, before any request is sent.

    Raises :class:`OrderMovedError` when the order changed or got leased since it was read,
    :class:`TwinBoundError` when an identical call is bound, or made its operation since
    the read (both roll back).
    """
    if intent.unbind is not None:
        expire(conn, now, *intent.unbind)
    order = intent.order
    if order is not None:
        status, ref1, ref2 = intent.facts or (order.reservation.status,
                                              order.reservation.merchant_ref1,
                                              order.reservation.merchant_ref2)
        if run(conn, _TAKE_ORDER, {"token": intent.token, "until": intent.until,
                                   "status": status, "ref1": ref1 or None, "ref2": ref2 or None,
                                   "now": now, "id": order.reservation.id,
                                   "version": order.version}).rowcount != 1:
            raise OrderMovedError(order.reservation.order_id)
    invno = mapping.next_number(conn, "invno", starts["invno"]) if intent.allocate_invno \
        else intent.invno
    rno = mapping.next_number(conn, "rno", starts["rno"]) if intent.allocate_rno else intent.rno
    try:
        made = one(conn, _INSERT_ENTRY, {
            "eid": intent.eid, "method": intent.method, "fp": intent.fingerprint,
            "call": intent.call_json, "rno": rno, "invno": invno,
            "order_id": order.reservation.order_id if order is not None else None,
            "phase": Phase.RUNNING.value, "token": intent.token, "until": intent.until,
            "now": now, "notes": rows.dumps(list(intent.notes)) if intent.notes else None,
            "watermark": intent.watermark})
    except integrity_error(conn):
        raise TwinBoundError(intent.fingerprint) from None
    if made is None:  # an identical call made its operation since our read: our twin
        raise TwinBoundError(intent.fingerprint)
    jid = made[0]
    steps = _steps(jid, intent.steps, install_id, invno, rno, now)
    run_many(conn, _INSERT_STEP, [_step_params(s, now) for s in steps])
    return Intended(jid, invno, rno, steps)


def _steps(jid: int, planned: Sequence[Any], install_id: str, invno: str | None,
           rno: str | None, now: float) -> tuple[Step, ...]:
    out = []
    for i, s in enumerate(planned, start=1):
        effect: Effect | None = s.effect
        if isinstance(effect, CaptureEffect):
            effect = CaptureEffect(effect.reservation_id, effect.order_id, effect.status_after,
                                   invno)
        elif isinstance(effect, OrderCreatedEffect):
            effect = OrderCreatedEffect(effect.eid, effect.origin, rno)
        out.append(Step(journal_id=jid, step=i, http_method=s.http_method, path=s.path,
                        body=s.body, idempotency_key=idempotency_key(install_id, jid, i),
                        purpose=s.purpose, effect=effect, state=StepState.PLANNED,
                        result=None, updated_at=now))
    return tuple(out)


def _step_params(s: Step, now: float) -> dict[str, Any]:
    return {"jid": s.journal_id, "step": s.step, "method": s.http_method, "path": s.path,
            "body": None if s.body is None else rows.dumps(s.body),
            "key": s.idempotency_key, "purpose": s.purpose,
            "effect": None if s.effect is None else rows.dumps(effect_to_json(s.effect)),
            "money": money_kind(s.effect).value, "now": now}


def idempotency_key(install_id: str, journal_id: int, step: int) -> str:
    """Deterministic per (database, journal entry, step): any process resuming the entry
    sends the same key, so Klarna applies the mutation at most once."""
    return str(uuid.uuid5(_namespace(install_id), f"journal:{journal_id}:step:{step}"))


@functools.lru_cache(maxsize=4)
def _namespace(install_id: str) -> uuid.UUID:
    return uuid.UUID(install_id)


# -- a step's outcome ------------------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """What a successful step leaves in the ledger (``gateway.engine.effects`` says how)."""

    eid: int
    journal_id: int
    effect: Effect | None
    body: dict[str, Any]
    result: dict[str, Any]


#: Writes a step's ledger rows; returns the order's new status (None: unchanged).
Recorder = Callable[[Connection, float, Recording], "str | None"]


@dataclass(frozen=True)
class Finish:
    """How the entry ends with this step's success: its reply (JSON text) and, when a
    client waits for it (``delivery_token``), the start of its delivery."""

    reply_json: str
    delivery_token: str | None
    grace_until: float | None


@dataclass(frozen=True)
class StepDone:
    """A step's success, recorded whoever holds the entry, and (fenced by ``token``) the
    entry's outcome (``finish``) or its lease renewed until ``renew_until``."""

    journal_id: int
    step: int
    status: int
    result: dict[str, Any]
    recording: Recording
    record: Recorder
    token: str
    reservation_id: int | None
    finish: Finish | None = None
    renew_until: float | None = None


_STEP_DONE = Sql("""
UPDATE journal_steps SET state = 'done', response_status = :status, result_json = :result,
  updated_at = :now
WHERE journal_id = :jid AND step = :step AND state = 'planned'""")
_ORDER_AFTER = Sql("""
UPDATE reservations SET status = COALESCE(:status, status), version = version + 1,
  updated_at = :now,
  lock_until = CASE WHEN lock_token = :token THEN CAST(:until AS DOUBLE PRECISION)
                    ELSE lock_until END,
  lock_token = CASE WHEN lock_token = :token AND :release = 1 THEN NULL ELSE lock_token END
WHERE id = :id""")
#: FINISH / FINISH_UNATTENDED; ``delivered`` when a reply of the entry already reached a
#: client (the LEASE_HELD_DELIVERED guard: only entries journal v1 left behind).
_FINISH = Sql(f"""
UPDATE journal SET
  phase = CASE WHEN delivered_at IS NULL THEN :phase ELSE 'delivered' END,
  until = CASE WHEN delivered_at IS NULL THEN CAST(:until AS DOUBLE PRECISION) END,
  token = :new, phase_at = :now, reply_json = :reply, updated_at = :now
WHERE id = :id AND token = :token AND phase IN ({_in(sources(Event.FINISH))})""")
_RENEW = Sql("UPDATE journal SET until = :until, updated_at = :now "
             "WHERE id = :id AND token = :token AND phase = 'running'")


def record_outcome(conn: Connection, now: float, done: StepDone) -> bool:
    """Record the step's success and its ledger rows (unfenced: it happened), then, fenced
    by the lease, the entry's outcome or a renewed lease. False: the lease was lost (the
    success is recorded all the same)."""
    status = None
    if run(conn, _STEP_DONE, {"status": done.status, "result": rows.dumps(done.result),
                              "now": now, "jid": done.journal_id,
                              "step": done.step}).rowcount == 1:
        status = done.record(conn, now, done.recording)
    owned = _finish_or_renew(conn, now, done)
    if done.reservation_id is not None:
        run(conn, _ORDER_AFTER, {"status": status, "now": now, "token": done.token,
                                 "until": None if done.finish else done.renew_until,
                                 "release": 1 if done.finish else 0,
                                 "id": done.reservation_id})
    return owned


def _finish_or_renew(conn: Connection, now: float, done: StepDone) -> bool:
    if done.finish is None:
        return run(conn, _RENEW, {"until": done.renew_until, "now": now,
                                  "id": done.journal_id, "token": done.token}).rowcount == 1
    return finish_entry(conn, now, done.journal_id, done.token, done.finish)


def finish_entry(conn: Connection, now: float, journal_id: int, token: str, f: Finish
                 ) -> bool:
    """FINISH (a client waits: ``replying`` under its delivery token) or FINISH_UNATTENDED
    (``undelivered``), fenced by the lease token."""
    phase = Phase.REPLYING if f.delivery_token else Phase.UNDELIVERED
    return run(conn, _FINISH, {
        "phase": phase.value, "new": f.delivery_token or uuid.uuid4().hex,
        "until": f.grace_until, "now": now, "reply": f.reply_json, "id": journal_id,
        "token": token}).rowcount == 1


# -- entries recorded without steps: answers and refusals -------------------------------------


@dataclass(frozen=True)
class Answered:
    """A call that ends without sending anything: a read or a call with nothing to change
    (``answered``, ``reply_json``), or one refused before its intent (``failed``)."""

    eid: int
    method: str
    fingerprint: str
    call_json: str
    rno: str | None
    invno: str | None
    order_id: str | None
    reply_json: str | None = None
    fault_code: int | None = None
    fault_string: str | None = None
    notes: Sequence[str] = ()
    #: The order's status and references as read, to keep on its reservation.
    facts: tuple[int, str | None, str | None, str | None] | None = None


_INSERT_ANSWER = Sql("""
INSERT INTO journal (eid, method, fingerprint, call_json, rno, invno, order_id, phase,
  phase_at, reply_json, fault_code, fault_string, notes_json, attempts, created_at, updated_at)
VALUES (:eid, :method, :fp, :call, :rno, :invno, :order_id, :phase, :now, :reply, :code,
  :fault, :notes, 1, :now, :now)
RETURNING id""")
_FACTS = Sql("""
UPDATE reservations SET status = :status, merchant_ref1 = :ref1, merchant_ref2 = :ref2,
  version = version + 1, updated_at = :now
WHERE id = :id AND (status IS NULL OR status <> :status
  OR COALESCE(merchant_ref1, '') <> COALESCE(:ref1, '')
  OR COALESCE(merchant_ref2, '') <> COALESCE(:ref2, ''))""")


def record_answer(conn: Connection, now: float, a: Answered) -> int:
    """One entry, finished and never bound; the order's facts as read, if they moved."""
    if a.facts is not None:
        rid, status, ref1, ref2 = a.facts
        run(conn, _FACTS, {"status": status, "ref1": ref1 or None, "ref2": ref2 or None,
                           "now": now, "id": rid})
    phase = Phase.FAILED if a.fault_code is not None else Phase.ANSWERED
    jid = one(conn, _INSERT_ANSWER, {
        "eid": a.eid, "method": a.method, "fp": a.fingerprint, "call": a.call_json,
        "rno": a.rno, "invno": a.invno, "order_id": a.order_id, "phase": phase.value,
        "now": now, "reply": a.reply_json, "code": a.fault_code, "fault": a.fault_string,
        "notes": rows.dumps(list(a.notes)) if a.notes else None})[0]
    return int(jid)


# -- the binding's other changes of phase ----------------------------------------------------


def _cas(event: Event, extra: str = "", guard: str = "") -> Sql:
    """The compare-and-set of ``event`` (:data:`gateway.binding.TRANSITIONS`): from the
    phases it may change, presenting the token seen, to its one target phase."""
    [target] = {t.target for t in transitions(event)}
    return Sql(f"""
UPDATE journal SET phase = '{target.value}', token = :new, until = :until, phase_at = :now,
  updated_at = :now{extra}
WHERE id = :id AND token = :token AND phase IN ({_in(sources(event))}){guard}""")



_REPLAY = Sql(_cas(Event.REPLAY, guard=_LAPSED).sqlite + f" RETURNING {_SEEN_COLS}")
_TAKEOVER = _cas(Event.TAKEOVER, ", attempts = attempts + 1", guard=_LAPSED)
_RELEASE = _cas(Event.RELEASE)
_FAULT = {client: _cas(event, ", fault_code = :code, fault_string = :fault")
          for client, event in ((True, Event.FAULT), (False, Event.FAULT_UNATTENDED))}
_ABANDON = Sql("UPDATE journal_steps SET state = 'abandoned', updated_at = :now "
               "WHERE journal_id = :id AND state = 'planned'")
_RELEASE_ORDER = Sql("""
UPDATE reservations SET lock_token = NULL, lock_until = NULL, version = version + 1,
  updated_at = :now
WHERE id = :id AND lock_token = :token""")
_NOTES = Sql("UPDATE journal SET notes_json = :notes WHERE id = :id")


def replay(conn: Connection, now: float, journal_id: int, seen_token: str | None, new: str,
           grace_until: float) -> Seen | None:
    """Hand a finished entry's reply over again, under a new delivery token: the entry
    (its reply), or None when someone else changed it first."""
    row = one(conn, _REPLAY, {"new": new, "until": grace_until, "now": now, "id": journal_id,
                              "token": seen_token})
    return None if row is None else _seen(row)


def take_over(conn: Connection, now: float, journal_id: int, seen: str | None, token: str,
              until: float) -> JournalEntry | None:
    """Continue an unfinished entry nobody holds; the entry as it is *now* (decide from this
    copy), or None when someone else changed it first."""
    if run(conn, _TAKEOVER, {"new": token, "until": until, "now": now, "id": journal_id,
                             "token": seen}).rowcount != 1:
        return None
    return get(conn, journal_id)


def release(conn: Connection, now: float, journal_id: int, token: str,
            reservation_id: int | None) -> bool:
    """Outcome unknown: leave the entry for the client's retry or recovery, free (both
    leases released)."""
    release_order(conn, now, reservation_id, token)
    return run(conn, _RELEASE, {"new": uuid.uuid4().hex, "until": None, "now": now,
                                "id": journal_id, "token": token}).rowcount == 1


def fail(conn: Connection, now: float, journal_id: int, token: str,
         reservation_id: int | None, code: int, fault: str,
         notes: Sequence[str] | None = None, client: bool = True) -> bool:
    """End the entry with a fault, its unsent steps abandoned. Handed to a client waiting
    for it (``failed``: the binding ends); or, when nobody waits (recovery), kept for the
    client's retry like an undelivered reply: it was told 9119 "retry the same call", and
    its steps may have done part of the work (FAULT_UNATTENDED)."""
    release_order(conn, now, reservation_id, token)
    if run(conn, _FAULT[client], {"new": uuid.uuid4().hex, "until": None, "now": now,
                                  "id": journal_id, "token": token, "code": code,
                                  "fault": fault}).rowcount != 1:
        return False
    run(conn, _ABANDON, {"now": now, "id": journal_id})
    if notes:
        run(conn, _NOTES, {"notes": rows.dumps(list(notes)), "id": journal_id})
    return True


def release_order(conn: Connection, now: float, reservation_id: int | None,
                  token: str) -> None:
    """Free the order's lease if ``token`` holds it."""
    if reservation_id is not None:
        run(conn, _RELEASE_ORDER, {"now": now, "id": reservation_id, "token": token})


_SET_ORDER = Sql("UPDATE journal SET order_id = :order_id WHERE id = :id")


def set_order(conn: Connection, journal_id: int, order_id: str) -> None:
    """The order a call created (a recurring purchase) becomes the entry's order."""
    run(conn, _SET_ORDER, {"order_id": order_id, "id": journal_id})


_EXPIRE = _cas(Event.EXPIRE, guard=_LAPSED)


def expire(conn: Connection, now: float, journal_id: int, seen: str | None) -> bool:
    """End the binding of an entry whose reply was never collected within its window."""
    return run(conn, _EXPIRE, {"id": journal_id, "token": seen, "new": uuid.uuid4().hex,
                               "until": None, "now": now}).rowcount == 1


# -- the order lease outside the intent (a resumed entry) -------------------------------------


def lease_order(conn: Connection, now: float, reservation: Reservation, journal_id: int,
                token: str, until: float) -> OrderView | None:
    """Take the order lease for an entry that continues (its steps are journaled); the
    order as :func:`read_call` reports it, or None while another call holds it."""
    if not mapping.acquire_lease(conn, now, reservation.id, token, until):
        return None
    view = read_call(conn, now, CallQuery(reservation.eid, "", rno=reservation.rno,
                                          bind=False)).order
    assert view is not None
    unresolved = ledger.unresolved_money(conn, reservation.order_id, journal_id)
    return OrderView(view.reservation, view.version, view.lease_token, view.lease_until,
                     unresolved, view.captures_known, view.refunds_known)


# -- reads ---------------------------------------------------------------------------------


_SEL_ENTRY = select(_J).where(_J.c.id == bindparam("b_id"))


def get(conn: Connection, journal_id: int) -> JournalEntry:
    return rows.entry(conn, conn.execute(_SEL_ENTRY, {"b_id": journal_id}).one())


_SEEN = Sql(f"SELECT {_SEEN_COLS} FROM journal WHERE id = :id")


@dataclass(frozen=True)
class Seen:
    """An entry's binding and outcome, as a waiting twin polls it."""

    binding: Binding
    reply_json: str | None
    fault_code: int | None
    fault_string: str | None
    rno: str | None = None
    invno: str | None = None


def _seen(row: Sequence[Any]) -> Seen:
    phase, token, until, phase_at, reply, code, fault, rno, invno = row
    return Seen(Binding(Phase(phase), token, until, phase_at), reply, code, fault, rno, invno)


def seen(conn: Connection, now: float, journal_id: int) -> Seen:
    return _seen(one(conn, _SEEN, {"id": journal_id}))


def unfinished(conn: Connection, now: float, eid: int | None = None,
               since: float | None = None) -> list[JournalEntry]:
    """Entries whose outcome is unknown and that nobody holds (what recovery completes)."""
    q = select(_J).where(or_(
        _J.c.phase == Phase.RELEASED.value,
        and_(_J.c.phase == Phase.RUNNING.value,
             or_(_J.c.until.is_(None), _J.c.until <= now)))).order_by(_J.c.id)
    if eid is not None:
        q = q.where(_J.c.eid == eid)
    if since is not None:
        q = q.where(_J.c.created_at >= since)
    return [rows.entry(conn, r) for r in conn.execute(q)]


def counts(conn: Connection, now: float) -> tuple[int, int]:
    """(entries unfinished, captures/refunds they planned: unresolved money)."""
    unfinished_ = _J.c.phase.in_([Phase.RUNNING.value, Phase.RELEASED.value])
    pending = conn.execute(select(func.count()).select_from(_J).where(
        unfinished_)).scalar_one()
    unresolved = conn.execute(select(func.count()).select_from(
        _S.join(_J, _J.c.id == _S.c.journal_id)).where(and_(
            unfinished_, _S.c.state == StepState.PLANNED.value,
            _S.c.money != MoneyKind.NONE.value))).scalar_one()
    return int(pending), int(unresolved)


def recent(conn: Connection, eid: int, limit: int = 50) -> list[JournalEntry]:
    return [rows.entry(conn, r) for r in conn.execute(
        select(_J).where(_J.c.eid == eid).order_by(_J.c.id.desc()).limit(limit))]
