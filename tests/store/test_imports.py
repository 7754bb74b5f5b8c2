"""Importing reservations, invoices and credits, on real SQLite and PostgreSQL.

Each row is checked against the order as Klarna answered it (``OrderFacts``, written here
as the REST client would hand them over); the store decides everything else in one
transaction: unchanged or conflicting rows, the order lease, unresolved money, refund
limits, adopted captures and refunds, and races with another process adopting the same
capture (settled by the unique constraints).
"""
from __future__ import annotations

from typing import Any

import pytest_twisted
from sqlalchemy import func, select
from twisted.internet import defer

from gateway.model import (
    CreditImport, ImportOutcome, ImportStatus, InvoiceImport, OrderFacts, ReservationImport,
)
from gateway.store import schema
from gateway.store import models as m
from gateway.store.models import SCHEMA_HEAD
from tests.store.journal_helpers import intend, succeed
from tests.store.test_store import Store2, capture_step, stores  # noqa: F401  (fixture)

OK, UNCHANGED, REFUSED = ImportStatus.OK, ImportStatus.UNCHANGED, ImportStatus.REFUSED


def line(ref: str, qty: int, unit: int) -> dict[str, Any]:
    return {"reference": ref, "name": ref, "quantity": qty, "unit_price": unit,
            "total_amount": qty * unit}


CAP1 = {"capture_id": "cap-1", "captured_amount": 35000,
        "order_lines": [line("ART-1", 2, 10000), line("ART-2", 3, 5000)]}
CAP2 = {"capture_id": "cap-2", "captured_amount": 15000, "order_lines": [line("ART-3", 1, 15000)]}


def facts(order_id: str = "order-1", captures: tuple[dict[str, Any], ...] = (CAP1, CAP2),
          refunds: tuple[dict[str, Any], ...] = ()) -> OrderFacts:
    return OrderFacts(order_id, "PART_CAPTURED", {c["capture_id"]: c for c in captures},
                      {r["refund_id"]: r for r in refunds})


def refund(rid: str, amount: int, lines: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"refund_id": rid, "refunded_amount": amount, "order_lines": lines or []}


def refused(outcome: ImportOutcome, says: str) -> None:
    assert outcome.status is REFUSED and says in outcome.message, outcome


def count(stores: Store2, table: Any) -> int:
    with stores.dbs[0].engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest_twisted.ensureDeferred
async def test_schema_0003_backfills_origin_from_adopted(stores: Store2) -> None:
    """Invoices/credits written before 0003 get origin 'adopted' or 'gateway'."""
    engine = stores.dbs[0].engine
    with engine.begin() as conn:  # back to 0002, with an adopted and a gateway invoice
        cfg = schema._alembic_config(engine)
        cfg.attributes["connection"] = conn
        from alembic import command
        command.downgrade(cfg, "0002")
    with engine.begin() as conn:  # the rows as that schema's code wrote them
        conn.exec_driver_sql(
            "INSERT INTO reservations (id, eid, rno, order_id, origin, created_at, updated_at) "
            "VALUES (1, 1234, '8000000000', 'order-1', 'admin', 0, 0)")
        for n, adopted in ((1, True), (2, False)):
            conn.exec_driver_sql(
                "INSERT INTO invoices (eid, invno, reservation_id, order_id, capture_id, "
                "captured_amount, refunded_amount, lines_json, refunded_qty_json, adopted, "
                f"created_at) VALUES (1234, 'i{n}', 1, 'order-1', 'c{n}', 1, 0, '[]', "
                f"'{{}}', {'true' if adopted else 'false'}, 0)")
    assert schema.upgrade(engine) == ("0002", SCHEMA_HEAD)
    assert (await stores.a.get_invoice(1234, "i1")).origin == "adopted"  # type: ignore[union-attr]
    assert (await stores.a.get_invoice(1234, "i2")).origin == "gateway"  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_reservation_rows(stores: Store2) -> None:
    """New → registered (origin import, Klarna's status); same again unchanged; a conflict
    with another mapping refused."""
    a = stores.a
    assert (await a.import_row(ReservationImport(1234, "2400000001", "order-1"),
                               facts())).status is OK
    res = await a.get_reservation(1234, "2400000001")
    assert res is not None and (res.origin, res.status) == ("import", "PART_CAPTURED")
    again = await a.import_row(ReservationImport(1234, "2400000001", "order-1"), facts())
    assert again.status is UNCHANGED
    refused(await a.import_row(ReservationImport(1234, "2400000002", "order-1"), facts()),
            "conflicts with an existing mapping")


