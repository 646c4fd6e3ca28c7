"""``OutboxPublisher``: write events into the outbox inside the caller's own database transaction.

The payment change and its event commit or roll back together: if the caller rolls back, no event
exists; if it commits, the relay publishes the event to Kafka (at least once). Publishing here never
talks to the broker and never commits. The hot path is one ``INSERT``, built once with SQLAlchemy Core
at import (so every driver gets its own parameter style: psycopg, asyncpg, sqlite3), and the cost inside
a payment transaction is one round trip.

On PostgreSQL the same statement also calls ``pg_notify('payment_events_outbox', '')``: PostgreSQL
delivers it only when the transaction commits and folds identical notifications of one transaction into
one, so the relay wakes right after the commit without any extra round trip. ``notify=False`` turns it
off (the relay still polls).

PostgreSQL serializes the commits of notifying transactions on one lock, which costs concurrent
writers throughput (measured here: about a third of the commit rate with 8 writer threads).
``notify_interval`` bounds that: with ``notify_interval=0.01`` at most one transaction per 10 ms and
per process notifies; the others commit without the lock and their rows are found by the relay's next
wake-up (usually the next notifying commit, at worst its poll interval).

One implementation serves the synchronous and the asynchronous publisher
(:class:`~payment_events.outbox.aio.AsyncOutboxPublisher`): :class:`OutboxWriter` turns events into a
list of ``(statement, parameters)`` and translates errors; each publisher only runs the list with
``conn.execute`` or ``await conn.execute``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import DateTime, String, bindparam, func, insert, literal_column, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, scoped_session
from sqlalchemy.sql import Executable

from payment_events.errors import MigrationRequiredError, StoreError
from payment_events.events.publisher import PublishMethodsMixin
from payment_events.outbox.dberrors import is_missing_schema, is_unique_violation
from payment_events.outbox.inserts import (
    DEFAULT_TOPIC,
    INSERT_COLUMNS,
    NOTIFY_CHANNEL,
    outbox_rows,
    resolve_router,
    sqlite_text,
)
from payment_events.outbox.ports import utc_now
from payment_events.outbox.sharding import DEFAULT_SHARD_COUNT, validate_shard_count
from payment_events.outbox.table import outbox_table
from payment_events.tracing import with_current_trace

if TYPE_CHECKING:
    from payment_events.events import PaymentEvent
    from payment_events.events.codec import EncodedEvent

__all__ = ["DEFAULT_TOPIC", "NOTIFY_CHANNEL", "OutboxPublisher", "OutboxWriter", "Step"]

_MAX_ROWS_PER_STATEMENT = 500  # 5,000 parameters: far below PostgreSQL's and SQLite's limits

# Statements are built with Core, once per dialect: each dialect renders its own parameter style
# (%(name)s for psycopg, $n with casts for asyncpg, ? for sqlite3) and SQLAlchemy caches the compiled
# form. The one-row hot path binds the two timestamps already in their stored form (one conversion per
# publish instead of per column) and is `inline` (no primary-key fetch): about as cheap as plain SQL.
_CHANNEL = bindparam("notify_channel", type_=String())
_NOTIFY = select(func.pg_notify(_CHANNEL, literal_column("''")))
_STAMPS = ("next_attempt_at", "created_at")


@lru_cache(maxsize=8)
def _one_row_statements(dialect: str) -> tuple[Executable, Executable]:
    """(INSERT one row, INSERT one row and pg_notify in one round trip) for ``dialect``; parameters are
    named ``p_<column>``. Timestamps: aware UTC datetimes on PostgreSQL, :func:`sqlite_text` on SQLite."""
    stamp: Any = String() if dialect == "sqlite" else DateTime(timezone=True)
    params = [
        bindparam(f"p_{name}", type_=stamp if name in _STAMPS else outbox_table.c[name].type)
        for name in INSERT_COLUMNS
    ]
    insert_one = insert(outbox_table).values(dict(zip(INSERT_COLUMNS, params, strict=True))).inline()
    # INSERT ... SELECT <params> FROM (SELECT pg_notify(...)) n
    insert_and_notify = (
        insert(outbox_table)
        .from_select(
            list(INSERT_COLUMNS),
            select(*params).select_from(select(func.pg_notify(_CHANNEL, literal_column("''"))).subquery("n")),
        )
        .inline()
    )
    return insert_one, insert_and_notify

Step = tuple[Executable, dict[str, Any] | list[dict[str, Any]]]
"""One statement of a publish and its parameters; a publisher runs each with ``execute``."""

_last_notify = [float("-inf")]
"""Monotonic time of this process's last notifying publish (shared by all publishers)."""




