"""A relay process killed with SIGKILL in the middle of its work loses nothing once a relay runs again."""

from __future__ import annotations

import signal
from collections.abc import Callable

import sqlalchemy as sa

from tests.conftest import KcatMessage
from tests.integration.relay_support import (
    check_order,
    migrated_engine,
    payment_event,
    start_relay_process,
    state_counts,
    wait_for,
    write,
)

Consume = Callable[..., list[KcatMessage]]


def test_sigkill_mid_batch_then_restart_loses_nothing(
    db_url: str, kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """Kill -9 the relay once some rows are published and others not; a restarted relay publishes the
    rest; every event is on the topic (duplicates allowed, counted) and per-key order holds."""
    topic = new_topic(partitions=3)
    engine = migrated_engine(db_url)
    expected: dict[str, list[str]] = {}
    try:
        for chunk in range(20):
            events = [payment_event(f"pay-{n % 50:03d}", chunk * 250 + n) for n in range(250)]
            for event, event_id in zip(events, write(engine, topic, events), strict=True):
                expected.setdefault(event.payment_id, []).append(event_id)
        total = sum(len(v) for v in expected.values())
        first = start_relay_process(db_url, kafka_bootstrap, "--batch-size", "100")
        try:
            wait_for(lambda: published(engine) >= 300, 60, "the first relay to make progress")
        finally:
            first.send_signal(signal.SIGKILL)
            first.communicate(timeout=30)
        assert first.returncode == -signal.SIGKILL
        assert published(engine) < total, "the relay finished before it could be killed"
        second = start_relay_process(db_url, kafka_bootstrap, "--batch-size", "1000")
        try:
            wait_for(lambda: published(engine) == total, 90, "the restarted relay to publish the rest")
        finally:
            second.send_signal(signal.SIGTERM)
            _, err = second.communicate(timeout=60)
        assert second.returncode == 0, err.decode(errors="replace")[-2000:]
        assert state_counts(engine) == {"published": total}
    finally:
        engine.dispose()
    messages = kcat_consume(topic, total, timeout=60)
    report = check_order(messages, expected)
    print(f"sigkill: {total} events, {len(messages)} messages, {report.duplicates} duplicates")
    assert report.missing == []
    assert report.order_violations == []


def published(engine: sa.Engine) -> int:
    """How many rows are marked published."""
    return state_counts(engine).get("published", 0)


def test_a_surviving_relay_takes_over_the_shards_of_a_killed_one(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """Two relay processes share the shards; after one is killed with SIGKILL the other takes its shards
    over (advisory locks die with the session) and publishes everything, in per-key order."""
    topic = new_topic(partitions=3)
    engine = migrated_engine(pg_url)
    expected: dict[str, list[str]] = {}

    def commit(chunk: int) -> None:
        events = [payment_event(f"pay-{n % 80:03d}", chunk * 200 + n) for n in range(200)]
        for event, event_id in zip(events, write(engine, topic, events), strict=True):
            expected.setdefault(event.payment_id, []).append(event_id)

    survivor = start_relay_process(pg_url, kafka_bootstrap, "--batch-size", "100")
    victim = start_relay_process(pg_url, kafka_bootstrap, "--batch-size", "100")
    try:
        for chunk in range(5):
            commit(chunk)
        wait_for(lambda: published(engine) >= 200, 60, "both relays to make progress")
        victim.send_signal(signal.SIGKILL)
        victim.wait(30)
        for chunk in range(5, 15):
            commit(chunk)
        total = sum(len(v) for v in expected.values())
        wait_for(lambda: published(engine) == total, 90, "the survivor to publish everything")
    finally:
        for process in (victim, survivor):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            process.communicate(timeout=60)
        engine.dispose()
    assert survivor.returncode == 0
    messages = kcat_consume(topic, total, timeout=60)
    report = check_order(messages, expected)
    print(f"takeover: {total} events, {len(messages)} messages, {report.duplicates} duplicates")
    assert report.missing == []
    assert report.order_violations == []
