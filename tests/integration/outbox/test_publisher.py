"""OutboxPublisher on the real PostgreSQL: the caller's transaction decides, NOTIFY arrives on commit only."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, func, select
from sqlalchemy.orm import Session

from payment_events.errors import MigrationRequiredError, StoreError
from payment_events.events import PaymentEvent, RefundProcessed
from payment_events.events.codec import decode, encode
from payment_events.kafka.topics import TopicRouter
from payment_events.outbox import migrate
from payment_events.outbox.publisher import NOTIFY_CHANNEL, OutboxPublisher
from payment_events.outbox.sharding import shard_for
from payment_events.outbox.store import SqlOutboxStore
from payment_events.outbox.table import outbox_table
from payment_events.relay.wakeup import libpq_dsn
from tests.events import failed, succeeded


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    """A migrated fresh database."""
    migrate.upgrade(pg_url)
    engine = create_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def listener(pg_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A psycopg connection LISTENing on the outbox channel."""
    conn = psycopg.connect(libpq_dsn(pg_url), autocommit=True)
    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
    yield conn
    conn.close()


def notifications(conn: psycopg.Connection[tuple[object, ...]], timeout: float) -> int:
    """How many notifications arrive within ``timeout`` seconds."""
    return sum(1 for _ in conn.notifies(timeout=timeout))


def exactly_one_notification(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """True if one notification arrives (within 10 s) and no second one follows (within 0.3 s)."""
    first = sum(1 for _ in conn.notifies(timeout=10.0, stop_after=1))
    return first == 1 and notifications(conn, 0.3) == 0


def count(engine: Engine) -> int:
    """Rows in the outbox."""
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox_table)).scalar_one())


