"""Indexes for journal search.

Revision ID: 0004
Revises: 0003

Why: ``GET /v1/journal`` and the console page through one merchant's calls newest first
(keyset on the id) and filter by rno, invno and creation time; without these each page
scans the whole journal. Indexes only: no data changes.
"""
from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"

_INDEXES = (
    ("ix_journal_eid_id", ["eid", "id"]),
    ("ix_journal_rno", ["rno"]),
    ("ix_journal_invno", ["invno"]),
    ("ix_journal_created", ["created_at"]),
)


def upgrade() -> None:
    for name, columns in _INDEXES:
        op.create_index(name, "journal", columns)


def downgrade() -> None:
    for name, _ in reversed(_INDEXES):
        op.drop_index(name, "journal")
