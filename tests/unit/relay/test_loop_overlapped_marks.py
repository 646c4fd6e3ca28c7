"""Overlapped marks: a batch's marks commit in the background while the next batch is claimed and sent.

The claim skips the rows still being marked; a batch with any retry is marked synchronously; if
background marks fail, the next batch is not marked either. Checked against in-memory fakes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from payment_events.outbox.ports import (
    DEAD,
    PENDING,
    PUBLISHED,
    Dead,
    ExcludingClaim,
    OutboxRecord,
    Published,
    Retry,
)
from payment_events.relay import Relay, RelayConfig
from payment_events.relay.ports import Producible
from payment_events.testing import InMemoryOutboxStore
from tests.unit.relay.fakes import FakeClock, FakeLeases, FakeProducer, FakeStore, event_id_of

TOPIC = "payment.events"


@dataclass
class OverlapStore(FakeStore):
    """The fake store plus ``claim_excluding``, thread-safe, recording where marks ran and able to fail."""

    fail_resolves: set[int] = field(default_factory=set)
    """Resolve calls (1-based) that raise instead of writing anything."""
    resolve_threads: list[str] = field(default_factory=list)
    claimed_while_marking: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _marking: set[int] = field(default_factory=set)

    def claim_excluding(
        self, shards: Collection[int] | None, limit: int, now: datetime, busy: Collection[int]
    ) -> list[OutboxRecord]:
        with self._lock:
            skip = set(busy)
            records = [r for r in super().claim(shards, limit + len(skip), now) if r.id not in skip][:limit]
            self.claimed_while_marking.extend(r.id for r in records if r.id in self._marking)
            return records

    def claim(self, shards: Collection[int] | None, limit: int, now: datetime) -> list[OutboxRecord]:
        return self.claim_excluding(shards, limit, now, ())

    def resolve(self, published: Sequence[Published], retries: Sequence[Retry], dead: Sequence[Dead]) -> None:
        ids = {p.id for p in published} | {r.id for r in retries} | {d.id for d in dead}
        with self._lock:
            self._marking |= ids
        try:
            with self._lock:
                self.resolve_threads.append(threading.current_thread().name)
                if len(self.resolve_threads) in self.fail_resolves:
                    raise RuntimeError("database went away while marking")
                super().resolve(published, retries, dead)
        finally:
            with self._lock:
                self._marking -= ids


def make_relay(store: OverlapStore, producer: FakeProducer, clock: FakeClock, **overrides: object) -> Relay:
    """A relay over the fakes with overlapped marks on (the default) and a small batch."""
    options: dict[str, object] = {"batch_size": 4, "max_attempts": 3, "poll_interval_seconds": 0.01}
    options.update(overrides)
    config = RelayConfig(**options)  # type: ignore[arg-type]
    return Relay(store, producer, config, leases=FakeLeases(frozenset({0, 1})), clock=clock, rand=lambda: 0.5)


def settle(relay: Relay, store: OverlapStore, clock: FakeClock, max_rounds: int = 500) -> None:
    """Drain repeatedly (failures included, as the run loop would survive them) until nothing is pending."""
    for _ in range(max_rounds):
        with contextlib.suppress(RuntimeError):  # a failed mark: its rows (and the next batch's) stay pending
            relay.drain(max_cycles=3)
        if not any(r.state == PENDING for r in store.rows.values()):
            return
        clock.advance(120)
    raise AssertionError("rows still pending")


def test_the_store_port_offers_the_excluding_claim() -> None:
    """The shipped in-memory store and this test's fake both qualify for overlapped marks."""
    assert isinstance(InMemoryOutboxStore(), ExcludingClaim)
    assert isinstance(OverlapStore(FakeClock()), ExcludingClaim)
    assert not isinstance(FakeStore(FakeClock()), ExcludingClaim)


def test_marks_of_a_clean_batch_run_in_the_background_and_the_next_claim_skips_them() -> None:
    """Batches whose rows all published are marked on the marks thread; no row is claimed while its
    marks are being written, and every row ends published exactly once."""
    clock = FakeClock()
    store = OverlapStore(clock)
    for i in range(20):
        store.add(f"k{i % 3}".encode(), shard=i % 2)
    producer = FakeProducer()
    relay = make_relay(store, producer, clock)
    try:
        assert relay.drain() == 20
    finally:
        relay.close()
    assert store.states() == {PUBLISHED: 20}
    assert any(name.startswith("relay-marks") for name in store.resolve_threads)
    assert store.claimed_while_marking == []
    assert len(producer.topic(TOPIC)) == 20


