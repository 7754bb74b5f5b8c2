"""Initial schema: mapping tables, call journal, number sequences.

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "gateway_meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("next_value", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("eid", sa.BigInteger, nullable=False),
        sa.Column("rno", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("lock_token", sa.String(64), nullable=True),
        sa.Column("lock_until", sa.Float, nullable=True),
        sa.UniqueConstraint("eid", "rno", name="uq_reservations_eid_rno"),
        sa.UniqueConstraint("eid", "order_id", name="uq_reservations_eid_order"),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("eid", sa.BigInteger, nullable=False),
        sa.Column("invno", sa.String(64), nullable=False),
        sa.Column("reservation_id", sa.Integer, sa.ForeignKey("reservations.id"), nullable=False),
        sa.Column("order_id", sa.String(255), nullable=False),
        sa.Column("capture_id", sa.String(255), nullable=False),
        sa.Column("captured_amount", sa.BigInteger, nullable=False),
        sa.Column("refunded_amount", sa.BigInteger, nullable=False),
        sa.Column("lines_json", sa.Text, nullable=False),
        sa.Column("refunded_qty_json", sa.Text, nullable=False),
        sa.Column("adopted", sa.Boolean, nullable=False),
        sa.Column("journal_id", sa.Integer, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("eid", "invno", name="uq_invoices_eid_invno"),
        sa.UniqueConstraint("order_id", "capture_id", name="uq_invoices_capture"),
    )
    op.create_table(
        "credits",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("eid", sa.BigInteger, nullable=False),
        sa.Column("invoice_id", sa.Integer, sa.ForeignKey("invoices.id"), nullable=True),
        sa.Column("order_id", sa.String(255), nullable=False),
        sa.Column("refund_id", sa.String(255), nullable=False),
        sa.Column("credno", sa.String(255), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger, nullable=False),
        sa.Column("lines_json", sa.Text, nullable=False),
        sa.Column("adopted", sa.Boolean, nullable=False),
        sa.Column("journal_id", sa.Integer, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("order_id", "refund_id", name="uq_credits_refund"),
    )
    op.create_index("ix_credits_invoice", "credits", ["invoice_id"])
    op.create_table(
        "journal",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("eid", sa.BigInteger, nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("inflight", sa.String(64), nullable=True, unique=True),
        sa.Column("call_json", sa.Text, nullable=False),
        sa.Column("rno", sa.String(64), nullable=True),
        sa.Column("invno", sa.String(64), nullable=True),
        sa.Column("order_id", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reply_json", sa.Text, nullable=True),
        sa.Column("fault_code", sa.Integer, nullable=True),
        sa.Column("fault_string", sa.Text, nullable=True),
        sa.Column("notes_json", sa.Text, nullable=True),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("retry_until", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_journal_state", "journal", ["state"])
    op.create_index("ix_journal_fingerprint", "journal", ["fingerprint"])
    op.create_table(
        "journal_steps",
        sa.Column("journal_id", sa.Integer, sa.ForeignKey("journal.id"), primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True),
        sa.Column("http_method", sa.String(8), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("body_json", sa.Text, nullable=True),
        sa.Column("idempotency_key", sa.String(64), nullable=False, unique=True),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("effect_json", sa.Text, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("response_status", sa.Integer, nullable=True),
        sa.Column("result_json", sa.Text, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Numbers unique across every gateway process sharing this database.
        op.execute("CREATE SEQUENCE invno_seq")
        op.execute("CREATE SEQUENCE rno_seq")
