"""AsyncOutboxPublisher on the real PostgreSQL, on both async drivers (asyncpg and psycopg's async mode):
the payment row and its event commit or roll back together, and NOTIFY arrives on commit only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_scoped_session, async_sessionmaker, create_async_engine

from payment_events import AsyncOutboxPublisher
from payment_events.errors import MigrationRequiredError, StoreError
from payment_events.events import PaymentEvent
from payment_events.events.codec import decode, encode
from payment_events.kafka.topics import TopicRouter
from payment_events.outbox import migrate
from payment_events.outbox.publisher import NOTIFY_CHANNEL
from payment_events.outbox.store import SqlOutboxStore
from payment_events.relay.wakeup import libpq_dsn
from tests.events import failed, succeeded

DRIVERS = ["asyncpg", "psycopg_async"]


payments = sa.Table(
    "payments",
    sa.MetaData(),
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("amount", sa.Integer, nullable=False),
)


@pytest.fixture
def sync_engine(pg_url: str) -> Iterator[sa.Engine]:
    """A migrated fresh database with the application's own ``payments`` table."""
    migrate.upgrade(pg_url)
    engine = sa.create_engine(pg_url)
    payments.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=DRIVERS)
def async_url(request: pytest.FixtureRequest, pg_url: str) -> str:
    """The test database's URL with an async driver."""
    return pg_url.replace("postgresql+psycopg://", f"postgresql+{request.param}://")


@pytest.fixture
def listener(pg_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A psycopg connection LISTENing on the outbox channel."""
    conn = psycopg.connect(libpq_dsn(pg_url), autocommit=True)
    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
    yield conn
    conn.close()


def notified(conn: psycopg.Connection[tuple[object, ...]], timeout: float) -> int:
    """How many notifications arrive within ``timeout`` seconds."""
    return sum(1 for _ in conn.notifies(timeout=timeout))


def counts(engine: sa.Engine) -> tuple[int, int]:
    """(payment rows, outbox rows)."""
    with engine.connect() as conn:
        paid = conn.execute(sa.select(sa.func.count()).select_from(payments)).scalar_one()
        events = conn.execute(sa.text("SELECT count(*) FROM payment_events_outbox")).scalar_one()
    return int(paid), int(events)


async def _with_engine(url: str, body: object) -> None:
    engine = create_async_engine(url)
    try:
        await body(engine)  # type: ignore[operator]
    finally:
        await engine.dispose()


def run(url: str, body: object) -> None:
    """Run ``await body(async_engine)`` on a fresh async engine for ``url`` (disposed after)."""
    asyncio.run(_with_engine(url, body))


def test_async_session_commits_payment_and_event_together(
    async_url: str, sync_engine: sa.Engine, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    """An AsyncSession transaction that commits stores the payment row and the event, which decodes back
    to the same event, and wakes the relay once, after the commit."""
    event = succeeded("pay_async")

    async def body(engine: AsyncEngine) -> None:
        async with async_sessionmaker(engine)() as session, session.begin():
            await session.execute(sa.insert(payments).values(id="pay_async", amount=1999))
            await AsyncOutboxPublisher(session).publish_payment_succeeded(event)
            assert notified(listener, 0.2) == 0

    run(async_url, body)
    assert counts(sync_engine) == (1, 1)
    assert notified(listener, 5.0) == 1
    [record] = SqlOutboxStore(sync_engine).claim(None, 10, datetime.now(UTC))
    assert decode(record.payload, record.headers) == event
    assert record.created_at.tzinfo is not None


def test_async_rollback_removes_payment_and_event(
    async_url: str, sync_engine: sa.Engine, listener: psycopg.Connection[tuple[object, ...]]
) -> None:
    """A failing AsyncSession transaction leaves neither the payment row nor the event, and no wake-up."""

    async def failing_payment(engine: AsyncEngine) -> None:
        async with async_sessionmaker(engine)() as session, session.begin():
            await session.execute(sa.insert(payments).values(id="pay_x", amount=5))
            await AsyncOutboxPublisher(session).publish(succeeded("pay_x"))
            raise RuntimeError("the payment failed")

    async def body(engine: AsyncEngine) -> None:
        with pytest.raises(RuntimeError, match="payment failed"):
            await failing_payment(engine)

    run(async_url, body)
    assert counts(sync_engine) == (0, 0)
    assert notified(listener, 0.5) == 0


def test_async_connection_publish_many_in_order_with_routing(async_url: str, sync_engine: sa.Engine) -> None:
    """An AsyncConnection takes publish_many: rows in the given order, routed per type."""
    router = TopicRouter("payment.events", {"PaymentFailed": "payment.failed"})
    events: list[PaymentEvent] = [failed("pay_9"), succeeded("pay_9"), failed("pay_1")]

    async def body(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await AsyncOutboxPublisher(conn, router=router).publish_many(events)

    run(async_url, body)
    claimed = SqlOutboxStore(sync_engine).claim(None, 10, datetime.now(UTC))
    assert [r.event_id for r in claimed] == [encode(e).event_id for e in events]
    assert [r.topic for r in claimed] == ["payment.failed", "payment.events", "payment.failed"]


def test_async_scoped_session_is_resolved_per_publish(async_url: str, sync_engine: sa.Engine) -> None:
    """An async_scoped_session works: the publish uses the current task's session and transaction."""

    async def body(engine: AsyncEngine) -> None:
        scoped = async_scoped_session(async_sessionmaker(engine), scopefunc=asyncio.current_task)
        publisher = AsyncOutboxPublisher(scoped)
        async with scoped.begin():
            await publisher.publish(succeeded("pay_scoped"))
        await scoped.remove()

    run(async_url, body)
    assert counts(sync_engine) == (0, 1)


def test_async_errors_are_translated(async_url: str, sync_engine: sa.Engine, pg_url: str) -> None:
    """A duplicate eventId raises StoreError and a database never migrated raises MigrationRequiredError,
    on both drivers."""
    event = succeeded()

    async def body(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await AsyncOutboxPublisher(conn).publish(event)
        with pytest.raises(StoreError, match="already in the outbox"):
            async with engine.begin() as conn:
                await AsyncOutboxPublisher(conn).publish(event)
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE payment_events_outbox"))
        with pytest.raises(MigrationRequiredError, match="db upgrade"):
            async with engine.begin() as conn:
                await AsyncOutboxPublisher(conn).publish(succeeded("pay_2"))

    run(async_url, body)
