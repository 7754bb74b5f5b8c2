"""Journal search and reservation lookup (gateway/store/search.py) on real SQLite and
(with GATEWAY_TEST_PG_DSN) real PostgreSQL: every filter, keyset paging, and the indexes of
migration 0003. Entries are made through the Store facade exactly as the engine makes them.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy import inspect

from gateway.model import CaptureEffect, EntryState, Reservation, StatusEffect
from gateway.store import journal
from gateway.store.models import journal as journal_table
from gateway.store.search import JournalQuery, ReservationScope
from gateway.store.store import Store
from gateway.translate.plan import RestStep
from tests.store.journal_helpers import intend, succeed
from tests.store.test_store import Store2, stores  # noqa: F401  (the fixture)

T0 = 1_000_000.0


@dataclass
class World:
    store: Store
    clock: Any
    r1: Reservation
    r2: Reservation
    other: Reservation
    ids: dict[str, int]
    invno: str


@dataclass(frozen=True)
class Outcome:
    reply: Any = None
    fault_code: int | None = None
    fault_string: str | None = None


async def make_call(store: Store, *, eid: int, method: str, call: dict[str, Any],
                    rno: str | None = None, invno: str | None = None,
                    steps: tuple[RestStep, ...] = (), order_id: str | None = None,
                    outcome: Outcome | None = None, complete: bool = True,
                    allocate: bool = False, notes: tuple[str, ...] = ()) -> int:
    """An entry as the engine journals it: steps committed with their keys, then each
    step's success and the outcome (or left unfinished); a call without steps is recorded
    as answered (or refused) at once."""
    body = {"method": method, "eid": eid, **call}
    if not steps and outcome is not None:
        return await store.record_answer(journal.Answered(
            eid, method, uuid.uuid4().hex, json.dumps(body), rno, invno, order_id,
            reply_json=None if outcome.reply is None else json.dumps(outcome.reply),
            fault_code=outcome.fault_code, fault_string=outcome.fault_string, notes=notes))
    res = None if order_id is None else await store.get_reservation_by_order(eid, order_id)
    made, token = await intend(store, eid=eid, method=method, res=res, steps=steps,
                               allocate_invno=allocate, call=call, rno=rno, invno=invno,
                               notes=notes)
    if complete and outcome is not None:
        results = [{"capture_id": f"cap-{made.journal_id}"} if isinstance(
            st.effect, CaptureEffect) else {} for st in made.steps]
        owned, _ = await succeed(store, made, token, res, results,
                                 reply=outcome.reply if outcome else "ok", eid=eid)
        assert owned
    return made.journal_id


async def build_world(s: Store2) -> World:
    store, clock = s.a, s.clock
    clock.advance(T0 - clock.seconds())
    r1 = await store.register_reservation(1234, "order-1", None, "admin")
    r2 = await store.register_reservation(1234, "order-2", "2400000002", "import")
    other = await store.register_reservation(5678, "order-9", None, "admin")
    ids: dict[str, int] = {}
    capture = RestStep("POST", "/ordermanagement/v1/orders/order-1/captures",
                       {"captured_amount": 1000, "order_lines": []}, "capture all",
                       CaptureEffect(reservation_id=r1.id, order_id="order-1",
                                     status_after="PART_CAPTURED"))
    ids["activate"] = await make_call(
        store, eid=1234, method="activate", call={"rno": r1.rno, "orderid1": "ERP-1",
                                                  "orderid2": ""},
        rno=r1.rno, steps=(capture,), order_id="order-1", allocate=True,
        notes=("activate never answers no_risk",), outcome=Outcome(reply=["ok", "9000000000"]))
    [inv] = await store.invoices_for(r1.id)
    clock.advance(10)
    send = RestStep("POST", f"/ordermanagement/v1/orders/order-1/captures/{inv.capture_id}"
                            "/trigger-send-out", None, "e-mail the invoice")
    ids["email"] = await make_call(store, eid=1234, method="email_invoice",
                                   call={"invno": inv.invno}, invno=inv.invno, steps=(send,),
                                   order_id="order-1", outcome=Outcome(reply=inv.invno))
    clock.advance(10)
    ids["unknown"] = await make_call(
        store, eid=1234, method="activate", call={"rno": "999", "orderid1": "", "orderid2": ""},
        rno="999", outcome=Outcome(fault_code=9109, fault_string="rno: unknown"))
    clock.advance(10)
    ids["refused"] = await make_call(
        store, eid=1234, method="cancel_reservation", call={"rno": r1.rno}, rno=r1.rno,
        outcome=Outcome(fault_code=9103, fault_string="not_allowed_operation: captured"))
    clock.advance(10)
    cancel = RestStep("POST", "/ordermanagement/v1/orders/order-2/cancel", None, "cancel",
                      StatusEffect(reservation_id=r2.id, status="CANCELLED"))
    ids["pending"] = await make_call(store, eid=1234, method="cancel_reservation",
                                     call={"rno": r2.rno}, rno=r2.rno, steps=(cancel,),
                                     order_id="order-2", complete=False)
    clock.advance(10)
    ids["other"] = await make_call(
        store, eid=5678, method="update", call={"rno": other.rno, "orderid1": "",
                                                "orderid2": "ERP-1"},
        rno=other.rno, outcome=Outcome(reply="ok"))
    return World(store, clock, r1, r2, other, ids, inv.invno)


async def ids_of(store: Store, **filters: Any) -> list[int]:
    page = await store.search_journal(JournalQuery(limit=500, **filters))
    return [e.id for e in page.entries]


@pytest_twisted.ensureDeferred
async def test_every_filter(stores: Store2) -> None:  # noqa: F811
    """Each filter alone, newest first; outcome maps to state and fault code; since is
    inclusive and until exclusive; merchant order ids match orderid1 or orderid2 exactly."""
    w = await build_world(stores)
    i, s = w.ids, w.store
    assert await ids_of(s) == sorted(i.values(), reverse=True)
    assert await ids_of(s, eid=5678) == [i["other"]]
    assert await ids_of(s, method="activate") == [i["unknown"], i["activate"]]
    # The e-mailed invoice's entry carries its reservation's rno (as the engine journals it).
    assert await ids_of(s, rno=w.r1.rno) == [i["refused"], i["email"], i["activate"]]
    assert await ids_of(s, invno=w.invno) == [i["email"], i["activate"]]
    assert await ids_of(s, order_id="order-1") == [i["email"], i["activate"]]
    assert await ids_of(s, merchant_order_id="ERP-1") == [i["other"], i["activate"]]
    assert await ids_of(s, merchant_order_id="ERP-1", eid=1234) == [i["activate"]]
    assert await ids_of(s, merchant_order_id="erp-1") == []  # exact, on both databases
    assert await ids_of(s, merchant_order_id="ERP") == []  # no substring match
    assert await ids_of(s, state=EntryState.DONE) == [i["other"], i["email"], i["activate"]]
    assert await ids_of(s, state=EntryState.PENDING) == [i["pending"]]
    assert await ids_of(s, state=EntryState.FAILED) == [i["refused"], i["unknown"]]
    assert await ids_of(s, state=EntryState.FAILED, fault_code=9103) == [i["refused"]]
    # unknown at T0+20, refused at T0+30, pending at T0+40 (until is exclusive)
    assert await ids_of(s, since=T0 + 20, until=T0 + 40) == [i["refused"], i["unknown"]]
    assert await ids_of(s, since=T0 + 50) == [i["other"]]
    assert await ids_of(s, until=T0) == []
    assert await ids_of(s, eid=1234, method="activate", state=EntryState.FAILED) == [
        i["unknown"]]


@pytest_twisted.ensureDeferred
async def test_entries_carry_their_steps_notes_and_outcome(stores: Store2) -> None:  # noqa: F811
    """One query per page loads every entry's steps: keys, states, results, notes, reply."""
    w = await build_world(stores)
    page = await w.store.search_journal(JournalQuery(eid=1234, limit=10))
    by_id = {e.id: e for e in page.entries}
    activate = by_id[w.ids["activate"]]
    [step] = activate.steps
    assert step.state == "done" and step.result == {"capture_id": f"cap-{activate.id}"}
    assert len(step.idempotency_key) == 36 and step.path.endswith("/captures")
    assert activate.notes == ["activate never answers no_risk"]
    assert activate.reply == ["ok", "9000000000"] and activate.invno == w.invno
    pending = by_id[w.ids["pending"]]
    assert pending.state == "pending" and [s.state for s in pending.steps] == ["planned"]
    assert by_id[w.ids["unknown"]].steps == () and by_id[w.ids["unknown"]].fault_code == 9109


