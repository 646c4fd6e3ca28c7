"""The demo's payment service: its own tables and the spec's callers, each writing its row change and its
event in one transaction through :class:`~payment_events.outbox.publisher.OutboxPublisher`.

:class:`PaymentProcessingService` (succeeds, fails, asks for 3-D Secure, captures), :class:`RefundService`
(refund processed or failed), :class:`PaymentMethodService` (card added, removed) and
:class:`WebhookHandlerService` (the gateway's 3-D Secure outcome). :func:`run_scenario` drives them with a
seeded mix of outcomes; :class:`Ledger` remembers what was committed, for the read-back.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from payment_events.events import (
    ActionRequiredDetails,
    PaymentCaptured,
    PaymentEvent,
    PaymentFailed,
    PaymentMethodAdded,
    PaymentMethodRemoved,
    PaymentRequiresAction,
    PaymentSucceeded,
    RefundFailed,
    RefundProcessed,
)
from payment_events.outbox.publisher import OutboxPublisher

if TYPE_CHECKING:
    from payment_events.config import Settings

EVENT_TYPES = (
    "PaymentSucceeded",
    "PaymentFailed",
    "PaymentRequiresAction",
    "PaymentCaptured",
    "RefundProcessed",
    "RefundFailed",
    "PaymentMethodAdded",
    "PaymentMethodRemoved",
)


# ------------------------------------------------------------------------------------------ the ledger


@dataclass
class Ledger:
    """What the writers committed (event id -> type, key, commit time), in commit order. Thread-safe."""

    order: list[str] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    committed_at: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, events: Sequence[PaymentEvent], at: float) -> None:
        """Remember events that were just committed."""
        with self.lock:
            for event in events:
                event_id = str(event.event_id)
                self.order.append(event_id)
                self.types[event_id] = event.event_type
                self.keys[event_id] = event.partition_key
                self.committed_at[event_id] = at

    def all_in(self, seen: set[str]) -> bool:
        """Whether every committed event id is in ``seen``."""
        with self.lock:
            return all(event_id in seen for event_id in self.order)

    def count(self) -> int:
        """How many events were committed so far."""
        with self.lock:
            return len(self.order)


# ------------------------------------------------------------------------------------ payment service

METADATA = sa.MetaData()
PAYMENTS = sa.Table(
    "demo_payments",
    METADATA,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("order_id", sa.String(64), nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
REFUNDS = sa.Table(
    "demo_refunds",
    METADATA,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("payment_id", sa.String(64), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
PAYMENT_METHODS = sa.Table(
    "demo_payment_methods",
    METADATA,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("brand", sa.String(32), nullable=False),
    sa.Column("last_four", sa.String(4), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
)
"""The demo service's own tables (created next to the outbox table)."""


@dataclass(frozen=True, slots=True)
class Payment:
    """A payment of the demo service (amount in minor units)."""

    id: str
    order_id: str
    user_id: str
    amount: int
    currency: str


class _Base:
    """One transaction = the service's own row change + its event(s) through the outbox publisher."""

    def __init__(self, engine: Engine, settings: Settings, ledger: Ledger) -> None:
        self._engine = engine
        self._router = settings.topic_router()
        self._shard_count = settings.relay_shard_count
        self._ledger = ledger

    def _commit(self, change: Callable[[Connection], object], events: Sequence[PaymentEvent]) -> None:
        with self._engine.begin() as conn:
            change(conn)
            OutboxPublisher(conn, router=self._router, shard_count=self._shard_count).publish_many(events)
            committing = time.time()  # the commit happens as the block exits
        self._ledger.record(events, committing)


def _now() -> datetime:
    return datetime.now(UTC)


