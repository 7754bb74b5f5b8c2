"""The call journal: one entry per authenticated legacy call, one row per REST step.

The rules that keep money safe across processes are enforced by the database:
- ``journal.inflight`` is unique, so two identical calls cannot both be running (in one
  process or several): the second waits for, continues or replays the first;
- a step's intent and idempotency key are committed before the request is sent;
- a step's outcome and the ledger rows it creates commit in one transaction;
- every write that lets a runner go on (plan, renew, finish) is fenced by its lease, so a
  runner that outlived its lease can never act after another runner took the entry over.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from sqlalchemy import and_, bindparam, case, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gateway.model import (
    CaptureEffect,
    EntryState,
    Invoice,
    JournalEntry,
    MoneyKind,
    OrderCreatedEffect,
    ReferencesEffect,
    RefundEffect,
    Reservation,
    StatusEffect,
    Step,
    StepState,
    effect_to_json,
)
from gateway.store import ledger, mapping, rows
from gateway.store import models as m

_J, _S = m.journal, m.journal_steps
_SEL_INFLIGHT = select(_J).where(_J.c.inflight == bindparam("b_fp"))
_SEL_ENTRY = select(_J).where(_J.c.id == bindparam("b_id"))
_SEL_STEP = select(_S).where(and_(_S.c.journal_id == bindparam("b_id"),
                                  _S.c.step == bindparam("b_step")))
_UPD_ENTRY = update(_J).where(_J.c.id == bindparam("b_id"))
_UPD_STEP = update(_S).where(and_(_S.c.journal_id == bindparam("b_id"),
                                  _S.c.step == bindparam("b_step")))
_RENEW = update(_J).where(and_(_J.c.id == bindparam("b_id"), _J.c.lease_token == bindparam("b_tok"),
                               _J.c.state == EntryState.PENDING.value)).values(
    lease_until=bindparam("b_until"), updated_at=bindparam("b_now"))
_FINISH = update(_J).where(and_(_J.c.id == bindparam("b_id"),
                                _J.c.state == EntryState.PENDING.value))
_FINISH_FENCED = update(_J).where(and_(_J.c.id == bindparam("b_id"),
                                       _J.c.state == EntryState.PENDING.value,
                                       _J.c.lease_token == bindparam("b_tok")))
_TAKE = update(_J).where(and_(
    _J.c.id == bindparam("b_id"), _J.c.state == EntryState.PENDING.value,
    or_(_J.c.lease_until.is_(None), _J.c.lease_until <= bindparam("b_now"),
        _J.c.lease_token == bindparam("b_tok")))).values(
    lease_token=bindparam("b_tok"), lease_until=bindparam("b_until"),
    attempts=_J.c.attempts + 1, updated_at=bindparam("b_now"))


class LeaseLostError(Exception):
    """This runner no longer owns the journal entry (its lease lapsed and another runner
    took over): it must stop without sending or finishing anything."""


class ClaimContendedError(Exception):
    """The call's fingerprint kept changing hands while we tried to claim it."""


@dataclass(frozen=True)
class Fence:
    """The leases a runner holds: the entry's, and the order's (``reservation_id``) once
    taken. Every write that lets the runner go on must still find both."""

    journal_id: int
    token: str
    reservation_id: int | None = None


class Action(str, Enum):
    """What to do with a legacy call, given its fingerprint's current holder."""

    RUN = "run"  # a new entry, or an unfinished one whose lease this call took over
    WAIT = "wait"  # an identical call is running now: wait for its outcome
    REPLAY = "replay"  # an identical call finished and its outcome is still bound
    NEW = "new"  # the holder's binding has ended: unbind it and start a new entry


@dataclass(frozen=True)
class Begin:
    """A claimed (or joined) call, and what the engine needs to go on without another read.

    With ``action == RUN``: the reservation the call names (by rno, or by invno for invoice
    calls; ``None`` = unknown number), the invoice, all invoices of the reservation, whether
    the order lease was taken too, and money other unfinished entries have journaled on
    this order (new money must wait for it).
    """

    action: Action
    entry: JournalEntry
    reservation: Reservation | None = None
    invoice: Invoice | None = None
    invoices: tuple[Invoice, ...] = ()
    locked: bool = False
    unresolved: dict[MoneyKind, int] | None = None


