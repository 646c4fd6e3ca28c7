"""Exactly-once takeover without servers: fence the previous owner, reconcile, withhold on failure."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from payment_events.events.codec import EncodedEvent
from payment_events.outbox.fencing import DEFAULT_LEASE_NAMESPACE, FencedOutboxStore, TableShardLeases
from payment_events.outbox.ports import Fence, Published
from payment_events.outbox.sharding import shard_for
from payment_events.relay.exactly_once import ExactlyOnceLeases, ExactlyOnceStore
from payment_events.testing import InMemoryOutboxStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def add(store: InMemoryOutboxStore, key: bytes) -> tuple[int, str]:
    """Commit one event with ``key``; return its row id and event id."""
    event_id = str(uuid.uuid4())
    row_id = store.add(
        EncodedEvent(event_id, "PaymentSucceeded", 1, key, b"{}", (("ce_id", event_id.encode()),), T0)
    )
    return row_id, event_id


class Kafka:
    """What the injected Kafka functions saw and answer."""

    def __init__(self) -> None:
        self.fenced: list[str] = []
        self.committed: dict[str, tuple[int, int]] = {}
        self.fail_reads = False
        self.reads: list[datetime] = []

    def fence(self, transactional_id: str) -> None:
        self.fenced.append(transactional_id)

    def find(self, wanted: Mapping[str, tuple[int, str]], since: datetime) -> dict[int, tuple[int, int]]:
        self.reads.append(since)
        if self.fail_reads:
            raise TimeoutError("broker unreachable")
        return {wanted[e][0]: where for e, where in self.committed.items() if e in wanted}


class Producer:
    """The transactional producer's flag."""

    uncertain = False


def relay_parts(
    store: InMemoryOutboxStore, kafka: Kafka, txn: str
) -> tuple[ExactlyOnceLeases, ExactlyOnceStore]:
    """Table leases (every shard) wrapped for exactly-once, and the store wrapped likewise."""
    leases = TableShardLeases(store, 8, transactional_id=txn)
    eo = ExactlyOnceLeases(
        leases, store, own_transactional_id=txn, fence_producer=kafka.fence, find_committed=kafka.find
    )
    return eo, ExactlyOnceStore(store, eo, Producer())


def test_taking_over_from_a_crashed_owner_fences_it_and_marks_what_it_already_committed() -> None:
    """The previous owner's transactional id is fenced and its committed events are marked, not resent."""
    store = InMemoryOutboxStore(shard_count=8)
    done_id, done_event = add(store, b"k1")
    todo_id, _ = add(store, b"k2")
    store.take_shards(DEFAULT_LEASE_NAMESPACE, "crashed-relay", range(8), transactional_id="txn-old")
    kafka = Kafka()
    kafka.committed[done_event] = (2, 41)
    leases, eo_store = relay_parts(store, kafka, "txn-new")
    assert leases.refresh() == frozenset(range(8))
    assert kafka.fenced == ["txn-old"]
    row = store.get(done_id)
    assert row is not None
    assert (row.state, row.kafka_partition, row.kafka_offset) == ("published", 2, 41)
    assert [r.id for r in eo_store.claim(None, 10, T0)] == [todo_id]
    assert leases.reconciled_rows == 1


def test_a_clean_hand_over_needs_neither_fencing_nor_reconciliation() -> None:
    """Shards released by their previous owner are used at once."""
    store = InMemoryOutboxStore(shard_count=8)
    store.take_shards(DEFAULT_LEASE_NAMESPACE, "old", range(8), transactional_id="txn-old")
    store.release_shards(DEFAULT_LEASE_NAMESPACE, "old", range(8))
    kafka = Kafka()
    kafka.fail_reads = True  # would fail if it were called
    leases, _ = relay_parts(store, kafka, "txn-new")
    assert leases.refresh() == frozenset(range(8))
    assert kafka.fenced == []


def test_shards_whose_reconciliation_failed_are_not_used_until_it_succeeds() -> None:
    """If Kafka cannot be read, the taken shards are withheld (claims return nothing); later they come."""
    store = InMemoryOutboxStore(shard_count=8)
    row_id, _ = add(store, b"k1")
    store.take_shards(DEFAULT_LEASE_NAMESPACE, "crashed-relay", range(8), transactional_id="txn-old")
    kafka = Kafka()
    kafka.fail_reads = True
    leases, eo_store = relay_parts(store, kafka, "txn-new")
    assert leases.refresh() == frozenset()
    assert leases.fence is None
    assert eo_store.claim(None, 10, T0) == []
    kafka.fail_reads = False
    assert leases.refresh() == frozenset(range(8))
    assert [r.id for r in eo_store.claim(None, 10, T0)] == [row_id]


def test_failed_marks_are_reconciled_before_the_next_claim() -> None:
    """After a failed resolve, the next claim first marks what Kafka already holds."""
    store = InMemoryOutboxStore(shard_count=8)
    row_id, event_id = add(store, b"k1")
    kafka = Kafka()
    leases, eo_store = relay_parts(store, kafka, "txn-new")
    leases.refresh()
    original = store.resolve_fenced

    def failing(*args: object) -> None:
        raise RuntimeError("database gone")

    store.resolve_fenced = failing  # type: ignore[method-assign,assignment]
    with pytest.raises(RuntimeError):
        eo_store.resolve([Published(row_id, 0, 7)], [], [])
    store.resolve_fenced = original  # type: ignore[method-assign]
    kafka.committed[event_id] = (0, 7)
    assert eo_store.claim(None, 10, T0) == []
    row = store.get(row_id)
    assert row is not None
    assert (row.state, row.kafka_offset) == ("published", 7)


