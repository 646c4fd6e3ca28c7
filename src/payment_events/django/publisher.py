"""``DjangoOutboxPublisher``: write events into the outbox through Django's own database connection.

The insert runs on ``django.db.connections[alias]`` inside the caller's ``transaction.atomic()`` block,
so the payment and its event commit or roll back together. Publishing outside an atomic block is
refused: in Django's autocommit mode the event would commit on its own, before (or without) the
payment. On PostgreSQL the statement also calls ``pg_notify`` (delivered on commit), like
:class:`~payment_events.outbox.publisher.OutboxPublisher`. SQLAlchemy is not imported.

The SQL uses Django's cursor placeholders (``%s``, which Django maps to each backend's style); the
values are those every outbox writer uses (:func:`payment_events.outbox.inserts.outbox_rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from payment_events.django.conf import DjangoSettings, load
from payment_events.errors import MigrationRequiredError, StoreError
from payment_events.events.publisher import PublishMethodsMixin
from payment_events.kafka.topics import TopicRouter
from payment_events.outbox.inserts import (
    INSERT_COLUMNS,
    KEY_LOCK_NAMESPACE,
    key_lock_id,
    outbox_rows,
    sqlite_text,
)
from payment_events.outbox.ports import utc_now
from payment_events.tracing import with_current_trace

if TYPE_CHECKING:
    from payment_events.events import PaymentEvent
    from payment_events.events.codec import EncodedEvent

__all__ = ["DjangoOutboxPublisher"]

_TABLE = "payment_events_outbox"
_COLUMNS = ", ".join(f'"{c}"' for c in INSERT_COLUMNS)
# Explicit casts on PostgreSQL: with server-side binding an untyped parameter in INSERT ... SELECT would
# be text, which PostgreSQL does not cast to bytea or timestamptz by itself.
_PG_CASTS = (
    "varchar", "varchar", "integer", "varchar", "bytea", "bytea", "text", "smallint",
    "timestamptz", "timestamptz",
)
_PG_ROW = "(" + ", ".join(f"%s::{cast}" for cast in _PG_CASTS) + ")"
_PLAIN_ROW = "(" + ", ".join(["%s"] * len(INSERT_COLUMNS)) + ")"
_PG_INSERT_AND_NOTIFY = (
    f"INSERT INTO {_TABLE} ({_COLUMNS}) SELECT "
    + ", ".join(f"%s::{cast}" for cast in _PG_CASTS)
    + " FROM (SELECT pg_notify(%s, '')) AS n"
)
_MAX_ROWS_PER_STATEMENT = 500
# The key's commit-order lock (see payment_events.outbox.publisher), every key in a fixed order.
_PG_LOCK_KEYS = "SELECT count(pg_advisory_xact_lock(%s, k)) FROM unnest(%s::integer[]) AS k"



class DjangoOutboxPublisher(PublishMethodsMixin):
    """Publishes events into the outbox of Django database ``using`` (default: ``PAYMENT_EVENTS["DATABASE"]``,
    else ``"default"``), in the current ``transaction.atomic()`` block; implements
    :class:`~payment_events.events.publisher.PaymentEventPublisher`.

    Errors: no open atomic block raises :class:`~payment_events.errors.StoreError`; a missing table
    :class:`~payment_events.errors.MigrationRequiredError` (run ``manage.py migrate payment_events``);
    a second event with the same ``eventId`` :class:`~payment_events.errors.StoreError`. Other database
    errors are re-raised unchanged: they belong to the caller's transaction.
    """

    def __init__(
        self,
        using: str | None = None,
        *,
        settings: DjangoSettings | None = None,
        clock: Callable[[], datetime] = utc_now,
        encoder: Callable[[PaymentEvent], EncodedEvent] | None = None,
    ) -> None:
        self._settings = settings or load()
        self._using = using or self._settings.database
        self._router = TopicRouter(self._settings.topic, dict(self._settings.topic_routes))
        self._clock = clock
        if encoder is None:
            from payment_events.events.codec import encode

            encoder = encode
        self._encode = encoder

    def publish(self, event: PaymentEvent) -> None:
        """Insert ``event`` into the outbox in the caller's atomic block (no commit)."""
        self.publish_encoded((self._encode(with_current_trace(event)),))

    def publish_many(self, events: Iterable[PaymentEvent]) -> None:
        """Insert several events in the caller's atomic block, in the given order."""
        self.publish_encoded([self._encode(with_current_trace(event)) for event in events])

    def publish_encoded(self, encoded: Sequence[EncodedEvent]) -> None:
        """Insert already encoded events."""
        if not encoded:
            return
        from django.db import DatabaseError, connections

        connection = connections[self._using]
        if not connection.in_atomic_block:
            raise StoreError(
                "DjangoOutboxPublisher publishes only inside transaction.atomic(): in autocommit mode the "
                "event would commit apart from the payment; wrap the payment and the publish in one block"
            )
        vendor = connection.vendor
        if vendor not in ("postgresql", "sqlite"):
            raise StoreError(f"the outbox supports PostgreSQL and SQLite, not {vendor}")
        now = self._clock()
        stamp: datetime | str = now.astimezone(UTC) if vendor == "postgresql" else sqlite_text(now)
        rows = [
            (r.event_id, r.event_type, r.schema_version, r.topic, r.key, r.payload, r.headers, r.shard,
             stamp, stamp)
            for r in outbox_rows(encoded, self._router.topic_for, self._settings.shard_count)
        ]
        notify = self._settings.notify and vendor == "postgresql"
        row_sql = _PG_ROW if vendor == "postgresql" else _PLAIN_ROW
        try:
            with connection.cursor() as cursor:
                if vendor == "postgresql":
                    # Per key, id order must be commit order: a second writer of a key waits here for
                    # the first one's commit (the same lock the SQLAlchemy publishers take).
                    keys = sorted({key_lock_id(item.key) for item in encoded})
                    cursor.execute(_PG_LOCK_KEYS, [KEY_LOCK_NAMESPACE, keys])
                if notify and len(rows) == 1:
                    cursor.execute(_PG_INSERT_AND_NOTIFY, [*rows[0], self._settings.notify_channel])
                    return
                for start in range(0, len(rows), _MAX_ROWS_PER_STATEMENT):
                    chunk = rows[start : start + _MAX_ROWS_PER_STATEMENT]
                    sql = f"INSERT INTO {_TABLE} ({_COLUMNS}) VALUES " + ", ".join([row_sql] * len(chunk))
                    cursor.execute(sql, [value for row in chunk for value in row])
                if notify:
                    cursor.execute("SELECT pg_notify(%s, '')", [self._settings.notify_channel])
        except DatabaseError as exc:
            ours = _translate(exc)
            if ours is None:
                raise
            raise ours from exc


def _translate(exc: Exception) -> Exception | None:
    """Our error for a failed insert, or ``None`` to re-raise Django's error unchanged.

    Django wraps the driver's error (its ``__cause__``): psycopg carries a SQLSTATE, sqlite3 a message.
    """
    driver: Any = exc.__cause__ or exc
    state = getattr(driver, "sqlstate", None)
    text = str(driver).lower()
    if state in ("42P01", "42703") or "no such table" in text or "has no column named" in text:
        return MigrationRequiredError(
            "the outbox table does not exist: run `python manage.py migrate payment_events` "
            "(or `payment-events db upgrade`)"
        )
    if state == "23505" or "unique constraint failed" in text:
        return StoreError("an event with this eventId is already in the outbox; publish each event once")
    return None
