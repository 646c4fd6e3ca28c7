"""The eight payment events, their envelope, and the ``PaymentEvent`` union of the current versions."""

from __future__ import annotations

from typing import TypeAlias

from payment_events.events.envelope import DEFAULT_SOURCE, ENVELOPE_FIELDS, BaseEvent, ContractModel
from payment_events.events.methods import PaymentMethodAdded, PaymentMethodRemoved
from payment_events.events.payments import (
    ActionRequiredDetails,
    PaymentCaptured,
    PaymentFailed,
    PaymentFailedV1,
    PaymentRequiresAction,
    PaymentSucceeded,
)
from payment_events.events.refunds import RefundFailed, RefundProcessed

__all__ = [
    "CURRENT_EVENT_CLASSES",
    "DEFAULT_SOURCE",
    "ENVELOPE_FIELDS",
    "ActionRequiredDetails",
    "BaseEvent",
    "ContractModel",
    "PaymentCaptured",
    "PaymentEvent",
    "PaymentFailed",
    "PaymentFailedV1",
    "PaymentMethodAdded",
    "PaymentMethodRemoved",
    "PaymentRequiresAction",
    "PaymentSucceeded",
    "RefundFailed",
    "RefundProcessed",
]

#: Any current-version payment event: what ``decode`` returns and publishers accept.
PaymentEvent: TypeAlias = (
    PaymentSucceeded
    | PaymentFailed
    | PaymentRequiresAction
    | PaymentCaptured
    | RefundProcessed
    | RefundFailed
    | PaymentMethodAdded
    | PaymentMethodRemoved
)

#: The current version of each of the eight event types, in the spec's order.
CURRENT_EVENT_CLASSES: tuple[type[BaseEvent], ...] = (
    PaymentSucceeded,
    PaymentFailed,
    PaymentRequiresAction,
    PaymentCaptured,
    RefundProcessed,
    RefundFailed,
    PaymentMethodAdded,
    PaymentMethodRemoved,
)
