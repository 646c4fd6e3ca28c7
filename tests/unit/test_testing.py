"""The in-memory fakes shipped for users' tests behave like the real publisher and store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from payment_events.events.codec import decode
from payment_events.events.publisher import PaymentEventPublisher
from payment_events.kafka.topics import TopicRouter
from payment_events.outbox.ports import Published
from payment_events.testing import InMemoryOutboxStore, InMemoryPublisher
from tests.events import succeeded


def test_in_memory_publisher_records_events_and_fills_the_store() -> None:
    """The fake publisher records events in order and writes them into the fake store, routed."""
    store = InMemoryOutboxStore()
    publisher = InMemoryPublisher(store, router=TopicRouter(routes={"PaymentSucceeded": "payment.ok"}))
    assert isinstance(publisher, PaymentEventPublisher)
    first, second = succeeded("pay_1"), succeeded("pay_2")
    publisher.publish_payment_succeeded(first)
    publisher.publish_many([second])
    assert publisher.events == [first, second]
    claimed = store.claim(None, 10, datetime.now(UTC))
    assert [decode(r.payload, r.headers) for r in claimed] == [first, second]
    assert {r.topic for r in claimed} == {"payment.ok"}


def test_in_memory_transaction_rolls_back_on_exception() -> None:
    """Rows written in a failing ``transaction()`` block never become visible."""
    store = InMemoryOutboxStore()

    def failing_payment() -> None:
        with store.transaction() as tx:
            tx.add_raw(b"pay_1")
            raise RuntimeError("payment failed")

    with pytest.raises(RuntimeError):
        failing_payment()
    assert store.rows == []
    assert store.claim(None, 10, datetime.now(UTC)) == []


def test_in_memory_store_refuses_a_duplicate_event_id() -> None:
    """Like the unique index, the fake refuses a second row with the same event id."""
    store = InMemoryOutboxStore()
    with store.transaction() as tx:
        tx.add_raw(b"a", event_id="e-1")
    with pytest.raises(ValueError, match="already in the outbox"), store.transaction() as tx:
        tx.add_raw(b"b", event_id="e-1")
    assert len(store.rows) == 1


def test_publisher_without_store_only_records() -> None:
    """Without a store the fake publisher just keeps the events for assertions."""
    publisher = InMemoryPublisher()
    event = succeeded("pay_3")
    publisher.publish(event)
    assert publisher.events == [event]


def test_published_rows_show_partition_and_offset() -> None:
    """Resolving in the fake records the ledger like the SQL store."""
    store = InMemoryOutboxStore()
    with store.transaction() as tx:
        row_id = tx.add_raw(b"pay_1")
    store.resolve([Published(row_id, 3, 17)], [], [])
    [row] = store.rows
    assert (row.state, row.kafka_partition, row.kafka_offset) == ("published", 3, 17)


def test_the_fakes_users_get_import_no_database_or_kafka_client() -> None:
    """``import payment_events.testing`` (in a user's unit tests) loads neither SQLAlchemy nor a driver nor
    librdkafka: the fakes stand alone."""
    import subprocess
    import sys

    heavy = ("sqlalchemy", "psycopg", "alembic", "confluent_kafka")
    probe = f"import sys, payment_events.testing; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_relay_fakes_example_in_the_outbox_docs_runs() -> None:
    """docs/outbox.md's example drives a real Relay over the in-memory store, producer and clock."""
    import re
    from pathlib import Path

    from payment_events import PaymentSucceeded
    from payment_events.events.examples import example_event

    doc = (Path(__file__).resolve().parents[2] / "docs" / "outbox.md").read_text()
    section = doc.split("The relay's other ports have fakes too", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert block is not None
    namespace = {"event": example_event(PaymentSucceeded)}
    exec(compile(block.group(1), "docs/outbox.md", "exec"), namespace)  # noqa: S102 - our own docs
    assert len(namespace["producer"].messages("payment.events")) == 1  # type: ignore[attr-defined]
