"""``AsyncOutboxPublisher``: the outbox publisher for async SQLAlchemy (FastAPI and friends).

Same contract as :class:`~payment_events.outbox.publisher.OutboxPublisher`: the event is inserted in
the caller's transaction and commits or rolls back with it; nothing here commits or talks to Kafka. It
shares that class's statements and error translation (:class:`~payment_events.outbox.publisher.OutboxWriter`)
and only awaits them, so it runs on every async driver SQLAlchemy has for PostgreSQL (``asyncpg``,
``psycopg`` async) and on ``aiosqlite``::

    async with async_sessionmaker(engine)() as session, session.begin():
        session.add(payment)
        await AsyncOutboxPublisher(session).publish_payment_succeeded(event)

The relay stays a synchronous process: give it the same database with a synchronous URL
(``postgresql+psycopg://``); see :mod:`payment_events.dburl`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_scoped_session

from payment_events.events.publisher import PublishMethodsMixin
from payment_events.outbox.ports import utc_now
from payment_events.outbox.publisher import NOTIFY_CHANNEL, OutboxWriter
from payment_events.outbox.sharding import DEFAULT_SHARD_COUNT

if TYPE_CHECKING:
    from payment_events.events import PaymentEvent
    from payment_events.events.codec import EncodedEvent

__all__ = ["AsyncOutboxPublisher"]


class AsyncOutboxPublisher(OutboxWriter, PublishMethodsMixin[Awaitable[None]]):
    """Writes events to the outbox in the transaction of an ``AsyncSession``, an
    ``async_scoped_session`` (resolved at each publish) or an ``AsyncConnection``.

    Every method is a coroutine: ``await publisher.publish(event)``,
    ``await publisher.publish_payment_succeeded(event)`` and so on. The options and errors are
    those of :class:`~payment_events.outbox.publisher.OutboxPublisher`.
    """

    def __init__(
        self,
        conn: AsyncSession | async_scoped_session[Any] | AsyncConnection,
        *,
        router: Callable[[str], str] | Any | None = None,
        shard_count: int = DEFAULT_SHARD_COUNT,
        notify: bool = True,
        notify_channel: str = NOTIFY_CHANNEL,
        notify_interval: float = 0.0,
        clock: Callable[[], datetime] = utc_now,
        encoder: Callable[[PaymentEvent], EncodedEvent] | None = None,
    ) -> None:
        if not isinstance(conn, AsyncSession | AsyncConnection | async_scoped_session):
            kind = type(conn).__name__
            hint = "pass the AsyncSession or AsyncConnection of the transaction that writes the payment"
            if kind in {"Session", "Connection", "scoped_session"}:
                hint = "this is synchronous SQLAlchemy: use payment_events.OutboxPublisher(session)"
            raise TypeError(
                f"AsyncOutboxPublisher needs a SQLAlchemy AsyncSession or AsyncConnection, not {kind}: {hint}"
            )
        self._conn = conn
        super().__init__(
            router=router,
            shard_count=shard_count,
            notify=notify,
            notify_channel=notify_channel,
            notify_interval=notify_interval,
            clock=clock,
            encoder=encoder,
        )

    async def publish(self, event: PaymentEvent) -> None:
        """Insert ``event`` into the outbox in the caller's transaction (one statement; no commit)."""
        await self.publish_encoded((self.encode_one(event),))

    async def publish_many(self, events: Iterable[PaymentEvent]) -> None:
        """Insert several events in the caller's transaction, in the given order."""
        await self.publish_encoded(self.encode_all(events))

    async def publish_encoded(self, encoded: Sequence[EncodedEvent]) -> None:
        """Insert already encoded events."""
        if not encoded:
            return
        conn = self._conn
        if isinstance(conn, async_scoped_session):
            conn = conn()
        if isinstance(conn, AsyncSession):
            conn = await conn.connection()
        try:
            for statement, parameters in self.steps(encoded, conn.dialect.name):
                await conn.execute(statement, parameters)
        except SQLAlchemyError as exc:
            ours = self.translate(exc)
            if ours is None:
                raise
            raise ours from exc