def test_a_batch_with_a_retry_is_marked_before_the_next_claim() -> None:
    """A retried head is in the database (in backoff) before the next claim, so its key's later rows
    are not produced ahead of it."""
    clock = FakeClock()
    store = OverlapStore(clock)
    head = store.add(b"k")
    later = [store.add(b"k") for _ in range(5)]
    failing_batch = [-1]

    def decide(message: Producible) -> str:
        # As librdkafka does per partition: once the head failed, the rest of its batch fails too.
        if event_id_of_message(message) == f"evt-{head}" and failing_batch[0] == -1:
            failing_batch[0] = len(producer.batches)
        return "transient" if failing_batch[0] == len(producer.batches) else "ok"

    producer = FakeProducer(decide)
    relay = make_relay(store, producer, clock, batch_size=2)
    settle(relay, store, clock)
    relay.close()
    first_seen: list[str] = []
    for message in producer.topic(TOPIC):
        if event_id_of(message) not in first_seen:
            first_seen.append(event_id_of(message))
    assert first_seen == [f"evt-{i}" for i in [head, *later]]
    assert store.resolve_threads[0] == threading.current_thread().name


def event_id_of_message(message: Producible) -> str:
    """The ``ce_id`` header of a message about to be produced."""
    return dict(message.headers)["ce_id"].decode()


@settings(max_examples=120, deadline=None)
@given(
    keys=st.lists(st.sampled_from([b"k1", b"k2", b"k3", b"k4", b"k5"]), min_size=1, max_size=40),
    script=st.lists(st.sampled_from(["ok", "ok", "ok", "ok", "transient", "permanent", "lost", "silent"]),
                    max_size=150),
    failing=st.sets(st.integers(min_value=1, max_value=12), max_size=3),
)
def test_no_loss_and_ledger_order_with_overlapped_marks_and_failing_marks(
    keys: list[bytes], script: list[str], failing: set[int]
) -> None:
    """Whatever the broker does and whichever marks fail, every row ends published (at an offset holding
    that event) or dead, nothing is claimed while being marked, and per key the ledger follows id order."""
    clock = FakeClock()
    store = OverlapStore(clock, fail_resolves=failing)
    for key in keys:
        store.add(key, shard=key[-1] % 2)
    moves = iter(script)
    producer = FakeProducer(lambda message: next(moves, "ok"))
    relay = make_relay(store, producer, clock)
    try:
        settle(relay, store, clock)
    finally:
        relay.close()
    assert store.claimed_while_marking == []
    by_pos = {(m.partition, m.offset): m for m in producer.topic(TOPIC)}
    for row in store.rows.values():
        assert row.state in {PUBLISHED, DEAD}
        if row.state == PUBLISHED:
            assert event_id_of(by_pos[(row.partition, row.offset)]) == row.record.event_id  # type: ignore[index]
    for key in set(keys):
        ledger = [
            (r.partition, r.offset)
            for _, r in sorted(store.rows.items())
            if r.record.key == key and r.state == PUBLISHED
        ]
        assert ledger == sorted(ledger)


def test_the_in_memory_store_drains_with_overlapped_marks() -> None:
    """The shipped fake store supports the excluding claim: a relay over it publishes every row once."""
    store = InMemoryOutboxStore()
    with store.transaction() as tx:
        for i in range(30):
            tx.add_raw(f"k{i % 4}".encode(), headers=(("ce_id", f"e{i}".encode()),), event_id=f"e{i}")
    producer = FakeProducer()
    relay = Relay(store, producer, RelayConfig(batch_size=7))
    try:
        assert relay.drain() == 30
    finally:
        relay.close()
    assert {r.state for r in store.rows} == {PUBLISHED}
    assert sorted(event_id_of(m) for m in producer.topic(TOPIC)) == sorted(f"e{i}" for i in range(30))