def test_session_commit_writes_the_event_and_notifies_once(
    engine: Engine, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    """Events published through a Session exist after commit, decode back to the same events, and the
    relay channel gets one notification for the transaction."""
    events: list[PaymentEvent] = [succeeded("pay_1"), failed("pay_2"), succeeded("pay_3")]
    with Session(engine) as session, session.begin():
        publisher = OutboxPublisher(session)
        for event in events:
            publisher.publish(event)
        assert notifications(listener, 0.3) == 0  # nothing before commit
    assert exactly_one_notification(listener)
    store = SqlOutboxStore(engine)
    claimed = store.claim(None, 10, datetime.now(UTC))
    assert [decode(r.payload, r.headers) for r in claimed] == events
    assert [r.key for r in claimed] == [b"pay_1", b"pay_2", b"pay_3"]
    assert [r.shard for r in claimed] == [shard_for(k) for k in (b"pay_1", b"pay_2", b"pay_3")]
    assert {r.topic for r in claimed} == {"payment.events"}


def test_rollback_leaves_no_event_and_no_notification(
    engine: Engine, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    """If the caller rolls back, the event does not exist and the relay is not woken."""
    with engine.connect() as conn:
        OutboxPublisher(conn).publish_payment_succeeded(succeeded())
        conn.rollback()

    def failing_payment() -> None:
        with Session(engine) as session, session.begin():
            OutboxPublisher(session).publish(succeeded())
            raise RuntimeError("the payment failed")

    with pytest.raises(RuntimeError):
        failing_payment()
    assert count(engine) == 0
    assert notifications(listener, 0.5) == 0


def test_publisher_never_commits(engine: Engine) -> None:
    """Publishing leaves the transaction open: closing without commit discards the event."""
    conn = engine.connect()
    OutboxPublisher(conn).publish(succeeded())
    assert conn.in_transaction()
    conn.close()
    assert count(engine) == 0


def test_publish_many_is_one_batch_in_order_with_routing(
    engine: Engine, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    """publish_many inserts every event in the given order, routed per type by a TopicRouter."""
    router = TopicRouter("payment.events", {"PaymentFailed": "payment.failed"})
    events: list[PaymentEvent] = [failed("pay_9"), succeeded("pay_9"), failed("pay_1")]
    with engine.begin() as conn:
        OutboxPublisher(conn, router=router).publish_many(events)
    assert exactly_one_notification(listener)
    claimed = SqlOutboxStore(engine).claim(None, 10, datetime.now(UTC))
    assert [r.event_id for r in claimed] == [encode(e).event_id for e in events]
    assert [r.topic for r in claimed] == ["payment.failed", "payment.events", "payment.failed"]


def test_notify_can_be_turned_off(engine: Engine, listener: psycopg.Connection[tuple[object, ...]]) -> None:
    """With notify=False the row is written and no notification is sent."""
    with engine.begin() as conn:
        OutboxPublisher(conn, notify=False).publish(succeeded())
        OutboxPublisher(conn, notify=False).publish_many([succeeded("pay_2"), succeeded("pay_3")])
    assert count(engine) == 3
    assert notifications(listener, 0.5) == 0


def test_late_commit_is_found_after_an_earlier_commit(engine: Engine) -> None:
    """Two concurrent payment transactions: the one that got the lower id commits last and is claimed."""
    slow = engine.connect()
    try:
        OutboxPublisher(slow).publish(succeeded("pay_slow"))
        done = threading.Event()

        def fast_writer() -> None:
            with engine.begin() as conn:
                OutboxPublisher(conn).publish(succeeded("pay_fast"))
            done.set()

        thread = threading.Thread(target=fast_writer)
        thread.start()
        thread.join(10)
        assert done.is_set()
        store = SqlOutboxStore(engine)
        assert [r.key for r in store.claim(None, 10, datetime.now(UTC))] == [b"pay_fast"]
        slow.commit()
        claimed = store.claim(None, 10, datetime.now(UTC))
        assert [r.key for r in claimed] == [b"pay_slow", b"pay_fast"]
        assert claimed[0].id < claimed[1].id
    finally:
        slow.close()


def test_duplicate_event_id_is_refused(engine: Engine) -> None:
    """The same event published twice is refused with a StoreError, not stored twice."""
    event = succeeded()
    with engine.begin() as conn:
        OutboxPublisher(conn).publish(event)
    with pytest.raises(StoreError, match="already in the outbox"), engine.begin() as conn:
        OutboxPublisher(conn).publish(event)
    assert count(engine) == 1


def test_missing_table_asks_for_a_migration(pg_url: str) -> None:
    """Publishing into a database that was never migrated says to run `payment-events db upgrade`."""
    engine = create_engine(pg_url)
    try:
        with pytest.raises(MigrationRequiredError, match="db upgrade"), engine.begin() as conn:
            OutboxPublisher(conn).publish(succeeded())
    finally:
        engine.dispose()


def test_refund_event_is_keyed_by_its_partition_key(engine: Engine) -> None:
    """The outbox key is the codec's key, so all events of a payment share a shard and an order."""
    refund = RefundProcessed(
        refund_id="ref_1",
        payment_id="pay_7",
        order_id="ord_1",
        amount_refunded=500,
        currency="EUR",
        processed_at=datetime.now(UTC),
    )
    with engine.begin() as conn:
        OutboxPublisher(conn).publish_refund_processed(refund)
    [record] = SqlOutboxStore(engine).claim(None, 10, datetime.now(UTC))
    assert record.key == encode(refund).key
    assert record.shard == shard_for(record.key)


def test_notify_interval_rate_limits_notifications_per_process(
    engine: Engine, listener: psycopg.Connection[tuple[object, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With notify_interval, only the first transaction in the interval notifies; every row is written."""
    from payment_events.outbox import publisher as publisher_module

    monkeypatch.setattr(publisher_module, "_last_notify", [float("-inf")])
    with engine.begin() as conn:
        OutboxPublisher(conn, notify_interval=60).publish(succeeded("pay_1"))
    assert exactly_one_notification(listener)
    with engine.begin() as conn:
        OutboxPublisher(conn, notify_interval=60).publish(succeeded("pay_2"))
    assert notifications(listener, 0.5) == 0
    assert count(engine) == 2
