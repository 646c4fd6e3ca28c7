"""Reading the outbox ledger (the rows the audit reconciles) in one snapshot."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from payment_events.audit.reconcile import LedgerRow


def engine_url(database_url: str) -> str:
    """Accept plain ``postgresql://`` URLs: this project's driver is psycopg 3. An async driver URL raises
    ``ConfigurationError``."""
    from payment_events.dburl import refuse_async_url

    refuse_async_url(database_url)
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix):]
    return database_url


def read_ledger(
    conn: Any, topics: Sequence[str], since: datetime | None, until: datetime | None
) -> Iterator[LedgerRow]:
    """Stream the outbox rows of ``topics`` (created in ``[since, until)`` if given), in one snapshot."""
    import sqlalchemy as sa

    from payment_events.outbox.table import outbox_table as t

    # Timestamps are not selected: converting two datetimes per row would double the cost of the read.
    query = sa.select(t.c.id, t.c.event_id, t.c.event_type, t.c.topic, t.c.key, t.c.state,
                      t.c.kafka_partition, t.c.kafka_offset)
    query = query.where(t.c.topic.in_(list(topics)))
    if since is not None:
        query = query.where(t.c.created_at >= since)
    if until is not None:
        query = query.where(t.c.created_at < until)
    for r in conn.execution_options(yield_per=20_000).execute(query):
        key = r[4] if type(r[4]) is bytes else bytes(r[4])  # memoryview on some drivers
        yield LedgerRow(r[0], r[1], r[2], r[3], key, r[5], r[6], r[7])