#: How long a success counts as "being handed to its client" after it is recorded: an
#: identical call waits that long at most for its delivery to be recorded (normally a few
#: ms); after it (the process died in between) the reply counts as never delivered.
DELIVERY_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class Outcome:
    """How a call ended: a reply, or a fault (code + fault string). ``to_client``: a client
    is waiting for this reply (not so for an entry recovery finishes)."""

    reply: Any = None
    fault_code: int | None = None
    fault_string: str | None = None
    notes: tuple[str, ...] | None = None
    to_client: bool = False


def twin_action(row: Any, token: str, now: float, retry_window: float) -> Action:
    """What a new call does when an identical call holds the fingerprint (pure).

    The binding exists for exactly one reason: a client that never received its answer.
    - pending with a live lease held by someone else: the two are in flight together,
      one operation: wait for it;
    - pending with a lapsed or released lease (a dead process, or an attempt that ran out
      of budget and answered 9119): take it over and continue with the same keys;
    - finished and its reply being written to its client right now: wait for the outcome
      of that write (an ERP may send a deliberate repeat the instant it has the reply);
    - finished but its reply never delivered (the connection closed first, or the process
      died), within ``retry_window``: replay that outcome, once;
    - anything else (its reply was delivered, or the window passed): the binding has ended,
      and an identical call is a new operation, answered on its own as v2 would.
    """
    if row.state == EntryState.PENDING.value:
        if row.lease_until is not None and row.lease_until > now and row.lease_token != token:
            return Action.WAIT
        return Action.RUN
    if row.state == EntryState.DONE.value and row.delivered_at is None:
        if row.delivering_until is not None and row.delivering_until > now:
            return Action.WAIT  # its reply is being written: learn whether it arrived
        # The window runs from the last time the reply was handed to a client (a replay
        # whose delivery was never recorded counts), so a retry that arrived inside it and
        # waited for that delivery is still a retry.
        handed = row.updated_at if row.delivering_until is None else max(
            row.updated_at, row.delivering_until - DELIVERY_GRACE_SECONDS)
        if handed + retry_window > now:
            return Action.REPLAY
    return Action.NEW


def claim(conn: Connection, now: float, *, eid: int, method: str, fingerprint: str,
          call: dict[str, Any], rno: str | None, invno: str | None, token: str,
          until: float, retry_window: float) -> Begin:
    """Claim the call's fingerprint, or find the identical call that holds it."""
    for _ in range(3):
        row = conn.execute(_SEL_INFLIGHT, {"b_fp": fingerprint}).first()
        if row is not None:
            action = twin_action(row, token, now, retry_window)
            if action is Action.RUN:
                taken = conn.execute(_TAKE, {"b_id": row.id, "b_tok": token, "b_now": now,
                                             "b_until": until}).rowcount == 1
                fresh = conn.execute(_SEL_ENTRY, {"b_id": row.id}).one()
                return Begin(Action.RUN if taken else Action.WAIT, rows.entry(conn, fresh))
            if action is Action.REPLAY:
                marked = replaying(conn, now, row.id, exclusive=True)
                return Begin(Action.REPLAY if marked else Action.WAIT, rows.entry(conn, row))
            if action is not Action.NEW:
                return Begin(action, rows.entry(conn, row))
            conn.execute(_UPD_ENTRY, {"b_id": row.id, "inflight": None})
        try:
            with conn.begin_nested():
                jid = conn.execute(_J.insert(), {
                    "eid": eid, "method": method, "fingerprint": fingerprint,
                    "inflight": fingerprint, "call_json": rows.dumps(call), "rno": rno,
                    "invno": invno, "state": EntryState.PENDING.value, "lease_token": token,
                    "lease_until": until, "attempts": 1, "created_at": now,
                    "updated_at": now}).inserted_primary_key[0]
        except IntegrityError:
            continue  # another process claimed it between our read and insert
        # A new entry has no steps and holds exactly what was inserted: no re-read.
        return Begin(Action.RUN, JournalEntry(
            id=jid, eid=eid, method=method, fingerprint=fingerprint, call=call,
            state=EntryState.PENDING, reply=None, fault_code=None, fault_string=None,
            order_id=None, lease_until=until, created_at=now, updated_at=now, invno=invno,
            rno=rno, attempts=1))
    row = conn.execute(_SEL_INFLIGHT, {"b_fp": fingerprint}).first()
    if row is None:
        raise ClaimContendedError(fingerprint)
    return Begin(Action.WAIT, rows.entry(conn, row))


