"""Several relay instances on one PostgreSQL outbox, with writers committing while they run."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest

from tests.conftest import KcatMessage
from tests.integration.relay_support import (
    RelayThread,
    check_order,
    make_relay,
    migrated_engine,
    payment_event,
    state_counts,
    wait_for,
    write,
)

Consume = Callable[..., list[KcatMessage]]


def run_scale_out(
    pg_url: str,
    kafka_bootstrap: str,
    topic: str,
    kcat_consume: Consume,
    *,
    events: int,
    keys: int,
    writers: int = 2,
) -> None:
    """Two relays publish while ``writers`` threads commit ``events`` events over ``keys`` keys in small
    transactions; then every event must be on the topic with per-key order of first deliveries."""
    engine = migrated_engine(pg_url)
    key_names = [f"pay-{k:04d}" for k in range(keys)]
    # Each writer owns a disjoint set of keys, so the per-key write order is the order it commits in.
    expected: dict[str, list[str]] = {k: [] for k in key_names}
    relays = [RelayThread(make_relay(pg_url, kafka_bootstrap, batch_size=300)) for _ in range(2)]

    def writer(index: int) -> None:
        rng = random.Random(index)
        mine = key_names[index::writers]
        for start in range(0, events // writers, 20):
            batch = [payment_event(rng.choice(mine), start + n) for n in range(20)]
            for key, event_id in zip((e.payment_id for e in batch), write(engine, topic, batch), strict=True):
                expected[key].append(event_id)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        total = sum(len(v) for v in expected.values())
        wait_for(lambda: state_counts(engine) == {"published": total}, 120, "every event published")
        wait_for(lambda: all(relay.relay.shards for relay in relays), 10, "both relays to own shards")
        owned = [relay.relay.shards or frozenset() for relay in relays]
        assert not owned[0] & owned[1], "a shard is owned twice"
    finally:
        for relay in relays:
            relay.stop()
        engine.dispose()
    messages = kcat_consume(topic, total, timeout=60)
    report = check_order(messages, expected)
    print(f"scale-out: {total} events, {keys} keys, {len(messages)} messages, {report.duplicates} duplicates")
    assert report.missing == []
    assert report.order_violations == []
    assert len(messages) == total + report.duplicates


def test_two_relays_publish_everything_in_per_key_order(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """3,000 events over 200 keys, written while two relays run: none lost, per-key order kept."""
    run_scale_out(pg_url, kafka_bootstrap, new_topic(partitions=6), kcat_consume, events=3000, keys=200)


@pytest.mark.slow
def test_two_relays_ten_thousand_events_over_five_hundred_keys(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """The issue's count: 10,000 events over 500 keys with two relays; none lost, per-key order kept."""
    run_scale_out(
        pg_url, kafka_bootstrap, new_topic(partitions=6), kcat_consume, events=10_000, keys=500, writers=4
    )
