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
    # Equal to fingerprint while the entry is in flight (and during the coalescing window
    # after success); NULL otherwise. Unique: two identical calls cannot both be in flight,
    # in one process or in several.
    Column("inflight", String(64), nullable=True, unique=True),
    Column("call_json", Text, nullable=False),
    Column("rno", String(64), nullable=True),
    Column("invno", String(64), nullable=True),
    Column("order_id", String(255), nullable=True),
    Column("state", String(16), nullable=False),  # pending | done | failed
    Column("reply_json", Text, nullable=True),
    Column("fault_code", Integer, nullable=True),
    Column("fault_string", Text, nullable=True),
    Column("notes_json", Text, nullable=True),  # v2/REST differences met on this call
    Column("lease_token", String(64), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    # Set when a client was told 9119 ("retry the same call"): until then an identical
    # call continues or replays this entry, however late the retry comes.
    Column("retry_until", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # When the reply was written to the client's connection; NULL: not (yet) delivered.
    Column("delivered_at", Float, nullable=True),
    # Set when a success is handed to its client's connection, until its delivery (or its
    # failure) is recorded: an identical call arriving meanwhile waits for that outcome
    # instead of taking the reply for its own (an ERP's immediate second parcel).
    Column("delivering_until", Float, nullable=True),
)
Index("ix_journal_state", journal.c.state)
Index("ix_journal_order", journal.c.order_id)
Index("ix_journal_fingerprint", journal.c.fingerprint)
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