def test_a_second_table_lease_holder_fences_the_first() -> None:
    """On one outbox, the newest table-lease holder wins: the older one's claims come back empty."""
    store = InMemoryOutboxStore(shard_count=8)
    row_id, _ = add(store, b"k1")
    first = TableShardLeases(store, 8)
    first.refresh()
    fenced_first = FencedOutboxStore(store, first)
    assert [r.id for r in fenced_first.claim(None, 10, T0)] == [row_id]
    second = TableShardLeases(store, 8)
    assert second.refresh() == frozenset(range(8))
    assert fenced_first.claim(None, 10, T0) == []
    assert first.refresh() == frozenset()
    assert isinstance(second.fence, Fence)
    assert shard_for(b"k1", 8) in second.fence.shards


def test_retaking_shards_from_its_own_earlier_session_needs_no_reconciliation() -> None:
    """A relay that lost its lease session and takes its shards back (same producer) skips the read:
    its own commits were either marked or flagged for reconciliation by the store."""
    store = InMemoryOutboxStore(shard_count=8)
    store.take_shards(DEFAULT_LEASE_NAMESPACE, "my-old-session", range(8), transactional_id="txn-mine")
    kafka = Kafka()
    kafka.fail_reads = True  # would fail if it were called
    leases, _ = relay_parts(store, kafka, "txn-mine")
    assert leases.refresh() == frozenset(range(8))
    assert kafka.fenced == []


def test_an_uncertain_commit_is_reconciled_even_if_the_shards_come_back_later() -> None:
    """Dirty while owning nothing, the relay reconciles as soon as it owns shards again."""
    store = InMemoryOutboxStore(shard_count=8)
    row_id, event_id = add(store, b"k1")
    kafka = Kafka()
    leases = TableShardLeases(store, 8, transactional_id="txn-mine")
    eo = ExactlyOnceLeases(
        leases, store, own_transactional_id="txn-mine", fence_producer=kafka.fence, find_committed=kafka.find
    )
    producer = Producer()
    eo_store = ExactlyOnceStore(store, eo, producer)
    producer.uncertain = True
    assert eo_store.claim(None, 10, T0) == []  # owns nothing yet: still uncertain
    assert producer.uncertain
    eo.refresh()
    kafka.committed[event_id] = (1, 3)
    assert eo_store.claim(None, 10, T0) == []  # reconciled first: the row was already in Kafka
    row = store.get(row_id)
    assert row is not None
    assert row.state == "published"
    assert not producer.uncertain


def test_the_reading_starts_at_the_previous_owners_settled_time_when_it_is_later() -> None:
    """A crashed owner that had settled its shards at T is reconciled from T, not from the oldest row."""
    store = InMemoryOutboxStore(shard_count=8, clock=lambda: T0)
    add(store, b"k1")  # created at T0
    settled = T0 + timedelta(hours=1)
    old = store.take_shards(DEFAULT_LEASE_NAMESPACE, "crashed", range(8), transactional_id="txn-old")
    store.settle_shards(Fence(DEFAULT_LEASE_NAMESPACE, "crashed", old.generations), range(8), settled)
    kafka = Kafka()
    leases, _ = relay_parts(store, kafka, "txn-new")
    leases.refresh()
    assert kafka.reads == [settled]
    # ...and this relay settles them in turn, so its own successor reads even less.
    again = store.take_shards(DEFAULT_LEASE_NAMESPACE, "next", range(8))
    assert all(p.settled_at is not None and p.settled_at > settled for p in again.previous.values())


def test_a_never_taken_shard_is_reconciled_from_its_oldest_pending_row() -> None:
    """Without any lease row (first exactly-once start) the relay reads from the oldest pending row."""
    store = InMemoryOutboxStore(shard_count=8, clock=lambda: T0)
    add(store, b"k1")
    kafka = Kafka()
    leases, _ = relay_parts(store, kafka, "txn-new")
    leases.refresh()
    assert kafka.reads == [T0]


def test_stopping_with_unreconciled_marks_abandons_the_shards_instead_of_releasing_them() -> None:
    """Failed marks at shutdown: the lease rows keep this owner, so the next owner reconciles."""
    store = InMemoryOutboxStore(shard_count=8)
    row_id, _ = add(store, b"k1")
    kafka = Kafka()
    leases, eo_store = relay_parts(store, kafka, "txn-mine")
    leases.refresh()
    original = store.resolve_fenced

    def failing(*args: object) -> None:
        raise RuntimeError("database gone")

    store.resolve_fenced = failing  # type: ignore[method-assign,assignment]
    with pytest.raises(RuntimeError):
        eo_store.resolve([Published(row_id, 0, 7)], [], [])
    store.resolve_fenced = original  # type: ignore[method-assign]
    leases.release_all()
    after = store.take_shards(DEFAULT_LEASE_NAMESPACE, "next", range(8))
    assert all(p.owner is not None and p.transactional_id == "txn-mine" for p in after.previous.values())
