"""The gateway's tables: the mapping (reservation ↔ order, invoice ↔ capture, credit ↔ refund)
and the call journal.

This is the gateway's memory, not a cache: a lost invoice row is a merchant who can never
credit that invoice. Every correctness rule that must hold across processes is a database
constraint here (unique numbers per eid, one row per capture/refund id, one in-flight
journal entry per call fingerprint), never a dict in one process's memory.

Alembic migrations in ``gateway/store/migrations`` create exactly these tables; a test
compares the two.
"""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

#: One row: facts about this database (its install id seeds idempotency keys).
meta = Table(
    "gateway_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

#: SQLite stand-in for PostgreSQL sequences (name → next value to hand out).
counters = Table(
    "counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("next_value", BigInteger, nullable=False),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("eid", BigInteger, nullable=False),
    Column("rno", String(64), nullable=False),
    Column("order_id", String(255), nullable=False),
    Column("status", String(32), nullable=True),
    Column("origin", String(16), nullable=False),  # admin | import | pass_through | sandbox
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # A short lease serialising legacy calls on one order across processes.
    Column("lock_token", String(64), nullable=True),
    Column("lock_until", Float, nullable=True),
    # The order's merchant_reference1/2 as last read (the merchant's own order id).
    Column("merchant_ref1", String(255), nullable=True),
    Column("merchant_ref2", String(255), nullable=True),
    # Moves whenever the gateway changes what it knows of the order (its lease taken or
    # released, a capture, refund or status recorded, captures adopted): a call reads the
    # order before claiming anything and commits its intent only if this has not moved.
    Column("version", Integer, nullable=False, server_default="0"),
    UniqueConstraint("eid", "rno", name="uq_reservations_eid_rno"),
    UniqueConstraint("eid", "order_id", name="uq_reservations_eid_order"),
)
Index("ix_reservations_ref1", reservations.c.eid, reservations.c.merchant_ref1)
Index("ix_reservations_ref2", reservations.c.eid, reservations.c.merchant_ref2)

invoices = Table(
    "invoices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("eid", BigInteger, nullable=False),
    Column("invno", String(64), nullable=False),
    Column("reservation_id", Integer, ForeignKey("reservations.id"), nullable=False),
    Column("order_id", String(255), nullable=False),
    Column("capture_id", String(255), nullable=False),
    Column("captured_amount", BigInteger, nullable=False),
    Column("refunded_amount", BigInteger, nullable=False, default=0),
    Column("lines_json", Text, nullable=False),  # the capture's order lines
    Column("refunded_qty_json", Text, nullable=False),  # {reference: qty refunded}
    Column("adopted", Boolean, nullable=False, default=False),  # made outside the gateway
    Column("journal_id", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    # Where the invno came from: gateway | adopted | import (gateway.model.LedgerOrigin).
    Column("origin", String(16), nullable=False, server_default="gateway"),
    UniqueConstraint("eid", "invno", name="uq_invoices_eid_invno"),
    UniqueConstraint("order_id", "capture_id", name="uq_invoices_capture"),
)

credits = Table(
    "credits",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("eid", BigInteger, nullable=False),
    Column("invoice_id", Integer, ForeignKey("invoices.id"), nullable=True),
    Column("order_id", String(255), nullable=False),
    Column("refund_id", String(255), nullable=False),
    Column("credno", String(255), nullable=False),
    Column("refunded_amount", BigInteger, nullable=False),
    Column("lines_json", Text, nullable=False),
    Column("adopted", Boolean, nullable=False, default=False),
    Column("journal_id", Integer, nullable=True),
    Column("created_at", Float, nullable=False),
    # Where the credit's booking came from: gateway | adopted | import.
    Column("origin", String(16), nullable=False, server_default="gateway"),
    UniqueConstraint("order_id", "refund_id", name="uq_credits_refund"),
)
Index("ix_credits_invoice", credits.c.invoice_id)

#: KCO v2 recurring token → Customer Token API token, per merchant (imported, or recorded
#: when a v2 token turned out to be a customer token itself).
recurring_tokens = Table(
    "recurring_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("eid", BigInteger, nullable=False),
    Column("recurring_token", String(255), nullable=False),
    Column("customer_token", String(255), nullable=False),
    Column("origin", String(16), nullable=False),  # import | pass_through
    Column("created_at", Float, nullable=False),
    UniqueConstraint("eid", "recurring_token", name="uq_recurring_tokens"),
)

#: One row per legacy call that passed authentication.
journal = Table(
    "journal",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("eid", BigInteger, nullable=False),
    Column("method", String(64), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("call_json", Text, nullable=False),
    Column("rno", String(64), nullable=True),
    Column("invno", String(64), nullable=True),
    Column("order_id", String(255), nullable=True),
    # Where the call stands (gateway.engine.binding.Phase); changed only by compare-and-set
    # on ``token``, which every change renews (a lease token while running, a delivery
    # token while replying).
    Column("phase", String(16), nullable=False),
    Column("token", String(64), nullable=True),
    # running: the lease's end; replying: the end of the delivery grace.
    Column("until", Float, nullable=True),
    # When the phase last changed (undelivered: when the reply was last handed over).
    Column("phase_at", Float, nullable=False),
    Column("reply_json", Text, nullable=True),
    Column("fault_code", Integer, nullable=True),
    Column("fault_string", Text, nullable=True),
    Column("notes_json", Text, nullable=True),  # v2/REST differences met on this call
    # History, read by no decision: how many runners held the entry, and when a reply of
    # it reached a client's connection.
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True),
)
Index("ix_journal_phase", journal.c.phase)
Index("ix_journal_order", journal.c.order_id)
Index("ix_journal_fingerprint", journal.c.fingerprint)
#: At most one entry per fingerprint is bound (an identical call belongs to it): the rule
#: that keeps two identical calls from both running, in one process or several.
_BOUND = text("phase IN ('running', 'released', 'replying', 'undelivered')")
Index("ux_journal_bound", journal.c.fingerprint, unique=True, sqlite_where=_BOUND,
      postgresql_where=_BOUND)
# Journal search (gateway.store.search): one merchant's calls newest first, and the numbers
# and times migration teams filter by (migration 0003).
Index("ix_journal_eid_id", journal.c.eid, journal.c.id)
Index("ix_journal_rno", journal.c.rno)
Index("ix_journal_invno", journal.c.invno)
Index("ix_journal_created", journal.c.created_at)

#: The REST mutations a journal entry planned: intent and key committed before sending.
journal_steps = Table(
    "journal_steps",
    metadata,
    Column("journal_id", Integer, ForeignKey("journal.id"), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("http_method", String(8), nullable=False),
    Column("path", Text, nullable=False),
    Column("body_json", Text, nullable=True),
    Column("idempotency_key", String(64), nullable=False, unique=True),
    Column("purpose", Text, nullable=False),
    Column("effect_json", Text, nullable=True),  # what to record when it succeeds
    Column("state", String(16), nullable=False),  # planned | done | abandoned
    # capture | refund | none: whether this step moves money (unresolved money blocks new
    # captures/refunds on the order until it is settled).
    Column("money", String(8), nullable=False, server_default="none"),
    Column("response_status", Integer, nullable=True),
    Column("result_json", Text, nullable=True),  # e.g. {"capture_id": ...}
    Column("updated_at", Float, nullable=False),
)

#: Per-merchant REST request slots shared by every process on one PostgreSQL
#: (``gateway.store.ratelimit``): the merchant's token bucket as one number, and the pause
#: Klarna asked for. Times are the database's clock (epoch seconds), so the processes'
#: clocks never have to agree. Unused on SQLite (one process: its buckets live in memory).
rest_rate_limits = Table(
    "rest_rate_limits",
    metadata,
    Column("eid", BigInteger, primary_key=True, autoincrement=False),
    # GCRA's theoretical arrival time: the next request may leave at tat - burst × interval.
    Column("tat", Float, nullable=False),
    # No request of this merchant before this (Klarna's Retry-After on a 429).
    Column("paused_until", Float, nullable=False),
)

SCHEMA_HEAD = "0006"
