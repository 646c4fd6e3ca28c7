"""The relay loop against in-memory fakes: ordering over many cycles, dead letters, outages, shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from payment_events.outbox.ports import DEAD, PENDING, PUBLISHED, BacklogStats
from payment_events.relay import Relay, RelayConfig
from payment_events.relay.observer import NullObserver
from payment_events.relay.ports import Producible
from tests.unit.relay.fakes import FakeClock, FakeLeases, FakeProducer, FakeStore, event_id_of

TOPIC = "payment.events"


def make_relay(
    store: FakeStore, producer: FakeProducer, clock: FakeClock, **overrides: object
) -> tuple[Relay, FakeLeases]:
    """A relay over the fakes with a small batch and a short poll interval."""
    options: dict[str, object] = {"batch_size": 8, "max_attempts": 4, "poll_interval_seconds": 0.01}
    options.update(overrides)
    leases = FakeLeases(frozenset({0, 1}))
    config = RelayConfig(**options)  # type: ignore[arg-type]
    return Relay(store, producer, config, leases=leases, clock=clock, rand=lambda: 0.5), leases


def run_until_settled(relay: Relay, store: FakeStore, clock: FakeClock, max_rounds: int = 500) -> None:
    """Run cycles, moving the clock past any backoff, until no row is pending."""
    for _ in range(max_rounds):
        if not any(r.state == PENDING for r in store.rows.values()):
            relay.drain(max_cycles=1)
            assert not any(r.state == PENDING for r in store.rows.values())
            return
        relay.run_once()
        clock.advance(120)
    raise AssertionError("rows still pending")


behaviours = st.sampled_from(["ok", "ok", "ok", "transient", "permanent", "lost", "silent"])


@settings(max_examples=150, deadline=None)
@given(
    keys=st.lists(st.sampled_from([b"k1", b"k2", b"k3", b"k4", b"k5"]), min_size=1, max_size=40),
    script=st.lists(behaviours, max_size=200),
)
def test_no_loss_and_ledger_order_with_any_broker_behaviour(
    keys: list[bytes], script: list[str]
) -> None:
    """Whatever the broker does per message (ack, fail, lose, ack silently), every row ends published
    (at an offset holding exactly that event) or dead, and per key the ledger's offsets follow id order."""
    clock = FakeClock()
    store = FakeStore(clock)
    for key in keys:
        store.add(key, shard=key[-1] % 2)
    moves = iter(script)

    def decide(message: Producible) -> str:
        return next(moves, "ok")  # after the script the broker behaves

    producer = FakeProducer(decide)
    relay, _ = make_relay(store, producer, clock, max_attempts=3)
    run_until_settled(relay, store, clock)
    by_pos = {(m.partition, m.offset): m for m in producer.topic(TOPIC)}
    for row in store.rows.values():
        assert row.state in {PUBLISHED, DEAD}
        if row.state == PUBLISHED:
            sent = by_pos[(row.partition, row.offset)]  # type: ignore[index]
            assert event_id_of(sent) == row.record.event_id
    for key in set(keys):
        ledger = [
            (r.partition, r.offset)
            for _, r in sorted(store.rows.items())
            if r.record.key == key and r.state == PUBLISHED
        ]
        assert ledger == sorted(ledger)


