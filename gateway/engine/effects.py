"""What each kind of REST step changes, declared once per kind.

A journaled step carries a typed effect (``gateway.model``): a capture, a refund, a status
change, new merchant references, a created order. Three things depend on the kind, and all
three are declared here, side by side, so a new kind is one entry:

- ``result``: what to keep from Klarna's success answer (the created capture's id...);
- ``found``: whether the order already shows the step's effect, when the engine must settle
  a step from the order rather than send it (its key may have expired at Klarna, or it has
  been unresolved too long): a capture or refund the ledger has no row for that matches the
  step exactly (:func:`gateway.engine.decisions.same_money`), a status the order already
  has;
- ``record``: the ledger rows the success leaves, written by the store in the transaction
  that marks the step done (it returns the order's new status, if the step changes it).
"""
from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from gateway.engine.decisions import same_money
from gateway.model import (
    CaptureEffect, Effect, OrderCreatedEffect, ReferencesEffect, RefundEffect, StatusEffect,
)
from gateway.om.client import OmResponse, created_id, created_order
from gateway.store import journal, ledger, mapping


#: Which ids of the order's captures/refunds the ledger holds, for ``found``.
NO_IDS = ""
CAPTURE_IDS = "captures"
REFUND_IDS = "refunds"


@dataclass(frozen=True)
class EffectRule:
    result: Callable[[OmResponse], dict[str, Any]]
    #: ``(effect, body, order, known ids) -> result`` when the order shows the effect.
    found: Callable[[Any, dict[str, Any], dict[str, Any], Collection[str]],
                    dict[str, Any] | None]
    record: journal.Recorder
    #: The ledger ids ``found`` needs (``""``: none).
    known: str = NO_IDS


def _no_result(resp: OmResponse) -> dict[str, Any]:
    return {}


def _new_money(kind: str, amount_key: str) -> Callable[..., dict[str, Any] | None]:
    def found(effect: Any, body: dict[str, Any], order: dict[str, Any],
              known: Collection[str]) -> dict[str, Any] | None:
        for made in order.get(f"{kind}s") or []:
            if made[f"{kind}_id"] not in known and same_money(made, body, amount_key):
                return {f"{kind}_id": made[f"{kind}_id"]}
        return None
    return found


def _record_capture(conn: Connection, now: float, r: journal.Recording) -> str | None:
    effect = r.effect
    assert isinstance(effect, CaptureEffect)
    ledger.record_capture(conn, now, r.eid, r.journal_id, effect, r.body, r.result["capture_id"])
    return effect.status_after


def _record_refund(conn: Connection, now: float, r: journal.Recording) -> str | None:
    assert isinstance(r.effect, RefundEffect)
    ledger.record_refund(conn, now, r.eid, r.journal_id, r.effect, r.body, r.result["refund_id"])
    return None


def _record_status(conn: Connection, now: float, r: journal.Recording) -> str | None:
    assert isinstance(r.effect, StatusEffect)
    return r.effect.status


def _record_references(conn: Connection, now: float, r: journal.Recording) -> str | None:
    e = r.effect
    assert isinstance(e, ReferencesEffect)
    mapping.set_refs(conn, now, e.reservation_id, e.merchant_reference1, e.merchant_reference2)
    return None


def _record_order(conn: Connection, now: float, r: journal.Recording) -> str | None:
    e = r.effect
    assert isinstance(e, OrderCreatedEffect)
    res = mapping.register(conn, now, e.eid, r.result["order_id"], e.rno, e.origin,
                           r.result.get("status"), 0)
    journal.set_order(conn, r.journal_id, res.order_id)
    return None


def _record_nothing(conn: Connection, now: float, r: journal.Recording) -> str | None:
    return None


def _status_found(effect: Any, body: dict[str, Any], order: dict[str, Any],
                  known: Collection[str]) -> dict[str, Any] | None:
    return {} if order.get("status") == effect.status else None


def _references_found(effect: Any, body: dict[str, Any], order: dict[str, Any],
                      known: Collection[str]) -> dict[str, Any] | None:
    return {} if all(order.get(k) == v for k, v in body.items()) else None


def _never_found(effect: Any, body: dict[str, Any], order: dict[str, Any],
                 known: Collection[str]) -> dict[str, Any] | None:
    return None


EFFECTS: dict[type, EffectRule] = {
    CaptureEffect: EffectRule(lambda resp: {"capture_id": created_id(resp, "capture")},
                              _new_money("capture", "captured_amount"), _record_capture,
                              CAPTURE_IDS),
    RefundEffect: EffectRule(lambda resp: {"refund_id": created_id(resp, "refund")},
                             _new_money("refund", "refunded_amount"), _record_refund,
                             REFUND_IDS),
    StatusEffect: EffectRule(_no_result, _status_found, _record_status),
    ReferencesEffect: EffectRule(_no_result, _references_found, _record_references),
    OrderCreatedEffect: EffectRule(created_order, _never_found, _record_order),
}
#: A step without an effect (an address update, a send-out): nothing to keep or look for.
NO_EFFECT = EffectRule(_no_result, _never_found, _record_nothing)


def rule(effect: Effect | None) -> EffectRule:
    return NO_EFFECT if effect is None else EFFECTS[type(effect)]
