"""The audit against the real PostgreSQL and Kafka: a topic written by a plain producer, a ledger by hand."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka import KafkaError, Message, Producer

from payment_events.audit import audit
from payment_events.outbox.table import metadata, outbox_table
from tests.conftest import KcatMessage


@dataclass
class Sent:
    """Where the broker put one produced event."""

    event_id: str
    partition: int
    offset: int


def produce(bootstrap: str, topic: str, events: list[tuple[str, str, str]]) -> list[Sent]:
    """Produce ``(event_id, event_type, key)`` events in order with CloudEvents headers; return positions."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    sent: list[Sent] = []

    errors: list[KafkaError] = []

    def on_delivery(event_id: str, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
            return
        sent.append(Sent(event_id, msg.partition() or 0, msg.offset() or 0))

    for event_id, event_type, key in events:
        value = json.dumps({"eventId": event_id, "eventType": event_type, "data": {}}).encode()
        producer.produce(topic, key=key.encode(), value=value, on_delivery=partial(on_delivery, event_id),
                         headers=[("ce_id", event_id.encode()), ("ce_type", event_type.encode())])
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not errors
    return sent


def make_ledger(url: str) -> sa.Engine:
    """An engine on ``url`` with the outbox table created."""
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    return engine


def ledger_row(
    outbox_id: int,
    event_id: str,
    topic: str,
    key: str,
    state: str,
    *,
    event_type: str = "PaymentSucceeded",
    sent: Sent | None = None,
    created_at: datetime | None = None,
) -> dict[str, object]:
    """One outbox row as the relay would have left it."""
    now = created_at or datetime.now(UTC)
    return {
        "id": outbox_id, "event_id": event_id, "event_type": event_type, "schema_version": 1, "topic": topic,
        "key": key.encode(), "payload": b"{}", "headers": "[]", "shard": 0, "state": state, "attempts": 0,
        "next_attempt_at": now, "created_at": now,
        "published_at": now if state == "published" else None,
        "kafka_partition": sent.partition if sent else None, "kafka_offset": sent.offset if sent else None,
    }


def test_audit_finds_lost_duplicate_reordered_and_unknown_events(
    pg_url: str,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    kcat_consume: Callable[..., list[KcatMessage]],
) -> None:
    """Against a real topic and ledger the audit counts each anomaly exactly, and kcat sees the same topic."""
    topic = new_topic(partitions=3)
    names = ("a1", "a2", "b1", "lost", "dup", "v10", "v11", "stray", "pend")
    ids = {name: str(uuid.uuid4()) for name in names}
    # Topic order: key "v" gets id 11 before id 10 (a reorder); "dup" twice; "stray" is not in the ledger.
    sent = produce(kafka_bootstrap, topic, [
        (ids["a1"], "PaymentSucceeded", "a"), (ids["a2"], "PaymentCaptured", "a"),
        (ids["b1"], "RefundProcessed", "b"), (ids["dup"], "PaymentSucceeded", "d"),
        (ids["dup"], "PaymentSucceeded", "d"), (ids["v11"], "PaymentFailed", "v"),
        (ids["v10"], "PaymentFailed", "v"), (ids["stray"], "PaymentSucceeded", "s"),
    ])
    pos = {s.event_id: s for s in sent}
    engine = make_ledger(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(outbox_table.insert(), [
                ledger_row(1, ids["a1"], topic, "a", "published", sent=pos[ids["a1"]]),
                ledger_row(2, ids["a2"], topic, "a", "published", event_type="PaymentCaptured",
                           sent=pos[ids["a2"]]),
                ledger_row(3, ids["b1"], topic, "b", "published", event_type="RefundProcessed",
                           sent=pos[ids["b1"]]),
                ledger_row(4, ids["lost"], topic, "l", "published", sent=Sent(ids["lost"], 0, 999)),
                ledger_row(5, ids["dup"], topic, "d", "published", sent=pos[ids["dup"]]),
                ledger_row(6, ids["pend"], topic, "p", "pending"),
                ledger_row(7, str(uuid.uuid4()), topic, "x", "dead", event_type="RefundFailed"),
                ledger_row(10, ids["v10"], topic, "v", "published", event_type="PaymentFailed",
                           sent=pos[ids["v10"]]),
                ledger_row(11, ids["v11"], topic, "v", "published", event_type="PaymentFailed",
                           sent=pos[ids["v11"]]),
            ])
    finally:
        engine.dispose()

    report = audit(pg_url, kafka_bootstrap, [topic])

    assert not report.ok
    assert report.exit_code == 1
    overall = report.overall
    assert (overall.committed, overall.published, overall.pending, overall.dead) == (9, 7, 1, 1)
    assert overall.lost == 1
    assert [e.event_id for e in report.lost] == [ids["lost"]]
    assert (overall.duplicates, [d.event_id for d in report.duplicates]) == (1, [ids["dup"]])
    assert overall.order_violations == 1
    assert report.order_violations[0].event_id == ids["v10"]
    assert report.by_type["PaymentFailed"].order_violations == 1
    assert [u.event_id for u in report.unknown] == [ids["stray"]]
    assert overall.ledger_mismatches == 0
    assert report.messages_read == 8
    witness = kcat_consume(topic, 8)
    assert len(witness) == report.messages_read
    assert {m.headers["ce_id"].decode() for m in witness} == {*ids.values()} - {ids["lost"], ids["pend"]}


def test_clean_ledger_passes_and_topics_default_to_the_ledger(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """Every published row on its topic once and in order: ok; the topics default to the ledger's."""
    topic = new_topic(partitions=2)
    events = [(str(uuid.uuid4()), "PaymentSucceeded", f"key-{i % 7}") for i in range(200)]
    pos = {s.event_id: s for s in produce(kafka_bootstrap, topic, events)}
    engine = make_ledger(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(outbox_table.insert(), [
                ledger_row(i + 1, eid, topic, key, "published", sent=pos[eid])
                for i, (eid, _, key) in enumerate(events)
            ])
    finally:
        engine.dispose()

    report = audit(pg_url, kafka_bootstrap)

    assert report.topics == [topic]
    assert report.ok
    assert (report.overall.committed, report.overall.delivered, report.overall.lost) == (200, 200, 0)
    assert report.overall.ledger_mismatches == 0
    assert sum(r.end - r.start for r in report.partitions) == 200


def test_wrong_recorded_offset_is_a_ledger_mismatch(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """A published row that records another event's offset is reported as a ledger mismatch, not as lost."""
    topic = new_topic(partitions=1)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    produce(kafka_bootstrap, topic, [(a, "PaymentSucceeded", "k"), (b, "PaymentSucceeded", "k")])
    engine = make_ledger(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(outbox_table.insert(), [
                ledger_row(1, a, topic, "k", "published", sent=Sent(a, 0, 0)),
                ledger_row(2, b, topic, "k", "published", sent=Sent(b, 0, 0)),
            ])
    finally:
        engine.dispose()

    report = audit(pg_url, kafka_bootstrap, [topic])

    assert report.ok
    assert report.overall.ledger_mismatches == 1
    assert report.ledger_mismatches[0].event_id == b
    assert report.ledger_mismatches[0].found_event_id == a


def test_time_range_audits_only_rows_created_in_it(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """With since/until, rows created outside the window are ignored and their messages are not unknown."""
    topic = new_topic(partitions=1)
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    pos = {s.event_id: s for s in produce(kafka_bootstrap, topic, [(old, "PaymentSucceeded", "k"),
                                                                    (new, "PaymentSucceeded", "k")])}
    now = datetime.now(UTC)
    engine = make_ledger(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(outbox_table.insert(), [
                ledger_row(1, old, topic, "k", "published", sent=pos[old],
                           created_at=now - timedelta(days=2)),
                ledger_row(2, new, topic, "k", "published", sent=pos[new], created_at=now),
            ])
    finally:
        engine.dispose()

    hour = timedelta(hours=1)
    report = audit(pg_url, kafka_bootstrap, [topic], since=now - hour, until=now + hour)

    assert report.ok
    assert report.overall.committed == 1
    assert report.overall.delivered == 1
    assert report.overall.unknown == 0


def test_missing_topic_is_reported_and_its_published_rows_are_lost(
    pg_url: str, kafka_bootstrap: str
) -> None:
    """A ledger topic missing on the broker is named unreadable; its published rows count as lost."""
    topic = f"missing.{uuid.uuid4().hex[:12]}"
    engine = make_ledger(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(outbox_table.insert(), [
                ledger_row(1, str(uuid.uuid4()), topic, "k", "published", sent=Sent("", 0, 0)),
                ledger_row(2, str(uuid.uuid4()), topic, "k", "pending"),
            ])
    finally:
        engine.dispose()

    report = audit(pg_url, kafka_bootstrap, [topic], timeout=60)

    assert topic in report.unreadable_topics
    assert report.overall.lost == 1
    assert report.overall.pending == 1
    assert not report.ok


def test_audit_reads_a_sqlite_ledger(
    tmp_path: Path, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """The embedded SQLite outbox is audited like PostgreSQL: a missing published event is lost."""
    topic = new_topic(partitions=1)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    sent = produce(kafka_bootstrap, topic, [(a, "PaymentSucceeded", "k")])
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    engine = make_ledger(url)
    try:
        with engine.begin() as conn:
            conn.execute(outbox_table.insert(), [
                ledger_row(1, a, topic, "k", "published", sent=sent[0]),
                ledger_row(2, b, topic, "k", "published", sent=Sent(b, 0, 1)),
            ])
    finally:
        engine.dispose()

    report = audit(url, kafka_bootstrap, [topic])

    assert [e.event_id for e in report.lost] == [b]
    assert report.overall.delivered == 1


def test_events_of_purged_rows_are_reported_as_purged(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """Events whose rows retention already deleted are unknown-but-purged, and the audit stays ok."""
    topic = new_topic(partitions=1)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    sent = produce(kafka_bootstrap, topic, [(i, "PaymentSucceeded", "k") for i in ids])
    later = datetime.now(UTC) + timedelta(seconds=2)  # the remaining rows were marked after the purged one
    engine = make_ledger(pg_url)
    try:
        with engine.begin() as conn:
            rows = [ledger_row(n + 2, s.event_id, topic, "k", "published", sent=s, created_at=later)
                    for n, s in enumerate(sent[1:])]
            conn.execute(outbox_table.insert(), rows)
    finally:
        engine.dispose()

    report = audit(pg_url, kafka_bootstrap, [topic])

    assert report.ok
    assert (report.overall.unknown, report.overall.purged) == (1, 1)
    assert [u.event_id for u in report.unknown] == [ids[0]]
    assert report.ledger_first_id == 2


@pytest.mark.slow
@pytest.mark.usefixtures("kafka_bootstrap")
def test_audit_of_a_busy_outbox_reports_nothing_lost_or_unknown() -> None:
    """Audits taken while writers commit and a real relay publishes never report a false loss, a false
    unknown or a ledger mismatch (ledger snapshot first, watermarks second), and the last one is complete."""
    from tests.chaos.harness import RelayProcess, Writers, relay_options, scenario_space, wait_drained
    from tests.chaos.infra import SHARED_KAFKA

    with scenario_space(SHARED_KAFKA, partitions=3) as (url, topic, dlq):
        relay = RelayProcess("relay-audit-busy", url, SHARED_KAFKA, relay_options(dlq))
        writers = Writers(url, topic, total=3000, rate=300.0, writers=3)
        relay.start(wait=True)
        writers.start()
        try:
            reports = []
            while writers.alive:
                reports.append(audit(url, SHARED_KAFKA, [topic]))
            writers.join()
            wait_drained(url, 60, [relay])
            final = audit(url, SHARED_KAFKA, [topic])
        finally:
            relay.terminate()
    assert reports, "the writers finished before a single audit ran"
    for report in reports:
        t = report.overall
        figures = (t.lost, t.unknown, t.ledger_mismatches, t.order_violations)
        assert figures == (0, 0, 0, 0), report.render_text()
    assert final.overall.committed == len(writers.log.committed) == 3000
    assert final.overall.delivered == 3000
    assert final.overall.pending == 0
