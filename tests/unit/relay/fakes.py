"""Tiny in-memory fakes of the outbox store, shard leases, producer and clock, for the relay's unit tests.

They follow the port contracts in ``payment_events.outbox.ports`` closely enough to drive the real
``Relay`` without servers; the integration tests run the same relay against PostgreSQL, SQLite and Kafka.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from payment_events.outbox.ports import (
    DEAD,
    PENDING,
    PUBLISHED,
    BacklogStats,
    Dead,
    OutboxRecord,
    Published,
    Retry,
)
from payment_events.relay.delivery import Delivered, DeliveryError, Outcome
from payment_events.relay.ports import Producible

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Row:
    """One outbox row with its mutable state."""

    record: OutboxRecord
    state: str = PENDING
    next_attempt_at: datetime = T0
    last_error: str | None = None
    partition: int | None = None
    offset: int | None = None
    published_at: datetime | None = None


@dataclass
class FakeStore:
    """The outbox store port over a dict, with the claim rule of the real one."""

    clock: FakeClock
    rows: dict[int, Row] = field(default_factory=dict)
    resolve_calls: int = 0
    fail_next_claim: bool = False

    next_id: int = 1

    def add(
        self, key: bytes, *, topic: str = "payment.events", shard: int = 0, payload: bytes = b"{}"
    ) -> int:
        row_id = self.next_id
        self.next_id += 1
        record = OutboxRecord(
            id=row_id,
            event_id=f"evt-{row_id}",
            event_type="PaymentSucceeded",
            schema_version=1,
            topic=topic,
            key=key,
            payload=payload,
            headers=(("ce_id", f"evt-{row_id}".encode()),),
            shard=shard,
            attempts=0,
            created_at=self.clock(),
        )
        self.rows[row_id] = Row(record, next_attempt_at=self.clock())
        return row_id

    def claim(self, shards: Collection[int] | None, limit: int, now: datetime) -> list[OutboxRecord]:
        if self.fail_next_claim:
            self.fail_next_claim = False
            raise RuntimeError("database went away")
        blocked: set[bytes] = set()
        out: list[OutboxRecord] = []
        for row_id in sorted(self.rows):
            row = self.rows[row_id]
            if row.state != PENDING or (shards is not None and row.record.shard not in shards):
                continue
            key = row.record.key
            if key in blocked:
                continue
            if row.next_attempt_at > now:
                blocked.add(key)  # the head of this key is in backoff: skip the whole key
                continue
            out.append(row.record)
            if len(out) >= limit:
                break
        return out

    def resolve(self, published: Sequence[Published], retries: Sequence[Retry], dead: Sequence[Dead]) -> None:
        self.resolve_calls += 1
        for p in published:
            row = self.rows[p.id]
            assert row.state == PENDING, f"row {p.id} resolved twice"
            row.state, row.partition, row.offset = PUBLISHED, p.partition, p.offset
            row.published_at = self.clock()
        for r in retries:
            row = self.rows[r.id]
            row.next_attempt_at, row.last_error = r.next_attempt_at, r.error
            row.record = replace(row.record, attempts=row.record.attempts + 1)
        for d in dead:
            row = self.rows[d.id]
            row.state, row.last_error = DEAD, d.reason

    def backlog(self, now: datetime) -> BacklogStats:
        pending = [r for r in self.rows.values() if r.state == PENDING]
        oldest = min((r.record.created_at for r in pending), default=now)
        return BacklogStats(
            pending=len(pending),
            in_retry=sum(1 for r in pending if r.record.attempts > 0),
            dead=sum(1 for r in self.rows.values() if r.state == DEAD),
            oldest_pending_age_seconds=(now - oldest).total_seconds(),
            published_last_minute=0,
        )

    def purge_published(self, older_than: datetime, batch_size: int) -> int:
        victims = [
            i
            for i, r in sorted(self.rows.items())
            if r.state == PUBLISHED and r.published_at is not None and r.published_at < older_than
        ][:batch_size]
        for i in victims:
            del self.rows[i]
        return len(victims)

    def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows.values():
            counts[row.state] = counts.get(row.state, 0) + 1
        return counts


@dataclass
class FakeLeases:
    """Owns a fixed set of shards; records releases."""

    shards: frozenset[int] = frozenset({0})
    released: bool = False
    refreshes: int = 0

    def refresh(self) -> frozenset[int]:
        self.refreshes += 1
        return self.shards

    def release_all(self) -> None:
        self.released = True


@dataclass(frozen=True)
class Sent:
    """One message as it reached the fake topic."""

    topic: str
    key: bytes
    payload: bytes
    headers: tuple[tuple[str, bytes], ...]
    partition: int
    offset: int


# What the fake broker does with one message: "ok", "transient", "permanent", "lost" (no report, not
# stored) or "silent" (stored on the topic but the report never arrived).
Behaviour = str


@dataclass
class FakeProducer:
    """A broker in memory: partitions by key, offsets in produce order, outcomes chosen by ``decide``."""

    decide: Callable[[Producible], Behaviour] = lambda message: "ok"
    partitions: int = 3
    log: dict[tuple[str, int], list[Sent]] = field(default_factory=dict)
    batches: list[int] = field(default_factory=list)
    closed: bool = False

    def produce_batch(self, messages: Sequence[Producible], timeout: float) -> list[Outcome]:
        self.batches.append(len(messages))
        outcomes: list[Outcome] = []
        for message in messages:
            behaviour = self.decide(message)
            if behaviour == "transient":
                outcomes.append(DeliveryError("_MSG_TIMED_OUT", "timed out", retriable=True))
            elif behaviour == "permanent":
                outcomes.append(DeliveryError("MSG_SIZE_TOO_LARGE", "too large", retriable=False))
            elif behaviour == "lost":
                outcomes.append(None)
            else:
                partition = sum(message.key) % self.partitions
                queue = self.log.setdefault((message.topic, partition), [])
                sent = Sent(
                    message.topic, message.key, message.payload, message.headers, partition, len(queue)
                )
                queue.append(sent)
                outcomes.append(None if behaviour == "silent" else Delivered(partition, sent.offset))
        return outcomes

    def close(self, timeout: float) -> None:
        self.closed = True

    def topic(self, name: str) -> list[Sent]:
        """Every message of ``name``, partition by partition, in offset order."""
        return [m for (t, _), queue in sorted(self.log.items()) if t == name for m in queue]


def event_id_of(message: Sent) -> str:
    """The ``ce_id`` header the fake store puts on every record."""
    return dict(message.headers)["ce_id"].decode()