@pytest_twisted.ensureDeferred
async def test_keyset_paging_is_stable_while_the_journal_grows(stores: Store2) -> None:  # noqa: F811
    """Pages of 7 cover every entry once, in order; calls journaled while someone pages
    neither repeat nor shift the pages already handed out."""
    w = await build_world(stores)
    for n in range(30):
        await make_call(w.store, eid=1234, method="extend_expiry_date",
                        call={"rno": w.r1.rno, "n": n}, rno=w.r1.rno, outcome=Outcome(reply="x"))
    everything = await ids_of(w.store, eid=1234)
    assert len(everything) == 35
    seen: list[int] = []
    before = None
    while True:
        page = await w.store.search_journal(JournalQuery(eid=1234, limit=7, before=before))
        seen += [e.id for e in page.entries]
        if len(seen) == 14:  # a call arrives mid-way: it is newer than every cursor
            await make_call(w.store, eid=1234, method="activate", call={"rno": "1"},
                            rno="1", outcome=Outcome(fault_code=9109, fault_string="x"))
        if page.next_before is None:
            break
        assert page.next_before == page.entries[-1].id
        before = page.next_before
    assert seen == everything
    last = await w.store.search_journal(JournalQuery(eid=1234, limit=5, before=min(seen)))
    assert last.entries == () and last.next_before is None
    exact = await w.store.search_journal(JournalQuery(eid=5678, limit=1))
    assert len(exact.entries) == 1 and exact.next_before is None  # no empty last page


