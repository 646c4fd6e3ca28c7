"""Malformed outbox rows end to end (PostgreSQL and SQLite, real Kafka, checked with kcat): dead with a
reason and copied to the DLQ, never produced to the topic, never holding up their key or others."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from payment_events.events.codec import encode
from payment_events.outbox.headers import dump_headers
from payment_events.outbox.sharding import shard_for
from payment_events.outbox.table import outbox_table
from tests.conftest import KcatMessage
from tests.integration.relay_support import (
    check_order,
    make_relay,
    payment_event,
    rows,
    state_counts,
    write,
)

Consume = Callable[..., list[KcatMessage]]


def insert_by_hand(engine: sa.Engine, topic: str, key: str, seq: int, **broken: object) -> str:
    """Write a real event's row with an INSERT of our own, with the ``broken`` columns replaced."""
    event = encode(payment_event(key, seq))
    row: dict[str, object] = {
        "event_id": event.event_id, "event_type": event.event_type, "schema_version": event.schema_version,
        "topic": topic, "key": event.key, "payload": event.value, "headers": dump_headers(event.headers),
        "shard": shard_for(event.key, 64), "next_attempt_at": event.occurred_at,
        "created_at": event.occurred_at,
    }
    row.update(broken)
    with engine.begin() as conn:
        conn.execute(outbox_table.insert(), row)
    return event.event_id


def test_malformed_rows_are_dead_lettered_and_their_key_and_others_still_publish(
    db_url: str, engine: sa.Engine, kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """A row whose headers are not JSON and one with an empty payload go dead (MALFORMED_ROW) with a
    DLQ copy; the same key's earlier and later events and another key's events are published in order."""
    topic = new_topic(partitions=3)
    dlq = new_topic(partitions=1, prefix="dlq")
    before = write(engine, topic, [payment_event("pay-m", 1)])
    bad_headers = insert_by_hand(engine, topic, "pay-m", 2, headers="{not json")
    empty = insert_by_hand(engine, topic, "pay-m", 3, payload=b"")
    later = [payment_event("pay-m", 4), payment_event("pay-n", 5), payment_event("pay-m", 6)]
    after = write(engine, topic, later)
    relay = make_relay(db_url, kafka_bootstrap, dlq_topic=dlq)
    try:
        assert relay.drain() == 6
    finally:
        relay.close()
    assert state_counts(engine) == {"published": 4, "dead": 2}
    by_event = {r["event_id"]: r for r in rows(engine)}
    reason = "MALFORMED_ROW: malformed outbox row: headers column is not valid JSON"
    assert by_event[bad_headers]["last_error"] == reason
    assert by_event[empty]["last_error"] == "MALFORMED_ROW: malformed outbox row: payload is empty"
    published = kcat_consume(topic, 4)
    report = check_order(published, {"pay-m": [before[0], after[0], after[2]], "pay-n": [after[1]]})
    assert report.missing == []
    assert report.order_violations == []
    assert all(m.value for m in published)
    assert {m.headers["ce_id"].decode() for m in published}.isdisjoint({bad_headers, empty})
    copies = kcat_consume(dlq, 2)
    assert sorted(m.headers["dlq-outbox-id"].decode() for m in copies) == sorted(
        str(by_event[e]["id"]) for e in (bad_headers, empty)
    )
    for copy in copies:
        assert copy.key == b"pay-m"
        assert copy.headers["dlq-error-code"] == b"MALFORMED_ROW"
        assert copy.headers["dlq-original-topic"] == topic.encode()
