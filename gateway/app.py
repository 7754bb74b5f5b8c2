"""The composition root: the one place that builds the gateway's parts, and nothing else.

``serve`` (:class:`gateway.service.Gateway`) and every CLI tool (explain, reconcile,
reservations, db) get their database, store, REST client, engine, authenticator, legacy
dispatch and dry run from :func:`build`, so no tool runs a private copy of the engine or the
store. What the parts do lives in their own modules; each consumer receives the parts it
uses (the listeners, the console, the recurring service and the tools take them as
arguments), never the whole :class:`Components`, which only ``serve`` and the CLI commands
(the entry points) hold. Tests build the same parts with an in-memory HTTP client, a
non-threaded database and a ``task.Clock``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from treq.client import HTTPClient

from gateway import files
from gateway.calls import REGISTRY
from gateway.calls.registry import CallRegistry
from gateway.calls.text_repair import repairing_registry, text_repair_mode
from gateway.config import Config
from gateway.edge.auth import Authenticator
from gateway.edge.dispatch import LegacyDispatch
from gateway.engine import CallEngine
from gateway.metrics import NO_METRICS, Metrics
from gateway.om.client import OmClient
from gateway.om.ratelimit import LocalRateLimiter
from gateway.store import schema
from gateway.store.database import Database
from gateway.store.ratelimit import SharedRateLimiter
from gateway.store.schema import SchemaMode
from gateway.store.store import Store
from gateway.tools.explain import Explainer


@dataclass
class Components:
    """Every part :func:`build` made, for the entry points to hand out (and to close)."""

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
    #: The legacy listener's dispatch: authenticate, decode, run, record the delivery.
    dispatch: LegacyDispatch
    #: ``explain``'s dry run (the CLI command and the console's digest self-test).
    explainer: Explainer

    async def close(self) -> None:
        await self.om.close()
        self.db.stop()


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
        await schema.prepare(db, clock, schema_mode)
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
    authenticator = Authenticator(config.merchant, planned)
    return Components(
        config=config, db=db, store=store, om=om, engine=engine, authenticator=authenticator,
        registry=planned, metrics=metrics, limiter=limiter,
        dispatch=LegacyDispatch(authenticator, engine, store, metrics),
        explainer=Explainer(config, authenticator, planned, store, om, clock))
