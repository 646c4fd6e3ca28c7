"""Dead-letter admin on an SQLite file: a malformed row can still be shown, listed and replayed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from payment_events.events import PaymentSucceeded
from payment_events.outbox import dead_letters as admin
from payment_events.outbox import migrate
from payment_events.outbox.publisher import OutboxPublisher
from payment_events.outbox.sqlite import configure_sqlite
from payment_events.outbox.store import SqlOutboxStore
from payment_events.relay.decisions import resolve_batch
from payment_events.relay.settings import RelayConfig


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite file."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    engine = create_engine(url)
    configure_sqlite(engine)
    yield engine
    engine.dispose()


def test_malformed_dead_row_is_shown_listed_and_replayed(engine: Engine) -> None:
    """A row dead-lettered for a corrupt headers column still shows (no headers) and can be replayed."""
    event = PaymentSucceeded(
        payment_id="pay_1", order_id="ord_1", amount_paid=1999, currency="EUR",
        payment_gateway="stripe", processed_at=datetime.now(UTC),
    )
    with engine.begin() as conn:
        OutboxPublisher(conn).publish(event)
        conn.execute(text("UPDATE payment_events_outbox SET headers = '{not json'"))
    store = SqlOutboxStore(engine)
    now = datetime.now(UTC)
    records = store.claim(None, 10, now)
    assert len(records) == 1
    assert records[0].defect is not None
    resolution = resolve_batch(records, [None], now=now, policy=RelayConfig().retry_policy)
    store.resolve(resolution.published, resolution.retries, resolution.dead)

    dead = admin.list_dead(engine)
    assert [d.event_id for d in dead] == [str(event.event_id)]
    assert dead[0].last_error is not None
    assert "malformed" in dead[0].last_error
    shown = admin.get(engine, dead[0].id)
    assert shown is not None
    assert shown.state == "dead"
    assert shown.headers == ()
    assert shown.payload == records[0].payload
    assert admin.replay(engine, [dead[0].id]) == 1
    assert admin.list_dead(engine) == []