class OutboxWriter:
    """What the synchronous and the asynchronous outbox publishers share: settings, encoding, the
    statements of one publish, and the translation of its errors. Driver- and I/O-free."""

    def __init__(
        self,
        *,
        router: Callable[[str], str] | Any | None = None,
        shard_count: int = DEFAULT_SHARD_COUNT,
        notify: bool = True,
        notify_channel: str = NOTIFY_CHANNEL,
        notify_interval: float = 0.0,
        clock: Callable[[], datetime] = utc_now,
        encoder: Callable[[PaymentEvent], EncodedEvent] | None = None,
    ) -> None:
        self._route = resolve_router(router)
        self._shard_count = validate_shard_count(shard_count)
        self._notify = notify
        self._channel = notify_channel
        if notify_interval < 0:
            raise ValueError("notify_interval must be >= 0 seconds")
        self._notify_interval = notify_interval
        self._clock = clock
        if encoder is None:
            from payment_events.events.codec import encode

            encoder = encode
        self._encode = encoder

    def encode_one(self, event: PaymentEvent) -> EncodedEvent:
        """Encode ``event``; without a traceparent it gets the current OpenTelemetry span's, if any."""
        return self._encode(with_current_trace(event))

    def encode_all(self, events: Iterable[PaymentEvent]) -> list[EncodedEvent]:
        """Encode events like :meth:`encode_one` (validation errors surface here)."""
        return [self.encode_one(event) for event in events]

    def steps(self, encoded: Sequence[EncodedEvent], dialect: str) -> list[Step]:
        """The statements (with parameters) that insert ``encoded`` on ``dialect`` and, on PostgreSQL,
        notify the relay; empty for no events."""
        if not encoded:
            return []
        if dialect not in ("postgresql", "sqlite"):
            raise StoreError(f"the outbox supports PostgreSQL and SQLite, not {dialect}")
        now = self._clock()
        rows = outbox_rows(encoded, self._route, self._shard_count)
        notify = self._notify and dialect == "postgresql" and self._notify_due()
        if len(rows) == 1:
            row = rows[0]
            stamp: datetime | str = sqlite_text(now) if dialect == "sqlite" else now.astimezone(UTC)
            parameters = {
                "p_event_id": row.event_id,
                "p_event_type": row.event_type,
                "p_schema_version": row.schema_version,
                "p_topic": row.topic,
                "p_key": row.key,
                "p_payload": row.payload,
                "p_headers": row.headers,
                "p_shard": row.shard,
                "p_next_attempt_at": stamp,
                "p_created_at": stamp,
            }
            insert_one, insert_and_notify = _one_row_statements(dialect)
            if notify:
                return [(insert_and_notify, {**parameters, "notify_channel": self._channel})]
            return [(insert_one, parameters)]
        values = [  # many rows: the table's column types convert the values (UtcDateTime: aware UTC)
            {
                "event_id": row.event_id,
                "event_type": row.event_type,
                "schema_version": row.schema_version,
                "topic": row.topic,
                "key": row.key,
                "payload": row.payload,
                "headers": row.headers,
                "shard": row.shard,
                "next_attempt_at": now,
                "created_at": now,
            }
            for row in rows
        ]
        steps: list[Step] = [
            (insert(outbox_table).values(values[start : start + _MAX_ROWS_PER_STATEMENT]).inline(), {})
            for start in range(0, len(values), _MAX_ROWS_PER_STATEMENT)
        ]
        if notify:
            steps.append((_NOTIFY, {"notify_channel": self._channel}))
        return steps

    @staticmethod
    def translate(exc: SQLAlchemyError) -> Exception | None:
        """Our error for a failed publish, or ``None`` to re-raise the database error unchanged."""
        if is_missing_schema(exc):
            return MigrationRequiredError(
                "the outbox table does not exist or is outdated: run `payment-events db upgrade`"
            )
        if is_unique_violation(exc):
            return StoreError("an event with this eventId is already in the outbox; publish each event once")
        return None

    def _notify_due(self) -> bool:
        """Whether this publish should notify (always, unless ``notify_interval`` rate-limits it)."""
        if self._notify_interval <= 0:
            return True
        now = time.monotonic()
        if now - _last_notify[0] < self._notify_interval:
            return False
        _last_notify[0] = now  # a race between threads only costs one extra notification
        return True