class PaymentProcessingService(_Base):
    """Authorises payments with a (simulated) gateway: success, decline, or 3-D Secure; captures."""

    def create(self, payment: Payment) -> None:
        """Insert a new payment row (no event: nothing happened yet)."""
        with self._engine.begin() as conn:
            conn.execute(
                PAYMENTS.insert().values(
                    id=payment.id,
                    order_id=payment.order_id,
                    user_id=payment.user_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    status="created",
                    updated_at=_now(),
                )
            )

    def succeed(self, payment: Payment, via_webhook: bool = False) -> None:
        """The gateway authorised the payment: status ``succeeded`` and a PaymentSucceeded event."""
        event = PaymentSucceeded(
            payment_id=payment.id,
            order_id=payment.order_id,
            user_id=payment.user_id,
            amount_paid=payment.amount,
            currency=payment.currency,
            payment_gateway="stripe",
            gateway_payment_intent_id=f"pi_{payment.id}",
            processed_at=_now(),
            correlation_id="webhook" if via_webhook else None,
        )
        self._commit(_status(payment.id, "succeeded"), [event])

    def fail(self, payment: Payment, code: str = "card_declined") -> None:
        """The gateway declined: status ``failed`` and a PaymentFailed event (no card data in it)."""
        event = PaymentFailed(
            payment_id=payment.id,
            order_id=payment.order_id,
            user_id=payment.user_id,
            amount=payment.amount,
            currency=payment.currency,
            failure_reason="The card was declined by the issuer.",
            gateway_error_code=code,
            failed_at=_now(),
            retryable=code != "card_declined",
        )
        self._commit(_status(payment.id, "failed"), [event])

    def require_action(self, payment: Payment) -> None:
        """The issuer asks for 3-D Secure: status ``requires_action`` and a PaymentRequiresAction event."""
        details = ActionRequiredDetails(
            type="three_d_secure",
            redirect_url=f"https://pay.example.com/3ds/{payment.id}",
            expires_at=_now() + timedelta(minutes=15),
        )
        event = PaymentRequiresAction(
            payment_id=payment.id,
            order_id=payment.order_id,
            user_id=payment.user_id,
            action_required_details=details,
        )
        self._commit(_status(payment.id, "requires_action"), [event])

    def capture(self, payment: Payment) -> None:
        """Capture an authorised payment: status ``captured`` and a PaymentCaptured event."""
        event = PaymentCaptured(
            payment_id=payment.id,
            order_id=payment.order_id,
            amount_captured=payment.amount,
            currency=payment.currency,
            gateway_transaction_id=f"txn_{payment.id}",
            captured_at=_now(),
        )
        self._commit(_status(payment.id, "captured"), [event])


class RefundService(_Base):
    """Refunds (part of) a captured payment: RefundProcessed or RefundFailed."""

    def refund(self, payment: Payment, amount: int, succeed: bool) -> None:
        """Insert the refund row and its outcome event in one transaction."""
        refund_id = f"re_{uuid.uuid4().hex[:12]}"
        event: PaymentEvent
        if succeed:
            event = RefundProcessed(
                refund_id=refund_id,
                payment_id=payment.id,
                order_id=payment.order_id,
                amount_refunded=amount,
                currency=payment.currency,
                processed_at=_now(),
            )
        else:
            event = RefundFailed(
                refund_id=refund_id,
                payment_id=payment.id,
                order_id=payment.order_id,
                amount=amount,
                currency=payment.currency,
                failure_reason="The charge was disputed.",
                gateway_error_code="charge_disputed",
                failed_at=_now(),
            )
        status = "processed" if succeed else "failed"

        def change(conn: Connection) -> None:
            conn.execute(
                REFUNDS.insert().values(
                    id=refund_id, payment_id=payment.id, amount=amount, status=status, updated_at=_now()
                )
            )

        self._commit(change, [event])


