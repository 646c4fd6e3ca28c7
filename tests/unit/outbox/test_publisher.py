"""OutboxPublisher on an SQLite file: the caller's transaction decides; one statement per publish."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.orm import Session

from payment_events.errors import MigrationRequiredError, StoreError
from payment_events.events import PaymentEvent
from payment_events.events.codec import decode, encode
from payment_events.kafka.topics import TopicRouter
from payment_events.outbox import migrate
from payment_events.outbox.publisher import OutboxPublisher
from payment_events.outbox.sharding import shard_for
from payment_events.outbox.sqlite import configure_sqlite
from payment_events.outbox.store import SqlOutboxStore
from payment_events.outbox.table import outbox_table
from tests.events import refund_failed, succeeded


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite file (WAL, busy timeout)."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    engine = create_engine(url)
    configure_sqlite(engine)
    yield engine
    engine.dispose()


def rows(engine: Engine) -> list[Any]:
    """Every outbox row, in id order."""
    with engine.connect() as conn:
        return list(conn.execute(select(outbox_table).order_by(outbox_table.c.id)).all())


def test_commit_through_a_session_stores_the_encoded_event(engine: Engine) -> None:
    """After the Session commits, exactly one pending row holds the codec's bytes, key and shard."""
    event = succeeded()
    with Session(engine) as session, session.begin():
        OutboxPublisher(session).publish_payment_succeeded(event)
    [row] = rows(engine)
    enc = encode(event)
    assert (row.event_id, row.event_type, row.schema_version) == (enc.event_id, "PaymentSucceeded", 1)
    assert (row.key, row.payload, row.topic, row.state) == (b"pay_1", enc.value, "payment.events", "pending")
    assert row.shard == shard_for(b"pay_1")
    [record] = SqlOutboxStore(engine).claim(None, 1, datetime.now(UTC))
    assert decode(record.payload, record.headers) == event


def test_rollback_of_connection_or_session_leaves_nothing(engine: Engine) -> None:
    """A rolled-back Connection or Session transaction leaves no row."""
    with engine.connect() as conn:
        OutboxPublisher(conn).publish(succeeded())
        conn.rollback()
    with Session(engine) as session:
        OutboxPublisher(session).publish(succeeded())
        session.rollback()
    assert rows(engine) == []


def test_publish_is_one_statement_and_never_commits(engine: Engine) -> None:
    """One publish issues exactly one SQL statement (no reflection, no commit) in the open transaction."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with engine.connect() as conn:
        publisher = OutboxPublisher(conn)
        publisher.publish(succeeded("pay_0"))  # warm SQLAlchemy's compiled cache
        event.listen(engine, "before_cursor_execute", record)
        try:
            publisher.publish(succeeded("pay_1"))
            publisher.publish_many([succeeded("pay_2"), succeeded("pay_3")])
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert conn.in_transaction()
        assert len(statements) == 2
        assert all(s.lstrip().upper().startswith("INSERT") for s in statements)
        conn.rollback()
    assert rows(engine) == []


def test_publish_many_keeps_order_and_routes_by_type(engine: Engine) -> None:
    """publish_many stores events in the given order; the router picks each event's topic."""
    events: list[PaymentEvent] = [refund_failed("pay_2"), succeeded("pay_2"), refund_failed("pay_1")]
    with engine.begin() as conn:
        router = TopicRouter(routes={"RefundFailed": "refund.failed"})
        OutboxPublisher(conn, router=router).publish_many(events)
        OutboxPublisher(conn, router=lambda event_type: f"custom.{event_type}").publish(succeeded("pay_9"))
        OutboxPublisher(conn).publish_many([])
    stored = rows(engine)
    assert [r.event_id for r in stored[:3]] == [encode(e).event_id for e in events]
    assert [r.topic for r in stored] == [
        "refund.failed",
        "payment.events",
        "refund.failed",
        "custom.PaymentSucceeded",
    ]


def test_custom_shard_count_is_used(engine: Engine) -> None:
    """The shard column follows the publisher's shard count."""
    with engine.begin() as conn:
        OutboxPublisher(conn, shard_count=4).publish(succeeded("pay_77"))
    assert rows(engine)[0].shard == shard_for(b"pay_77", 4)


def test_duplicate_event_is_refused(engine: Engine) -> None:
    """Publishing the same event twice raises StoreError (one row stays)."""
    event = succeeded()
    with engine.begin() as conn:
        OutboxPublisher(conn).publish(event)
    with pytest.raises(StoreError, match="already in the outbox"), engine.begin() as conn:
        OutboxPublisher(conn).publish(event)
    assert len(rows(engine)) == 1


def test_unmigrated_database_asks_for_an_upgrade(tmp_path: Path) -> None:
    """Without the outbox table, publish raises MigrationRequiredError naming the command."""
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(MigrationRequiredError, match="db upgrade"), engine.begin() as conn:
            OutboxPublisher(conn).publish(succeeded())
    finally:
        engine.dispose()


def test_bad_arguments_are_refused(engine: Engine) -> None:
    """A non-SQLAlchemy connection, a non-callable router or a bad shard count is refused up front."""
    with pytest.raises(TypeError):
        OutboxPublisher(object())  # type: ignore[arg-type]
    with engine.connect() as conn:
        with pytest.raises(TypeError):
            OutboxPublisher(conn, router="payment.events")
        with pytest.raises(ValueError, match="between 1 and"):
            OutboxPublisher(conn, shard_count=0)


def test_timestamps_are_stored_in_the_same_text_form_as_the_store_writes(engine: Engine) -> None:
    """The publisher's fast path writes timestamps exactly as the store's SQLAlchemy type does, so text
    comparisons in SQLite compare instants."""
    from datetime import timedelta, timezone

    from payment_events.outbox.ports import Published

    moment = datetime(2026, 5, 1, 14, 3, 7, 120, tzinfo=timezone(timedelta(hours=2)))
    with engine.begin() as conn:
        OutboxPublisher(conn, clock=lambda: moment).publish(succeeded())
    store = SqlOutboxStore(engine, clock=lambda: moment)
    [record] = store.claim(None, 1, moment)
    store.resolve([Published(record.id, 0, 0)], [], [])
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT created_at, next_attempt_at, published_at FROM payment_events_outbox")
        ).one()
    assert stored[0] == stored[1] == stored[2] == "2026-05-01 12:03:07.000120"
    assert record.created_at == moment


def test_outbox_publisher_is_a_payment_event_publisher(engine: Engine) -> None:
    """OutboxPublisher satisfies the publisher port, with the eight typed methods."""
    from payment_events.events.publisher import PaymentEventPublisher

    with engine.connect() as conn:
        publisher = OutboxPublisher(conn)
        assert isinstance(publisher, PaymentEventPublisher)
        publisher.publish_refund_failed(refund_failed())
        assert [r.event_type for r in rows_in(conn)] == ["RefundFailed"]
        conn.rollback()


def rows_in(conn: Any) -> list[Any]:
    """Every outbox row visible to ``conn`` (including its own uncommitted ones)."""
    return list(conn.execute(select(outbox_table)).all())
