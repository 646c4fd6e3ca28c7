"""Valid events for the tests, one builder per type the tests need, keyed by the payment id given."""

from __future__ import annotations

from datetime import UTC, datetime

from payment_events.events import PaymentFailed, PaymentSucceeded, RefundFailed


def succeeded(payment_id: str = "pay_1") -> PaymentSucceeded:
    """A valid PaymentSucceeded keyed by ``payment_id``."""
    return PaymentSucceeded(
        payment_id=payment_id,
        order_id="ord_1",
        amount_paid=1999,
        currency="EUR",
        payment_gateway="stripe",
        processed_at=datetime.now(UTC),
    )


def failed(payment_id: str = "pay_1") -> PaymentFailed:
    """A valid PaymentFailed keyed by ``payment_id``."""
    return PaymentFailed(
        payment_id=payment_id,
        order_id="ord_1",
        amount=1999,
        currency="EUR",
        failure_reason="card_declined",
        failed_at=datetime.now(UTC),
    )


def refund_failed(payment_id: str = "pay_1") -> RefundFailed:
    """A valid RefundFailed keyed by ``payment_id``."""
    return RefundFailed(
        refund_id="ref_1",
        payment_id=payment_id,
        order_id="ord_1",
        amount=100,
        currency="EUR",
        failure_reason="insufficient balance",
        failed_at=datetime.now(UTC),
    )
