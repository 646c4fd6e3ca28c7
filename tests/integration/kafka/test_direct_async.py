"""AsyncDirectPublisher (DirectPublisher.aio()) against the real broker, checked with kcat."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from payment_events import AsyncDirectPublisher
from payment_events.errors import TransientPublishError
from payment_events.events.codec import decode
from payment_events.kafka.direct import DeliveryReceipt, DirectPublisher
from payment_events.kafka.topics import TopicRouter
from tests.conftest import KcatMessage
from tests.integration.relay_support import payment_event

Consume = Callable[..., list[KcatMessage]]


def test_await_typed_method_resolves_when_acknowledged(
    kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """With wait_for_ack, `await publish_payment_succeeded` returns after the ack: kcat finds the event,
    and publish_and_wait returns the partition and offset kcat sees."""
    topic = new_topic(partitions=3)
    first, second = payment_event("pay-aio", 1), payment_event("pay-aio", 2)

    async def body() -> DeliveryReceipt:
        direct = DirectPublisher(kafka_bootstrap, router=TopicRouter(topic), wait_for_ack=True)
        async with direct.aio() as publisher:
            pending = publisher.publish_async(first)
            assert not pending.done()  # settled only by the delivery report, through the loop
            assert (await pending).event_id == str(first.event_id)
            await publisher.publish_payment_succeeded(second)
            return await publisher.publish_and_wait(payment_event("pay-aio", 3))

    receipt = asyncio.run(body())
    messages = kcat_consume(topic, 3)
    in_order = [decode(m.value, m.headers) for m in sorted(messages, key=lambda m: m.offset)]
    assert in_order[:2] == [first, second]
    assert (messages[-1].partition, max(m.offset for m in messages)) == (receipt.partition, receipt.offset)


def test_fire_and_forget_resolves_at_once_and_ack_mode_reports_failure() -> None:
    """Without wait_for_ack the await returns as soon as the event is queued, even with no broker; with
    wait_for_ack an unreachable broker makes the await raise TransientPublishError (not hang)."""
    overrides = {"message.timeout.ms": 1500, "socket.connection.setup.timeout.ms": 1000}

    async def body() -> None:
        direct = DirectPublisher("127.0.0.1:1", producer_overrides=overrides)
        publisher = AsyncDirectPublisher(direct)
        await asyncio.wait_for(publisher.publish_payment_succeeded(payment_event("pay-ff", 1)), 1.0)
        acked = direct.aio(wait_for_ack=True)
        with pytest.raises(TransientPublishError):
            await acked.publish_payment_succeeded(payment_event("pay-ff", 2))
        await publisher.aclose(timeout=0.5)

    asyncio.run(body())
