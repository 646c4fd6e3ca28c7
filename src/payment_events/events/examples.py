"""One valid, deterministic example of every registered event version.

Used by the documentation (the example payloads in docs/events.md are generated from these, so they are
true by construction) and by tests that need a valid event to start from.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from payment_events.events.envelope import BaseEvent
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

__all__ = ["example_event", "example_fields", "example_payload"]

EventT = TypeVar("EventT", bound=BaseEvent)

_AT = datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)
_ENVELOPE: dict[str, Any] = {
    "event_id": UUID("019c1427-6d23-7a5e-9c4b-3f2e1d0c9b8a"),
    "event_timestamp": _AT,
    "correlation_id": "req_7f3a9c",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
}
_PAYMENT = {"payment_id": "pay_01HQZ8K2", "order_id": "ord_5521", "user_id": "usr_8812"}

_FIELDS: dict[type[BaseEvent], dict[str, Any]] = {
    PaymentSucceeded: {
        **_PAYMENT,
        "amount_paid": 1999,
        "currency": "EUR",
        "payment_gateway": "stripe",
        "gateway_payment_intent_id": "pi_3OqWx2",
        "processed_at": _AT,
    },
    PaymentFailedV1: {
        **_PAYMENT,
        "amount": 5000,
        "currency": "JPY",
        "failure_reason": "The card was declined by the issuer.",
        "gateway_error_code": "card_declined",
        "failed_at": _AT,
    },
    PaymentFailed: {
        **_PAYMENT,
        "amount": 5000,
        "currency": "JPY",
        "failure_reason": "The card was declined by the issuer.",
        "gateway_error_code": "card_declined",
        "failed_at": _AT,
        "retryable": False,
    },
    PaymentRequiresAction: {
        **_PAYMENT,
        "action_required_details": ActionRequiredDetails(
            type="redirect_to_url",
            redirect_url="https://pay.example.com/3ds/challenge?session=cs_81f2",
            expires_at=datetime(2026, 1, 31, 12, 15, tzinfo=UTC),
        ),
    },
    PaymentCaptured: {
        "payment_id": "pay_01HQZ8K2",
        "order_id": "ord_5521",
        "amount_captured": 12500,
        "currency": "KWD",
        "gateway_transaction_id": "txn_77Ab",
        "captured_at": _AT,
    },
    RefundProcessed: {
        "refund_id": "re_3Pz1",
        "payment_id": "pay_01HQZ8K2",
        "order_id": "ord_5521",
        "amount_refunded": 500,
        "currency": "EUR",
        "processed_at": _AT,
    },
    RefundFailed: {
        "refund_id": "re_3Pz2",
        "payment_id": "pay_01HQZ8K2",
        "order_id": "ord_5521",
        "amount": 500,
        "currency": "EUR",
        "failure_reason": "The charge was disputed; refunds are blocked until it is resolved.",
        "gateway_error_code": "charge_disputed",
        "failed_at": _AT,
    },
    PaymentMethodAdded: {
        "payment_method_id": "pm_1Nv0",
        "user_id": "usr_8812",
        "type": "card",
        "card_brand": "visa",
        "card_last_four": "4242",
    },
    PaymentMethodRemoved: {"payment_method_id": "pm_1Nv0", "user_id": "usr_8812"},
}


def example_fields(model: type[BaseEvent]) -> dict[str, Any]:
    """Keyword arguments (snake_case) building a valid ``model``, envelope included."""
    return {**_ENVELOPE, **_FIELDS[model]}


def example_event(model: type[EventT]) -> EventT:
    """A valid, deterministic instance of ``model`` (same arguments every time)."""
    return model(**example_fields(model))


def example_payload(model: type[BaseEvent]) -> str:
    """The Kafka value of ``model``'s example, pretty-printed (sorted keys, 2-space indent) for docs."""
    from payment_events.events.codec import encode  # the codec imports the events package: import late

    return json.dumps(json.loads(encode(example_event(model)).value), indent=2, ensure_ascii=False)
