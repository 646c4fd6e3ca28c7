"""``OutboxPublisher``: write events into the outbox inside the caller's own database transaction.

The payment change and its event commit or roll back together: if the caller rolls back, no event
exists; if it commits, the relay publishes the event to Kafka (at least once). Publishing here never
talks to the broker and never commits. The hot path is one ``INSERT`` whose SQL text is built once at
import, so the cost inside a payment transaction is one round trip and a few microseconds of Python.

On PostgreSQL the same statement also calls ``pg_notify('payment_events_outbox', '')``: PostgreSQL
delivers it only when the transaction commits and folds identical notifications of one transaction into
one, so the relay wakes right after the commit without any extra round trip. ``notify=False`` turns it
off (the relay still polls).

PostgreSQL serializes the commits of notifying transactions on one lock, which costs concurrent
writers throughput (measured here: about a third of the commit rate with 8 writer threads).
``notify_interval`` bounds that: with ``notify_interval=0.01`` at most one transaction per 10 ms and
per process notifies; the others commit without the lock and their rows are found by the relay's next
wake-up (usually the next notifying commit, at worst its poll interval).

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
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from itertools import chain
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from payment_events.errors import MigrationRequiredError, StoreError
from payment_events.events.publisher import PublishMethodsMixin
from payment_events.outbox.dberrors import is_missing_schema, is_unique_violation
from payment_events.outbox.headers import dump_headers
from payment_events.outbox.ports import utc_now
from payment_events.outbox.sharding import DEFAULT_SHARD_COUNT, shard_for, validate_shard_count
from payment_events.outbox.table import TABLE_NAME, sqlite_timestamp

if TYPE_CHECKING:
    from payment_events.events import PaymentEvent
    from payment_events.events.codec import EncodedEvent

__all__ = ["DEFAULT_TOPIC", "NOTIFY_CHANNEL", "OutboxPublisher"]

DEFAULT_TOPIC = "payment.events"
NOTIFY_CHANNEL = "payment_events_outbox"
"""The channel the relay LISTENs on (``RelayConfig.notify_channel``)."""

_INSERT_COLUMNS = (
    "event_id",
    "event_type",
    "schema_version",
    "topic",
    "key",
    "payload",
    "headers",
    "shard",
    "next_attempt_at",
    "created_at",
)
_MAX_ROWS_PER_STATEMENT = 500  # 5,000 parameters: far below PostgreSQL's and SQLite's limits

# The statements are plain SQL text built once, per dialect, and sent with exec_driver_sql: no
# compilation, no per-column type processing, but SQLAlchemy's events (tracing, echo) still see them.
_PREFIX = f"INSERT INTO {TABLE_NAME} ({', '.join(_INSERT_COLUMNS)}) "
_PG_ROW = "(" + ", ".join(["%s"] * len(_INSERT_COLUMNS)) + ")"
_SQLITE_ROW = "(" + ", ".join(["?"] * len(_INSERT_COLUMNS)) + ")"
# INSERT ... SELECT <params> FROM (SELECT pg_notify(...)) n: the insert and its wake-up in one round trip.
_PG_INSERT_AND_NOTIFY = (
    _PREFIX
    + "SELECT "
    + ", ".join(["%s"] * len(_INSERT_COLUMNS))
    + " FROM (SELECT pg_notify(%s, '')) AS n"
)
# The single-row hot path with the key's commit-order lock: the lock is taken in the FROM subquery, so
# the row (and its id from the sequence) is produced only once the lock is held; one round trip.
_PG_LOCK_INSERT_AND_NOTIFY = (
    _PREFIX
    + "SELECT "
    + ", ".join(["%s"] * len(_INSERT_COLUMNS))
    + " FROM (SELECT pg_advisory_xact_lock(%s, %s), pg_notify(%s, '')) AS n"
)
_PG_LOCK_INSERT = (
    _PREFIX
    + "SELECT "
    + ", ".join(["%s"] * len(_INSERT_COLUMNS))
    + " FROM (SELECT pg_advisory_xact_lock(%s, %s)) AS n"
)
# Several keys (publish_many): every key's lock in one statement before the insert, in a fixed order
# (the array is sorted) so two multi-key writers cannot deadlock on each other's keys.
_PG_LOCK_KEYS = "SELECT count(pg_advisory_xact_lock(%s, k)) FROM unnest(CAST(%s AS INTEGER[])) AS k"

KEY_LOCK_NAMESPACE = 0x7065_6B79  # "peky"; the relays' shard leases use another first key
"""The first key of the transaction-scoped advisory locks that serialise one key's writers."""


def key_lock_id(key: bytes) -> int:
    """The second key of ``key``'s commit-order lock: a stable signed 32-bit hash (a collision only
    makes two keys' writers wait for each other, it never breaks order)."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "big", signed=True)
_PG_NOTIFY = "SELECT pg_notify(%s, '')"


_last_notify = [float("-inf")]
"""Monotonic time of this process's last notifying publish (shared by all publishers)."""


@lru_cache(maxsize=64)
def _insert_sql(dialect: str, rows: int) -> str:
    row = _PG_ROW if dialect == "postgresql" else _SQLITE_ROW
    return _PREFIX + "VALUES " + ", ".join([row] * rows)



def _default_route(event_type: str) -> str:
    return DEFAULT_TOPIC


