"""The relay end to end on the real outbox (PostgreSQL and SQLite) and the real Kafka, checked with kcat."""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlalchemy as sa

from payment_events.events.codec import encode
from payment_events.kafka.topics import TopicRouter
from payment_events.outbox.publisher import OutboxPublisher
from tests.conftest import KcatMessage
from tests.integration.relay_support import (
    RelayThread,
    check_order,
    make_relay,
    migrated_engine,
    oversized_event,
    payment_event,
    rows,
    start_relay_process,
    state_counts,
    wait_for,
    write,
)

Consume = Callable[..., list[KcatMessage]]


def test_only_committed_events_are_published_and_the_ledger_matches_the_topic(
    db_url: str, engine: sa.Engine, kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """Rolled-back events never reach Kafka; committed ones do, at the partition/offset the row records."""
    topic = new_topic(partitions=3)
    committed = write(engine, topic, [payment_event("pay-a", 1), payment_event("pay-b", 2)])
    with engine.connect() as conn:
        trans = conn.begin()
        OutboxPublisher(conn, router=TopicRouter(topic)).publish(payment_event("pay-a", 3))
        trans.rollback()
    committed += write(engine, topic, [payment_event("pay-a", 4)])
    relay = make_relay(db_url, kafka_bootstrap)
    try:
        assert relay.drain() == 3
    finally:
        relay.close()
    messages = kcat_consume(topic, 3)
    assert sorted(m.headers["ce_id"].decode() for m in messages) == sorted(committed)
    by_position = {(m.partition, m.offset): m for m in messages}
    for row in rows(engine):
        assert row["state"] == "published"
        message = by_position[(row["kafka_partition"], row["kafka_offset"])]
        assert message.headers["ce_id"].decode() == row["event_id"]
        assert message.key == row["key"]
    report = check_order(messages, {"pay-a": [committed[0], committed[2]], "pay-b": [committed[1]]})
    assert report.missing == []
    assert report.order_violations == []


def test_poison_event_goes_to_dead_state_and_dlq_while_its_key_and_others_continue(
    db_url: str, engine: sa.Engine, kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """An event larger than the broker allows is dead with the reason and copied to the DLQ topic
    (headers carry the reason); the same key's later events and other keys are published."""
    topic = new_topic(partitions=3)
    dlq = new_topic(partitions=1, prefix="dlq")
    before = write(engine, topic, [payment_event("pay-p", 1)])
    write(engine, topic, [oversized_event("pay-p")])
    after = write(engine, topic, [payment_event("pay-p", 2), payment_event("pay-q", 3)])
    relay = make_relay(db_url, kafka_bootstrap, dlq_topic=dlq)
    try:
        relay.drain()
    finally:
        relay.close()
    states = {r["event_id"]: r for r in rows(engine)}
    poison = next(r for r in states.values() if r["state"] == "dead")
    assert "MSG_SIZE_TOO_LARGE" in poison["last_error"]
    assert state_counts(engine) == {"published": 3, "dead": 1}
    published = kcat_consume(topic, 3)
    assert [m.headers["ce_id"].decode() for m in published if m.key == b"pay-p"] == [before[0], after[0]]
    (copy,) = kcat_consume(dlq, 1)
    assert copy.key == b"pay-p"
    assert copy.headers["dlq-original-topic"] == topic.encode()
    assert copy.headers["dlq-error-code"] == b"MSG_SIZE_TOO_LARGE"
    assert copy.headers["dlq-attempts"] == b"1"
    assert b"MSG_SIZE_TOO_LARGE" in copy.headers["dlq-reason"]
    assert copy.headers["dlq-outbox-id"] == str(poison["id"]).encode()


def test_retention_purges_published_rows_only(
    db_url: str, engine: sa.Engine, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """With zero retention the purge deletes published rows in small batches and leaves dead ones."""
    topic = new_topic(partitions=1)
    dlq = new_topic(partitions=1, prefix="dlq")
    write(engine, topic, [payment_event(f"pay-{n}", n) for n in range(7)] + [oversized_event("pay-x")])
    relay = make_relay(db_url, kafka_bootstrap, dlq_topic=dlq, retention_seconds=0, purge_batch_size=3)
    try:
        relay.drain()
        assert relay.purge() == 7
    finally:
        relay.close()
    assert state_counts(engine) == {"dead": 1}


def test_a_transaction_committing_late_is_still_published(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """An event held in an open transaction while later ones commit and publish is published after its
    commit: claiming is by state, not by a cursor over ids (PostgreSQL; SQLite has a single writer)."""
    topic = new_topic(partitions=3)
    engine = migrated_engine(pg_url)
    relay = make_relay(pg_url, kafka_bootstrap, poll_interval_seconds=0.1)
    runner = RelayThread(relay)
    try:
        with engine.connect() as held:
            trans = held.begin()
            held_event = encode(payment_event("pay-held", 1))
            OutboxPublisher(held, router=TopicRouter(topic)).publish_encoded([held_event])
            later = write(engine, topic, [payment_event(f"pay-{n}", n) for n in range(5)])
            messages = kcat_consume(topic, 5)
            assert sorted(m.headers["ce_id"].decode() for m in messages) == sorted(later)
            wait_for(lambda: state_counts(engine).get("published", 0) == 5, 30, "later events marked")
            trans.commit()
        wait_for(lambda: state_counts(engine) == {"published": 6}, 30, "the held event to be published")
        messages = kcat_consume(topic, 6)
        assert held_event.event_id in {m.headers["ce_id"].decode() for m in messages}
        held_row = next(r for r in rows(engine) if r["event_id"] == held_event.event_id)
        assert held_row["id"] < max(r["id"] for r in rows(engine))
    finally:
        runner.stop()
        engine.dispose()


def test_a_commit_wakes_the_relay_through_listen_notify(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """With a poll interval far longer than the test's wait, a commit's NOTIFY still wakes the relay."""
    topic = new_topic(partitions=1)
    engine = migrated_engine(pg_url)
    relay = make_relay(pg_url, kafka_bootstrap, poll_interval_seconds=120.0)
    runner = RelayThread(relay)
    try:
        wait_for(lambda: relay.stopping or relay_idle(relay), 10, "relay to start")
        write(engine, topic, [payment_event("pay-n", 1)])
        wait_for(lambda: state_counts(engine) == {"published": 1}, 30, "a notified publish")
    finally:
        runner.stop()
        engine.dispose()


def relay_idle(relay: object) -> bool:
    """The relay thread had time to reach its first wait (its first cycle on an empty outbox is quick)."""
    import time

    time.sleep(1.0)
    return True


def test_the_relay_entry_point_drains_and_exits(
    db_url: str, engine: sa.Engine, kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """`python -m payment_events.service --drain` publishes what is pending, prints the count, exits 0."""
    topic = new_topic(partitions=2)
    written = write(engine, topic, [payment_event(f"pay-{n % 4}", n) for n in range(40)])
    process = start_relay_process(db_url, kafka_bootstrap, "--drain", "--batch-size", "16")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    assert json.loads(out) == {"resolved": 40}
    assert state_counts(engine) == {"published": 40}
    assert sorted(m.headers["ce_id"].decode() for m in kcat_consume(topic, 40)) == sorted(written)
