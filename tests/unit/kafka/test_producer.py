"""The Kafka adapter without a broker: error translation, refused settings, fatal-error recovery."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from payment_events.errors import ConfigurationError
from payment_events.kafka.producer import KafkaBatchProducer, producer_config, translate_error
from payment_events.relay import Relay, RelayConfig
from payment_events.relay.delivery import Delivered, DeliveryError, is_permanent
from payment_events.relay.ports import OutgoingMessage
from payment_events.testing import InMemoryOutboxStore


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (KafkaError.MSG_SIZE_TOO_LARGE, "permanent"),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, "permanent"),
        (KafkaError.INVALID_RECORD, "permanent"),
        (KafkaError.INVALID_MSG, "permanent"),
        (KafkaError._INVALID_ARG, "permanent"),
        (KafkaError.UNKNOWN_TOPIC_OR_PART, "transient"),
        (KafkaError._UNKNOWN_TOPIC, "transient"),
        (KafkaError._MSG_TIMED_OUT, "transient"),
        (KafkaError._TRANSPORT, "transient"),
        (KafkaError.NOT_LEADER_FOR_PARTITION, "transient"),
        (KafkaError._ALL_BROKERS_DOWN, "transient"),
        (KafkaError.NOT_ENOUGH_REPLICAS, "transient"),
        (KafkaError.REQUEST_TIMED_OUT, "transient"),
        (KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "transient"),
        (KafkaError._PURGE_QUEUE, "transient"),
    ],
)
def test_kafka_error_codes_translate_to_our_classification(code: int, expected: str) -> None:
    """Each librdkafka code maps (through its name) to transient or permanent as documented."""
    described = translate_error(KafkaError(code))
    assert described.code == KafkaError(code).name()
    assert ("permanent" if is_permanent(described) else "transient") == expected


def test_fatal_errors_are_transient_and_flagged() -> None:
    """A fatal error is retried (with a fresh producer), never dead-lettered."""
    described = translate_error(KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, fatal=True))
    assert described.fatal
    assert not is_permanent(described)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"enable.idempotence": False}, "enable.idempotence"),
        ({"acks": "1"}, "acks"),
        ({"max.in.flight.requests.per.connection": 10}, "max.in.flight"),
    ],
)
def test_weakening_delivery_settings_is_refused(overrides: dict[str, Any], fragment: str) -> None:
    """Overrides may tune the producer but not give up idempotence, acks=all or ordering."""
    with pytest.raises(ConfigurationError, match=fragment):
        producer_config("127.0.0.1:9092", overrides)


def test_producer_config_merges_overrides_over_defaults() -> None:
    """Defaults are idempotent with acks=all and compression; overrides such as zstd win."""
    config = producer_config("b:1", {"compression.type": "zstd", "linger.ms": 20})
    assert config["bootstrap.servers"] == "b:1"
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert config["compression.type"] == "zstd"
    assert config["linger.ms"] == 20


class ScriptedMessage:
    """What a delivery callback receives."""

    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


class ScriptedProducer:
    """Stands in for confluent_kafka.Producer: ``script(n)`` says what happens to the n-th message."""

    def __init__(self, config: dict[str, Any], script: Callable[[int], Any]) -> None:
        self.config = config
        self.script = script
        self.queue: list[tuple[Any, Any]] = []
        self.count = 0
        self.buffer_errors = 1
        self.purged = False

    def produce(self, topic: str, value: bytes, key: bytes, headers: Any, on_delivery: Any) -> None:
        assert isinstance(headers, list)
        if self.buffer_errors:
            self.buffer_errors -= 1
            raise BufferError
        action = self.script(self.count)
        self.count += 1
        if isinstance(action, KafkaException):
            raise action
        self.queue.append((action, on_delivery))

    def poll(self, timeout: float) -> int:
        return self.flush(timeout)

    def flush(self, timeout: float) -> int:
        kept = []
        for action, callback in self.queue:
            if isinstance(action, str):  # "hang": no report yet
                kept.append((action, callback))
            elif isinstance(action, KafkaError):
                if action.fatal():
                    self.config["error_cb"](action)
                callback(action, None)
            else:
                callback(None, ScriptedMessage(0, action))
        self.queue = kept
        return len(kept)

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        self.purged = True
        self.queue = [(KafkaError(KafkaError._PURGE_INFLIGHT), callback) for _, callback in self.queue]


def adapter(script: Callable[[int], Any]) -> tuple[KafkaBatchProducer, list[ScriptedProducer]]:
    """A KafkaBatchProducer whose clients follow ``script``; returns the clients built so far."""
    built: list[ScriptedProducer] = []

    def factory(config: dict[str, Any]) -> ScriptedProducer:
        built.append(ScriptedProducer(config, script))
        return built[-1]

    config = {"bootstrap.servers": "x", "message.timeout.ms": 50}
    return KafkaBatchProducer(config, factory=factory), built


MESSAGES = [OutgoingMessage("t", b"k", b"v", (("h", b"1"),)) for _ in range(3)]


def test_acks_errors_and_synchronous_refusals_become_outcomes() -> None:
    """Acks carry partition/offset; a queued failure and an immediate refusal both become errors."""
    script = {
        0: 7,
        1: KafkaError(KafkaError._MSG_TIMED_OUT),
        2: KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)),
    }
    producer, _ = adapter(lambda n: script[n])
    outcomes = producer.produce_batch(MESSAGES, timeout=1.0)
    assert outcomes[0] == Delivered(0, 7)
    assert isinstance(outcomes[1], DeliveryError)
    assert outcomes[1].code == "_MSG_TIMED_OUT"
    assert isinstance(outcomes[2], DeliveryError)
    assert outcomes[2].code == "MSG_SIZE_TOO_LARGE"


def test_ack_without_offset_is_not_treated_as_published() -> None:
    """An ack with offset -1 cannot be recorded in the ledger, so it is a (transient) failure."""
    producer, _ = adapter(lambda n: -1)
    (outcome,) = producer.produce_batch(MESSAGES[:1], timeout=1.0)
    assert isinstance(outcome, DeliveryError)
    assert outcome.code == "NO_OFFSET"


def test_fatal_error_leads_to_a_fresh_producer_before_the_next_batch() -> None:
    """After a fatal error the next batch runs on a newly built client and succeeds."""
    calls = iter([KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, fatal=True), 1, 2, 3])
    producer, built = adapter(lambda n: next(calls))
    (first,) = producer.produce_batch(MESSAGES[:1], timeout=1.0)
    assert isinstance(first, DeliveryError)
    assert first.fatal
    assert producer.fatal_error is not None
    outcomes = producer.produce_batch(MESSAGES, timeout=1.0)
    assert len(built) == 2
    assert built[0].purged
    assert producer.rebuilds == 1
    assert all(isinstance(o, Delivered) for o in outcomes)


def test_outstanding_reports_are_purged_at_the_deadline_and_the_producer_rebuilt() -> None:
    """A message without a report by the deadline is purged (a transient failure, re-sent later) and
    the client is replaced; what was acked before stays acked."""
    producer, built = adapter(lambda n: "hang" if n == 1 else n)
    outcomes = producer.produce_batch(MESSAGES[:2], timeout=0.05)
    assert outcomes[0] == Delivered(0, 0)
    assert isinstance(outcomes[1], DeliveryError)
    assert outcomes[1].code == "_PURGE_INFLIGHT"
    assert not is_permanent(outcomes[1])
    assert built[0].purged
    assert len(built) == 2


def test_a_relay_refuses_a_producer_whose_timeout_would_end_the_wait_first() -> None:
    """librdkafka's message timeout must be longer than the relay's wait, or gaps could reorder a key."""
    producer, _ = adapter(lambda n: n)  # message.timeout.ms = 50
    with pytest.raises(ConfigurationError, match=r"message\.timeout\.ms must be longer"):
        Relay(InMemoryOutboxStore(), producer, RelayConfig(delivery_timeout_seconds=1.0))


def test_the_wait_for_reports_flushes_so_a_batch_does_not_sit_out_linger() -> None:
    """The relay waits for a batch's reports with flush() (librdkafka then sends at once, ignoring
    linger.ms), never poll() (which let every batch wait out linger.ms before its first request)."""
    producer, built = adapter(lambda n: n)

    def no_poll(timeout: float) -> int:
        raise AssertionError("poll() would let the batch wait out linger.ms")

    built[0].buffer_errors = 0  # a full local queue is served with poll(), rightly: not this case
    built[0].poll = no_poll  # type: ignore[method-assign]
    outcomes = producer.produce_batch(MESSAGES, timeout=1.0)
    assert outcomes == [Delivered(0, 0), Delivered(0, 1), Delivered(0, 2)]


def test_a_planned_rebuild_for_a_batch_size_cap_is_not_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Capping record batches below a topic's limit rebuilds the client between batches: an INFO line,
    not the WARNING of a rebuild after a fatal error or a deadline."""
    producer, built = adapter(lambda n: n)
    with caplog.at_level(logging.INFO, logger="payment_events.kafka.producer"):
        assert producer.limit_batch_bytes(500_000)
    assert len(built) == 2
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "relay.producer_rebuilt"]
    assert record.levelno == logging.INFO
