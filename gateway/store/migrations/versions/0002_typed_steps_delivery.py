"""Typed money kind on journal steps, reply delivery on journal entries, merchant references.

Revision ID: 0002
Revises: 0001

Why: the first landing inferred whether a step moved money from its URL suffix; the kind is
now a column written with the step (backfilled from the step's effect). ``delivered_at``
records when a call's reply reached the client's connection: a reply that was never
delivered is replayed to the client's retry, a delivered one never is. Reservations keep
the order's merchant references (orderid1/2) as last read, so ``check_order_status`` can
find an order by the merchant's own order id, which Order Management cannot search by.
``recurring_tokens`` maps KCO v2 recurring tokens to Customer Token API tokens.
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("journal_steps") as batch:
        batch.add_column(sa.Column("money", sa.String(8), nullable=False,
                                   server_default="none"))
    with op.batch_alter_table("journal") as batch:
        batch.add_column(sa.Column("delivered_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("delivering_until", sa.Float, nullable=True))
    op.create_index("ix_journal_order", "journal", ["order_id"])
    with op.batch_alter_table("reservations") as batch:
        batch.add_column(sa.Column("merchant_ref1", sa.String(255), nullable=True))
        batch.add_column(sa.Column("merchant_ref2", sa.String(255), nullable=True))
    op.create_index("ix_reservations_ref1", "reservations", ["eid", "merchant_ref1"])
    op.create_index("ix_reservations_ref2", "reservations", ["eid", "merchant_ref2"])
    op.create_table(
        "recurring_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("eid", sa.BigInteger, nullable=False),
        sa.Column("recurring_token", sa.String(255), nullable=False),
        sa.Column("customer_token", sa.String(255), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("eid", "recurring_token", name="uq_recurring_tokens"),
    )
    conn = op.get_bind()
    steps = sa.table("journal_steps", sa.column("journal_id"), sa.column("step"),
                     sa.column("effect_json"), sa.column("money"))
    for row in conn.execute(sa.select(steps.c.journal_id, steps.c.step, steps.c.effect_json)
                            .where(steps.c.effect_json.is_not(None))).all():
        kind = (json.loads(row.effect_json) or {}).get("kind")
        if kind in ("capture", "refund"):
            conn.execute(sa.update(steps).where(sa.and_(
                steps.c.journal_id == row.journal_id, steps.c.step == row.step))
                .values(money=kind))


def downgrade() -> None:
    op.drop_table("recurring_tokens")
    op.drop_index("ix_reservations_ref2", "reservations")
    op.drop_index("ix_reservations_ref1", "reservations")
    with op.batch_alter_table("reservations") as batch:
        batch.drop_column("merchant_ref2")
        batch.drop_column("merchant_ref1")
    op.drop_index("ix_journal_order", "journal")
    with op.batch_alter_table("journal") as batch:
        batch.drop_column("delivering_until")
        batch.drop_column("delivered_at")
    with op.batch_alter_table("journal_steps") as batch:
        batch.drop_column("money")
