"""Where each invoice and credit number came from: ``origin`` on invoices and credits.

Revision ID: 0003
Revises: 0002

Why: invoices and credits can now be imported (numbers the ERP holds from before the
migration). ``adopted`` keeps its one meaning (the gateway numbered a capture made
elsewhere and never told that number to the ERP, so it may still be renumbered);
``origin`` says where a number came from: ``gateway`` (issued for the gateway's own
capture/refund), ``adopted``, or ``import``. Existing rows are backfilled from ``adopted``.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    for table in ("invoices", "credits"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("origin", sa.String(16), nullable=False,
                                       server_default="gateway"))
        t = sa.table(table, sa.column("adopted", sa.Boolean), sa.column("origin"))
        op.get_bind().execute(sa.update(t).where(t.c.adopted == sa.true())
                              .values(origin="adopted"))


def downgrade() -> None:
    for table in ("credits", "invoices"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("origin")
