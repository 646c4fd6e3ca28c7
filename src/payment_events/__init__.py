"""payment-events: durable, versioned payment domain events on Apache Kafka.

The event contracts (models, codec, registry, money) are pure and imported eagerly. The parts that do
I/O (the outbox publisher and store, the relay, the direct publisher, settings) are imported on first
use, so ``import payment_events`` in a consumer that only decodes events stays light. The audit is
``payment_events.audit.audit`` (a top-level ``audit`` name would be shadowed by the submodule).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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
from payment_events.events.codec import EncodedEvent, decode, encode
from payment_events.events.ids import uuid7
from payment_events.events.money import (
    CURRENCY_EXPONENTS,
    currency_exponent,
    from_minor_units,
    to_minor_units,
)
from payment_events.events.publisher import PaymentEventPublisher, PublishMethodsMixin
from payment_events.events.registry import DEFAULT_REGISTRY, EventRegistry

if TYPE_CHECKING:
    from payment_events.audit.report import AuditReport
    from payment_events.config import Settings, load_settings
    from payment_events.errors import (
        ConfigurationError,
        MigrationRequiredError,
        PermanentPublishError,
        PublishError,
        StoreError,
        TransientPublishError,
    )
    from payment_events.kafka.admin import ensure_topics
    from payment_events.kafka.direct import AsyncDirectPublisher, DeliveryReceipt, DirectPublisher
    from payment_events.kafka.topics import TopicRouter
    from payment_events.outbox.aio import AsyncOutboxPublisher
    from payment_events.outbox.leases import AllShards, PostgresShardLeases
    from payment_events.outbox.migrate import upgrade as upgrade_outbox
    from payment_events.outbox.publisher import OutboxPublisher
    from payment_events.outbox.store import SqlOutboxStore
    from payment_events.relay.loop import Relay
    from payment_events.relay.settings import RelayConfig
    from payment_events.service import build_relay, run_relay

_LAZY: dict[str, tuple[str, str]] = {
    "AllShards": ("payment_events.outbox.leases", "AllShards"),
    "AsyncDirectPublisher": ("payment_events.kafka.direct", "AsyncDirectPublisher"),
    "AsyncOutboxPublisher": ("payment_events.outbox.aio", "AsyncOutboxPublisher"),
    "AuditReport": ("payment_events.audit.report", "AuditReport"),
    "ConfigurationError": ("payment_events.errors", "ConfigurationError"),
    "DeliveryReceipt": ("payment_events.kafka.direct", "DeliveryReceipt"),
    "DirectPublisher": ("payment_events.kafka.direct", "DirectPublisher"),
    "MigrationRequiredError": ("payment_events.errors", "MigrationRequiredError"),
    "OutboxPublisher": ("payment_events.outbox.publisher", "OutboxPublisher"),
    "PermanentPublishError": ("payment_events.errors", "PermanentPublishError"),
    "PostgresShardLeases": ("payment_events.outbox.leases", "PostgresShardLeases"),
    "PublishError": ("payment_events.errors", "PublishError"),
    "Relay": ("payment_events.relay.loop", "Relay"),
    "RelayConfig": ("payment_events.relay.settings", "RelayConfig"),
    "Settings": ("payment_events.config", "Settings"),
    "SqlOutboxStore": ("payment_events.outbox.store", "SqlOutboxStore"),
    "StoreError": ("payment_events.errors", "StoreError"),
    "TopicRouter": ("payment_events.kafka.topics", "TopicRouter"),
    "TransientPublishError": ("payment_events.errors", "TransientPublishError"),
    "build_relay": ("payment_events.service", "build_relay"),
    "ensure_topics": ("payment_events.kafka.admin", "ensure_topics"),
    "load_settings": ("payment_events.config", "load_settings"),
    "run_relay": ("payment_events.service", "run_relay"),
    "upgrade_outbox": ("payment_events.outbox.migrate", "upgrade"),
}


def __getattr__(name: str) -> Any:
    """Import an I/O-side export on first use (PEP 562)."""
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'payment_events' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API (what ``from payment_events import *`` gives), eager and lazy alike."""
    return list(__all__)


__all__ = [
    "CURRENCY_EXPONENTS",
    "DEFAULT_REGISTRY",
    "ActionRequiredDetails",
    "AllShards",
    "AsyncDirectPublisher",
    "AsyncOutboxPublisher",
    "AuditReport",
    "BaseEvent",
    "ConfigurationError",
    "ContractError",
    "DeliveryReceipt",
    "DirectPublisher",
    "EncodedEvent",
    "EventRegistry",
    "InvalidEventError",
    "MigrationRequiredError",
    "OutboxPublisher",
    "PaymentCaptured",
    "PaymentEvent",
    "PaymentEventPublisher",
    "PaymentEventsError",
    "PaymentFailed",
    "PaymentMethodAdded",
    "PaymentMethodRemoved",
    "PaymentRequiresAction",
    "PaymentSucceeded",
    "PermanentPublishError",
    "PostgresShardLeases",
    "PublishError",
    "PublishMethodsMixin",
    "RefundFailed",
    "RefundProcessed",
    "Relay",
    "RelayConfig",
    "SchemaCompatibilityError",
    "SensitiveDataError",
    "SerializationError",
    "Settings",
    "SqlOutboxStore",
    "StoreError",
    "TopicRouter",
    "TransientPublishError",
    "UnknownEventTypeError",
    "build_relay",
    "currency_exponent",
    "decode",
    "encode",
    "ensure_topics",
    "from_minor_units",
    "load_settings",
    "run_relay",
    "to_minor_units",
    "upgrade_outbox",
    "uuid7",
]