def _wrong_connection(conn: object) -> TypeError:
    """A TypeError that says what to pass instead of ``conn``."""
    kind = type(conn).__name__
    hint = "pass the Session or Connection of the transaction that writes the payment"
    if kind in {"AsyncSession", "AsyncConnection", "async_scoped_session"}:
        hint = "this is async SQLAlchemy: use payment_events.AsyncOutboxPublisher(session) and await it"
    elif kind in {"Engine", "AsyncEngine"}:
        hint = "an engine has no transaction: pass the connection of `with engine.begin() as conn:`"
    elif type(conn).__module__.startswith("django."):
        hint = "this is Django: use payment_events.django.DjangoOutboxPublisher inside transaction.atomic()"
    return TypeError(f"OutboxPublisher needs a SQLAlchemy Session, scoped_session or Connection, not {kind}: "
                     f"{hint}")


class OutboxPublisher(OutboxWriter, PublishMethodsMixin):
    """Writes events to ``payment_events_outbox`` in the transaction of ``conn`` (a ``Session``, a
    ``scoped_session`` such as Flask-SQLAlchemy's ``db.session``, resolved at each publish, or a
    ``Connection``); implements :class:`~payment_events.events.publisher.PaymentEventPublisher`.

    ``router`` maps an event type to its topic at write time: any callable ``(event_type) -> topic`` or
    a :class:`~payment_events.kafka.topics.TopicRouter`; default: every event to ``payment.events``.
    ``shard_count`` must equal the relays' (default 64; change it only with an empty outbox).
    ``notify`` wakes PostgreSQL relays on commit (ignored on SQLite); ``notify_interval`` (seconds, default
    0: every transaction) lets at most one publish per interval and per process notify (see the module
    docstring for why). ``clock`` and ``encoder`` exist for tests and benchmarks.

    Errors: a missing outbox table raises :class:`~payment_events.errors.MigrationRequiredError`; a second
    event with the same ``eventId`` raises :class:`~payment_events.errors.StoreError`. Any other database
    error (a serialization failure, a deadlock, a lost connection) is re-raised unchanged, because it
    belongs to the caller's transaction and the caller's retry logic.
    """

    def __init__(
        self,
        conn: Session | scoped_session[Any] | Connection,
        *,
        router: Callable[[str], str] | Any | None = None,
        shard_count: int = DEFAULT_SHARD_COUNT,
        notify: bool = True,
        notify_channel: str = NOTIFY_CHANNEL,
        notify_interval: float = 0.0,
        clock: Callable[[], datetime] = utc_now,
        encoder: Callable[[PaymentEvent], EncodedEvent] | None = None,
    ) -> None:
        if not isinstance(conn, Session | Connection | scoped_session):
            raise _wrong_connection(conn)
        self._conn = conn
        super().__init__(
            router=router,
            shard_count=shard_count,
            notify=notify,
            notify_channel=notify_channel,
            notify_interval=notify_interval,
            clock=clock,
            encoder=encoder,
        )

    def publish(self, event: PaymentEvent) -> None:
        """Insert ``event`` into the outbox in the caller's transaction (one statement; no commit)."""
        self.publish_encoded((self.encode_one(event),))

    def publish_many(self, events: Iterable[PaymentEvent]) -> None:
        """Insert several events in the caller's transaction with one multi-row insert, in the given
        order (their outbox ids, and so their per-key order, follow the iteration order)."""
        self.publish_encoded(self.encode_all(events))

    def publish_encoded(self, encoded: Sequence[EncodedEvent]) -> None:
        """Insert already encoded events (what ``publish``/``publish_many`` do after encoding)."""
        if not encoded:
            return
        conn = self._conn
        if isinstance(conn, scoped_session):
            conn = conn()  # this thread's (this request's) session
        if isinstance(conn, Session):
            conn = conn.connection()
        try:
            for statement, parameters in self.steps(encoded, conn.dialect.name):
                conn.execute(statement, parameters)
        except SQLAlchemyError as exc:
            ours = self.translate(exc)
            if ours is None:
                raise
            raise ours from exc
