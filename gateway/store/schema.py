"""Schema upgrades (Alembic) and the start-up version check.

Only ``klarna-gateway db upgrade`` migrates a shared PostgreSQL database; a ``serve`` process
refuses to start against an older or unknown schema, so two processes never race a
migration. A SQLite store belongs to one process, so ``serve`` upgrades it itself: that
keeps the newcomer's single command working.
"""
from __future__ import annotations

import uuid
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.engine import Engine
from twisted.internet import threads

from gateway.store.models import SCHEMA_HEAD, meta

if TYPE_CHECKING:
    from gateway.store.database import Database

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class SchemaMode(str, Enum):
    """What :func:`prepare` does about the database schema before the store is handed out."""

    UPGRADE = "upgrade"  # a single-process SQLite store: migrate in place (serve)
    CHECK = "check"  # refuse anything but the current schema (shared PostgreSQL, tools)
    NONE = "none"  # the caller has migrated already (tests)


class SchemaError(Exception):
    """The database schema is not the one this code expects."""


def _alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Migrate to the newest schema; returns (before, after) revisions.

    SQLite changes a table's columns by copying it into a new table and dropping the old
    one (Alembic's batch mode); with foreign keys enforced, dropping the journal while its
    steps reference it fails. So, as SQLite's own procedure for schema changes says, keys
    are not enforced during the migration and checked as a whole before it commits."""
    before = current_revision(engine)
    cfg = _alembic_config(engine)
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # no-op inside a transaction
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise SchemaError(f"the migration would break references: {broken}")
        finally:
            if sqlite:
                conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")
    with engine.begin() as conn:
        if conn.execute(select(meta.c.value).where(meta.c.key == "install_id")).first() is None:
            conn.execute(meta.insert().values(key="install_id", value=str(uuid.uuid4())))
    return before, current_revision(engine) or ""


def check(engine: Engine) -> None:
    """Raise :class:`SchemaError` unless the database is at :data:`SCHEMA_HEAD`."""
    rev = current_revision(engine)
    if rev != SCHEMA_HEAD:
        raise SchemaError(
            f"database schema is {rev or 'empty'}, this gateway needs {SCHEMA_HEAD}: "
            "run `klarna-gateway db upgrade --db URL` first"
        )


async def prepare(db: Database, clock: Any, mode: SchemaMode) -> None:
    """Upgrade or check ``db``'s schema per ``mode``, off the reactor thread when the
    database is threaded (Alembic and the check are blocking)."""
    if mode is SchemaMode.NONE:
        return
    fn = upgrade if mode is SchemaMode.UPGRADE else check
    if not db.threaded:
        fn(db.engine)
        return
    await threads.deferToThreadPool(clock, clock.getThreadPool(), fn, db.engine)
