"""payment-events: durable, versioned payment domain events on Apache Kafka."""

from __future__ import annotations

from payment_events.codec import EncodedEvent, decode, encode
from payment_events.errors import (
    ContractError,
    InvalidEventError,
    PaymentEventsError,
    SchemaCompatibilityError,
    SensitiveDataError,
    SerializationError,
    UnknownEventTypeError,
)
from payment_events.events import (
    ActionRequiredDetails,
    BaseEvent,
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
from payment_events.ids import uuid7
from payment_events.money import CURRENCY_EXPONENTS, currency_exponent, from_minor_units, to_minor_units
from payment_events.publisher import PaymentEventPublisher, PublishMethodsMixin
from payment_events.registry import DEFAULT_REGISTRY, EventRegistry

__all__ = [
    "CURRENCY_EXPONENTS",
    "DEFAULT_REGISTRY",
    "ActionRequiredDetails",
    "BaseEvent",
    "ContractError",
    "EncodedEvent",
    "EventRegistry",
    "InvalidEventError",
    "PaymentCaptured",
    "PaymentEvent",
    "PaymentEventPublisher",
    "PaymentEventsError",
    "PaymentFailed",
    "PaymentMethodAdded",
    "PaymentMethodRemoved",
    "PaymentRequiresAction",
    "PaymentSucceeded",
    "PublishMethodsMixin",
    "RefundFailed",
    "RefundProcessed",
    "SchemaCompatibilityError",
    "SensitiveDataError",
    "SerializationError",
    "UnknownEventTypeError",
    "currency_exponent",
    "decode",
    "encode",
    "from_minor_units",
    "to_minor_units",
    "uuid7",
]
