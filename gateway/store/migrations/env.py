"""Alembic environment: the connection is handed in by ``gateway.store.schema``.

Migrations are run only by ``klarna-gateway db upgrade`` (and, for a single-process SQLite
store, by ``serve`` at start-up), never implicitly by one of several PostgreSQL gateways.
"""
from __future__ import annotations

from alembic import context

from gateway.store.models import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