@settings(max_examples=150, deadline=None)
@given(
    keys=st.lists(st.sampled_from([b"k1", b"k2", b"k3", b"k4"]), min_size=1, max_size=30),
    script=st.lists(st.sampled_from(["ok", "ok", "transient", "lost", "permanent"]), max_size=120),
)
def test_first_deliveries_keep_per_key_order_when_failures_are_in_order(
    keys: list[bytes], script: list[str]
) -> None:
    """With librdkafka's per-partition behaviour (once a key's message fails in a batch, its later ones
    fail too), the first delivery of each event on the topic follows id order per key; dead ones are
    skipped and everything else arrives."""
    clock = FakeClock()
    store = FakeStore(clock)
    for key in keys:
        store.add(key, shard=key[-1] % 2)
    moves = iter(script)
    failed_keys: set[bytes] = set()
    batch_marker = [0]

    def decide(message: Producible) -> str:
        if batch_marker[0] != len(producer.batches):
            batch_marker[0] = len(producer.batches)
            failed_keys.clear()
        move = next(moves, "ok")
        if message.key in failed_keys:
            return "transient"
        if move in {"transient", "lost"}:
            failed_keys.add(message.key)
        return move

    producer = FakeProducer(decide)
    relay, _ = make_relay(store, producer, clock, max_attempts=None)
    run_until_settled(relay, store, clock)
    first_seen: list[str] = []
    for message in producer.topic(TOPIC):
        if event_id_of(message) not in first_seen:
            first_seen.append(event_id_of(message))
    for key in set(keys):
        expected = [r.record.event_id for _, r in sorted(store.rows.items()) if r.record.key == key]
        dead = {r.record.event_id for r in store.rows.values() if r.state == DEAD}
        seen = [e for e in first_seen if e in expected]
        assert seen == [e for e in expected if e not in dead]


def test_poison_event_is_dead_lettered_to_the_dlq_topic_with_reason_headers() -> None:
    """A too-large event becomes dead, its copy (with its payload) goes to the DLQ with the reason."""
    clock = FakeClock()
    store = FakeStore(clock)
    poison = store.add(b"k", payload=b"x" * 100)
    later = store.add(b"k")

    def decide(message: Producible) -> str:
        return "permanent" if len(message.payload) == 100 and message.topic == TOPIC else "ok"

    producer = FakeProducer(decide)
    relay, _ = make_relay(store, producer, clock)
    relay.run_once()
    assert store.rows[poison].state == DEAD
    assert "MSG_SIZE_TOO_LARGE" in (store.rows[poison].last_error or "")
    assert store.rows[later].state == PUBLISHED
    (copy,) = producer.topic("payment.events.dlq")
    headers = dict(copy.headers)
    assert headers["dlq-original-topic"] == TOPIC.encode()
    assert headers["dlq-attempts"] == b"1"
    assert headers["dlq-error-code"] == b"MSG_SIZE_TOO_LARGE"
    assert "dlq-payload-omitted" not in headers
    assert headers["ce_id"] == store.rows[poison].record.event_id.encode()
    assert copy.payload == b"x" * 100
    assert copy.key == b"k"


def test_dead_row_is_marked_even_when_the_dlq_produce_fails() -> None:
    """The database is the source of truth: a failed DLQ copy does not keep the row pending."""
    clock = FakeClock()
    store = FakeStore(clock)
    poison = store.add(b"k", payload=b"x" * 100)

    def decide(message: Producible) -> str:
        return "permanent" if message.topic == TOPIC or len(message.payload) == 100 else "transient"

    producer = FakeProducer(decide)
    relay, _ = make_relay(store, producer, clock)
    relay.run_once()
    assert store.rows[poison].state == DEAD
    assert producer.topic("payment.events.dlq") == []


def test_outage_pauses_the_relay_and_spends_no_retry_budget() -> None:
    """A batch where nothing got through leaves rows untouched with attempts unchanged."""
    clock = FakeClock()
    store = FakeStore(clock)
    ids = [store.add(b"a"), store.add(b"b")]
    producer = FakeProducer(lambda message: "transient")
    relay, _ = make_relay(store, producer, clock)
    report = relay.run_once()
    assert report.outage
    assert all(store.rows[i].record.attempts == 0 for i in ids)
    assert all(store.rows[i].state == PENDING for i in ids)


def test_full_batches_are_claimed_back_to_back_by_drain() -> None:
    """drain() keeps claiming while claims come back full, then stops."""
    clock = FakeClock()
    store = FakeStore(clock)
    for n in range(20):
        store.add(bytes([n % 5]))
    producer = FakeProducer()
    relay, _ = make_relay(store, producer, clock)
    assert relay.drain() == 20
    assert producer.batches == [8, 8, 4]
    assert store.states() == {PUBLISHED: 20}


