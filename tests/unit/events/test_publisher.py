"""The publisher port: the Protocol's methods, and the mixin routing each typed method to publish()."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import pytest

from payment_events.events import CURRENT_EVENT_CLASSES, BaseEvent, PaymentEvent
from payment_events.events.examples import example_event
from payment_events.events.publisher import PaymentEventPublisher, PublishMethodsMixin


class RecordingPublisher(PublishMethodsMixin):
    """Implements only publish and publish_many; the typed methods come from the mixin."""

    def __init__(self) -> None:
        self.published: list[PaymentEvent] = []

    def publish(self, event: PaymentEvent) -> None:
        self.published.append(event)

    def publish_many(self, events: Iterable[PaymentEvent]) -> None:
        for event in events:
            self.publish(event)


TYPED_METHODS = {
    "PaymentSucceeded": "publish_payment_succeeded",
    "PaymentFailed": "publish_payment_failed",
    "PaymentRequiresAction": "publish_payment_requires_action",
    "PaymentCaptured": "publish_payment_captured",
    "RefundProcessed": "publish_refund_processed",
    "RefundFailed": "publish_refund_failed",
    "PaymentMethodAdded": "publish_payment_method_added",
    "PaymentMethodRemoved": "publish_payment_method_removed",
}


def test_protocol_has_one_method_per_event_plus_generic_ones() -> None:
    """The Protocol declares publish, publish_many and one typed method per event type."""
    for name in ["publish", "publish_many", *TYPED_METHODS.values()]:
        assert callable(getattr(PaymentEventPublisher, name))
    assert len(TYPED_METHODS) == len(CURRENT_EVENT_CLASSES)


@pytest.mark.parametrize("model", CURRENT_EVENT_CLASSES)
def test_typed_methods_delegate_to_publish(model: type[BaseEvent]) -> None:
    """Each typed method publishes exactly its event through publish()."""
    publisher = RecordingPublisher()
    event = example_event(model)
    getattr(publisher, TYPED_METHODS[model.EVENT_TYPE])(event)
    assert publisher.published == [event]


def test_mixin_implementation_satisfies_the_protocol() -> None:
    """A class implementing publish and publish_many with the mixin is a PaymentEventPublisher."""
    recording = RecordingPublisher()
    publisher: PaymentEventPublisher = recording
    assert isinstance(publisher, PaymentEventPublisher)
    events = cast(list[PaymentEvent], [example_event(model) for model in CURRENT_EVENT_CLASSES])
    publisher.publish_many(events)
    assert recording.published == events


def test_mixin_requires_publish() -> None:
    """The mixin cannot be used without implementing publish."""

    class Incomplete(PublishMethodsMixin):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]
