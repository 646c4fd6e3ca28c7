"""Rewrite the retry index's predicate so that the claim's per-row probe can only use that index.

The claim skips keys whose head waits for a retry with a correlated probe ``earlier.key = o.key AND
earlier.id < o.id`` per candidate row. With the predicate ``state = 'pending' AND attempts > 0`` that
probe could also be answered by the *pending* index (``id < o.id`` with a filter), and with statistics
taken while few rows were pending (a healthy outbox, just before a backlog) PostgreSQL picked it: one
scan of every earlier pending row per candidate, about 0.7 s per 2,000-row claim at 20,000 pending
instead of 4 ms. ``state <> 'published' AND state <> 'dead'`` means the same (the CHECK constraint
allows three states) but does not imply ``state = 'pending'``, so a probe written that way can use only
this index.

On PostgreSQL the index is rebuilt in the migration's transaction: writes to the outbox wait for the
build (a scan of the table; the index itself holds only rows in retry).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

TABLE = "payment_events_outbox"
INDEX = "ix_payment_events_outbox_retry"


def _retry_index(condition: str) -> None:
    op.drop_index(INDEX, table_name=TABLE)
    where = sa.text(condition)
    op.create_index(INDEX, TABLE, ["key", "id"], postgresql_where=where, sqlite_where=where)


def upgrade() -> None:
    """The retry index with a predicate the pending index cannot serve."""
    _retry_index("state <> 'published' AND state <> 'dead' AND attempts > 0")


def downgrade() -> None:
    """Back to revision 0001's predicate."""
    _retry_index("state = 'pending' AND attempts > 0")