def test_only_owned_shards_are_claimed() -> None:
    """Rows of shards this instance does not own are left for the other instance."""
    clock = FakeClock()
    store = FakeStore(clock)
    mine = store.add(b"a", shard=1)
    theirs = store.add(b"b", shard=7)
    relay, _ = make_relay(store, FakeProducer(), clock)
    relay.drain()
    assert store.rows[mine].state == PUBLISHED
    assert store.rows[theirs].state == PENDING


def test_purge_deletes_only_old_published_rows_in_small_batches() -> None:
    """Retention deletes published rows past the retention period, batch by batch."""
    clock = FakeClock()
    store = FakeStore(clock)
    for n in range(7):
        store.add(bytes([n]))
    relay, _ = make_relay(store, FakeProducer(), clock, retention_seconds=3600, purge_batch_size=3)
    relay.drain()
    store.add(b"late")
    assert relay.purge() == 0
    clock.advance(3601)
    assert relay.purge() == 7
    assert store.states() == {PENDING: 1}


class RecordingObserver(NullObserver):
    """Keeps what the relay reported."""

    def __init__(self) -> None:
        self.published_counts: list[tuple[str, str, int]] = []
        self.batches: list[int] = []
        self.db: list[bool] = []
        self.dead: list[int] = []

    def published(self, event_type: str, topic: str, commit_to_ack_seconds: Sequence[float]) -> None:
        self.published_counts.append((event_type, topic, len(commit_to_ack_seconds)))

    def batch(self, size: int) -> None:
        self.batches.append(size)

    def database_reachable(self, reachable: bool) -> None:
        self.db.append(reachable)

    def dead_rows(self, count: int) -> None:
        self.dead.append(count)


def test_run_stops_gracefully_releases_leases_and_closes_producer() -> None:
    """run() publishes, survives a database error, and after stop() releases shards and closes."""
    clock = FakeClock()
    store = FakeStore(clock)
    for n in range(5):
        store.add(bytes([n]))
    store.fail_next_claim = True
    producer = FakeProducer()
    observer = RecordingObserver()
    config = RelayConfig(batch_size=8, poll_interval_seconds=0.01, backoff_base_seconds=0.01)
    leases = FakeLeases(frozenset({0}))
    relay = Relay(store, producer, config, leases=leases, observer=observer, clock=clock)
    thread = threading.Thread(target=relay.run)
    thread.start()
    deadline = time.monotonic() + 10
    while store.states().get(PUBLISHED, 0) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    relay.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert store.states() == {PUBLISHED: 5}
    assert leases.released
    assert producer.closed
    assert False in observer.db
    assert observer.db[-1] is True
    assert observer.published_counts == [("PaymentSucceeded", TOPIC, 5)]
    assert observer.dead
    assert set(observer.dead) == {0}


class _PendingOnlyStore(FakeStore):
    """A store with the narrow backlog probe; its full backlog() must not be needed by the relay."""

    def pending_backlog(self, now: datetime) -> tuple[int, float, int]:
        return 7, 3.5, 0

    def backlog(self, now: datetime) -> BacklogStats:
        raise AssertionError("the relay asked for the full backlog statistics")


class _BacklogObserver(NullObserver):
    def __init__(self) -> None:
        self.reports: list[tuple[int, float]] = []

    def backlog(self, pending: int, oldest_pending_age_seconds: float) -> None:
        self.reports.append((pending, oldest_pending_age_seconds))


def test_relay_reports_the_backlog_through_the_narrow_probe_when_the_store_has_one() -> None:
    """A store offering pending_backlog() is asked only for that (not for the full backlog counts), and
    its figures reach the observer."""
    clock = FakeClock()
    store = _PendingOnlyStore(clock)
    observer = _BacklogObserver()
    config = RelayConfig(batch_size=8, poll_interval_seconds=0.01)
    leases = FakeLeases(frozenset({0}))
    relay = Relay(store, FakeProducer(), config, leases=leases, observer=observer, clock=clock)
    thread = threading.Thread(target=relay.run)
    thread.start()
    deadline = time.monotonic() + 10
    while not observer.reports and time.monotonic() < deadline:
        time.sleep(0.01)
    relay.stop()
    thread.join(timeout=10)
    assert observer.reports[:1] == [(7, 3.5)]
