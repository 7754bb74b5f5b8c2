"""``klarna-gateway reconcile``: finish what was left unfinished, then compare store and REST.

1. Every unfinished journal entry (pending, no live lease) is resumed: its journaled steps
   are re-sent with their original idempotency keys, so nothing is applied twice.
2. Every reservation in scope (``eid``; ``since``: updated since then) is read over REST, a
   bounded number at a time; captures and refunds the store has no row for are attached (a
   capture journaled by a pending entry gets that entry's invno, anything else is adopted
   with a new invno), then every remaining disagreement is listed: an invoice whose
   capture is gone or differs in amount, a credit whose refund is missing, a refunded total
   that differs, and entries still unfinished.
3. What cannot be checked is a discrepancy too, never silence: reservations of an eid the
   configuration does not know (one row per eid), and orders Klarna would not return.
Exit status 0 means the store and Klarna agree; 1 means the table below needs a human.
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from gateway.config import Config
from gateway.engine.recovery import recover_unfinished
from gateway.model import Invoice, Reservation
from gateway.om.client import OmError
from gateway.tools.inputs import Unreachable, klarna_error
from gateway.store.store import Store
from gateway.tools import DEFAULT_CONCURRENCY
from gateway.tools.journal import csv_cell

if TYPE_CHECKING:
    from gateway.engine import CallEngine
    from gateway.om.client import OmClient

#: ``(stage, done, total)``: how far the order checks are (the CLI draws a bar from it).
ProgressFn = Callable[[str, int, int], None]
COLUMNS = ("eid", "rno", "order_id", "what", "store", "rest")


@dataclass(frozen=True)
class Discrepancy:
    eid: int
    rno: str
    order_id: str
    what: str
    store: str
    rest: str


async def reconcile(config: Config, engine: CallEngine, store: Store, om: OmClient, *,
                    eid: int | None = None, since: float | None = None,
                    concurrency: int = DEFAULT_CONCURRENCY, progress: ProgressFn | None = None,
                    ) -> tuple[dict[str, int], list[Discrepancy]]:
    """Resume what is unfinished (``engine``), then read every order in scope from Klarna
    (``om``, GET only) and compare it with the store; ``engine.clock`` dates the reads."""
    outcomes = dict(await recover_unfinished(engine, eid=eid, since=since))
    reservations = await store.list_reservations(eid, since)
    problems = unconfigured(config, reservations, eid)
    checkable = [r for r in reservations if config.merchant(r.eid) is not None]
    read = _OrderReader(config, om, store, engine.clock)
    problems += await _check_orders(read, checkable, concurrency, progress)
    for entry in await store.unfinished_entries(eid=eid, since=since):
        problems.append(Discrepancy(entry.eid, str(entry.call.get("rno") or ""),
                                    entry.order_id or "", f"unfinished {entry.method} "
                                    f"(journal {entry.id})", "pending", "unknown"))
    return outcomes, problems


#: ``what`` of a reservation whose order Klarna did not answer for (not a disagreement:
#: ``reconcile`` exits 3, run it again).
NO_ANSWER = "Klarna did not answer"


def unconfigured(config: Config, reservations: list[Reservation], eid: int | None,
                 ) -> list[Discrepancy]:
    """One row per eid in scope that the configuration lacks: its orders cannot be read
    (no credentials), so "agree" would be a lie."""
    counts = Counter(r.eid for r in reservations if config.merchant(r.eid) is None)
    if eid is not None and config.merchant(eid) is None:
        counts.setdefault(eid, 0)
    return [Discrepancy(e, "", "", "eid not configured", f"{n} reservation(s)",
                        f"not checked (no merchant {e} in {config.source})")
            for e, n in sorted(counts.items())]


async def _check_orders(read: _OrderReader, reservations: list[Reservation], concurrency: int,
                        progress: ProgressFn | None) -> list[Discrepancy]:
    """Each order read and compared, ``concurrency`` at a time; results in store order."""
    sem = defer.DeferredSemaphore(max(1, concurrency))
    total, done = len(reservations), 0
    if progress is not None:
        progress("orders", 0, total)

    async def check(res: Reservation) -> list[Discrepancy]:
        nonlocal done
        try:
            return await read.check(res)
        finally:
            done += 1
            if progress is not None:
                progress("orders", done, total)

    try:
        results = await defer.gatherResults([sem.run(check, r) for r in reservations],
                                            consumeErrors=True)
    except defer.FirstError as e:  # a bug, not Klarna: raise it as itself
        e.subFailure.raiseException()
    return [p for found in results for p in found]


@dataclass(frozen=True)
class _OrderReader:
    """Reads one reservation's order from Klarna and compares it with the store."""

    config: Config
    om: OmClient
    store: Store
    clock: Any

    async def check(self, res: Reservation) -> list[Discrepancy]:
        merchant = self.config.merchant(res.eid)
        assert merchant is not None
        try:
            order = await self.om.get_order(merchant, res.order_id,
                                            deadline=self.clock.seconds() + 10)
        except OmError as e:
            why = klarna_error(e, f"order {res.order_id}", res.eid)
            what = NO_ANSWER if isinstance(why, Unreachable) else "order unreadable"
            return [_d(res, what, "registered", str(e))]
        return await compare_order(self.store, res, order)


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
    head = COLUMNS
    rows = [head] + [(str(p.eid), p.rno, p.order_id, p.what, p.store, p.rest) for p in problems]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def to_json(outcomes: dict[str, int], problems: list[Discrepancy]) -> str:
    return json.dumps({"agree": not problems, "resumed": dict(sorted(outcomes.items())),
                       "discrepancies": [asdict(p) for p in problems]},
                      indent=2, ensure_ascii=False) + "\n"


def to_csv(problems: list[Discrepancy]) -> str:
    """One row per discrepancy (header only when none); formula-like cells quoted."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for p in problems:
        writer.writerow([csv_cell(v) for v in (p.eid, p.rno, p.order_id, p.what, p.store,
                                            p.rest)])
    return out.getvalue()
