"""Dead-letter copies: never on the live path, retried later, the payload kept unless too large."""

from __future__ import annotations

from payment_events.relay.dead_letter_copies import Copy, DeadLetterCopier
from payment_events.relay.ports import OutgoingMessage
from tests.unit.relay.fakes import FakeProducer


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def copy(n: int, payload: bytes = b"{}") -> Copy:
    """A copy of outbox row ``n``."""
    return Copy(OutgoingMessage("dlq", b"k", payload, (("ce_id", str(n).encode()),)), n, str(n))


def test_failed_copies_wait_their_backoff_and_are_sent_when_the_topic_is_back() -> None:
    """While the dead-letter topic fails, a pump during the backoff sends nothing; afterwards the
    copies are sent in order."""
    down = [True]
    producer = FakeProducer(lambda m: "transient" if down[0] else "ok")
    clock = Clock()
    copier = DeadLetterCopier(producer, clock=clock, rand=lambda: 1.0, backoff_base_seconds=2.0)
    copier.submit([copy(1), copy(2)])
    assert copier.pump() == 0
    assert copier.pending == 2
    down[0] = False
    assert copier.pump() == 0  # still backing off: no attempt
    assert producer.batches == [2]
    clock.now = 2.5
    assert copier.pump() == 2
    assert [dict(m.headers)["ce_id"] for m in producer.topic("dlq")] == [b"1", b"2"]


def test_a_copy_too_large_for_the_dead_letter_topic_is_sent_without_its_payload() -> None:
    """A copy refused as too large goes again without payload, with the dlq-payload-omitted header."""
    producer = FakeProducer(lambda m: "permanent" if m.payload else "ok")
    clock = Clock()
    copier = DeadLetterCopier(producer, clock=clock, rand=lambda: 0.0)
    copier.submit([copy(1, b"x" * 10)])
    copier.pump()
    copier.pump()
    (sent,) = producer.topic("dlq")
    assert sent.payload == b""
    assert dict(sent.headers)["dlq-payload-omitted"] == b"too-large"
