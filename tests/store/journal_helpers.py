"""Journal entries made through the store's own API, as the engine makes them.

``intend`` commits an intent (entry, steps, keys, the order's lease) exactly as
:meth:`gateway.engine.runner.CallEngine._intend` does; ``succeed`` records each step's
success, the last one with the entry's outcome, as :mod:`gateway.engine.steps` does.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from gateway.engine import effects
from gateway.model import Reservation
from gateway.store import journal
from gateway.store.store import Store
from gateway.translate.plan import RestStep


async def intend(store: Store, *, fingerprint: str | None = None, eid: int = 1234,
                 method: str = "activate", res: Reservation | None = None,
                 steps: Sequence[RestStep] = (), token: str | None = None,
                 allocate_invno: bool = False, call: dict[str, Any] | None = None,
                 rno: str | None = None, invno: str | None = None,
                 notes: Sequence[str] = (), lease_seconds: float = 10.0,
                 order: journal.OrderView | None = None,
                 ) -> tuple[journal.Intended, str]:
    """A new entry in ``running`` (raises ``TwinBoundError``/``OrderMovedError``); one
    step with no effect unless ``steps`` are given (an intent always has steps)."""
    steps = steps or [RestStep("POST", "/ordermanagement/v1/orders/x/extend-authorization-time",
                               None, "a step")]
    token = token or uuid.uuid4().hex
    fingerprint = fingerprint or uuid.uuid4().hex
    view = await store.read_call(journal.CallQuery(eid, fingerprint,
                                                   rno=res.rno if res else None))
    if order is None and res is not None:
        order = view.order
    made = await store.record_intent(journal.Intent(
        eid, method, fingerprint, json.dumps({"method": method, "eid": eid, **(call or {})}),
        token, store.clock.seconds() + lease_seconds, steps, notes,
        rno=rno or (res.rno if res else None), invno=invno, order=order,
        allocate_invno=allocate_invno, watermark=view.watermark))
    return made, token


async def succeed(store: Store, made: journal.Intended, token: str,
                  res: Reservation | None, results: Sequence[dict[str, Any]] | None = None,
                  reply: Any = "ok", client: bool = True, eid: int = 1234
                  ) -> tuple[bool, str | None]:
    """Each step succeeds; the last one finishes the entry with ``reply``. Returns (owned,
    the delivery token the reply is handed over under)."""
    results = results or [{} for _ in made.steps]
    delivery = uuid.uuid4().hex if client else None
    owned = True
    for step, result in zip(made.steps, results):
        last = step is made.steps[-1]
        owned = await store.record_outcome(journal.StepDone(
            made.journal_id, step.step, 201, result,
            journal.Recording(res.eid if res else eid, made.journal_id, step.effect,
                              step.body or {}, result),
            effects.rule(step.effect).record, token, res.id if res else None,
            finish=store.finishing(json.dumps(reply), delivery) if last else None,
            renew_until=None if last else store.clock.seconds() + 10))
    return owned, delivery


def capture_result(made: journal.Intended) -> list[dict[str, Any]]:
    return [{"capture_id": f"cap-{made.journal_id}"} for _ in made.steps]
