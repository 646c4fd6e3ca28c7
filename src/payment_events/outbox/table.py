"""The ``payment_events_outbox`` table (SQLAlchemy Core), shared by the publisher, the store and migrations.

One row per event. ``id`` is the insertion order and the per-key order. ``state`` moves
``pending -> published`` (with the Kafka partition and offset: a ledger of what the broker took) or
``pending -> dead``; a dead row can be replayed back to ``pending``; a published row never changes again.

Indexes are chosen for the relay's queries, and most are partial so that a fresh insert (the payment
transaction's cost) only touches the primary key, the ``event_id`` unique index and the pending index:

* ``ix_payment_events_outbox_pending`` ``(id) WHERE state = 'pending'``: the claim reads it in id order
  and stops after ``limit`` rows, touching only pending rows however many published rows the table keeps
  until retention purges them. (A ``(shard, id)`` index was measured and rejected: with many owned shards
  it cannot return one id order without sorting every pending row of those shards or merging one index
  scan per shard, and PostgreSQL plans neither reliably. With ``(id)``, ``k`` relay instances each read
  about ``k * limit`` index entries per claim, which is cheap for the handful of instances one runs.)
* ``ix_payment_events_outbox_retry`` ``(key, id) WHERE state <> 'published' AND state <> 'dead' AND
  attempts > 0``: pending rows that failed at least once; the claim uses it to skip keys whose head
  waits for a retry. Tiny, and empty in a healthy system; a fresh insert (``attempts = 0``) never touches
  it. The predicate means ``state = 'pending'`` but is written so that it does not *imply* it: a query
  written the same way cannot be answered by the pending index, which PostgreSQL otherwise picked for
  the claim's per-row probe under statistics taken while few rows were pending (one scan of every
  earlier pending row per candidate; revision 0002).
* ``ix_payment_events_outbox_published`` ``(published_at) WHERE state = 'published'``: retention purge and
  the "published in the last minute" count.
* ``ix_payment_events_outbox_dead`` ``(id) WHERE state = 'dead'``: dead-letter listing and counts.

``attempts`` counts *failed* attempts (retries and the final failure of a dead row); publishing does not
increment it. Most rows therefore keep ``attempts = 0`` for life, which keeps the planner's estimate for
the retry index honest.

This module changes only together with a new migration in ``payment_events.outbox.migrations``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.types import TypeDecorator

from payment_events.outbox.ports import LAST_ERROR_MAX_CHARS

TABLE_NAME = "payment_events_outbox"


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every engine.

    PostgreSQL stores ``timestamptz``. SQLite has no timestamp type: values are stored as fixed-width UTC
    text, so comparing them as text is comparing instants. Naive datetimes are refused on the way in
    (they are ambiguous) and every value comes back aware, in UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC (and drop tzinfo on SQLite, whose text form has none)."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("outbox timestamps must be timezone-aware (use datetime.now(UTC))")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def sqlite_timestamp(value: datetime) -> str:
    """``value`` as the fixed-width UTC text SQLite stores (exactly what :class:`UtcDateTime` writes)."""
    from payment_events.outbox.inserts import sqlite_text

    return sqlite_text(value)


metadata = MetaData()

outbox_table = Table(
    TABLE_NAME,
    metadata,
    # SQLite needs exactly INTEGER for a rowid alias; AUTOINCREMENT keeps ids from ever being reused.
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), Identity(), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("topic", String(249), nullable=False),
    Column("key", LargeBinary, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),
    Column("shard", SmallInteger, nullable=False),
    Column("state", String(16), nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_error", String(LAST_ERROR_MAX_CHARS), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("published_at", UtcDateTime, nullable=True),
    Column("kafka_partition", Integer, nullable=True),
    Column("kafka_offset", BigInteger, nullable=True),
    UniqueConstraint("event_id", name="uq_payment_events_outbox_event_id"),
    CheckConstraint("state IN ('pending', 'published', 'dead')", name="ck_payment_events_outbox_state"),
    sqlite_autoincrement=True,
)

Index(
    "ix_payment_events_outbox_pending",
    outbox_table.c.id,
    postgresql_where=text("state = 'pending'"),
    sqlite_where=text("state = 'pending'"),
)


def retry_index_predicate(alias: str = "") -> str:
    """The retry index's predicate, for the table or an alias of it: pending rows that failed at least
    once, written so that it does not imply ``state = 'pending'`` (see the module docstring). Every query
    meant for the retry index uses this text. (Migration 0002 keeps its own copy: a migration is history
    and must not change when this module does.)"""
    prefix = f"{alias}." if alias else ""
    return f"{prefix}state <> 'published' AND {prefix}state <> 'dead' AND {prefix}attempts > 0"


RETRY_INDEX_PREDICATE = retry_index_predicate()

Index(
    "ix_payment_events_outbox_retry",
    outbox_table.c.key,
    outbox_table.c.id,
    postgresql_where=text(RETRY_INDEX_PREDICATE),
    sqlite_where=text(RETRY_INDEX_PREDICATE),
)
Index(
    "ix_payment_events_outbox_published",
    outbox_table.c.published_at,
    postgresql_where=text("state = 'published'"),
    sqlite_where=text("state = 'published'"),
)
Index(
    "ix_payment_events_outbox_dead",
    outbox_table.c.id,
    postgresql_where=text("state = 'dead'"),
    sqlite_where=text("state = 'dead'"),
)

# Predicates as SQL literals, never bound parameters: PostgreSQL can only use a partial index when it
# can prove the query implies the index's WHERE clause, which a generic (prepared) plan cannot do for
# ``state = $1``. psycopg prepares statements that run often, so every state test is rendered inline.
IS_PENDING = outbox_table.c.state == literal_column("'pending'")
IS_PUBLISHED = outbox_table.c.state == literal_column("'published'")
IS_DEAD = outbox_table.c.state == literal_column("'dead'")
IN_RETRY_INDEX = text(RETRY_INDEX_PREDICATE)
"""The retry index's predicate as an expression (pending rows that failed at least once)."""
NEVER_FAILED = outbox_table.c.attempts == literal_column("0")
