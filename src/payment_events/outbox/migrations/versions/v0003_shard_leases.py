"""Create payment_events_shard_leases: one row per (lease namespace, shard) with a fencing generation.

A relay that takes a shard bumps its ``generation`` and writes itself as ``owner`` (while it holds the
shard's advisory lock on PostgreSQL). Every claim and every mark checks that the relay's owner token and
generation are still the row's, so a relay that lost a shard can neither claim nor mark for it, even
before it notices the loss. ``transactional_id`` is the owner's Kafka transactional id in exactly-once
mode: the next owner fences it before producing; ``settled_at`` (exactly-once mode) is the owner's
time from which unmarked records of the shard may exist in Kafka, so the next owner's reconciliation
reads only from there. Small (one row per shard) and written only when a
shard changes hands.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

TABLE = "payment_events_shard_leases"


def upgrade() -> None:
    """The lease table (no index besides the primary key: at most one row per shard)."""
    op.create_table(
        TABLE,
        sa.Column("namespace", sa.Integer, nullable=False),
        sa.Column("shard", sa.SmallInteger, nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("transactional_id", sa.String(249), nullable=True),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("namespace", "shard", name="pk_payment_events_shard_leases"),
    )


def downgrade() -> None:
    """Drop the lease table (relays of revision 0002 do not fence)."""
    op.drop_table(TABLE)
