"""The composition root: the one place that builds the gateway's parts.

``serve`` (through :class:`gateway.service.Gateway`) and every CLI tool (explain, reconcile,
reservations, db) get their database, store, REST client, engine and authenticator from
:func:`build`, so no tool runs a private copy of the engine or the store. Tests build the
same parts with an in-memory HTTP client, a non-threaded database and a ``task.Clock``.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from treq.client import HTTPClient
from twisted.internet import threads

from gateway import files
from gateway.calls import REGISTRY
from gateway.calls.registry import CallRegistry
from gateway.calls.text_repair import OFF, repairing_registry
from gateway.config import Config
from gateway.edge.auth import Authenticator, InvoiceCallNotOffered
from gateway.edge.resource import Reply
from gateway.engine import CallEngine
from gateway.errors import DatabaseUnavailableError, FaultCode, GatewayError, UnknownInvoiceError
from gateway.metrics import NO_METRICS, Metrics
from gateway.om.client import OmClient
from gateway.om.ratelimit import LocalRateLimiter
from gateway.store import schema
from gateway.store.database import Database
from gateway.store.ratelimit import SharedRateLimiter
from gateway.store.store import Store


class SchemaMode(str, Enum):
    """What :func:`build` does about the database schema before handing out the store."""

    UPGRADE = "upgrade"  # a single-process SQLite store: migrate in place (serve)
    CHECK = "check"  # refuse anything but the current schema (shared PostgreSQL, tools)
    NONE = "none"  # the caller has migrated already (tests)


@dataclass
class Components:
    config: Config
    db: Database
    store: Store
    om: OmClient
    engine: CallEngine
    authenticator: Authenticator
    #: The calls, each merchant's ``text_repair`` applied to their plans (the engine counts
    #: the repairs of plans it journals; a dry run, ``explain`` or the console, counts none).
    registry: CallRegistry
    metrics: Metrics
    #: Request slots per merchant: in the store (PostgreSQL: every process shares them), or
    #: in this process (SQLite, read-only tools).
    limiter: LocalRateLimiter | SharedRateLimiter

    def legacy_dispatch(self) -> Callable[[str, list[Any], str | None], Awaitable[Reply]]:
        """``(method, params) -> Reply``: authenticate and decode once, run, and record the
        reply's delivery when the edge has written it to the client's connection."""
        engine = self.engine

        async def dispatch(method: str, params: list[Any], client: str | None = None) -> Reply:
            try:
                authed = self.authenticator.authenticate(method, params, client)
            except InvoiceCallNotOffered as e:
                raise await self._passive_invoice_fault(e) from None
            try:
                answer = await engine.run(authed.merchant, authed.spec, authed.call)
            except GatewayError as e:
                handed = e.handed_over  # a recorded fault given to a retry: report it too
                if handed is not None:
                    e.delivered = lambda: engine.delivered(handed)  # type: ignore[arg-type]
                    e.undelivered = lambda: engine.undelivered(handed)  # type: ignore[arg-type]
                raise
            except Exception as e:
                if caused_by_database(e):
                    self.metrics.database_error("call")
                raise
            return Reply(answer.reply, delivered=lambda: engine.delivered(answer),
                         undelivered=lambda: engine.undelivered(answer),
                         context=answer.context())
        return dispatch

    async def _passive_invoice_fault(self, e: InvoiceCallNotOffered) -> GatewayError:
        """v2's answer to a passive-invoice call: an unknown invoice is 8101; a known one is
        active (REST has no passive invoices), so its fault (8111/8113) says so."""
        if await self.store.get_invoice(e.eid, e.invno) is None:
            return UnknownInvoiceError(f"invoice {e.invno} is unknown for eid {e.eid}")
        return GatewayError(f"invoice {e.invno} is active: {e.public_message}",
                            code=FaultCode(e.known_fault))

    async def close(self) -> None:
        await self.om.close()
        self.db.stop()


def caused_by_database(e: BaseException) -> bool:
    """Whether a database failure is ``e`` or lies under it (a fault raised from one)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, (SQLAlchemyError, DatabaseUnavailableError)):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


async def build(config: Config, db_url: str, clock: Any, *, http: HTTPClient | None = None,
                threaded: bool = True, schema_mode: SchemaMode = SchemaMode.CHECK,
                registry: CallRegistry = REGISTRY, metrics: Metrics = NO_METRICS,
                read_only: bool = False) -> Components:
    """Open the database (schema handled per ``schema_mode``) and wire everything to it.

    ``read_only``: the database is opened read-only (``explain``, ``reservations show``):
    nothing can be written or created, and the install id is not made on the way. A SQLite
    file that does not exist yet is created 0600 (:mod:`gateway.files`).
    """
    if read_only and schema_mode is SchemaMode.UPGRADE:
        raise ValueError("a read-only database cannot be upgraded")
    sqlite = files.sqlite_file(db_url)
    if sqlite is not None and not read_only:
        files.create_private(sqlite)  # before SQLite creates it 0644 (its WAL follows)
    db = Database(db_url, clock, threaded=threaded, metrics=metrics, read_only=read_only)
    try:
        await _prepare_schema(db, clock, schema_mode)
        s = config.gateway
        store = Store(db, clock, rno_start=s.rno_start, invno_start=s.invno_start)
        if not read_only:
            await store.install_id()
    except BaseException:
        db.stop()
        raise
    limiter = LocalRateLimiter(clock) if db.is_sqlite or read_only else \
        SharedRateLimiter(db, clock, metrics)
    om = OmClient(clock, timeout=s.rest_timeout_seconds, http=http, metrics=metrics,
                  limiter=limiter, slot_wait=s.retry_budget_seconds)
    planned = repairing_registry(registry, text_repair_mode(config))
    engine = CallEngine(config, store, om, clock, planned, metrics)
    return Components(config=config, db=db, store=store, om=om, engine=engine,
                      authenticator=Authenticator(config.merchant, planned),
                      registry=planned, metrics=metrics, limiter=limiter)


def text_repair_mode(config: Config) -> Callable[[int], str]:
    """``eid -> text_repair`` of that merchant (``off`` for an eid not configured)."""
    def mode_of(eid: int) -> str:
        merchant = config.merchant(eid)
        return merchant.text_repair if merchant is not None else OFF
    return mode_of


async def _prepare_schema(db: Database, clock: Any, mode: SchemaMode) -> None:
    if mode is SchemaMode.NONE:
        return
    fn = schema.upgrade if mode is SchemaMode.UPGRADE else schema.check
    if not db.threaded:
        fn(db.engine)
        return
    await threads.deferToThreadPool(clock, clock.getThreadPool(), fn, db.engine)
