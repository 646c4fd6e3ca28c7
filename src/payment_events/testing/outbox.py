"""In-memory fakes of the outbox for your own tests: a store and a publisher, no database and no broker.

``InMemoryOutboxStore`` implements :class:`~payment_events.outbox.ports.OutboxStore` with the same
semantics as the SQL store (the same contract test suite runs against both): claim by state in id
order, keys whose head waits for a retry skipped, published rows final, dead rows replayable.
Transactions are simulated: rows written in ``store.transaction()`` get their id at once but are
visible to ``claim`` only when the block exits without an exception (a rollback leaves nothing).

``InMemoryPublisher`` records published events (``.events``) and, given a store, also writes them into
it like :class:`~payment_events.outbox.publisher.OutboxPublisher` does.

These fakes are for *your* unit tests. They are never a substitute for PostgreSQL or Kafka in
payment-events' own integration tests.

Why this module is longer than the house's 400 lines: ``InMemoryOutboxStore`` is one class that mirrors
the whole store port (claims, marks, backlog, purge, dead-letter admin, lease generations); the contract
suite holds it to the SQL store line by line.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from payment_events.errors import LeaseLostError
from payment_events.events.publisher import PublishMethodsMixin
from payment_events.outbox.headers import parse_headers
from payment_events.outbox.inserts import DEFAULT_TOPIC
from payment_events.outbox.ports import (
    DEAD,
    PENDING,
    PUBLISHED,
    BacklogStats,
    Dead,
    DeadLetter,
    Fence,
    OutboxRecord,
    OutboxRow,
    PendingEvent,
    PreviousOwner,
    Published,
    Retry,
    Takeover,
    row_defect,
    truncate_error,
    utc_now,
)
from payment_events.outbox.sharding import DEFAULT_SHARD_COUNT, shard_for, validate_shard_count

if TYPE_CHECKING:
    from payment_events.events import PaymentEvent
    from payment_events.events.codec import EncodedEvent

__all__ = ["InMemoryOutboxStore", "InMemoryPublisher", "InMemoryTransaction"]





class InMemoryTransaction:
    """Rows written in one simulated transaction; visible to the store only after commit."""

    def __init__(self, store: InMemoryOutboxStore) -> None:
        self._store = store
        self._rows: list[OutboxRow] = []
        self._header_problems: dict[int, str] = {}
        self.done = False

    def add(self, encoded: EncodedEvent, topic: str = DEFAULT_TOPIC) -> int:
        """Write one encoded event; return its outbox id (assigned now, like a database sequence)."""
        return self.add_raw(
            key=encoded.key,
            payload=encoded.value,
            event_id=encoded.event_id,
            event_type=encoded.event_type,
            schema_version=encoded.schema_version,
            headers=encoded.headers,
            topic=topic,
        )

    def add_raw(
        self,
        key: bytes,
        payload: bytes = b"{}",
        *,
        event_id: str | None = None,
        event_type: str = "PaymentSucceeded",
        schema_version: int = 1,
        headers: tuple[tuple[str, bytes], ...] = (),
        topic: str = DEFAULT_TOPIC,
        headers_json: str | None = None,
    ) -> int:
        """Write one row from its parts; return its outbox id.

        ``headers_json`` stands for the SQL stores' ``headers`` column written by hand: when given it
        replaces ``headers``, parsed the way the SQL stores parse the column (so a malformed text gives a
        row the relay dead-letters, as on a real database).
        """
        if self.done:
            raise RuntimeError("this in-memory transaction already ended")
        problem: str | None = None
        if headers_json is not None:
            headers, problem = parse_headers(headers_json)
        now = self._store.clock()
        row = OutboxRow(
            id=self._store._next_id(),
            event_id=event_id or str(uuid.uuid4()),
            event_type=event_type,
            schema_version=schema_version,
            topic=topic,
            key=key,
            payload=payload,
            headers=headers,
            shard=shard_for(key, self._store.shard_count),
            state=PENDING,
            attempts=0,
            next_attempt_at=now,
            last_error=None,
            created_at=now,
            published_at=None,
            kafka_partition=None,
            kafka_offset=None,
        )
        self._rows.append(row)
        if problem is not None:
            self._header_problems[row.id] = problem
        return row.id

    def commit(self) -> None:
        """Make the rows visible (all at once); a duplicate ``event_id`` fails the whole commit."""
        self.done = True
        self._store._commit(self._rows, self._header_problems)

    def rollback(self) -> None:
        """Discard the rows (their ids are never reused, as with a database sequence)."""
        self.done = True
        self._rows = []
        self._header_problems = {}


@dataclass
class _Counter:
    value: int = 0


class InMemoryOutboxStore:
    """The outbox store port in memory, thread-safe; see the module docstring."""

    def __init__(
        self, shard_count: int = DEFAULT_SHARD_COUNT, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.shard_count = validate_shard_count(shard_count)
        self.clock = clock
        self._lock = threading.Lock()
        self._ids = _Counter()
        self._rows: dict[int, OutboxRow] = {}
        self._leases: dict[tuple[int, int], tuple[str | None, int, str | None]] = {}
        """(namespace, shard) -> (owner, generation, transactional id): the lease table."""
        self._settled: dict[tuple[int, int], datetime] = {}
        self._header_problems: dict[int, str] = {}
        """Rows whose ``headers_json`` could not be parsed, by id (what is wrong with it)."""

    # --------------------------------------------------------------------------------- writing
    @contextmanager
    def transaction(self) -> Iterator[InMemoryTransaction]:
        """A simulated transaction: committed when the block exits normally, rolled back on an exception."""
        tx = InMemoryTransaction(self)
        try:
            yield tx
        except BaseException:
            tx.rollback()
            raise
        if not tx.done:
            tx.commit()

    def begin(self) -> InMemoryTransaction:
        """An open simulated transaction; call ``commit()`` or ``rollback()`` yourself."""
        return InMemoryTransaction(self)

    def add(self, encoded: EncodedEvent, topic: str = DEFAULT_TOPIC) -> int:
        """Write and commit one encoded event; return its outbox id."""
        with self.transaction() as tx:
            return tx.add(encoded, topic)

    def _next_id(self) -> int:
        with self._lock:
            self._ids.value += 1
            return self._ids.value

    def _commit(self, rows: Sequence[OutboxRow], header_problems: dict[int, str] | None = None) -> None:
        with self._lock:
            known = {r.event_id for r in self._rows.values()}
            batch = [r.event_id for r in rows]
            if len(set(batch)) != len(batch) or known.intersection(batch):
                raise ValueError("an event with this eventId is already in the outbox")
            for row in rows:
                self._rows[row.id] = row
            self._header_problems.update(header_problems or {})

    # ------------------------------------------------------------------------------ the port
    def claim(self, shards: Collection[int] | None, limit: int, now: datetime) -> list[OutboxRecord]:
        """Pending, due rows in ``shards`` in id order, skipping keys whose head waits for a retry."""
        return self.claim_excluding(shards, limit, now, ())

    def claim_excluding(
        self, shards: Collection[int] | None, limit: int, now: datetime, busy: Collection[int]
    ) -> list[OutboxRecord]:
        """:meth:`claim` as if the rows with ids in ``busy`` did not exist (the relay's overlapped marks)."""
        if limit <= 0:
            return []
        skip = set(busy)
        owned = None if shards is None else set(shards)
        out: list[OutboxRecord] = []
        blocked: set[bytes] = set()
        with self._lock:
            for row in sorted(self._rows.values(), key=lambda r: r.id):
                if row.state != PENDING or row.id in skip:
                    continue
                in_backoff = row.attempts > 0 and row.next_attempt_at > now
                if row.key in blocked:
                    continue
                if in_backoff:
                    blocked.add(row.key)
                    continue
                if owned is not None and row.shard not in owned:
                    continue
                out.append(_record(row, self._header_problems.get(row.id)))
                if len(out) >= limit:
                    break
        return out

    def resolve(self, published: Sequence[Published], retries: Sequence[Retry], dead: Sequence[Dead]) -> None:
        """Apply the outcomes atomically; a published row never changes again."""
        now = self.clock()
        with self._lock:
            self._apply(now, published, retries, dead, None)

    def _apply(
        self,
        now: datetime,
        published: Sequence[Published],
        retries: Sequence[Retry],
        dead: Sequence[Dead],
        held: set[int] | None,
    ) -> None:
        def rows_of(ids: Iterable[int]) -> Iterator[OutboxRow]:
            for row_id in ids:
                row = self._rows.get(row_id)
                if row is not None and (held is None or row.shard in held):
                    yield row

        by_id = {p.id: p for p in published}
        for row in rows_of(by_id):
            p = by_id[row.id]
            if row.state != PUBLISHED:
                self._rows[p.id] = replace(
                    row,
                    state=PUBLISHED,
                    published_at=now,
                    kafka_partition=p.partition,
                    kafka_offset=p.offset,
                )
        retry_by_id = {r.id: r for r in retries}
        for row in rows_of(retry_by_id):
            r = retry_by_id[row.id]
            if row.state == PENDING:
                self._rows[r.id] = replace(
                    row,
                    attempts=row.attempts + 1,
                    next_attempt_at=r.next_attempt_at,
                    last_error=truncate_error(r.error),
                )
        dead_by_id = {d.id: d for d in dead}
        for row in rows_of(dead_by_id):
            d = dead_by_id[row.id]
            if row.state == PENDING:
                self._rows[d.id] = replace(
                    row, state=DEAD, attempts=row.attempts + 1, last_error=truncate_error(d.reason)
                )

    # ------------------------------------------------------------------------------ fencing
    def take_shards(
        self, namespace: int, owner: str, shards: Collection[int], *, transactional_id: str | None = None
    ) -> Takeover:
        """Take ``shards`` for ``owner``: bump their generations (see ``outbox.fencing``)."""
        generations: dict[int, int] = {}
        previous: dict[int, PreviousOwner] = {}
        with self._lock:
            for shard in sorted(set(shards)):
                old = self._leases.get((namespace, shard))
                if old is not None:
                    previous[shard] = PreviousOwner(old[0], old[2], self._settled.get((namespace, shard)))
                generation = 1 if old is None else old[1] + 1
                self._leases[(namespace, shard)] = (owner, generation, transactional_id)
                generations[shard] = generation
        return Takeover(generations, previous)

    def release_shards(self, namespace: int, owner: str, shards: Collection[int]) -> None:
        """Clear ``owner`` from ``shards`` it holds."""
        with self._lock:
            for shard in shards:
                old = self._leases.get((namespace, shard))
                if old is not None and old[0] == owner:
                    self._leases[(namespace, shard)] = (None, old[1], old[2])

    def held_shards(self, fence: Fence) -> set[int]:
        """The shards of ``fence`` whose owner and generation still match."""
        with self._lock:
            return self._held(fence)

    def _held(self, fence: Fence) -> set[int]:
        held = set()
        for shard, generation in fence.generations.items():
            lease = self._leases.get((fence.namespace, shard))
            if lease is not None and lease[0] == fence.owner and lease[1] == generation:
                held.add(shard)
        return held

    def settle_shards(self, fence: Fence, shards: Collection[int], at: datetime) -> None:
        """Record the instant before which every record of ``shards`` is marked."""
        with self._lock:
            for shard in set(shards) & fence.shards:
                lease = self._leases.get((fence.namespace, shard))
                if lease is not None and lease[0] == fence.owner:
                    self._settled[(fence.namespace, shard)] = at

    def pending_events(self, fence: Fence) -> list[PendingEvent]:
        """Every pending row of the shards the fence still holds, in id order."""
        with self._lock:
            held = self._held(fence)
            return [
                PendingEvent(r.id, r.event_id, r.topic, r.created_at)
                for r in sorted(self._rows.values(), key=lambda r: r.id)
                if r.state == PENDING and r.shard in held
            ]

    def claim_fenced(
        self, fence: Fence, limit: int, now: datetime, busy: Collection[int] = ()
    ) -> list[OutboxRecord]:
        """:meth:`claim` over the shards the fence still holds."""
        held = self.held_shards(fence)
        return self.claim_excluding(held, limit, now, busy) if held else []

    def resolve_fenced(
        self, fence: Fence, published: Sequence[Published], retries: Sequence[Retry], dead: Sequence[Dead]
    ) -> None:
        """:meth:`resolve` for rows of shards the fence still holds; ``LeaseLostError`` if some were lost."""
        now = self.clock()
        with self._lock:
            held = self._held(fence)
            self._apply(now, published, retries, dead, held)
        lost = fence.shards - held
        if lost:
            raise LeaseLostError(f"{len(lost)} of this relay's shards were taken by another relay")

    def backlog(self, now: datetime) -> BacklogStats:
        """The same numbers the SQL store reports."""
        with self._lock:
            rows = list(self._rows.values())
        pending = [r for r in rows if r.state == PENDING]
        oldest = min(pending, key=lambda r: r.id).created_at if pending else None
        minute_ago = now - timedelta(minutes=1)
        return BacklogStats(
            pending=len(pending),
            in_retry=sum(1 for r in pending if r.attempts > 0 and r.next_attempt_at > now),
            dead=sum(1 for r in rows if r.state == DEAD),
            oldest_pending_age_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
            published_last_minute=sum(
                1
                for r in rows
                if r.state == PUBLISHED and r.published_at is not None and r.published_at >= minute_ago
            ),
        )

    def purge_published(self, older_than: datetime, batch_size: int) -> int:
        """Delete up to ``batch_size`` rows published before ``older_than``, oldest first."""
        with self._lock:
            victims = sorted(
                (r for r in self._rows.values() if r.state == PUBLISHED and r.published_at is not None
                 and r.published_at < older_than),
                key=lambda r: (r.published_at, r.id),
            )[: max(batch_size, 0)]
            for row in victims:
                del self._rows[row.id]
        return len(victims)

    # ------------------------------------------------------------------------- dead letters
    def list_dead(self, limit: int = 100, event_type: str | None = None) -> list[DeadLetter]:
        """Dead rows, oldest first."""
        with self._lock:
            dead = sorted(
                (r for r in self._rows.values() if r.state == DEAD and event_type in (None, r.event_type)),
                key=lambda r: r.id,
            )[: max(limit, 0)]
        return [
            DeadLetter(r.id, r.event_id, r.event_type, r.key, r.attempts, r.last_error, r.created_at)
            for r in dead
        ]

    def get(self, row_id: int) -> OutboxRow | None:
        """The row with this id, any state, or ``None``."""
        with self._lock:
            return self._rows.get(row_id)

    def replay(
        self, ids: Collection[int] | None = None, *, event_type: str | None = None, all_dead: bool = False
    ) -> int:
        """Move dead rows back to pending in place (``attempts = 0``, due now); return how many."""
        if sum([ids is not None, event_type is not None, all_dead]) != 1:
            raise ValueError("replay needs exactly one of: ids, event_type, all_dead=True")
        now = self.clock()
        wanted = None if ids is None else set(ids)
        moved = 0
        with self._lock:
            for row in list(self._rows.values()):
                if row.state != DEAD:
                    continue
                if wanted is not None and row.id not in wanted:
                    continue
                if event_type is not None and row.event_type != event_type:
                    continue
                self._rows[row.id] = replace(row, state=PENDING, attempts=0, next_attempt_at=now)
                moved += 1
        return moved

    @property
    def rows(self) -> list[OutboxRow]:
        """Every committed row, in id order (for assertions)."""
        with self._lock:
            return sorted(self._rows.values(), key=lambda r: r.id)


def _record(row: OutboxRow, headers_problem: str | None = None) -> OutboxRecord:
    return OutboxRecord(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        schema_version=row.schema_version,
        topic=row.topic,
        key=row.key,
        payload=row.payload,
        headers=row.headers,
        shard=row.shard,
        attempts=row.attempts,
        created_at=row.created_at,
        defect=row_defect(row.key, row.payload, headers_problem),
    )


class InMemoryPublisher(PublishMethodsMixin):
    """Records every published event in ``events``; with ``store``, also writes it there (committed).

    ``router`` is the same as for ``OutboxPublisher``: a callable or a ``TopicRouter``.
    """

    def __init__(
        self, store: InMemoryOutboxStore | None = None, *, router: Callable[[str], str] | object | None = None
    ) -> None:
        self.events: list[PaymentEvent] = []
        self.store = store
        topic_for = getattr(router, "topic_for", None)
        route = topic_for if callable(topic_for) else router
        self._route: Callable[[str], str] = route if callable(route) else (lambda _type: DEFAULT_TOPIC)

    def publish(self, event: PaymentEvent) -> None:
        """Record (and store) one event."""
        self.publish_many((event,))

    def publish_many(self, events: Iterable[PaymentEvent]) -> None:
        """Record (and store, in one simulated transaction) several events in order."""
        batch = list(events)
        if self.store is not None:
            from payment_events.events.codec import encode

            with self.store.transaction() as tx:
                for event in batch:
                    encoded = encode(event)
                    tx.add(encoded, self._route(encoded.event_type))
        self.events.extend(batch)
