"""Rows → the neutral values of :mod:`gateway.model`, and the store's JSON encoding.

ORM objects never leave a database thread: every transaction function returns these frozen
values. JSON is written with sorted keys and no spaces so equal values give equal text.
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from gateway.binding import Phase
from gateway.model import (
    Credit, Invoice, JournalEntry, Reservation, Step, StepState, effect_from_json,
)
from gateway.store import models as m

_SEL_STEPS = select(m.journal_steps).where(
    m.journal_steps.c.journal_id == bindparam("b_id")).order_by(m.journal_steps.c.step)


def loads(s: str | None) -> Any:
    return None if s is None else json.loads(s)


def dumps(v: Any) -> str:
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def reservation(row: Any) -> Reservation:
    return Reservation(id=row.id, eid=row.eid, rno=row.rno, order_id=row.order_id,
                       status=row.status, origin=row.origin, created_at=row.created_at,
                       merchant_ref1=row.merchant_ref1, merchant_ref2=row.merchant_ref2)


def credit(row: Any) -> Credit:
    return Credit(id=row.id, invoice_id=row.invoice_id, refund_id=row.refund_id,
                  credno=row.credno, refunded_amount=row.refunded_amount,
                  lines=json.loads(row.lines_json), adopted=bool(row.adopted),
                  origin=row.origin)


def invoice(row: Any, credits: tuple[Credit, ...] = ()) -> Invoice:
    return Invoice(id=row.id, eid=row.eid, invno=row.invno, reservation_id=row.reservation_id,
                   order_id=row.order_id, capture_id=row.capture_id,
                   captured_amount=row.captured_amount, refunded_amount=row.refunded_amount,
                   lines=json.loads(row.lines_json),
                   refunded_qty=json.loads(row.refunded_qty_json), adopted=bool(row.adopted),
                   credits=credits, origin=row.origin)


def step(row: Any) -> Step:
    return Step(journal_id=row.journal_id, step=row.step, http_method=row.http_method,
                path=row.path, body=loads(row.body_json), idempotency_key=row.idempotency_key,
                purpose=row.purpose, effect=effect_from_json(loads(row.effect_json)),
                state=StepState(row.state), result=loads(row.result_json),
                updated_at=row.updated_at)


def entry(conn: Connection, row: Any, *, with_steps: bool = True) -> JournalEntry:
    steps = tuple(step(s) for s in conn.execute(_SEL_STEPS, {"b_id": row.id})) \
        if with_steps else ()
    return JournalEntry(
        id=row.id, eid=row.eid, method=row.method, fingerprint=row.fingerprint,
        call=json.loads(row.call_json), phase=Phase(row.phase),
        reply=loads(row.reply_json), fault_code=row.fault_code,
        fault_string=row.fault_string, order_id=row.order_id,
        created_at=row.created_at, updated_at=row.updated_at, invno=row.invno, rno=row.rno,
        notes=loads(row.notes_json) or [], steps=steps, token=row.token, until=row.until,
        phase_at=row.phase_at, delivered_at=row.delivered_at, attempts=row.attempts or 0,
    )
