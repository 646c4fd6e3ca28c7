"""Fenced leases with real relays: a relay whose lease session died never produces an event committed
after the loss, even in the seconds before it notices (issue 15's scenario)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from payment_events.relay import Relay
from payment_events.relay.delivery import Outcome
from payment_events.relay.ports import BatchProducer, Producible
from tests.conftest import KcatMessage
from tests.integration.relay_support import (
    RelayThread,
    make_relay,
    migrated_engine,
    payment_event,
    state_counts,
    wait_for,
    write,
)


class RecordingProducer:
    """Wraps a relay's producer: records which lease session (backend pid) produced each event, and
    keeps every batch in flight a little longer, so that a loss easily happens mid-batch."""

    def __init__(self, inner: BatchProducer, relay: Relay, delay: float) -> None:
        self.inner = inner
        self.relay = relay
        self.delay = delay
        self.lock = threading.Lock()
        self.produced: list[tuple[int | None, str]] = []

    def produce_batch(self, messages: Sequence[Producible], timeout: float) -> list[Outcome]:
        leases = self.relay._leases
        pid = getattr(leases, "backend_pid", None)
        with self.lock:
            self.produced.extend((pid, dict(m.headers)["ce_id"].decode()) for m in messages)
        time.sleep(self.delay)
        return self.inner.produce_batch(messages, timeout)

    def close(self, timeout: float) -> None:
        self.inner.close(timeout)


def _terminate(engine: sa.Engine, pid: int) -> None:
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p")
            if not conn.execute(query, {"p": pid}).scalar_one():
                return
        time.sleep(0.05)
    raise AssertionError("the terminated lease backend did not go away")


def test_a_relay_that_lost_its_lease_session_produces_no_event_committed_after_the_loss(
    pg_url: str,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    kcat_consume: Callable[..., list[KcatMessage]],
) -> None:
    """Relay A's lease connection is terminated with a batch in flight; A would notice only at its next
    lease refresh (60 s), relay B takes over: no event written after the loss is produced by A's old
    lease session, and every event is published."""
    topic = new_topic(partitions=3)
    engine = migrated_engine(pg_url)
    relay_a = make_relay(pg_url, kafka_bootstrap, batch_size=20, lease_refresh_seconds=60.0)
    recorder = RecordingProducer(relay_a._producer, relay_a, delay=0.3)
    relay_a._producer = recorder
    before = [
        i
        for n in range(10)
        for i in write(engine, topic, [payment_event(f"pay-{n}-{j}", j) for j in range(20)])
    ]
    threads = [RelayThread(relay_a)]
    try:
        wait_for(lambda: len(recorder.produced) >= 40, 30, "relay A to produce two batches")
        old_pid = relay_a._leases.backend_pid  # type: ignore[union-attr]
        assert old_pid is not None
        _terminate(engine, old_pid)
        after: set[str] = set()
        for n in range(5):
            after.update(write(engine, topic, [payment_event(f"late-{n}-{j}", j) for j in range(20)]))
        time.sleep(3.0)  # A keeps running on its old fence; it has not noticed anything yet
        threads.append(RelayThread(make_relay(pg_url, kafka_bootstrap, batch_size=100)))
        total = len(before) + len(after)
        wait_for(lambda: state_counts(engine) == {"published": total}, 60, "every event published")
    finally:
        for thread in threads:
            thread.stop()
        engine.dispose()
    by_old_session = {event_id for pid, event_id in recorder.produced if pid == old_pid}
    late_by_old = by_old_session & after
    print(f"fencing: A's old session produced {len(by_old_session)} events, {len(late_by_old)} written late")
    assert late_by_old == set(), f"{len(late_by_old)} events committed after the loss were produced by A"
    seen = {m.headers["ce_id"].decode() for m in kcat_consume(topic, total, timeout=60)}
    assert seen >= set(before) | after