@pytest_twisted.ensureDeferred
async def test_invoice_rows_register_check_and_are_idempotent(stores: Store2) -> None:
    """The invoice takes Klarna's amount and lines; its order's reservation is registered on
    the way; the same row again is unchanged; conflicts are refused and change nothing;
    invnos are scoped by eid."""
    a = stores.a
    first = await a.import_row(InvoiceImport(1234, "123456", "order-1", "cap-1"), facts())
    assert first.status is OK, first
    assert first.details == {"captured_amount": 35000, "rno": "8000000000",
                             "reservation_registered": True}
    assert "; reservation registered (rno 8000000000)" in first.message
    res = await a.get_reservation(1234, "8000000000")
    assert res is not None and (res.order_id, res.origin) == ("order-1", "import")
    inv = await a.get_invoice(1234, "123456")
    assert inv is not None
    assert (inv.capture_id, inv.captured_amount, inv.refunded_amount, inv.adopted,
            inv.origin) == ("cap-1", 35000, 0, False, "import")
    assert inv.lines == CAP1["order_lines"]
    same = await a.import_row(InvoiceImport(1234, "123456", "order-1", "cap-1"), facts())
    assert same.status is UNCHANGED
    refused(await a.import_row(InvoiceImport(1234, "123457", "order-1", "cap-9"), facts()),
            "capture cap-9 is not on order order-1")
    refused(await a.import_row(InvoiceImport(1234, "123456", "order-1", "cap-2"), facts()),
            "invno 123456 is already used by eid 1234 for capture cap-1")
    refused(await a.import_row(InvoiceImport(1234, "777", "order-1", "cap-1"), facts()),
            "capture cap-1 already has invoice 123456 (imported)")
    assert count(stores, m.invoices) == 1 and count(stores, m.reservations) == 1
    other = await a.import_row(InvoiceImport(5678, "123456", "order-9", "cap-9"),
                               facts("order-9", (dict(CAP1, capture_id="cap-9"),)))
    assert other.status is OK
    assert (await a.get_invoice(1234, "123456")).capture_id == "cap-1"  # type: ignore[union-attr]
    assert (await a.get_invoice(5678, "123456")).capture_id == "cap-9"  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_adopted_capture_is_renumbered_a_told_invno_never(stores: Store2) -> None:
    """A capture the gateway adopted (its invno never told to the ERP) takes the imported
    invno; one the gateway made itself keeps the invno the ERP was given."""
    a = stores.a
    res = await a.register_reservation(1234, "order-1", None, "admin")
    assert await a.adopt(res, [CAP1], []) == (["9000000000"], [])
    out = await a.import_row(InvoiceImport(1234, "123456", "order-1", "cap-1"), facts())
    assert out.status is OK and out.details["renumbered_from"] == "9000000000"
    assert "reservation registered" not in out.message
    assert await a.get_invoice(1234, "9000000000") is None
    inv = await a.get_invoice(1234, "123456")
    assert inv is not None and (inv.adopted, inv.origin) == (False, "import")
    made, token = await intend(a, res=res, steps=[capture_step(res, 15000)],
                               allocate_invno=True)
    await succeed(a, made, token, res, [{"capture_id": "cap-2"}])
    refused(await a.import_row(InvoiceImport(1234, "555", "order-1", "cap-2"), facts()),
            "capture cap-2 already has invoice 9000000001 (issued by the gateway); an invno "
            "the ERP was told is never renumbered")


@pytest_twisted.ensureDeferred
async def test_rows_wait_for_legacy_calls_and_unresolved_money(stores: Store2) -> None:
    """While a legacy call holds the order, or an earlier capture's outcome is unknown,
    an invoice row is refused (import it again later) and changes nothing."""
    a, b = stores.a, stores.b
    res = await a.register_reservation(1234, "order-1", None, "admin")
    assert await b.acquire_order_lock(res.id, "call-1", 10)
    refused(await a.import_row(InvoiceImport(1234, "100", "order-1", "cap-1"), facts()),
            "a legacy call on order order-1 (rno 8000000000) is in progress")
    await b.release_order_lock(res.id, "call-1")
    made, token = await intend(a, res=res, steps=[capture_step(res, 35000)],
                               allocate_invno=True)
    await a.release(made.journal_id, token, res.id)  # the caller got 9119: outcome unknown
    refused(await a.import_row(InvoiceImport(1234, "100", "order-1", "cap-1"), facts()),
            "an earlier activation on order order-1 has an unknown outcome")
    assert count(stores, m.invoices) == 0


