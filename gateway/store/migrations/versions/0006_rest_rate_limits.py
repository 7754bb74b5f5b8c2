"""Per-merchant REST rate limits shared by every process: ``rest_rate_limits``.

Revision ID: 0006
Revises: 0005

Why: ``rest_rate_limit`` gives a merchant one budget of REST requests per second for all
gateway processes on one PostgreSQL, and a 429's ``Retry-After`` pauses the merchant in all
of them. One row per merchant holds its token bucket (GCRA's theoretical arrival time) and
its pause, both on the database's clock; rows appear on a merchant's first limited request.
A new table only: no data changes.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "rest_rate_limits",
        sa.Column("eid", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("tat", sa.Float, nullable=False),
        sa.Column("paused_until", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rest_rate_limits")