def replaying(conn: Connection, now: float, journal_id: int, *, exclusive: bool = False
              ) -> bool:
    """Mark a finished entry's reply as being handed to a client again (a replay).

    A replayed reply is written like a fresh one, and its delivery is recorded only after
    the write: an identical call arriving in between (an ERP's deliberate repeat, sent the
    instant the replay arrived) must wait for that delivery (then it is a new operation),
    not be given the same reply again. ``exclusive`` (a call that came after the entry
    finished): only if no other replay of it is being written, so of two such calls only
    one writes it and the other learns whether it arrived; False when nothing was marked.
    A twin that joined the entry in flight marks it unconditionally (it is owed the reply)."""
    where = [_J.c.id == journal_id, _J.c.delivered_at.is_(None)]
    if exclusive:
        where.append(or_(_J.c.delivering_until.is_(None), _J.c.delivering_until <= now))
    return conn.execute(update(_J).where(and_(*where)).values(
        delivering_until=now + DELIVERY_GRACE_SECONDS)).rowcount == 1


def resolve(conn: Connection, now: float, begin: Begin, eid: int, rno: str | None,
            invno: str | None, token: str, until: float) -> Begin:
    """Find the call's reservation/invoice and try to take the order lease, so the common
    case needs one transaction before the first REST request."""
    invoice = None
    if invno is not None:
        invoice = ledger.by_invno(conn, eid, invno)
        if invoice is None:
            return begin
        reservation = mapping.by_id(conn, invoice.reservation_id)
    elif rno is not None:
        found = mapping.by_rno(conn, eid, rno)
        if found is None:
            return begin
        reservation = found
    else:
        return begin
    if not mapping.acquire_lease(conn, now, reservation.id, token, until):
        return replace(begin, reservation=reservation, invoice=invoice)
    return replace(begin, reservation=reservation, invoice=invoice, locked=True,
                   **order_state(conn, reservation, begin.entry.id))


def order_state(conn: Connection, reservation: Reservation, journal_id: int) -> dict[str, Any]:
    """The reservation's invoices and the unresolved money of other entries on its order."""
    return {"invoices": tuple(ledger.of_reservation(conn, reservation.id)),
            "unresolved": ledger.unresolved_money(conn, reservation.order_id, journal_id)}


def lock_order(conn: Connection, now: float, reservation: Reservation, journal_id: int,
               token: str, until: float) -> dict[str, Any] | None:
    """Take the order lease after the fact (``resolve`` found it busy, or the reservation was
    registered by pass-through); the order state as :func:`order_state`, None if busy."""
    if not mapping.acquire_lease(conn, now, reservation.id, token, until):
        return None
    return order_state(conn, reservation, journal_id)


def get(conn: Connection, journal_id: int) -> JournalEntry:
    return rows.entry(conn, conn.execute(_SEL_ENTRY, {"b_id": journal_id}).one())


# -- leases and fencing -----------------------------------------------------------------


def renew(conn: Connection, now: float, fence: Fence, until: float) -> None:
    """Extend our leases, or raise :class:`LeaseLostError` if we no longer hold them."""
    owned = conn.execute(_RENEW, {"b_id": fence.journal_id, "b_tok": fence.token,
                                  "b_until": until, "b_now": now}).rowcount == 1
    if owned and fence.reservation_id is not None:
        owned = mapping.renew_lease(conn, fence.reservation_id, fence.token, until)
    if not owned:
        raise LeaseLostError(f"journal {fence.journal_id}")


def release(conn: Connection, now: float, fence: Fence) -> None:
    """Leave the entry pending but free, so the client's retry (or recovery) resumes it at
    once; its fingerprint stays bound to it (the client was told to retry the same call)."""
    if fence.reservation_id is not None:
        mapping.release_lease(conn, fence.reservation_id, fence.token)
    conn.execute(update(_J).where(and_(_J.c.id == fence.journal_id,
                                       _J.c.lease_token == fence.token)).values(
        lease_token=None, lease_until=None, updated_at=now))


def delivered(conn: Connection, now: float, journal_id: int) -> bool:
    """The reply reached the client's connection: record when, and end the binding, so the
    next identical call is a new operation.

    An entry can still be pending here: a runner whose lease lapsed mid-request records its
    step's success, fails its fenced finish (another runner took over) and still answers its
    client. Its ``delivered_at`` is recorded all the same, so when the other runner finishes
    the entry it is not replayed to the next identical call (:func:`twin_action`); its
    ``inflight`` stays until then (an identical call meanwhile waits for that runner)."""
    pending = _J.c.state == EntryState.PENDING.value
    return conn.execute(update(_J).where(_J.c.id == journal_id).values(
        delivered_at=now, delivering_until=None,
        inflight=case((pending, _J.c.inflight), else_=None))).rowcount == 1


