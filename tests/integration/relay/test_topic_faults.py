"""The relay against topics that misbehave on a healthy broker (issue 11, defects 1-3): a small
``max.message.bytes``, a topic that does not exist, a dead-letter topic that does not exist."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import KcatMessage
from tests.integration.relay_support import (
    RelayThread,
    check_order,
    make_relay,
    migrated_engine,
    oversized_event,
    payment_event,
    rows,
    state_counts,
    wait_for,
    write,
)

Consume = Callable[..., list[KcatMessage]]


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> tuple[str, sa.Engine]:
    """An SQLite outbox (the broker is what these tests exercise; one database kind is enough)."""
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    return url, migrated_engine(url)


def test_topic_with_small_max_message_bytes_dead_letters_no_valid_event(
    sqlite_engine: tuple[str, sa.Engine],
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    kcat_consume: Consume,
) -> None:
    """Events far below a topic's 64 KB max.message.bytes are all published in per-key order, none is
    dead-lettered because its record batch as a whole was too large."""
    url, engine = sqlite_engine
    topic = new_topic(partitions=2, config={"max.message.bytes": "65536"})
    expected: dict[str, list[str]] = {}
    for chunk in range(6):
        events = [payment_event(f"pay-{k}", chunk * 1000 + i) for i in range(20) for k in range(25)]
        ids = write(engine, topic, events)
        for event, event_id in zip(events, ids, strict=True):
            expected.setdefault(event.payment_id, []).append(event_id)
    # A longer linger fills record batches the way a busy relay does (the broker then sees big batches).
    relay = make_relay(
        url, kafka_bootstrap, batch_size=3000, dlq_topic=None, producer_overrides={"linger.ms": 100}
    )
    try:
        relay.drain()
    finally:
        relay.close()
    assert state_counts(engine) == {"published": 3000}
    report = check_order(kcat_consume(topic, 3000), expected)
    assert report.missing == []
    assert report.order_violations == []
    engine.dispose()


def test_rows_for_a_missing_topic_neither_stall_other_rows_nor_the_relay(
    sqlite_engine: tuple[str, sa.Engine], kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """Rows routed to a topic that does not exist wait (last error names the topic) and end dead with a
    clear reason after their budget, while rows of a healthy topic are published far sooner than the
    relay's delivery timeout."""
    url, engine = sqlite_engine
    good = new_topic(partitions=1)
    missing = f"missing.{good.split('.')[-1]}"
    write(engine, missing, [payment_event("pay-lost", 1)])
    relay = make_relay(
        url, kafka_bootstrap, dlq_topic=None, max_attempts=3, delivery_timeout_seconds=25.0,
        backoff_base_seconds=0.2, backoff_cap_seconds=0.5,
    )
    runner = RelayThread(relay)
    started = time.monotonic()
    try:
        wait_for(lambda: any(r["attempts"] >= 1 for r in rows(engine)), 20, "the first attempt")
        for wave in range(3):
            write(engine, good, [payment_event(f"pay-ok-{wave}", wave)])
            write(engine, missing, [payment_event(f"pay-lost-{wave}", wave)])
        wait_for(lambda: state_counts(engine).get("published", 0) == 3, 10, "the healthy topic's rows")
        healthy_done = time.monotonic() - started
        wait_for(lambda: state_counts(engine).get("dead", 0) == 4, 30, "the missing topic's rows to die")
    finally:
        runner.stop()
    assert healthy_done < 20, "a healthy row waited a whole delivery timeout behind a missing topic"
    for row in rows(engine):
        if row["topic"] == missing:
            assert row["state"] == "dead"
            assert "UNKNOWN_TOPIC" in row["last_error"]
            assert missing in row["last_error"]
    engine.dispose()


def test_missing_dead_letter_topic_never_holds_up_live_traffic(
    sqlite_engine: tuple[str, sa.Engine], kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """A dead row whose dead-letter topic does not exist is dead in the database at once, and the drain
    that found it does not wait the delivery timeout for the copy."""
    url, engine = sqlite_engine
    topic = new_topic(partitions=1)
    write(engine, topic, [payment_event("pay-a", 1)])
    write(engine, topic, [oversized_event("pay-a")])
    write(engine, topic, [payment_event("pay-a", 2), payment_event("pay-b", 3)])
    relay = make_relay(url, kafka_bootstrap, dlq_topic=f"absent.dlq.{topic.split('.')[-1]}",
                       delivery_timeout_seconds=25.0)
    started = time.monotonic()
    try:
        relay.drain()
        drained_in = time.monotonic() - started
    finally:
        relay.close()
    assert state_counts(engine) == {"published": 3, "dead": 1}
    assert drained_in < 15, f"the drain waited {drained_in:.1f} s for a dead-letter copy"
    engine.dispose()
