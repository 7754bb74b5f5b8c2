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
from gateway.store.journal import Begin, Fence, Outcome
from gateway.store.mapping import ReservationConflictError
from gateway.store.search import JournalPage, JournalQuery

__all__ = ["Begin", "Fence", "Outcome", "ReservationConflictError", "Store"]

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

    async def _run(self, desc: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        now = self.clock.seconds()
        return await self.db.run_interaction(desc, lambda conn: fn(conn, now, *args, **kwargs))

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

    # -- journal -------------------------------------------------------------------------

    async def begin_call(self, *, eid: int, method: str, fingerprint: str,
                         call: dict[str, Any], token: str, lease_seconds: float,
                         retry_window: float, rno: str | None = None,
                         invno: str | None = None) -> Begin:
        """Claim the call (or join its identical twin) and, when it runs, resolve its
        reservation and take the order lease in the same transaction."""
        until = self.clock.seconds() + lease_seconds
        return await self._run("begin_call", _begin, eid=eid, method=method,
                               fingerprint=fingerprint, call=call, rno=rno, invno=invno,
                               token=token, until=until, retry_window=retry_window)

    async def resolve(self, begin: Begin, eid: int, rno: str | None, invno: str | None,
                      token: str, lease_seconds: float) -> Begin:
        until = self.clock.seconds() + lease_seconds
        return await self._run("resolve", journal.resolve, begin, eid, rno, invno, token,
                               until)

    async def lock_order(self, reservation: Reservation, journal_id: int, token: str,
                         lease_seconds: float) -> dict[str, Any] | None:
        """Take the order lease; the reservation's invoices and the unresolved money of other
        entries on its order (``invoices``, ``unresolved``), or None while it is busy."""
        until = self.clock.seconds() + lease_seconds
        return await self._run("lock_order", journal.lock_order, reservation, journal_id,
                               token, until)

    async def get_entry(self, journal_id: int) -> JournalEntry:
        return await self._run("get_entry", _no_now(journal.get), journal_id)

    async def plan_steps(self, fence: Fence, lease_seconds: float, *, entry: JournalEntry,
                         order_id: str, steps: Sequence[Any], allocate_invno: bool,
                         notes: Sequence[str], allocate_rno: bool = False,
                         reply: Callable[[str | None, str | None], Any] | None = None,
                         ) -> JournalEntry:
        """Commit the steps and their keys (and issue the invno, or the rno of an order the
        steps create) before any is sent, with the reply they will earn
        (``reply(invno, rno)``), so a resumed entry answers the same."""
        install_id = await self.install_id()
        until = self.clock.seconds() + lease_seconds
        return await self._run("plan_steps", _plan, fence, until, entry=entry,
                               order_id=order_id, steps=steps, install_id=install_id,
                               allocate_invno=allocate_invno, invno_start=self.invno_start,
                               allocate_rno=allocate_rno, rno_start=self.rno_start,
                               notes=notes, reply=reply)

    async def complete_step(self, step_journal_id: int, step: int, status: int,
                            result: dict[str, Any], *, fence: Fence,
                            finish: Outcome | None = None,
                            renew_seconds: float | None = None) -> bool:
        """Record a step's success (never fenced: it happened), then, fenced, either the
        call's outcome (``finish``) or a lease renewal for the next step. Returns False
        when the lease was lost (the success is recorded all the same)."""
        until = None if renew_seconds is None else self.clock.seconds() + renew_seconds
        return await self._run("complete_step", _complete, step_journal_id, step, status,
                               result, fence, finish, until)

    async def finish_call(self, journal_id: int, outcome: Outcome, *,
                          fence: Fence | None = None) -> bool:
        return await self._run("finish_call", journal.finish, fence, journal_id, outcome)

    async def release_lease(self, fence: Fence) -> None:
        await self._run("release_lease", journal.release, fence)

    async def mark_delivered(self, journal_id: int) -> bool:
        """The call's reply reached its client: the binding of identical calls ends."""
        return await self._run("mark_delivered", journal.delivered, journal_id)

    async def mark_replaying(self, journal_id: int) -> None:
        """A finished call's reply is about to be handed to a twin that joined it in flight."""
        await self._run("mark_replaying", journal.replaying, journal_id)

    async def mark_undelivered(self, journal_id: int) -> bool:
        """The call's reply could not be written: the next identical call gets it."""
        return await self._run("mark_undelivered", journal.undelivered, journal_id)

    async def take_over(self, journal_id: int, token: str, lease_seconds: float,
                        ) -> JournalEntry | None:
        until = self.clock.seconds() + lease_seconds
        return await self._run("take_over", journal.take_over, journal_id, token, until)

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
        return await self._run("journal_for", _no_now(journal.recent), eid, limit)

    # -- read-only search (admin API, console, ``journal`` CLI) ---------------------------

    async def search_journal(self, query: JournalQuery) -> JournalPage:
        """One page of matching journal entries (newest first) with their REST steps."""
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


def _begin(conn: Connection, now: float, *, rno: str | None, invno: str | None, token: str,
           until: float, **claim: Any) -> Begin:
    begin = journal.claim(conn, now, rno=rno, invno=invno, token=token, until=until, **claim)
    if begin.action is not journal.Action.RUN:
        return begin
    return journal.resolve(conn, now, begin, claim["eid"], rno, invno, token, until)


def _plan(conn: Connection, now: float, fence: Fence, until: float, *, allocate_invno: bool,
          invno_start: int, allocate_rno: bool, rno_start: int,
          reply: Callable[[str | None, str | None], Any] | None, **kwargs: Any
          ) -> JournalEntry:
    invno = mapping.next_number(conn, "invno", invno_start) if allocate_invno else None
    rno = mapping.next_number(conn, "rno", rno_start) if allocate_rno else None
    entry = kwargs["entry"]
    planned = None if reply is None else reply(invno or entry.invno, rno or entry.rno)
    return journal.plan(conn, now, fence, until, invno=invno, rno=rno, reply=planned, **kwargs)


def _complete(conn: Connection, now: float, journal_id: int, step: int, status: int,
              result: dict[str, Any], fence: Fence, finish: Outcome | None,
              until: float | None) -> bool:
    journal.complete_step(conn, now, journal_id, step, status, result)
    if finish is not None:
        return journal.finish(conn, now, fence, journal_id, finish)
    if until is not None:
        try:
            with conn.begin_nested():
                journal.renew(conn, now, fence, until)
        except journal.LeaseLostError:
            return False
    return True
