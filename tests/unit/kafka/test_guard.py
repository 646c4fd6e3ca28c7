"""The topic guard around the relay's producer: size failures of a batch re-sent alone, missing topics
answered at once (no broker: a fake producer and a fake catalog)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from payment_events.kafka.guard import GuardedProducer, batch_bytes_below
from payment_events.relay.delivery import Delivered, DeliveryError, Outcome
from payment_events.relay.ports import OutgoingMessage, Producible


@dataclass
class Catalog:
    """Topics that exist, with their limits."""

    topics: dict[str, int] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def exists(self, topic: str) -> bool | None:
        self.asked.append(topic)
        return topic in self.topics

    def max_message_bytes(self, topic: str) -> int | None:
        return self.topics.get(topic)


@dataclass
class BatchLimitedBroker:
    """Refuses every message of a call with more than ``limit`` messages as MSG_SIZE_TOO_LARGE; a
    message whose payload is longer than ``too_big`` is refused even alone."""

    limit: int = 1
    too_big: int = 1000
    sent: list[bytes] = field(default_factory=list)
    capped: list[int] = field(default_factory=list)

    def produce_batch(self, messages: Sequence[Producible], timeout: float) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for message in messages:
            if len(messages) > self.limit or len(message.payload) > self.too_big:
                outcomes.append(DeliveryError("MSG_SIZE_TOO_LARGE", "too large", retriable=False))
            else:
                self.sent.append(message.payload)
                outcomes.append(Delivered(0, len(self.sent) - 1))
        return outcomes

    def limit_batch_bytes(self, limit: int) -> bool:
        self.capped.append(limit)
        return True

    def close(self, timeout: float) -> None:
        """Nothing to close."""


def message(key: bytes, payload: bytes, topic: str = "t") -> OutgoingMessage:
    """A message for the guard."""
    return OutgoingMessage(topic, key, payload, ())


def test_size_failures_of_a_batch_are_re_sent_alone_and_only_a_message_too_large_alone_fails() -> None:
    """Small messages refused with their batch are delivered alone, in key order; the big one stays
    MSG_SIZE_TOO_LARGE."""
    broker = BatchLimitedBroker()
    guard = GuardedProducer(broker, Catalog({"t": 1_000_000}))
    batch = [message(b"a", b"1"), message(b"b", b"x" * 2000), message(b"a", b"2"), message(b"c", b"3")]
    outcomes = guard.produce_batch(batch, 1.0)
    assert [type(o).__name__ for o in outcomes] == ["Delivered", "DeliveryError", "Delivered", "Delivered"]
    assert broker.sent == [b"1", b"2", b"3"]  # a's events in their order
    assert isinstance(outcomes[1], DeliveryError)
    assert outcomes[1].code == "MSG_SIZE_TOO_LARGE"


def test_the_producer_batch_size_is_capped_below_a_topic_limit() -> None:
    """A topic limit of 64 KB caps the producer's record batches below 64 KB the first time it is seen."""
    broker = BatchLimitedBroker(limit=10)
    guard = GuardedProducer(broker, Catalog({"t": 65536}))
    guard.produce_batch([message(b"a", b"1")], 1.0)
    guard.produce_batch([message(b"a", b"2")], 1.0)
    assert broker.capped == [batch_bytes_below(65536)]
    assert batch_bytes_below(65536) < 65536


def test_a_missing_topic_is_answered_at_once_and_named_while_other_topics_flow() -> None:
    """Messages for a missing topic get UNKNOWN_TOPIC_OR_PART naming it without reaching the producer;
    the callback hears the topic go missing once; the other topic's message is delivered."""
    broker = BatchLimitedBroker(limit=10)
    states: list[tuple[str, bool]] = []
    catalog = Catalog({"good": 1_000_000})
    guard = GuardedProducer(broker, catalog, on_topic_state=lambda t, m: states.append((t, m)))
    for _ in range(3):
        outcomes = guard.produce_batch([message(b"a", b"1", "nope"), message(b"b", b"2", "good")], 1.0)
        assert isinstance(outcomes[0], DeliveryError)
        assert outcomes[0].code == "UNKNOWN_TOPIC_OR_PART"
        assert "nope" in outcomes[0].message
        assert isinstance(outcomes[1], Delivered)
    assert states == [("nope", True)]
    assert catalog.asked.count("nope") == 1  # re-checked only every recheck_seconds
    assert guard.missing_topics == frozenset({"nope"})


def test_default_batch_size_needs_no_cap_for_a_default_topic() -> None:
    """The relay's default batch.size is under the cap for Kafka's default max.message.bytes
    (1,048,588), so a relay on default topics never rebuilds its producer to cap its batches."""
    from payment_events.kafka.producer import DEFAULT_PRODUCER_CONFIG

    assert int(DEFAULT_PRODUCER_CONFIG["batch.size"]) <= batch_bytes_below(1_048_588)