@pytest_twisted.ensureDeferred
async def test_reservation_scope_and_lookup(stores: Store2) -> None:  # noqa: F811
    """A reservation's journal: calls naming its rno or one of its invoices, or planned on
    its order. Lookup finds it by rno, order id, invno or merchant order id, per eid."""
    w = await build_world(stores)
    scope = ReservationScope(w.r1.rno, w.r1.order_id, (w.invno,))
    assert await ids_of(w.store, reservation=scope) == [w.ids["refused"], w.ids["email"],
                                                        w.ids["activate"]]
    assert await ids_of(w.store, reservation=ReservationScope(w.r2.rno, "order-2")) == [
        w.ids["pending"]]
    find = w.store.find_reservations
    assert [r.id for r in await find(w.r1.rno)] == [w.r1.id]
    assert [r.id for r in await find("order-2")] == [w.r2.id]
    assert [r.id for r in await find(w.invno)] == [w.r1.id]
    assert {r.id for r in await find("ERP-1")} == {w.r1.id, w.other.id}
    assert [r.id for r in await find("ERP-1", eid=5678)] == [w.other.id]
    assert await find("order-1", eid=5678) == []  # another merchant's order: not found
    assert await find("nothing") == []


def test_query_limits() -> None:
    with pytest.raises(ValueError):
        JournalQuery(limit=0)
    with pytest.raises(ValueError):
        JournalQuery(limit=501)


@pytest_twisted.ensureDeferred
async def test_search_indexes_exist_as_modelled(stores: Store2) -> None:  # noqa: F811
    """Migration 0003 creates exactly the journal indexes models.py declares."""
    insp = inspect(stores.dbs[0].engine)
    in_db = {ix["name"]: tuple(ix["column_names"]) for ix in insp.get_indexes("journal")}
    modelled = {ix.name: tuple(c.name for c in ix.columns) for ix in journal_table.indexes}
    assert modelled == {k: v for k, v in in_db.items() if k in modelled}
    assert set(modelled) == {n for n in in_db if n.startswith(("ix_", "ux_"))}
    assert in_db["ix_journal_eid_id"] == ("eid", "id")