def undelivered(conn: Connection, now: float, journal_id: int) -> bool:
    """The connection closed before the reply was written: the next identical call gets
    this reply (at once, without waiting out the delivery grace)."""
    return conn.execute(update(_J).where(and_(
        _J.c.id == journal_id, _J.c.delivered_at.is_(None))).values(
            delivering_until=None)).rowcount == 1


def take_over(conn: Connection, now: float, journal_id: int, token: str, until: float
              ) -> JournalEntry | None:
    """Take a lapsed lease; returns the entry as it is *now* (decide from this copy, never
    from the one a sweep listed earlier), or None if someone else holds it."""
    if conn.execute(_TAKE, {"b_id": journal_id, "b_tok": token, "b_now": now,
                            "b_until": until}).rowcount != 1:
        return None
    return get(conn, journal_id)


# -- steps ------------------------------------------------------------------------------


def idempotency_key(install_id: str, journal_id: int, step: int) -> str:
    """Deterministic per (database, journal entry, step): any process resuming the entry
    sends the same key, so Klarna applies the mutation at most once."""
    return str(uuid.uuid5(uuid.UUID(install_id), f"journal:{journal_id}:step:{step}"))


def plan(conn: Connection, now: float, fence: Fence, until: float, *, entry: JournalEntry,
         order_id: str, steps: Sequence[Any], install_id: str, invno: str | None,
         notes: Sequence[str], reply: Any = None, rno: str | None = None) -> JournalEntry:
    """Commit the REST steps (with their idempotency keys) before any is sent.

    ``steps`` are :class:`gateway.translate.plan.RestStep` values. ``invno`` (issued by the
    caller in this same transaction) goes into every capture effect, so a resumed entry
    answers with the same number; ``reply`` is the legacy reply the steps will earn, kept
    while the entry is pending so whoever finishes it answers the same. (journal_id, step)
    is the primary key: a second plan for one entry fails here.
    """
    renew(conn, now, fence, until)
    planned: list[Step] = []
    for i, s in enumerate(steps, start=1):
        effect = s.effect
        if isinstance(effect, CaptureEffect):
            effect = replace(effect, invno=invno)
        elif isinstance(effect, OrderCreatedEffect):
            effect = replace(effect, rno=rno)
        key = idempotency_key(install_id, entry.id, i)
        body = None if s.body is None else rows.loads(rows.dumps(s.body))
        conn.execute(_S.insert(), {
            "journal_id": entry.id, "step": i, "http_method": s.http_method, "path": s.path,
            "body_json": None if body is None else rows.dumps(body), "idempotency_key": key,
            "purpose": s.purpose, "effect_json": None if effect is None else rows.dumps(
                effect_to_json(effect)),
            "money": s.money.value, "state": StepState.PLANNED.value, "updated_at": now})
        planned.append(Step(journal_id=entry.id, step=i, http_method=s.http_method,
                            path=s.path, body=body, idempotency_key=key, purpose=s.purpose,
                            effect=effect, state=StepState.PLANNED, result=None,
                            updated_at=now))
    values: dict[str, Any] = {"order_id": order_id or None, "updated_at": now}
    if invno is not None:
        values["invno"] = invno
    if rno is not None:
        values["rno"] = rno
    if notes:
        values["notes_json"] = rows.dumps(list(notes))
    if reply is not None:
        values["reply_json"] = rows.dumps(reply)
    conn.execute(_UPD_ENTRY, {"b_id": entry.id, **values})
    return replace(entry, order_id=order_id or None, steps=tuple(planned), notes=list(notes),
                   updated_at=now, invno=invno or entry.invno, rno=rno or entry.rno,
                   reply=rows.loads(rows.dumps(reply)) if reply is not None else None)


