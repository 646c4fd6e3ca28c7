"""Create the payment_events_outbox table and its partial indexes.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

TABLE = "payment_events_outbox"


def _index(name: str, columns: list[str], condition: str) -> None:
    where = sa.text(condition)
    op.create_index(name, TABLE, columns, postgresql_where=where, sqlite_where=where)


def upgrade() -> None:
    """Create the table (identity id, event columns, delivery state, Kafka ledger) and its indexes."""
    op.create_table(
        TABLE,
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), primary_key=True
        ),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("headers", sa.Text, nullable=False),
        sa.Column("shard", sa.SmallInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default=sa.text("'pending'")),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.String(1000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("kafka_partition", sa.Integer, nullable=True),
        sa.Column("kafka_offset", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("event_id", name="uq_payment_events_outbox_event_id"),
        sa.CheckConstraint(
            "state IN ('pending', 'published', 'dead')", name="ck_payment_events_outbox_state"
        ),
        sqlite_autoincrement=True,
    )
    _index("ix_payment_events_outbox_pending", ["id"], "state = 'pending'")
    _index("ix_payment_events_outbox_retry", ["key", "id"], "state = 'pending' AND attempts > 0")
    _index("ix_payment_events_outbox_published", ["published_at"], "state = 'published'")
    _index("ix_payment_events_outbox_dead", ["id"], "state = 'dead'")


def downgrade() -> None:
    """Drop the table (and with it every event not yet published: only for development)."""
    op.drop_table(TABLE)
