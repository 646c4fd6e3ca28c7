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

Commit order per key (PostgreSQL): the relay publishes a key's rows in outbox id order, and an id is
taken when the row is inserted, not when its transaction commits. So the insert first takes a
transaction-scoped advisory lock on the key (``pg_advisory_xact_lock(KEY_LOCK_NAMESPACE, hash(key))``,
in the same statement for one event, one extra statement for several keys). A second writer of the key
waits at its insert until the first one commits or rolls back, and only then takes its id: for every
key, id order is commit order. The rule's limits: writers of one key serialise from their outbox
insert to their commit (put the publish late in the transaction to keep that short); two transactions
that publish the same two keys in opposite orders across separate ``publish`` calls can deadlock
(PostgreSQL aborts one; ``publish_many`` locks its keys in a fixed order). SQLite has one writer at a
time, so ids are in commit order there anyway.
The lock's ids live in :mod:`payment_events.outbox.inserts`, so the Django publisher takes the same one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import DateTime, Integer, String, bindparam, func, insert, literal_column, select, true
from sqlalchemy.dialects.postgresql import ARRAY
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
    KEY_LOCK_NAMESPACE,
    NOTIFY_CHANNEL,
    key_lock_id,
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
_STAMPS = ("next_attempt_at", "created_at")


_LOCK_NS = bindparam("lock_ns", type_=Integer())
_LOCK_KEY = bindparam("lock_key", type_=Integer())
# Several keys (publish_many): every key's lock in one statement before the insert, in a fixed order
# (the array is sorted) so two multi-key writers cannot deadlock on each other's keys.
_KEYS = func.unnest(bindparam("lock_keys", type_=ARRAY(Integer()))).table_valued("k").render_derived("keys")
_LOCK_KEYS = select(func.count(func.pg_advisory_xact_lock(_LOCK_NS, _KEYS.c.k))).select_from(_KEYS)


@lru_cache(maxsize=16)
def _one_row_statements(dialect: str, lock: bool = False) -> tuple[Executable, Executable]:
    """(INSERT one row, INSERT one row and pg_notify in one round trip) for ``dialect``; parameters are
    named ``p_<column>``. Timestamps: aware UTC datetimes on PostgreSQL, :func:`sqlite_text` on SQLite.
    With ``lock`` (PostgreSQL) both take the key's commit-order lock in their ``FROM`` subquery, so the
    row (and its id) is produced only once the lock is held: still one round trip."""
    stamp: Any = String() if dialect == "sqlite" else DateTime(timezone=True)
    params = [
        bindparam(f"p_{name}", type_=stamp if name in _STAMPS else outbox_table.c[name].type)
        for name in INSERT_COLUMNS
    ]
    notify = func.pg_notify(_CHANNEL, literal_column("''"))
    lock_call = func.pg_advisory_xact_lock(_LOCK_NS, _LOCK_KEY)

    def insert_from(*calls: Any) -> Executable:
        # INSERT ... SELECT <params> FROM (SELECT pg_advisory_xact_lock(...), pg_notify(...)) n
        source = select(*params).select_from(select(*calls).subquery("n"))
        return insert(outbox_table).from_select(list(INSERT_COLUMNS), source).inline()

    if lock:
        return insert_from(lock_call), insert_from(lock_call, notify)
    insert_one = insert(outbox_table).values(dict(zip(INSERT_COLUMNS, params, strict=True))).inline()
    return insert_one, insert_from(notify)

_ROW_ARRAYS = ("event_id", "event_type", "schema_version", "topic", "key", "payload", "headers", "shard")
"""The columns a multi-row insert sends as one array each (the two timestamps are one value for all)."""


@lru_cache(maxsize=8)
def _many_rows_statement(lock: bool, notify: bool) -> Executable:
    """PostgreSQL: insert any number of rows with ONE statement of fixed text (so it is compiled once,
    prepared by the driver, and sent in one round trip), with the keys' commit-order locks and the
    notification in the same statement.

    ``INSERT ... SELECT <columns> FROM unnest(<one array per column>) WITH ORDINALITY AS r
    CROSS JOIN (SELECT <the sorted keys' locks>, pg_notify(...)) AS n ORDER BY r.ordinality``: the sort
    takes in every joined row, so every lock is held before the first row gets its id, and the ids follow
    the events' order. It replaced a lock statement, a multi-row ``VALUES`` insert rebuilt for every
    publish, and a notify statement (three round trips; ~5 ms of the writer's CPU for ten events).
    """
    arrays = [bindparam(f"a_{name}", type_=ARRAY(outbox_table.c[name].type)) for name in _ROW_ARRAYS]
    rows = (
        func.unnest(*arrays)
        .table_valued(*_ROW_ARRAYS, with_ordinality="ordinality")
        .render_derived("r")
    )
    stamp = bindparam("p_stamp", type_=DateTime(timezone=True))
    calls: list[Any] = []
    if lock:
        calls.append(_LOCK_KEYS.scalar_subquery().label("locked"))
    if notify:
        calls.append(func.pg_notify(_CHANNEL, literal_column("''")).label("notified"))
    source = select(*(rows.c[name] for name in _ROW_ARRAYS), stamp, stamp)
    if calls:
        source = source.select_from(rows.join(select(*calls).subquery("n"), true()))
    source = source.order_by(rows.c.ordinality)
    return insert(outbox_table).from_select([*_ROW_ARRAYS, *_STAMPS], source).inline()


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
        key_order: bool = True,
    ) -> None:
        self._route = resolve_router(router)
        self._key_order = key_order
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
        lock = self._key_order and dialect == "postgresql"
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
            insert_one, insert_and_notify = _one_row_statements(dialect, lock)
            if lock:
                parameters = {**parameters, "lock_ns": KEY_LOCK_NAMESPACE, "lock_key": key_lock_id(row.key)}
            if notify:
                return [(insert_and_notify, {**parameters, "notify_channel": self._channel})]
            return [(insert_one, parameters)]
        if dialect == "postgresql":
            many: dict[str, Any] = {f"a_{name}": [getattr(row, name) for row in rows] for name in _ROW_ARRAYS}
            many["p_stamp"] = now.astimezone(UTC)
            if lock:
                many["lock_ns"] = KEY_LOCK_NAMESPACE
                many["lock_keys"] = sorted({key_lock_id(row.key) for row in rows})
            if notify:
                many["notify_channel"] = self._channel
            return [(_many_rows_statement(lock, notify), many)]
        values = [  # many rows (SQLite: one writer at a time, so no key locks; no NOTIFY)
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
        return [
            (insert(outbox_table).values(values[start : start + _MAX_ROWS_PER_STATEMENT]).inline(), {})
            for start in range(0, len(values), _MAX_ROWS_PER_STATEMENT)
        ]

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
    docstring for why). ``key_order`` (PostgreSQL; default on) makes one key's writers serialise from
    their insert to their commit, so per key the outbox id order is the commit order (see the module
    docstring). ``clock`` and ``encoder`` exist for tests and benchmarks.

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
        key_order: bool = True,
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
            key_order=key_order,
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
