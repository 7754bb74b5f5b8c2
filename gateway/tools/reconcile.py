"""``klarna-gateway reconcile``: finish what was left unfinished, then compare store and REST.

1. Every unfinished journal entry (pending, no live lease) is resumed: its journaled steps
   are re-sent with their original idempotency keys, so nothing is applied twice.
2. Every reservation in scope is read over REST; captures and refunds the store has no row
   for are attached (a capture journaled by a pending entry gets that entry's invno, anything
   else is adopted with a new invno), then every remaining disagreement is listed:
   an invoice whose capture is gone or differs in amount, a credit whose refund is missing,
   a refunded total that differs, and entries still unfinished.
Exit status 0 means the store and Klarna agree; 1 means the table below needs a human.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.app import Components
from gateway.engine.recovery import recover_unfinished
from gateway.model import Invoice, Reservation
from gateway.om.client import DeadlineExceededError, RestResponseError, RestTransportError
from gateway.store.store import Store


@dataclass(frozen=True)
class Discrepancy:
    eid: int
    rno: str
    order_id: str
    what: str
    store: str
    rest: str


async def reconcile(parts: Components, *, eid: int | None = None, since: float | None = None,
                    ) -> tuple[dict[str, int], list[Discrepancy]]:
    engine, store, om, config = parts.engine, parts.store, parts.om, parts.config
    outcomes = dict(await recover_unfinished(engine, eid=eid, since=since))
    problems: list[Discrepancy] = []
    for res in await store.list_reservations(eid):
        merchant = config.merchant(res.eid)
        if merchant is None:
            continue
        try:
            order = await om.get_order(merchant, res.order_id,
                                       deadline=engine.clock.seconds() + 10)
        except (RestResponseError, RestTransportError, DeadlineExceededError) as e:
            problems.append(_d(res, "order unreadable", "registered", str(e)))
            continue
        problems += await compare_order(store, res, order)
    for entry in await store.unfinished_entries(eid=eid, since=since):
        problems.append(Discrepancy(entry.eid, str(entry.call.get("rno") or ""),
                                    entry.order_id or "", f"unfinished {entry.method} "
                                    f"(journal {entry.id})", "pending", "unknown"))
    return outcomes, problems


def _d(res: Reservation, what: str, store: str, rest: str) -> Discrepancy:
    return Discrepancy(res.eid, res.rno, res.order_id, what, store, rest)


async def compare_order(store: Store, res: Reservation,
                        order: dict[str, Any]) -> list[Discrepancy]:
    """Attach missed captures/refunds, then list what still disagrees for one order."""
    captures = list(order.get("captures") or [])
    refunds = list(order.get("refunds") or [])
    await store.adopt(res, captures, refunds)
    if (order.get("status"), order.get("merchant_reference1") or None,
            order.get("merchant_reference2") or None) != (res.status, res.merchant_ref1,
                                                          res.merchant_ref2):
        await store.record_order_facts(res.id, order)
    return differences(res, order, await store.invoices_for(res.id),
                       await store.known_refund_ids(res.order_id))


def differences(res: Reservation, order: dict[str, Any], invoices: list[Invoice],
                store_refund_ids: set[str]) -> list[Discrepancy]:
    """What the store and Klarna's order disagree on, changing nothing (pure).

    ``compare_order`` calls it after adopting; the console calls it as things are (read-only),
    so captures and refunds reconcile would adopt show up there as missing rows.
    """
    captures = list(order.get("captures") or [])
    refunds = list(order.get("refunds") or [])
    problems: list[Discrepancy] = []
    rest_caps = {c["capture_id"]: c for c in captures}
    for inv in invoices:
        cap = rest_caps.get(inv.capture_id)
        if cap is None:
            problems.append(_d(res, f"invoice {inv.invno}", f"capture {inv.capture_id}",
                               "no such capture"))
        elif int(cap.get("captured_amount", 0)) != inv.captured_amount:
            problems.append(_d(res, f"invoice {inv.invno} amount", str(inv.captured_amount),
                               str(cap.get("captured_amount"))))
    known = {i.capture_id for i in invoices}
    for cid in rest_caps:
        if cid not in known:
            problems.append(_d(res, "capture without invoice", "missing", cid))
    rest_refunds = {r["refund_id"]: r for r in refunds}
    credits = [c for inv in invoices for c in inv.credits]
    for c in credits:
        ref = rest_refunds.get(c.refund_id)
        if ref is None:
            problems.append(_d(res, f"credit {c.credno or '-'}", f"refund {c.refund_id}",
                               "no such refund"))
        elif int(ref.get("refunded_amount", 0)) != c.refunded_amount:
            problems.append(_d(res, f"credit {c.credno or '-'} amount",
                               str(c.refunded_amount), str(ref.get("refunded_amount"))))
    for rid in rest_refunds:
        if rid not in store_refund_ids:
            problems.append(_d(res, "refund without credit", "missing", rid))
    return problems + _totals(res, order, invoices)


def _totals(res: Reservation, order: dict[str, Any], invoices: list[Invoice],
            ) -> list[Discrepancy]:
    problems: list[Discrepancy] = []
    stored_refunded = sum(i.refunded_amount for i in invoices)
    if stored_refunded != int(order.get("refunded_amount", 0)):
        problems.append(_d(res, "refunded total", str(stored_refunded),
                           str(order.get("refunded_amount"))))
    stored_captured = sum(i.captured_amount for i in invoices)
    if stored_captured != int(order.get("captured_amount", 0)):
        problems.append(_d(res, "captured total", str(stored_captured),
                           str(order.get("captured_amount"))))
    return problems


def format_table(problems: list[Discrepancy]) -> str:
    head = ("eid", "rno", "order_id", "what", "store", "rest")
    rows = [head] + [(str(p.eid), p.rno, p.order_id, p.what, p.store, p.rest) for p in problems]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
