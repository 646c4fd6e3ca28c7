"""The relay over the in-memory store shipped in payment_events.testing (what users' tests would use)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from payment_events.events import PaymentSucceeded
from payment_events.events.codec import encode
from payment_events.relay import Relay, RelayConfig
from payment_events.relay.ports import Producible
from payment_events.testing import InMemoryOutboxStore
from tests.unit.relay.fakes import FakeProducer, event_id_of


def event(key: str, seq: int) -> PaymentSucceeded:
    """A real event keyed by ``key``."""
    return PaymentSucceeded(
        payment_id=key,
        order_id=f"order-{seq}",
        amount_paid=100 + seq,
        currency="EUR",
        payment_gateway="stripe",
        processed_at=datetime.now(UTC),
    )


def test_relay_drains_the_shipped_fake_store_in_per_key_order_with_retries() -> None:
    """A transient failure of a key's head holds that key back; once it passes everything is published
    in per-key order, rolled-back events never are."""
    store = InMemoryOutboxStore()
    written = [encode(event(f"pay-{n % 3}", n)) for n in range(9)]
    for item in written:
        store.add(item)
    tx = store.begin()
    tx.add(encode(event("pay-0", 99)))
    tx.rollback()
    failures = {written[0].event_id}  # the first event of pay-0 fails once...
    failed_keys: set[bytes] = set()

    def decide(message: Producible) -> str:
        # ...and, as librdkafka does within a partition, the key's later messages of that batch too.
        event_id = dict(message.headers)["ce_id"].decode()
        if event_id in failures:
            failures.discard(event_id)
            failed_keys.add(message.key)
            return "transient"
        return "transient" if message.key in failed_keys else "ok"

    producer = FakeProducer(decide)
    config = RelayConfig(batch_size=100, backoff_base_seconds=0.001, backoff_cap_seconds=0.001)
    relay = Relay(store, producer, config)
    first = relay.run_once()
    assert (first.published, first.retried, first.untouched) == (6, 1, 2)
    failed_keys.clear()
    for _ in range(100):
        time.sleep(0.005)  # let the 1 ms backoff pass
        if relay.run_once().claimed == 0:
            break
    delivered: dict[bytes, list[str]] = {}
    for message in producer.topic("payment.events"):
        ids = delivered.setdefault(message.key, [])
        if event_id_of(message) not in ids:
            ids.append(event_id_of(message))
    for key in (b"pay-0", b"pay-1", b"pay-2"):
        assert delivered[key] == [w.event_id for w in written if w.key == key]
    assert store.backlog(datetime.now(UTC)).pending == 0
