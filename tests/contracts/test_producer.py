"""The producer port's contract, run against the real Kafka producer and the in-memory fake users get.

Both must: acknowledge every message of a batch with its partition and offset, in produce order per
partition; put one key on one partition (librdkafka's default partitioner: CRC-32 of the key); carry
key, payload and headers unchanged; and answer one outcome per message, in order.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from payment_events.kafka.producer import KafkaBatchProducer, producer_config
from payment_events.relay.delivery import Delivered
from payment_events.relay.ports import BatchProducer, OutgoingMessage
from payment_events.testing import InMemoryProducer
from tests.conftest import KcatMessage

PARTITIONS = 3


@dataclass
class Subject:
    """A producer under test, its topic, and a way to read back what landed there."""

    producer: BatchProducer
    topic: str
    read: Callable[[int], list[tuple[int, int, bytes, bytes, dict[str, bytes]]]]


@pytest.fixture(params=["in-memory", "kafka"])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    """The fake over an in-memory topic, or the relay's real producer over a fresh Kafka topic."""
    if request.param == "in-memory":
        fake = InMemoryProducer(PARTITIONS, topics={"contract.topic"})

        def read_fake(count: int) -> list[tuple[int, int, bytes, bytes, dict[str, bytes]]]:
            landed = fake.messages("contract.topic")
            return [(m.partition, m.offset, m.key, m.payload, dict(m.headers)) for m in landed]

        yield Subject(fake, "contract.topic", read_fake)
        return
    bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    topic: str = request.getfixturevalue("new_topic")(partitions=PARTITIONS, prefix="contract")
    consume: Callable[..., list[KcatMessage]] = request.getfixturevalue("kcat_consume")
    real = KafkaBatchProducer(producer_config(bootstrap))

    def read_kafka(count: int) -> list[tuple[int, int, bytes, bytes, dict[str, bytes]]]:
        return [(m.partition, m.offset, m.key or b"", m.value, m.headers) for m in consume(topic, count)]

    try:
        yield Subject(real, topic, read_kafka)
    finally:
        real.close(5.0)


def _messages(topic: str, count: int) -> list[OutgoingMessage]:
    return [
        OutgoingMessage(
            topic, f"pay-{n % 7}".encode(), f'{{"n":{n}}}'.encode(), (("ce_id", f"evt-{n}".encode()),)
        )
        for n in range(count)
    ]


def test_every_message_is_acknowledged_in_order_on_its_keys_partition(subject: Subject) -> None:
    """One outcome per message, in order; each a Delivered on CRC-32(key) % partitions; per partition
    the offsets follow produce order."""
    messages = _messages(subject.topic, 40)
    outcomes = subject.producer.produce_batch(messages, timeout=30.0)
    assert len(outcomes) == len(messages)
    assert all(isinstance(o, Delivered) for o in outcomes)
    delivered = [o for o in outcomes if isinstance(o, Delivered)]
    for message, outcome in zip(messages, delivered, strict=True):
        assert outcome.partition == zlib.crc32(message.key) % PARTITIONS
    for partition in range(PARTITIONS):
        offsets = [o.offset for o in delivered if o.partition == partition]
        assert offsets == sorted(offsets)
        assert len(set(offsets)) == len(offsets)


def test_what_lands_is_what_was_produced(subject: Subject) -> None:
    """Key, payload and headers arrive unchanged at the partition and offset the outcome named."""
    messages = _messages(subject.topic, 12)
    outcomes = subject.producer.produce_batch(messages, timeout=30.0)
    landed = {(p, o): (k, v, h) for p, o, k, v, h in subject.read(len(messages))}
    for message, outcome in zip(messages, outcomes, strict=True):
        assert isinstance(outcome, Delivered)
        key, value, headers = landed[(outcome.partition, outcome.offset)]
        assert (key, value) == (message.key, message.payload)
        assert headers["ce_id"] == dict(message.headers)["ce_id"]


def test_a_later_batch_continues_the_offsets(subject: Subject) -> None:
    """A second batch's offsets on a partition come after the first's."""
    first = subject.producer.produce_batch(_messages(subject.topic, 10), timeout=30.0)
    second = subject.producer.produce_batch(_messages(subject.topic, 10), timeout=30.0)
    for partition in range(PARTITIONS):
        before = [o.offset for o in first if isinstance(o, Delivered) and o.partition == partition]
        after = [o.offset for o in second if isinstance(o, Delivered) and o.partition == partition]
        if before and after:
            assert min(after) > max(before)
