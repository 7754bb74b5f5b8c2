"""Journal v2: one ``phase`` per entry, a token per change of phase, an order version.

Revision ID: 0005
Revises: 0004

Why: whether an identical call is a retry or a new operation used to be read off five
columns (``inflight``, ``lease_until``, ``delivered_at``, ``delivering_until``,
``attempts``) by code in three modules. It is now one ``phase``
(``gateway.engine.binding``), changed only by compare-and-set on ``token``, with ``until``
(the lease's or the delivery grace's end) and ``phase_at`` (when it last changed). At most
one *bound* entry per fingerprint is a partial unique index, not a column. ``state`` is
derived from the phase. ``reservations.version`` moves whenever the gateway changes what it
knows of an order, so a call can read the order before it claims anything and commit its
intent only if nothing moved meanwhile.

Live entries move over: a pending entry keeps its lease (``running``, the same token and
end) or, released, becomes ``released``; a success whose reply was delivered is
``delivered``; one still bound whose reply was not is ``undelivered`` (or ``replying``
while its delivery grace runs), so the client's retry is still answered with it; a success
whose binding had ended without a delivery is ``expired``; a fault is ``failed``.
``delivered_at`` and ``attempts`` stay as history (no decision reads them).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

_BOUND = "phase IN ('running', 'released', 'replying', 'undelivered')"

#: The old columns → phase, in order of precedence (evaluated once, before they are dropped).
_PHASE = """
UPDATE journal SET
  phase = CASE
    WHEN state = 'pending' AND lease_token IS NOT NULL THEN 'running'
    WHEN state = 'pending' THEN 'released'
    WHEN state = 'failed' THEN 'failed'
    WHEN delivered_at IS NOT NULL THEN 'delivered'
    WHEN inflight IS NULL THEN 'expired'
    WHEN delivering_until IS NOT NULL THEN 'replying'
    ELSE 'undelivered' END,
  token = CASE WHEN state = 'pending' AND lease_token IS NOT NULL THEN lease_token
               ELSE 'migrated-' || CAST(id AS VARCHAR(20)) END,
  until = CASE WHEN state = 'pending' THEN lease_until ELSE delivering_until END,
  phase_at = updated_at
"""
#: A pending entry that had lost its binding (it cannot happen; were it there, it must not
#: take a second entry's binding): released entries stay unbound history.
_UNBOUND_PENDING = """
UPDATE journal SET phase = 'failed', fault_code = 9119,
  fault_string = 'timeout: unfinished entry without a binding at the upgrade to journal v2'
WHERE state = 'pending' AND inflight IS NULL
"""


def upgrade() -> None:
    with op.batch_alter_table("reservations") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("journal") as batch:
        batch.add_column(sa.Column("phase", sa.String(16), nullable=True))
        batch.add_column(sa.Column("token", sa.String(64), nullable=True))
        batch.add_column(sa.Column("until", sa.Float, nullable=True))
        batch.add_column(sa.Column("phase_at", sa.Float, nullable=True))
    op.execute(_PHASE)
    op.execute(_UNBOUND_PENDING)
    op.drop_index("ix_journal_state", "journal")
    with op.batch_alter_table("journal") as batch:
        batch.alter_column("phase", existing_type=sa.String(16), nullable=False)
        batch.alter_column("phase_at", existing_type=sa.Float, nullable=False)
        batch.drop_column("inflight")
        batch.drop_column("state")
        batch.drop_column("lease_token")
        batch.drop_column("lease_until")
        batch.drop_column("retry_until")
        batch.drop_column("delivering_until")
    op.create_index("ix_journal_phase", "journal", ["phase"])
    op.create_index("ux_journal_bound", "journal", ["fingerprint"], unique=True,
                    sqlite_where=sa.text(_BOUND), postgresql_where=sa.text(_BOUND))
    # The claim reads the newest operation of a fingerprint: (fingerprint, id).
    op.drop_index("ix_journal_fingerprint", "journal")
    op.create_index("ix_journal_fingerprint", "journal", ["fingerprint", "id"])


def downgrade() -> None:
    op.drop_index("ix_journal_fingerprint", "journal")
    op.create_index("ix_journal_fingerprint", "journal", ["fingerprint"])
    op.drop_index("ux_journal_bound", "journal")
    op.drop_index("ix_journal_phase", "journal")
    with op.batch_alter_table("journal") as batch:
        batch.add_column(sa.Column("inflight", sa.String(64), nullable=True))
        batch.add_column(sa.Column("state", sa.String(16), nullable=True))
        batch.add_column(sa.Column("lease_token", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.Float, nullable=True))
        batch.add_column(sa.Column("retry_until", sa.Float, nullable=True))
        batch.add_column(sa.Column("delivering_until", sa.Float, nullable=True))
    op.execute("""
UPDATE journal SET
  state = CASE WHEN phase IN ('running', 'released') THEN 'pending'
               WHEN phase = 'failed' THEN 'failed' ELSE 'done' END,
  inflight = CASE WHEN phase IN ('running', 'released', 'replying', 'undelivered')
                  THEN fingerprint END,
  lease_token = CASE WHEN phase = 'running' THEN token END,
  lease_until = CASE WHEN phase = 'running' THEN until END,
  delivering_until = CASE WHEN phase = 'replying' THEN until END
""")
    with op.batch_alter_table("journal") as batch:
        batch.alter_column("state", existing_type=sa.String(16), nullable=False)
        batch.create_unique_constraint("uq_journal_inflight", ["inflight"])
        batch.drop_column("phase_at")
        batch.drop_column("until")
        batch.drop_column("token")
        batch.drop_column("phase")
    op.create_index("ix_journal_state", "journal", ["state"])
    with op.batch_alter_table("reservations") as batch:
        batch.drop_column("version")