class OutboxPublisher(PublishMethodsMixin):
    """Writes events to ``payment_events_outbox`` in the transaction of ``conn`` (a ``Session`` or a
    ``Connection``); implements :class:`~payment_events.events.publisher.PaymentEventPublisher`.

    ``router`` maps an event type to its topic at write time: any callable ``(event_type) -> topic`` or
    a :class:`~payment_events.kafka.topics.TopicRouter`; default: every event to ``payment.events``.
    ``shard_count`` must equal the relays' (default 64; change it only with an empty outbox).
    ``notify`` wakes PostgreSQL relays on commit (ignored on SQLite); ``notify_interval`` (seconds, default
    0: every transaction) lets at most one publish per interval and per process notify (see the module
    docstring for why). ``key_order`` (PostgreSQL; default on) makes one key's writers serialise from
    their insert to their commit (a transaction-scoped advisory lock on the key, taken in the insert's own
    statement), so a key's outbox ids -- the order the relay publishes in -- are the order its
    transactions committed. ``clock`` and ``encoder`` exist for tests and benchmarks.

    Errors: a missing outbox table raises :class:`~payment_events.errors.MigrationRequiredError`; a second
    event with the same ``eventId`` raises :class:`~payment_events.errors.StoreError`. Any other database
    error (a serialization failure, a deadlock, a lost connection) is re-raised unchanged, because it
    belongs to the caller's transaction and the caller's retry logic.
    """

    def __init__(
        self,
        conn: Session | Connection,
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
        if not isinstance(conn, Session | Connection):
            raise TypeError("OutboxPublisher needs a SQLAlchemy Session or Connection")
        self._conn = conn
        topic_for = getattr(router, "topic_for", None)  # a TopicRouter
        route = topic_for if callable(topic_for) else router
        if route is None:
            route = _default_route
        if not callable(route):
            raise TypeError("router must be a callable (event_type) -> topic or a TopicRouter")
        self._route: Callable[[str], str] = route
        self._shard_count = validate_shard_count(shard_count)
        self._notify = notify
        self._channel = notify_channel
        if notify_interval < 0:
            raise ValueError("notify_interval must be >= 0 seconds")
        self._notify_interval = notify_interval
        self._clock = clock
        self._key_order = key_order
        if encoder is None:
            from payment_events.events.codec import encode

            encoder = encode
        self._encode = encoder

    def publish(self, event: PaymentEvent) -> None:
        """Insert ``event`` into the outbox in the caller's transaction (one statement; no commit)."""
        self.publish_encoded((self._encode(event),))

    def publish_many(self, events: Iterable[PaymentEvent]) -> None:
        """Insert several events in the caller's transaction with one multi-row insert, in the given
        order (their outbox ids, and so their per-key order, follow the iteration order)."""
        self.publish_encoded([self._encode(event) for event in events])

    def publish_encoded(self, encoded: Sequence[EncodedEvent]) -> None:
        """Insert already encoded events (what ``publish``/``publish_many`` do after encoding)."""
        if not encoded:
            return
        conn = self._conn.connection() if isinstance(self._conn, Session) else self._conn
        dialect = conn.dialect.name
        clock_now = self._clock()
        now: datetime | str = clock_now
        if dialect == "sqlite":
            now = sqlite_timestamp(clock_now)
        elif dialect != "postgresql":
            raise StoreError(f"the outbox supports PostgreSQL and SQLite, not {dialect}")
        route, count = self._route, self._shard_count
        rows = [
            (
                item.event_id,
                item.event_type,
                item.schema_version,
                route(item.event_type),
                item.key,
                item.value,
                dump_headers(item.headers),
                shard_for(item.key, count),
                now,
                now,
            )
            for item in encoded
        ]
        notify = self._notify and dialect == "postgresql" and self._notify_due()
        lock = self._key_order and dialect == "postgresql"
        try:
            if lock and self._locked_insert(conn, rows, encoded, notify=notify):
                return
            if len(rows) == 1 and notify:
                conn.exec_driver_sql(_PG_INSERT_AND_NOTIFY, (*rows[0], self._channel))
                return
            for start in range(0, len(rows), _MAX_ROWS_PER_STATEMENT):
                chunk = rows[start : start + _MAX_ROWS_PER_STATEMENT]
                conn.exec_driver_sql(_insert_sql(dialect, len(chunk)), tuple(chain.from_iterable(chunk)))
            if notify:
                conn.exec_driver_sql(_PG_NOTIFY, (self._channel,))
        except SQLAlchemyError as exc:
            if is_missing_schema(exc):
                raise MigrationRequiredError(
                    "the outbox table does not exist or is outdated: run `payment-events db upgrade`"
                ) from exc
            if is_unique_violation(exc):
                raise StoreError(
                    "an event with this eventId is already in the outbox; publish each event once"
                ) from exc
            raise

    def _locked_insert(
        self, conn: Connection, rows: list[tuple[Any, ...]], encoded: Sequence[EncodedEvent], *, notify: bool
    ) -> bool:
        """Take the commit-order lock of every key: one event is inserted in the same statement (True:
        done); for several, the locks are taken here in a fixed order and the caller inserts (False)."""
        if len(rows) == 1:
            lock_args = (KEY_LOCK_NAMESPACE, key_lock_id(encoded[0].key))
            if notify:
                conn.exec_driver_sql(_PG_LOCK_INSERT_AND_NOTIFY, (*rows[0], *lock_args, self._channel))
            else:
                conn.exec_driver_sql(_PG_LOCK_INSERT, (*rows[0], *lock_args))
            return True
        keys = sorted({key_lock_id(item.key) for item in encoded})
        conn.exec_driver_sql(_PG_LOCK_KEYS, (KEY_LOCK_NAMESPACE, keys))
        return False

    def _notify_due(self) -> bool:
        """Whether this publish should notify (always, unless ``notify_interval`` rate-limits it)."""
        if self._notify_interval <= 0:
            return True
        now = time.monotonic()
        if now - _last_notify[0] < self._notify_interval:
            return False
        _last_notify[0] = now  # a race between threads only costs one extra notification
        return True
