"""The broker goes away for a while and comes back: nothing is lost, rows are published after the restart.

Stopping the shared broker would disturb every other test running at the same time, so this test starts
its own throwaway single-node KRaft broker (the same jars and settings as ``scripts/services``, other
ports, its own data directory under a temporary folder) and stops and restarts that one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from payment_events.kafka.admin import ensure_topics
from payment_events.relay.observer import NullObserver
from payment_events.service import build_relay
from tests.brokers import LIB, ThrowawayBroker
from tests.conftest import kcat_read
from tests.integration.relay_support import (
    RelayThread,
    check_order,
    migrated_engine,
    payment_event,
    relay_config,
    state_counts,
    wait_for,
    write,
)


@pytest.fixture
def throwaway_broker(tmp_path: Path, kafka_bootstrap: str) -> Iterator[ThrowawayBroker]:
    """A private broker for this test only (``kafka_bootstrap`` makes the test skip/fail like the others
    when the services, and so the jars and kcat, are not set up)."""
    if not (LIB.is_dir() and any(LIB.glob("kafka_2.13-*.jar"))):
        pytest.fail("the Kafka jars are missing: run `scripts/services up` first")
    broker = ThrowawayBroker(tmp_path / "kafka")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class OutageObserver(NullObserver):
    """Notes whether the relay saw the broker as unreachable."""

    def __init__(self) -> None:
        self.unreachable_seen = False

    def broker_reachable(self, reachable: bool) -> None:
        if not reachable:
            self.unreachable_seen = True


def test_broker_stopped_and_restarted_loses_nothing(pg_url: str, throwaway_broker: ThrowawayBroker) -> None:
    """Events committed while the broker is down stay pending (none dead, no budget spent) and are all
    published, in per-key order, once it is back."""
    (status,) = ensure_topics(
        {"bootstrap.servers": throwaway_broker.bootstrap}, ["payment.events.restart"], partitions=3
    )
    assert status.created
    topic = status.name
    engine = migrated_engine(pg_url)
    expected: dict[str, list[str]] = {}

    def commit(start: int, count: int) -> None:
        events = [payment_event(f"pay-{n % 20:02d}", n) for n in range(start, start + count)]
        for event, event_id in zip(events, write(engine, topic, events), strict=True):
            expected.setdefault(event.payment_id, []).append(event_id)

    observer = OutageObserver()
    config = relay_config(
        producer_overrides={"reconnect.backoff.max.ms": 500},
        delivery_timeout_seconds=3.0,
        max_attempts=3,  # small on purpose: an outage must not spend it
    )
    relay = RelayThread(build_relay(pg_url, throwaway_broker.bootstrap, config, observer=observer))
    try:
        commit(0, 300)
        wait_for(lambda: state_counts(engine) == {"published": 300}, 60, "the first events")
        throwaway_broker.stop()
        commit(300, 300)
        wait_for(lambda: observer.unreachable_seen, 60, "the relay to notice the outage")
        assert state_counts(engine) == {"published": 300, "pending": 300}
        throwaway_broker.start()
        wait_for(lambda: state_counts(engine) == {"published": 600}, 120, "publishing after the restart")
    finally:
        relay.stop()
        engine.dispose()
    messages = kcat_read(throwaway_broker.bootstrap, topic)
    report = check_order(messages, expected)
    print(f"broker restart: 600 events, {len(messages)} messages, {report.duplicates} duplicates")
    assert report.missing == []
    assert report.order_violations == []
    assert os.environ.get("PAYMENT_EVENTS_TEST_KAFKA", "") != throwaway_broker.bootstrap