@pytest_twisted.ensureDeferred
async def test_credit_rows_fit_their_invoice(stores: Store2) -> None:
    """A credit books Klarna's refund on the named invoice if it fits what is left on it,
    in amount and per captured reference; conflicts and strangers are refused."""
    a = stores.a
    r1 = refund("r-1", 10000, [line("ART-1", 1, 10000)])
    r2 = refund("r-2", 20000)
    r3 = refund("r-3", 20000, [line("ART-1", 2, 10000)])
    f = facts(refunds=(r1, r2, r3))
    for invno, cap in (("100", "cap-1"), ("200", "cap-2")):
        assert (await a.import_row(InvoiceImport(1234, invno, "order-1", cap), f)).status is OK
    out = await a.import_row(CreditImport(1234, "100", "CR-1", "r-1"), f)
    assert out.status is OK and out.details == {"refunded_amount": 10000,
                                                "left_to_refund": 25000}
    inv = await a.get_invoice(1234, "100")
    assert inv is not None and (inv.refunded_amount, inv.refunded_qty) == (10000, {"ART-1": 1})
    [credit] = inv.credits
    assert (credit.credno, credit.refund_id, credit.adopted, credit.origin) == (
        "CR-1", "r-1", False, "import")
    assert (await a.import_row(CreditImport(1234, "100", "CR-1", "r-1"), f)).status \
        is UNCHANGED
    refused(await a.import_row(CreditImport(1234, "100", "CR-9", "r-1"), f),
            "refund r-1 is already booked as credit CR-1 on invoice 100")
    refused(await a.import_row(CreditImport(1234, "200", "CR-2", "r-2"), f),
            "refund r-2 (20000) does not fit invoice 200: 15000 is left to refund on it")
    refused(await a.import_row(CreditImport(1234, "100", "CR-3", "r-3"), f),
            "refund r-3 refunds 2 × ART-1, invoice 100 has 1 of it left to refund")
    refused(await a.import_row(CreditImport(1234, "100", "CR-4", "r-404"), f),
            "refund r-404 is not on order order-1 (the order of invoice 100)")
    refused(await a.import_row(CreditImport(1234, "999", "CR-5", "r-2"), f),
            "invoice 999 is unknown for eid 1234")
    refused(await a.import_row(CreditImport(5678, "100", "CR-1", "r-2"), f),
            "invoice 100 is unknown for eid 5678")
    assert count(stores, m.credits) == 1
    inv = await a.get_invoice(1234, "100")
    assert inv is not None and inv.refunded_amount == 10000


@pytest_twisted.ensureDeferred
async def test_credit_claims_an_adopted_refund_and_moves_it(stores: Store2) -> None:
    """A refund the gateway adopted (and booked on the first invoice with room) becomes the
    ERP's credit on the invoice the ERP names, amounts moved between the invoices."""
    a = stores.a
    r4 = refund("r-4", 5000)
    f = facts(refunds=(r4,))
    for invno, cap in (("100", "cap-1"), ("200", "cap-2")):
        assert (await a.import_row(InvoiceImport(1234, invno, "order-1", cap), f)).status is OK
    res = await a.get_reservation(1234, "8000000000")
    assert res is not None
    assert await a.adopt(res, [], [r4]) == ([], ["r-4"])
    assert (await a.get_invoice(1234, "100")).refunded_amount == 5000  # type: ignore[union-attr]
    out = await a.import_row(CreditImport(1234, "200", "CR-4", "r-4"), f)
    assert out.status is OK and out.details["moved_from"] == "100", out
    assert "the gateway had adopted this refund on invoice 100" in out.message
    inv100, inv200 = [await a.get_invoice(1234, n) for n in ("100", "200")]
    assert inv100 is not None and inv200 is not None
    assert (inv100.refunded_amount, inv100.credits) == (0, ())
    [credit] = inv200.credits
    assert inv200.refunded_amount == 5000
    assert (credit.credno, credit.adopted, credit.origin) == ("CR-4", False, "import")
    assert (await a.import_row(CreditImport(1234, "200", "CR-4", "r-4"), f)).status \
        is UNCHANGED


@pytest_twisted.ensureDeferred
async def test_preview_sees_earlier_rows_and_changes_nothing(stores: Store2) -> None:
    """A dry run applies the rows in order (the credit finds the invoice two rows up) and
    rolls everything back, issuing no number."""
    a = stores.a
    f = facts(refunds=(refund("r-1", 10000),))
    out = await a.preview_import([
        (InvoiceImport(1234, "100", "order-1", "cap-1"), f),
        (CreditImport(1234, "100", "CR-1", "r-1"), f),
        (InvoiceImport(1234, "100", "order-1", "cap-2"), f),
    ])
    assert [o.status for o in out] == [OK, OK, REFUSED]
    assert "(rno issued on import)" in out[0].message and out[0].details["rno"] is None
    assert count(stores, m.invoices) == count(stores, m.credits) == 0
    assert count(stores, m.reservations) == 0
    res = await a.register_reservation(1234, "order-2", None, "admin")
    assert res.rno == "8000000000"


@pytest_twisted.ensureDeferred
async def test_import_races_adoption_by_another_process(stores: Store2) -> None:
    """Process B adopts captures while process A imports invoices for the very same
    captures: every capture ends with exactly one invoice, under the imported invno."""
    a, b = stores.a, stores.b
    n = 12
    reservations = [await a.register_reservation(1234, f"order-{i}", None, "admin")
                    for i in range(n)]
    caps = [dict(CAP1, capture_id=f"cap-{i}") for i in range(n)]
    work = []
    for i, res in enumerate(reservations):
        work.append(defer.ensureDeferred(a.import_row(
            InvoiceImport(1234, f"1000{i}", res.order_id, f"cap-{i}"),
            facts(res.order_id, (caps[i],)))))
        work.append(defer.ensureDeferred(b.adopt(res, [caps[i]], [])))
    results = await defer.gatherResults(work)
    assert all(o.status is OK for o in results[::2]), results[::2]
    for i, res in enumerate(reservations):
        [inv] = await a.invoices_for(res.id)
        assert (inv.invno, inv.capture_id, inv.adopted) == (f"1000{i}", f"cap-{i}", False)
