"""The publisher port, after the spec's ``IPaymentEventPublisherService``: one method per event.

Implementations (the transactional outbox publisher, a direct Kafka publisher, the in-memory fake) come
from other modules. They implement ``publish`` and ``publish_many`` and inherit the eight typed methods
from :class:`PublishMethodsMixin`, so the typed methods cannot drift from ``publish``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Generic, Protocol, runtime_checkable

from typing_extensions import TypeVar

from payment_events.events import (
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

__all__ = ["PaymentEventPublisher", "PublishMethodsMixin"]

R = TypeVar("R", default=None)
"""What ``publish`` returns: ``None`` for a synchronous publisher, an awaitable for an async one."""


@runtime_checkable
class PaymentEventPublisher(Protocol):
    """Publishes payment events. ``publish`` returning means the event is durably accepted.

    For the outbox publisher that means written in the caller's transaction (Kafka gets it later, at
    least once); for a direct publisher, acknowledged by the broker.
    """

    def publish(self, event: PaymentEvent) -> None:
        """Publish one event of any type."""
        ...

    def publish_many(self, events: Iterable[PaymentEvent]) -> None:
        """Publish several events together, in the given order (all or none, where the backend can)."""
        ...

    def publish_payment_succeeded(self, event: PaymentSucceeded) -> None:
        """Publish a :class:`PaymentSucceeded`."""
        ...

    def publish_payment_failed(self, event: PaymentFailed) -> None:
        """Publish a :class:`PaymentFailed`."""
        ...

    def publish_payment_requires_action(self, event: PaymentRequiresAction) -> None:
        """Publish a :class:`PaymentRequiresAction`."""
        ...

    def publish_payment_captured(self, event: PaymentCaptured) -> None:
        """Publish a :class:`PaymentCaptured`."""
        ...

    def publish_refund_processed(self, event: RefundProcessed) -> None:
        """Publish a :class:`RefundProcessed`."""
        ...

    def publish_refund_failed(self, event: RefundFailed) -> None:
        """Publish a :class:`RefundFailed`."""
        ...

    def publish_payment_method_added(self, event: PaymentMethodAdded) -> None:
        """Publish a :class:`PaymentMethodAdded`."""
        ...

    def publish_payment_method_removed(self, event: PaymentMethodRemoved) -> None:
        """Publish a :class:`PaymentMethodRemoved`."""
        ...


class PublishMethodsMixin(ABC, Generic[R]):
    """The eight typed ``publish_*`` methods, each returning ``self.publish(event)``.

    Subclasses implement ``publish`` (and ``publish_many``) only. The typed methods exist for callers'
    readability and static typing; they add no behaviour. One mixin serves both worlds: a synchronous
    publisher subclasses ``PublishMethodsMixin`` (``R`` is ``None``), an async one
    ``PublishMethodsMixin[Awaitable[None]]`` with an ``async def publish``, and then
    ``await publisher.publish_payment_succeeded(event)`` awaits that ``publish``.
    """

    @abstractmethod
    def publish(self, event: PaymentEvent) -> R:
        """Publish one event of any type."""

    def publish_payment_succeeded(self, event: PaymentSucceeded) -> R:
        """Publish a :class:`PaymentSucceeded`."""
        return self.publish(event)

    def publish_payment_failed(self, event: PaymentFailed) -> R:
        """Publish a :class:`PaymentFailed`."""
        return self.publish(event)

    def publish_payment_requires_action(self, event: PaymentRequiresAction) -> R:
        """Publish a :class:`PaymentRequiresAction`."""
        return self.publish(event)

    def publish_payment_captured(self, event: PaymentCaptured) -> R:
        """Publish a :class:`PaymentCaptured`."""
        return self.publish(event)

    def publish_refund_processed(self, event: RefundProcessed) -> R:
        """Publish a :class:`RefundProcessed`."""
        return self.publish(event)

    def publish_refund_failed(self, event: RefundFailed) -> R:
        """Publish a :class:`RefundFailed`."""
        return self.publish(event)

    def publish_payment_method_added(self, event: PaymentMethodAdded) -> R:
        """Publish a :class:`PaymentMethodAdded`."""
        return self.publish(event)

    def publish_payment_method_removed(self, event: PaymentMethodRemoved) -> R:
        """Publish a :class:`PaymentMethodRemoved`."""
        return self.publish(event)
