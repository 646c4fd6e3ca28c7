"""Turning claimed database rows into :class:`OutboxRecord` objects, the same way on every database."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from payment_events.outbox.headers import parse_headers
from payment_events.outbox.ports import OutboxRecord, row_defect
from payment_events.outbox.table import outbox_table

_o = outbox_table
RECORD_COLUMNS = (
    _o.c.id,
    _o.c.event_id,
    _o.c.event_type,
    _o.c.schema_version,
    _o.c.topic,
    _o.c.key,
    _o.c.payload,
    _o.c.headers,
    _o.c.shard,
    _o.c.attempts,
    _o.c.created_at,
)
"""The columns a claim selects, in the order :func:`records` unpacks them."""

RESOLVE_CHUNK = 5_000
"""Rows per mark statement: keeps every statement's parameters well under driver limits."""


def chunks(items: Sequence[Any], size: int = RESOLVE_CHUNK) -> Iterator[Sequence[Any]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def records(rows: Sequence[Any]) -> list[OutboxRecord]:
    """Claimed rows as records. Unpacked positionally: this runs for every row the relay publishes.

    A row that cannot be produced as stored (headers not valid JSON, an empty payload or key) becomes a
    record with a ``defect`` instead of an exception: the relay dead-letters it, and one bad row never
    blocks the claim of every other row.
    """
    out: list[OutboxRecord] = []
    append = out.append
    for row_id, event_id, event_type, version, topic, k, p, headers, shard, attempts, stamp in rows:
        created = stamp if stamp.tzinfo is UTC else as_utc(stamp)  # PostgreSQL answers in its session zone
        parsed, problem = parse_headers(headers)
        key = b"" if k is None else bytes(k)
        payload = b"" if p is None else bytes(p)
        append(
            OutboxRecord(
                row_id,
                event_id,
                event_type,
                version,
                topic,
                key,
                payload,
                parsed,
                shard,
                attempts,
                created,
                row_defect(key, payload, problem),
            )
        )
    return out


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (a naive one is taken to be UTC already)."""
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
