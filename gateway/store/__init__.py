"""The store: SQLAlchemy 2 on SQLite (one process) or PostgreSQL (several), one facade.

``store`` (the facade: every public method one transaction), ``database`` (the engine, its
lean thread queues, what counts as the database being unavailable), ``schema`` (Alembic
upgrades, the start-up check and what ``build`` does about the schema), ``models`` (the
tables), ``mapping`` (reservations, leases, number counters), ``ledger`` (invoices and
credits), ``journal`` (the call journal and its binding transitions), ``delivery`` (reply
delivery reports, off the reply's path), ``sql`` (hot-path statements), ``rows`` (rows to
the values of :mod:`gateway.model`), ``search`` and ``health`` (read-only queries),
``imports`` (numbers from before the migration), ``recurring`` (KCO v2 recurring tokens),
``ratelimit`` (request slots shared through PostgreSQL), ``port`` (``db port``) and
``migrations/``.
"""
