"""Refund outcome events: processed and failed.

Keyed by ``paymentId`` (not ``refundId``) so a payment's refunds stay in order with its own events.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from payment_events.events.envelope import BaseEvent, Code, FreeText, Identifier, UtcDatetime
from payment_events.events.money import Currency, MinorUnits

__all__ = ["RefundFailed", "RefundProcessed"]


class RefundProcessed(BaseEvent):
    """A refund was processed successfully. Keyed by paymentId, so it follows the payment's events.

    Money: amountRefunded is an integer in the minor units of currency (never a float).
    """

    EVENT_TYPE: ClassVar[str] = "RefundProcessed"
    SCHEMA_VERSION: ClassVar[int] = 1
    PARTITION_KEY_FIELD: ClassVar[str] = "payment_id"

    event_type: Literal["RefundProcessed"] = "RefundProcessed"
    """Always RefundProcessed."""
    schema_version: Literal[1] = 1
    """Version 1 of RefundProcessed."""

    refund_id: Identifier
    """The refund's id in the payment service."""
    payment_id: Identifier
    """The refunded payment. The Kafka key."""
    order_id: Identifier
    """The order of the refunded payment."""
    amount_refunded: MinorUnits
    """Amount refunded, an integer in the minor units of currency (1999 EUR = 19.99 EUR). Greater than 0."""
    currency: Currency
    """ISO 4217 code of amountRefunded; fixes its number of decimals (EUR 2, JPY 0, KWD 3)."""
    processed_at: UtcDatetime
    """When the gateway confirmed the refund (UTC)."""


class RefundFailed(BaseEvent):
    """A refund attempt failed. Keyed by paymentId.

    Money: amount is an integer in the minor units of currency (never a float).
    Privacy: failureReason is free text limited to 500 characters and checked for card data and secrets.
    """

    EVENT_TYPE: ClassVar[str] = "RefundFailed"
    SCHEMA_VERSION: ClassVar[int] = 1
    PARTITION_KEY_FIELD: ClassVar[str] = "payment_id"

    event_type: Literal["RefundFailed"] = "RefundFailed"
    """Always RefundFailed."""
    schema_version: Literal[1] = 1
    """Version 1 of RefundFailed."""

    refund_id: Identifier
    """The refund's id in the payment service."""
    payment_id: Identifier
    """The payment that was to be refunded. The Kafka key."""
    order_id: Identifier
    """The order of that payment."""
    amount: MinorUnits
    """Amount that was to be refunded, an integer in the minor units of currency. Greater than 0."""
    currency: Currency
    """ISO 4217 code of amount; fixes its number of decimals (EUR 2, JPY 0, KWD 3)."""
    failure_reason: FreeText
    """Why the refund failed, for people: at most 500 characters, no card data, no secrets."""
    gateway_error_code: Code | None = None
    """The gateway's machine-readable error code, when it gave one."""
    failed_at: UtcDatetime
    """When the refund attempt failed (UTC)."""
