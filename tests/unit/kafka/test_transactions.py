"""The transactional producer without a broker: commit, abort on a failed message, unknown outcomes."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException

from payment_events.kafka.transactions import TransactionalBatchProducer, transactional_config
from payment_events.relay.delivery import Delivered, DeliveryError, is_permanent
from payment_events.relay.ports import OutgoingMessage


class Msg:
    """What a delivery callback receives."""

    def __init__(self, partition: int, offset: int) -> None:
        self._p, self._o = partition, offset

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o


class FakeTxnProducer:
    """A scripted confluent Producer: ``fail`` maps a payload to a delivery error; ``commit_error`` is
    raised by commit_transaction."""

    def __init__(self, fail: dict[bytes, KafkaError], commit_error: KafkaError | None = None) -> None:
        self.fail = fail
        self.commit_error = commit_error
        self.calls: list[str] = []
        self.queue: list[tuple[Any, Any]] = []
        self.offset = 0

    def init_transactions(self, timeout: float) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic: str, value: bytes, key: bytes, *, headers: Any, on_delivery: Any) -> None:
        error = self.fail.get(value)
        self.queue.append((on_delivery, error))

    def poll(self, timeout: float) -> int:
        served = 0
        for callback, error in self.queue:
            self.offset += 1
            callback(error, None if error else Msg(0, self.offset))
            served += 1
        self.queue = []
        return served

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")
        if self.commit_error is not None:
            raise KafkaException(self.commit_error)

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")

    def purge(self, **kwargs: Any) -> None:
        pass

    def flush(self, timeout: float) -> int:
        self.poll(timeout)
        return 0


def messages(*payloads: bytes) -> list[OutgoingMessage]:
    """Messages with these payloads."""
    return [OutgoingMessage("t", b"k", p, (("ce_id", p),)) for p in payloads]


def producer(fake: FakeTxnProducer) -> TransactionalBatchProducer:
    """A transactional producer over ``fake``."""
    return TransactionalBatchProducer({"bootstrap.servers": "x"}, "txn-1", factory=lambda config: fake)


def test_a_committed_batch_is_delivered_with_its_offsets() -> None:
    """init, begin, produce, commit: every message Delivered with the offset its report gave."""
    fake = FakeTxnProducer({})
    outcomes = producer(fake).produce_batch(messages(b"a", b"b"), 5.0)
    assert outcomes == [Delivered(0, 1), Delivered(0, 2)]
    assert fake.calls == ["init", "begin", "commit"]


def test_a_failed_message_aborts_the_batch_and_only_it_carries_the_error() -> None:
    """A message too large aborts the transaction: it gets its permanent error, the others no outcome."""
    fake = FakeTxnProducer({b"big": KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)})
    outcomes = producer(fake).produce_batch(messages(b"a", b"big", b"c"), 5.0)
    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], DeliveryError)
    assert is_permanent(outcomes[1])
    assert fake.calls == ["init", "begin", "abort"]


def test_an_abortable_commit_failure_is_a_transient_failure_of_every_message() -> None:
    """A commit the broker refused is aborted; every message gets a transient error (never dead)."""
    error = KafkaError(KafkaError._FENCED, txn_requires_abort=True)
    fake = FakeTxnProducer({}, commit_error=error)
    p = producer(fake)
    outcomes = p.produce_batch(messages(b"a", b"b"), 5.0)
    assert all(isinstance(o, DeliveryError) and not is_permanent(o) for o in outcomes)
    assert fake.calls[-1] == "abort"
    assert not p.uncertain


def test_a_commit_with_unknown_outcome_asks_for_reconciliation() -> None:
    """A commit that timed out may have committed: the producer flags it and is re-initialised."""
    fake = FakeTxnProducer({}, commit_error=KafkaError(KafkaError._TIMED_OUT, retriable=True))
    p = producer(fake)
    outcomes = p.produce_batch(messages(b"a"), 5.0)
    assert isinstance(outcomes[0], DeliveryError)
    assert p.uncertain
    fake.commit_error = None
    assert p.produce_batch(messages(b"b"), 5.0) == [Delivered(0, 2)]
    assert fake.calls.count("init") == 2


def test_the_message_timeout_is_capped_to_the_transaction_timeout() -> None:
    """librdkafka refuses message.timeout.ms above transaction.timeout.ms: the config caps it."""
    config = transactional_config({"message.timeout.ms": 300_000}, "txn-1")
    assert config["transactional.id"] == "txn-1"
    assert config["message.timeout.ms"] == config["transaction.timeout.ms"] == 60_000
