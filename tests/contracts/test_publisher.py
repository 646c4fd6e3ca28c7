"""The publisher port's contract for the outbox: what a publish writes, for ``OutboxPublisher`` on SQLite
and PostgreSQL and for the in-memory publisher users get (over the in-memory store).

Each must write one row per event with the routed topic, the event's key and shard, its id and type,
the encoded payload and the CloudEvents headers; ``publish_many`` keeps the iteration order in the ids;
and the typed methods write exactly what ``publish`` writes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from payment_events import uuid7
from payment_events.events import CURRENT_EVENT_CLASSES, PaymentEvent
from payment_events.events.codec import encode
from payment_events.events.examples import example_event
from payment_events.events.publisher import PaymentEventPublisher
from payment_events.kafka.topics import TopicRouter
from payment_events.outbox import migrate
from payment_events.outbox.ports import OutboxRecord
from payment_events.outbox.publisher import OutboxPublisher
from payment_events.outbox.sharding import DEFAULT_SHARD_COUNT, shard_for
from payment_events.outbox.sqlite import configure_sqlite
from payment_events.outbox.store import SqlOutboxStore
from payment_events.testing import InMemoryOutboxStore, InMemoryPublisher

ROUTER = TopicRouter("contract.events", {"PaymentFailed": "contract.failed"})
FAR_FUTURE_LIMIT = 1000


@dataclass
class Subject:
    """Run ``publish`` calls in one committed transaction, then read back every pending row."""

    write: Callable[[Callable[[PaymentEventPublisher], None]], None]
    rows: Callable[[], list[OutboxRecord]]


def _sql_subject(url: str) -> Iterator[Subject]:
    migrate.upgrade(url)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    store = SqlOutboxStore(engine)

    def write(body: Callable[[PaymentEventPublisher], None]) -> None:
        with engine.begin() as conn:
            body(OutboxPublisher(conn, router=ROUTER))

    def rows() -> list[OutboxRecord]:
        from datetime import UTC, datetime

        return store.claim(None, FAR_FUTURE_LIMIT, datetime.now(UTC))

    try:
        yield Subject(write, rows)
    finally:
        engine.dispose()


@pytest.fixture(params=["in-memory", "sqlite", "postgresql"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    """One publisher adapter over its own store."""
    if request.param == "in-memory":
        store = InMemoryOutboxStore()
        publisher = InMemoryPublisher(store, router=ROUTER)

        def write(body: Callable[[PaymentEventPublisher], None]) -> None:
            body(publisher)

        def rows() -> list[OutboxRecord]:
            from datetime import UTC, datetime

            return store.claim(None, FAR_FUTURE_LIMIT, datetime.now(UTC))

        yield Subject(write, rows)
        return
    if request.param == "sqlite":
        yield from _sql_subject(f"sqlite:///{tmp_path / 'outbox.db'}")
    else:
        yield from _sql_subject(request.getfixturevalue("pg_url"))


def _events() -> list[PaymentEvent]:
    """One example of each event type, each with a fresh id (an outbox holds an eventId once)."""
    return [
        example_event(model).model_copy(update={"event_id": uuid7()})  # type: ignore[misc]
        for model in CURRENT_EVENT_CLASSES
    ]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_one_row_per_event_with_everything_a_relay_needs(subject: Subject) -> None:
    """Each event becomes one row: routed topic, key, shard, id, type, version, payload and headers as
    the codec encodes them."""
    events = _events()
    def body(publisher: PaymentEventPublisher) -> None:
        for event in events:
            publisher.publish(event)

    subject.write(body)
    rows = subject.rows()
    assert len(rows) == len(events)
    for event, row in zip(events, rows, strict=True):
        encoded = encode(event)
        assert row.topic == ROUTER.topic_for(encoded.event_type)
        assert (row.key, row.event_id, row.event_type) == (encoded.key, encoded.event_id, encoded.event_type)
        assert row.schema_version == encoded.schema_version
        assert row.shard == shard_for(encoded.key, DEFAULT_SHARD_COUNT)
        assert row.payload == encoded.value
        assert dict(row.headers) == dict(encoded.headers)
        assert row.attempts == 0
        assert row.defect is None


def test_publish_many_keeps_the_iteration_order_in_the_ids(subject: Subject) -> None:
    """The ids (and so each key's order) follow the order the events were given in."""
    events = _events()[::-1]
    subject.write(lambda publisher: publisher.publish_many(events))
    rows = subject.rows()
    assert [row.event_id for row in rows] == [encode(event).event_id for event in events]
    assert [row.id for row in rows] == sorted(row.id for row in rows)


def test_the_typed_methods_write_what_publish_writes(subject: Subject) -> None:
    """``publish_payment_succeeded(event)`` and its seven siblings are ``publish(event)``."""
    events = _events()

    def body(publisher: PaymentEventPublisher) -> None:
        for event in events:
            method: Any = getattr(publisher, f"publish_{_snake(type(event).__name__)}")
            method(event)

    subject.write(body)
    rows: Sequence[OutboxRecord] = subject.rows()
    assert [(r.event_type, r.event_id) for r in rows] == [
        (encode(e).event_type, encode(e).event_id) for e in events
    ]