def complete_step(conn: Connection, now: float, journal_id: int, step: int, status: int,
                  result: dict[str, Any]) -> None:
    """Mark a step done and record its effect in the ledger, in this transaction.

    Recording a REST success is always right (it happened), so this write is not fenced.
    """
    row = conn.execute(_SEL_STEP, {"b_id": journal_id, "b_step": step}).one()
    if row.state == StepState.DONE.value:
        return
    done = rows.step(row)
    eid = conn.execute(select(_J.c.eid).where(_J.c.id == journal_id)).scalar_one()
    body = done.body or {}
    effect = done.effect
    if isinstance(effect, CaptureEffect):
        mapping.set_status(conn, now, effect.reservation_id, effect.status_after)
        ledger.record_capture(conn, now, eid, journal_id, effect, body, result["capture_id"])
    elif isinstance(effect, RefundEffect):
        ledger.record_refund(conn, now, eid, journal_id, effect, body, result["refund_id"])
    elif isinstance(effect, StatusEffect):
        mapping.set_status(conn, now, effect.reservation_id, effect.status)
    elif isinstance(effect, ReferencesEffect):
        mapping.set_refs(conn, now, effect.reservation_id, effect.merchant_reference1,
                         effect.merchant_reference2)
    elif isinstance(effect, OrderCreatedEffect):
        res = mapping.register(conn, now, effect.eid, result["order_id"], effect.rno,
                               effect.origin, result.get("status"), 0)
        conn.execute(_UPD_ENTRY, {"b_id": journal_id, "order_id": res.order_id})
    conn.execute(_UPD_STEP, {"b_id": journal_id, "b_step": step,
                             "state": StepState.DONE.value, "response_status": status,
                             "result_json": rows.dumps(result), "updated_at": now})


def finish(conn: Connection, now: float, fence: Fence | None, journal_id: int,
           outcome: Outcome) -> bool:
    """Record the outcome, freeing the leases in the same commit.

    A success keeps its ``inflight`` binding until its reply is delivered (:func:`delivered`):
    a client that never got it is answered by a replay. A fault releases it at once (it
    changed nothing a repeat could duplicate). ``fence`` (when given) makes the write
    conditional on still holding the lease, as part of the UPDATE itself: no window between
    checking the lease and writing the outcome. Returns False when nothing was written.
    """
    if fence is not None and fence.reservation_id is not None:
        mapping.release_lease(conn, fence.reservation_id, fence.token)
    values: dict[str, Any] = {"updated_at": now, "lease_token": None, "lease_until": None}
    if outcome.fault_code is None:
        values.update(state=EntryState.DONE.value, reply_json=rows.dumps(outcome.reply))
        if outcome.to_client:
            values["delivering_until"] = now + DELIVERY_GRACE_SECONDS
    else:
        values.update(state=EntryState.FAILED.value, fault_code=outcome.fault_code,
                      fault_string=outcome.fault_string, inflight=None)
    if outcome.notes:
        values["notes_json"] = rows.dumps(list(outcome.notes))
    if fence is not None:
        done = conn.execute(_FINISH_FENCED, {"b_id": journal_id, "b_tok": fence.token, **values})
    else:
        done = conn.execute(_FINISH, {"b_id": journal_id, **values})
    if done.rowcount != 1:
        return False
    if outcome.fault_code is not None:
        # Steps never sent (or refused) stay on record but no longer count as unresolved.
        conn.execute(update(_S).where(and_(
            _S.c.journal_id == journal_id, _S.c.state == StepState.PLANNED.value)).values(
                state=StepState.ABANDONED.value, updated_at=now))
    return True


# -- listings ---------------------------------------------------------------------------


def unfinished(conn: Connection, now: float, eid: int | None = None,
               since: float | None = None) -> list[JournalEntry]:
    """Pending entries nobody holds a live lease on (what recovery completes)."""
    q = select(_J).where(and_(
        _J.c.state == EntryState.PENDING.value,
        or_(_J.c.lease_until.is_(None), _J.c.lease_until <= now))).order_by(_J.c.id)
    if eid is not None:
        q = q.where(_J.c.eid == eid)
    if since is not None:
        q = q.where(_J.c.created_at >= since)
    return [rows.entry(conn, r) for r in conn.execute(q)]


def counts(conn: Connection, now: float) -> tuple[int, int]:
    """(entries pending, captures/refunds planned by pending entries: unresolved money)."""
    pending = conn.execute(select(func.count()).select_from(_J).where(
        _J.c.state == EntryState.PENDING.value)).scalar_one()
    unresolved = conn.execute(select(func.count()).select_from(
        _S.join(_J, _J.c.id == _S.c.journal_id)).where(and_(
            _J.c.state == EntryState.PENDING.value, _S.c.state == StepState.PLANNED.value,
            _S.c.money != MoneyKind.NONE.value))).scalar_one()
    return int(pending), int(unresolved)


def recent(conn: Connection, eid: int, limit: int = 50) -> list[JournalEntry]:
    return [rows.entry(conn, r) for r in conn.execute(
        select(_J).where(_J.c.eid == eid).order_by(_J.c.id.desc()).limit(limit))]
