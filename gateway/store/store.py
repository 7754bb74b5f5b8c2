"""The one facade over the store: every public method is one transaction.

Each method runs a module-level transaction function ``fn(conn, now, ...)`` from
:mod:`~gateway.store.mapping`, :mod:`~gateway.store.ledger` or
:mod:`~gateway.store.journal` through :meth:`Database.run_interaction` (off the reactor,
retried on serialisation failures). ``now`` is read from the injected clock (the reactor,
or a ``task.Clock`` in tests) when the method is called. Results are the frozen values of
:mod:`gateway.model`.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Connection

from gateway.model import (
    ImportOutcome, ImportRow, Invoice, JournalEntry, OrderFacts, Reservation,
)
from gateway.store import imports, journal, ledger, mapping, recurring, search
from gateway.store import models as m
from gateway.store.database import Database
from gateway.binding import DELIVERY_GRACE_SECONDS
from gateway.store.delivery import DeliveryReports
from gateway.store.mapping import ReservationConflictError
from gateway.store.search import JournalPage, JournalQuery

__all__ = ["ReservationConflictError", "Store"]

T = TypeVar("T")


class Store:
    """The gateway's persistent memory. ``clock`` supplies ``seconds()`` (the reactor)."""

    def __init__(self, db: Database, clock: Any, *, rno_start: int = 8000000000,
                 invno_start: int = 9000000000) -> None:
        self.db = db
        self.clock = clock
        self.rno_start = rno_start
        self.invno_start = invno_start
        self._install_id: str | None = None
        self.reports = DeliveryReports(self.flush_reports, clock)

    async def _run(self, desc: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One write transaction; it carries the delivery reports waiting (they wait again
        if it fails)."""
        now = self.clock.seconds()
        marks = self.reports.take()

        def interaction(conn: Connection) -> T:
            journal.apply_marks(conn, marks)
            return fn(conn, now, *args, **kwargs)
        try:
            return await self.db.run_interaction(desc, interaction)
        except BaseException:
            self.reports.put_back(marks)
            raise

    def report(self, mark: journal.Mark) -> None:
        """A reply's delivery report, written with this process's next transaction."""
        self.reports.add(mark)

    async def flush_reports(self) -> None:
        """Write the waiting delivery reports now (a journal read, an identical call waiting
        for one, shutdown)."""
        if self.reports.waiting:
            await self._run("delivery_reports", _nothing)

    async def _read(self, desc: str, fn: Callable[..., T], *args: Any) -> T:
        now = self.clock.seconds()
        return await self.db.run_read(desc, lambda conn: fn(conn, now, *args))

    # -- meta ----------------------------------------------------------------------------

    async def install_id(self) -> str:
        if self._install_id is None:
            self._install_id = await self._run("install_id", _install_id)
        return self._install_id

    # -- reservations --------------------------------------------------------------------

    async def register_reservation(self, eid: int, order_id: str, rno: str | None,
                                   origin: str, status: str | None = None) -> Reservation:
        return await self._run("register_reservation", mapping.register, eid, order_id, rno,
                               origin, status, self.rno_start)

    async def get_reservation(self, eid: int, rno: str) -> Reservation | None:
        return await self._run("get_reservation", _no_now(mapping.by_rno), eid, rno)

    async def get_reservation_by_order(self, eid: int, order_id: str) -> Reservation | None:
        return await self._run("get_reservation_by_order", _no_now(mapping.by_order), eid,
                               order_id)

    async def get_reservation_by_id(self, rid: int) -> Reservation:
        return await self._run("get_reservation_by_id", _no_now(mapping.by_id), rid)

    async def set_reservation_status(self, rid: int, status: str) -> None:
        await self._run("set_reservation_status", mapping.set_status, rid, status)

    async def record_order_facts(self, rid: int, order: dict[str, Any]) -> None:
        """Keep the order's status and merchant references as last read."""
        await self._run("record_order_facts", mapping.set_facts, rid,
                        None if order.get("status") is None else str(order.get("status")),
                        order.get("merchant_reference1"), order.get("merchant_reference2"))

    async def find_by_merchant_ref(self, eid: int, ref: str) -> list[Reservation]:
        return await self._run("find_by_merchant_ref", _no_now(mapping.by_merchant_ref), eid,
                               ref)

    async def list_reservations(self, eid: int | None = None, since: float | None = None,
                                ) -> list[Reservation]:
        return await self._run("list_reservations", _no_now(mapping.listing), eid, since)

    async def list_open_reservations(self, statuses: tuple[str, ...], eid: int | None = None,
                                     *, after_id: int = 0, limit: int | None = None,
                                     ) -> list[Reservation]:
        """Reservations last seen in one of ``statuses`` or never read (oldest first; a
        page of ``limit`` after the id ``after_id`` when given)."""
        return await self._run("list_open_reservations", _no_now(mapping.open_listing),
                               statuses, eid, after_id, limit)

    async def acquire_order_lock(self, rid: int, token: str, ttl: float) -> bool:
        until = self.clock.seconds() + ttl
        return await self._run("acquire_order_lock", mapping.acquire_lease, rid, token, until)

    async def release_order_lock(self, rid: int, token: str) -> None:
        await self._run("release_order_lock", _no_now(mapping.release_lease), rid, token)

    # -- ledger --------------------------------------------------------------------------

    async def get_invoice(self, eid: int, invno: str) -> Invoice | None:
        return await self._run("get_invoice", _no_now(ledger.by_invno), eid, invno)

    async def invoices_for(self, rid: int) -> list[Invoice]:
        return await self._run("invoices_for", _no_now(ledger.of_reservation), rid)

    async def known_refund_ids(self, order_id: str) -> set[str]:
        return await self._run("known_refund_ids", _no_now(ledger.refund_ids), order_id)

    async def adopt(self, reservation: Reservation, captures: list[dict[str, Any]],
                    refunds: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """Record captures/refunds made outside the gateway; (new invnos, refund ids)."""
        return await self._run("adopt", ledger.adopt, reservation, captures, refunds,
                               self.invno_start)

    # -- imports (numbers the ERP holds from before the migration) -----------------------

    async def import_row(self, row: ImportRow, facts: OrderFacts) -> ImportOutcome:
        """Apply one import row checked against its order as Klarna answered it: whole, or
        (refused, with the reason) not at all."""
        return await self._run("import_row", imports.import_row, row, facts, self.rno_start)

    async def preview_import(self, items: Sequence[tuple[ImportRow, OrderFacts]],
                             ) -> list[ImportOutcome]:
        """A dry run of :meth:`import_row` over every row, in order, rolled back."""
        return await self._run("preview_import", imports.preview, list(items), self.rno_start)

    # -- recurring tokens ----------------------------------------------------------------

    async def customer_token(self, eid: int, recurring_token: str) -> str | None:
        return await self._run("customer_token", _no_now(recurring.customer_token), eid,
                               recurring_token)

    async def map_recurring_token(self, eid: int, recurring_token: str, customer_token: str,
                                  origin: str) -> bool:
        return await self._run("map_recurring_token", recurring.map_token, eid,
                               recurring_token, customer_token, origin)

    # -- journal: a call's path ----------------------------------------------------------

    async def read_call(self, q: journal.CallQuery) -> journal.CallView:
        """The binding of a call's fingerprint and the order it names (no write)."""
        return await self._read("read_call", journal.read_call, q)

    async def record_intent(self, intent: journal.Intent) -> journal.Intended:
        """The new entry, its steps and their keys, and the order lease, before any request
        is sent (raises ``OrderMovedError``/``TwinBoundError``, nothing written)."""
        install_id = await self.install_id()
        return await self._run("record_intent", journal.record_intent, intent, install_id,
                               {"rno": self.rno_start, "invno": self.invno_start})

    def finishing(self, reply_json: str, delivery: str | None) -> journal.Finish:
        """How an entry finishes now: its reply handed to its client under ``delivery``
        for the delivery grace (None: nobody waits for it)."""
        grace = None if delivery is None else self.clock.seconds() + DELIVERY_GRACE_SECONDS
        return journal.Finish(reply_json, delivery, grace)

    async def record_outcome(self, done: journal.StepDone) -> bool:
        """A step's success with its ledger rows and, fenced, the entry's outcome or lease."""
        return await self._run("record_outcome", journal.record_outcome, done)

    async def finish(self, held: Any, reply_json: str, delivery: str | None) -> bool:
        """The outcome of an entry whose steps were all recorded already (fenced)."""
        return await self._run("finish", _finish_only, held.entry_id, held.token,
                               held.reservation_id, self.finishing(reply_json, delivery))

    async def record_answer(self, answered: journal.Answered) -> int:
        return await self._run("record_answer", journal.record_answer, answered)

    async def seen(self, journal_id: int) -> journal.Seen:
        """An entry's binding and outcome (a waiting twin's poll)."""
        return await self._read("seen", journal.seen, journal_id)

    async def replay(self, journal_id: int, seen_token: str | None, delivery: str
                     ) -> journal.Seen | None:
        grace = self.clock.seconds() + DELIVERY_GRACE_SECONDS
        return await self._run("replay", journal.replay, journal_id, seen_token, delivery,
                               grace)

    async def expire(self, journal_id: int, seen_token: str | None) -> bool:
        """End the binding of an entry whose reply was never collected in its window."""
        return await self._run("expire", journal.expire, journal_id, seen_token)

    async def take_over(self, journal_id: int, seen_token: str | None, token: str,
                        lease_seconds: float) -> JournalEntry | None:
        until = self.clock.seconds() + lease_seconds
        return await self._run("take_over", journal.take_over, journal_id, seen_token, token,
                               until)

    async def lease_order(self, reservation: Reservation, journal_id: int, token: str,
                          lease_seconds: float) -> journal.OrderView | None:
        until = self.clock.seconds() + lease_seconds
        return await self._run("lease_order", journal.lease_order, reservation, journal_id,
                               token, until)

    async def release(self, journal_id: int, token: str, reservation_id: int | None) -> bool:
        return await self._run("release", journal.release, journal_id, token, reservation_id)

    async def fail(self, journal_id: int, token: str, reservation_id: int | None, code: int,
                   fault: str, *, client: bool = True) -> bool:
        """End the entry with a fault (kept for the retry when no ``client`` waits)."""
        return await self._run("fail", journal.fail, journal_id, token, reservation_id, code,
                               fault, None, client)

    async def known_ids(self, reservation: Reservation, kind: str) -> set[str]:
        """The capture or refund ids the ledger holds for the order (``kind``: "captures",
        "refunds"; anything else: none)."""
        if kind == "captures":
            return {i.capture_id for i in await self.invoices_for(reservation.id)}
        if kind == "refunds":
            return await self.known_refund_ids(reservation.order_id)
        return set()

    async def get_entry(self, journal_id: int) -> JournalEntry:
        await self.flush_reports()
        return await self._read("get_entry", _no_now(journal.get), journal_id)

    async def unfinished_entries(self, eid: int | None = None,
                                 since: float | None = None) -> list[JournalEntry]:
        return await self._run("unfinished_entries", journal.unfinished, eid, since)

    async def journal_counts(self) -> tuple[int, int]:
        """(pending entries, unresolved captures/refunds): readiness and metrics."""
        return await self._run("journal_counts", journal.counts)

    async def schema_revision(self) -> str | None:
        """The database's schema revision (readiness: reachable and migrated)."""
        return await self._run("schema_revision", _no_now(_revision))

    async def journal_for(self, eid: int, *, limit: int = 50) -> list[JournalEntry]:
        await self.flush_reports()
        return await self._read("journal_for", _no_now(journal.recent), eid, limit)

    # -- read-only search (admin API, console, ``journal`` CLI) ---------------------------

    async def search_journal(self, query: JournalQuery) -> JournalPage:
        """One page of matching journal entries (newest first) with their REST steps."""
        await self.flush_reports()
        return await self._run("search_journal", search.journal, query)

    async def find_reservations(self, text: str, *, eid: int | None = None,
                                limit: int = 50) -> list[Reservation]:
        """Reservations named by an rno, order id, invno or merchant order id."""
        return await self._run("find_reservations", search.reservations, text, eid, limit)


# -- transactions composed of several concerns ------------------------------------------


def _no_now(fn: Callable[..., T]) -> Callable[..., T]:
    """Adapt a read that needs no clock to the facade's ``fn(conn, now, ...)`` shape."""
    def run(conn: Connection, now: float, *args: Any, **kwargs: Any) -> T:
        return fn(conn, *args, **kwargs)
    return run


def _revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _install_id(conn: Connection, now: float) -> str:
    row = conn.execute(select(m.meta.c.value).where(m.meta.c.key == "install_id")).first()
    if row is None:
        value = str(uuid.uuid4())
        conn.execute(m.meta.insert().values(key="install_id", value=value))
        return value
    return str(row.value)


def _finish_only(conn: Connection, now: float, journal_id: int, token: str,
                 reservation_id: int | None, finish: journal.Finish) -> bool:
    owned = journal.finish_entry(conn, now, journal_id, token, finish)
    journal.release_order(conn, now, reservation_id, token)
    return owned


def _nothing(conn: Connection, now: float) -> None:
    """A transaction that only carries the delivery reports."""