class PaymentMethodService(_Base):
    """Stores a customer's cards (brand and last four only) and removes them."""

    def add(self, user_id: str, brand: str, last_four: str) -> str:
        """Add a card: the method row and a PaymentMethodAdded event; returns the method id."""
        method_id = f"pm_{uuid.uuid4().hex[:12]}"
        event = PaymentMethodAdded(
            payment_method_id=method_id,
            user_id=user_id,
            type="card",
            card_brand=brand,
            card_last_four=last_four,
        )

        def change(conn: Connection) -> None:
            conn.execute(
                PAYMENT_METHODS.insert().values(
                    id=method_id, user_id=user_id, brand=brand, last_four=last_four, active=True
                )
            )

        self._commit(change, [event])
        return method_id

    def remove(self, user_id: str, method_id: str) -> None:
        """Deactivate a card: the row change and a PaymentMethodRemoved event."""
        event = PaymentMethodRemoved(payment_method_id=method_id, user_id=user_id)

        def change(conn: Connection) -> None:
            methods = PAYMENT_METHODS
            conn.execute(methods.update().where(methods.c.id == method_id).values(active=False))

        self._commit(change, [event])


class WebhookHandlerService:
    """Handles the gateway's webhooks; a 3-D Secure outcome changes the payment and publishes its event."""

    def __init__(self, payments: PaymentProcessingService) -> None:
        self._payments = payments

    def handle(self, gateway_event: str, payment: Payment) -> None:
        """``payment_intent.succeeded`` -> PaymentSucceeded, ``payment_intent.payment_failed`` ->
        PaymentFailed."""
        if gateway_event == "payment_intent.succeeded":
            self._payments.succeed(payment, via_webhook=True)
        elif gateway_event == "payment_intent.payment_failed":
            self._payments.fail(payment, code="authentication_failed")


def _status(payment_id: str, status: str) -> Callable[[Connection], object]:
    def change(conn: Connection) -> object:

        return conn.execute(
            PAYMENTS.update().where(PAYMENTS.c.id == payment_id).values(status=status, updated_at=_now())
        )

    return change


# ------------------------------------------------------------------------------------------ scenario


def run_scenario(
    engine: Engine, settings: Settings, ledger: Ledger, *, payments: int, seed: int, stop: threading.Event
) -> None:
    """Drive the services for ``payments`` payments with a seeded mix of outcomes (the spec's callers)."""
    rng = random.Random(seed)
    processing = PaymentProcessingService(engine, settings, ledger)
    refunds = RefundService(engine, settings, ledger)
    methods = PaymentMethodService(engine, settings, ledger)
    webhooks = WebhookHandlerService(processing)
    run = uuid.uuid4().hex[:8]
    cards: dict[str, list[str]] = defaultdict(list)
    for i in range(payments):
        if stop.is_set():
            return
        user = f"usr_{run}_{i % max(1, payments // 4)}"
        if not cards[user] or rng.random() < 0.1:
            brand = rng.choice(["visa", "mastercard", "amex"])
            cards[user].append(methods.add(user, brand, f"{rng.randrange(10000):04d}"))
        payment = Payment(
            id=f"pay_{run}_{i}",
            order_id=f"ord_{run}_{i}",
            user_id=user,
            amount=rng.randrange(100, 50_000),
            currency=rng.choice(["EUR", "USD", "GBP"]),
        )
        processing.create(payment)
        outcome = rng.random()
        authorised = False
        if outcome < 0.6:
            processing.succeed(payment)
            authorised = True
        elif outcome < 0.8:
            processing.fail(payment)
        else:
            processing.require_action(payment)
            if rng.random() < 0.8:
                webhooks.handle("payment_intent.succeeded", payment)
                authorised = True
            else:
                webhooks.handle("payment_intent.payment_failed", payment)
        if authorised and rng.random() < 0.7:
            processing.capture(payment)
            if rng.random() < 0.25:
                refunds.refund(payment, max(1, payment.amount // 2), succeed=rng.random() < 0.85)
        if len(cards[user]) > 1 and rng.random() < 0.05:
            methods.remove(user, cards[user].pop(0))
