"""DirectPublisher against the real broker, checked with kcat."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from payment_events.errors import PermanentPublishError, PublishError
from payment_events.events import PaymentSucceeded
from payment_events.events.codec import decode, encode
from payment_events.kafka.direct import DeliveryReceipt, DirectPublisher
from payment_events.kafka.topics import TopicRouter
from tests.conftest import KcatMessage
from tests.integration.relay_support import oversized_event, payment_event

Consume = Callable[..., list[KcatMessage]]


def test_publish_and_wait_returns_the_brokers_position(
    kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """publish_and_wait returns once acked, with the partition/offset where kcat finds the same event."""
    topic = new_topic(partitions=3)
    event = payment_event("pay-direct", 1)
    with DirectPublisher(kafka_bootstrap, router=TopicRouter(topic)) as publisher:
        receipt = publisher.publish_and_wait(event, timeout=30)
    assert receipt.event_id == str(event.event_id)
    assert receipt.topic == topic
    (message,) = kcat_consume(topic, 1)
    assert (message.partition, message.offset) == (receipt.partition, receipt.offset)
    assert message.key == b"pay-direct"
    assert decode(message.value, message.headers) == event
    assert message.headers["ce_id"] == str(event.event_id).encode()


def test_fire_and_forget_publishes_are_flushed_on_close_in_per_key_order(
    kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """publish() returns at once; close() flushes; every event arrives, each key's in publish order."""
    topic = new_topic(partitions=3)
    events = [payment_event(f"pay-{n % 7}", n) for n in range(300)]
    publisher = DirectPublisher(kafka_bootstrap, router=TopicRouter(topic))
    for event in events[:100]:
        publisher.publish(event)
    publisher.publish_many(events[100:])
    publisher.close(timeout=30)
    messages = kcat_consume(topic, len(events))
    assert len(messages) == len(events)
    for key in {e.payment_id for e in events}:
        seen = [
            m.headers["ce_id"].decode()
            for m in sorted(messages, key=lambda m: m.offset)
            if m.key == key.encode()
        ]
        assert seen == [str(e.event_id) for e in events if e.payment_id == key]
    with pytest.raises(PublishError, match="closed"):
        publisher.publish(events[0])


def test_async_futures_resolve_on_ack_and_fail_permanently_for_a_poison_event(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """publish_async futures resolve to receipts; an event too large fails its future with a permanent
    error and reaches the on_error callback without stopping later publishes."""
    topic = new_topic(partitions=1)
    failures: list[tuple[str, PublishError]] = []
    with DirectPublisher(
        kafka_bootstrap, router=TopicRouter(topic), on_error=lambda i, e: failures.append((i, e))
    ) as publisher:
        good = publisher.publish_async(payment_event("pay-f", 1))
        poison = oversized_event("pay-f")
        bad = publisher.publish_encoded(poison)
        after = publisher.publish_async(payment_event("pay-f", 2))
        first, last = good.result(timeout=30), after.result(timeout=30)
        with pytest.raises(PermanentPublishError, match="MSG_SIZE_TOO_LARGE"):
            bad.result(timeout=30)
    assert isinstance(first, DeliveryReceipt)
    assert last.offset > first.offset
    assert [event_id for event_id, _ in failures] == [poison.event_id]


def test_wait_for_ack_mode_blocks_until_acknowledged(
    kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """With wait_for_ack, publish() (the port's method) waits for the outcome: a refused event raises
    right there, an accepted one is on the topic."""
    topic = new_topic(partitions=1)
    event = payment_event("pay-w", 1)
    big = PaymentSucceeded(
        payment_id="pay-w",
        order_id="o" * 128,
        user_id="u" * 128,
        amount_paid=100,
        currency="EUR",
        payment_gateway="stripe",
        gateway_payment_intent_id="g" * 128,
        correlation_id="c" * 128,
        processed_at=event.processed_at,
    )
    assert len(encode(big).value) + sum(len(v) for _, v in encode(big).headers) > 1000
    # The client's own size limit (1000 bytes, librdkafka's minimum) makes the big event fail for sure.
    with DirectPublisher(
        kafka_bootstrap,
        router=TopicRouter(topic),
        wait_for_ack=True,
        producer_overrides={"message.max.bytes": 1000},
    ) as publisher:
        publisher.publish_payment_succeeded(event)
        with pytest.raises(PermanentPublishError, match="MSG_SIZE_TOO_LARGE"):
            publisher.publish(big)
    assert [m.headers["ce_id"] for m in kcat_consume(topic, 1)] == [encode(event).event_id.encode()]
