"""What OutboxPublisher and AsyncOutboxPublisher accept: scoped sessions work, anything else gets a hint."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from payment_events import AsyncOutboxPublisher, OutboxPublisher
from payment_events.events import PaymentSucceeded
from payment_events.outbox.migrate import upgrade


def succeeded(payment_id: str) -> PaymentSucceeded:
    """A valid PaymentSucceeded keyed by ``payment_id``."""
    return PaymentSucceeded(
        payment_id=payment_id,
        order_id="ord_1",
        amount_paid=1999,
        currency="EUR",
        payment_gateway="stripe",
        processed_at=datetime.now(UTC),
    )


def outbox_count(engine: sa.Engine) -> int:
    """Rows in the outbox."""
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM payment_events_outbox")).scalar_one())


def test_scoped_session_publishes_in_the_current_session(tmp_path: Path) -> None:
    """A scoped_session (Flask-SQLAlchemy's db.session) is resolved at each publish; rollback discards."""
    url = f"sqlite:///{tmp_path / 'o.db'}"
    upgrade(url)
    engine = sa.create_engine(url)
    scoped = scoped_session(sessionmaker(engine))
    publisher = OutboxPublisher(scoped)  # created once, like an app-level object
    publisher.publish(succeeded("pay_1"))
    scoped.commit()
    scoped.remove()
    publisher.publish(succeeded("pay_2"))
    scoped.rollback()
    scoped.remove()
    assert outbox_count(engine) == 1
    engine.dispose()


@pytest.mark.parametrize(
    ("make", "hint"),
    [
        (lambda: sa.create_engine("sqlite://"), "engine.begin()"),
        (lambda: create_async_engine("postgresql+asyncpg://u@127.0.0.1:1/none"), "engine.begin()"),
        (lambda: "sqlite://", "pass the Session or Connection"),
    ],
)
def test_wrong_object_gets_a_hint(make: object, hint: str) -> None:
    """Passing an engine or a URL raises TypeError saying what to pass instead."""
    with pytest.raises(TypeError, match=r"OutboxPublisher needs .*" + re.escape(hint)):
        OutboxPublisher(make())  # type: ignore[operator]


def test_async_session_given_to_the_sync_publisher_points_to_the_async_one() -> None:
    """An AsyncSession given to OutboxPublisher names AsyncOutboxPublisher, and the reverse."""
    engine = create_async_engine("postgresql+asyncpg://u@127.0.0.1:1/none")
    with pytest.raises(TypeError, match="AsyncOutboxPublisher"):
        OutboxPublisher(async_sessionmaker(engine)())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"use payment_events\.OutboxPublisher"):
        AsyncOutboxPublisher(Session(sa.create_engine("sqlite://")))  # type: ignore[arg-type]
