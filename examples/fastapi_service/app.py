"""A FastAPI payment service on async SQLAlchemy (asyncpg): the payment row and its event in one
transaction, through :class:`payment_events.AsyncOutboxPublisher` given by a dependency.

Run it (the outbox table first, with the synchronous URL the relay also uses)::

    payment-events db upgrade --database-url postgresql+psycopg://user:pass@host/db
    PAYMENTS_DATABASE_URL=postgresql+asyncpg://user:pass@host/db uvicorn examples.fastapi_service.app:app
    payment-events relay --database-url postgresql+psycopg://user:pass@host/db
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from payment_events import AsyncOutboxPublisher, PaymentSucceeded, TopicRouter

metadata = sa.MetaData()
payments = sa.Table(
    "payments",
    metadata,
    sa.Column("payment_id", sa.String(64), primary_key=True),
    sa.Column("order_id", sa.String(64), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
)


class PaymentIn(BaseModel):
    """A payment to record."""

    payment_id: str
    order_id: str
    amount_minor: int
    currency: str
    fail_after_publish: bool = False


class PaymentAborted(Exception):
    """Raised inside the transaction to show that a failure after publishing removes both."""


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    """Dependency: an AsyncSession from the app's engine (the endpoint opens the transaction)."""
    async with request.app.state.sessions() as db_session:
        yield db_session


DbSession = Annotated[AsyncSession, Depends(session)]


async def outbox(request: Request, db_session: DbSession) -> AsyncIterator[AsyncOutboxPublisher]:
    """Dependency: the async outbox publisher on the request's session (the same one as ``DbSession``)."""
    yield AsyncOutboxPublisher(db_session, router=request.app.state.router)


Outbox = Annotated[AsyncOutboxPublisher, Depends(outbox)]
routes = APIRouter()


@routes.post("/payments", status_code=201)
async def create_payment(body: PaymentIn, db_session: DbSession, publisher: Outbox) -> JSONResponse:
    """Store the payment and publish its event in one transaction; ``fail_after_publish`` rolls back."""
    event = PaymentSucceeded(
        payment_id=body.payment_id,
        order_id=body.order_id,
        amount_paid=body.amount_minor,
        currency=body.currency,
        payment_gateway="example",
        processed_at=datetime.now(UTC),
    )
    try:
        async with db_session.begin():
            await db_session.execute(
                sa.insert(payments).values(
                    payment_id=body.payment_id,
                    order_id=body.order_id,
                    amount_minor=body.amount_minor,
                    currency=body.currency,
                )
            )
            await publisher.publish_payment_succeeded(event)
            if body.fail_after_publish:
                raise PaymentAborted
    except PaymentAborted:
        return JSONResponse({"status": "rolled back"}, status_code=409)
    return JSONResponse({"payment_id": body.payment_id, "event_id": str(event.event_id)}, status_code=201)


def create_app(database_url: str, topic: str = "payment.events") -> FastAPI:
    """The service for an async database URL (``postgresql+asyncpg://...``), publishing to ``topic``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(database_url)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)  # the service's own table (the outbox: db upgrade)
        app.state.sessions = async_sessionmaker(engine, expire_on_commit=False)
        app.state.router = TopicRouter(topic)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    app.include_router(routes)
    return app


app = create_app(os.environ.get("PAYMENTS_DATABASE_URL", "postgresql+asyncpg://localhost/payments"))
