"""Baseline (a): the raw producer ceiling -- the same messages produced from memory, no database at all.

The same bytes, keys and headers the outbox holds, the same producer settings the relay uses
(``payment_events.kafka.producer.producer_config``: idempotent, ``acks=all``, lz4, linger), produced in the
tightest loop the Python client allows (one shared delivery callback, ``poll(0)`` only when the local
queue is full) and flushed. Time runs from the first ``produce`` to the last delivery report.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from payment_events.events.codec import EncodedEvent


def raw_producer_ceiling(bootstrap: str, topic: str, events: Sequence[EncodedEvent]) -> dict[str, Any]:
    """Produce ``events`` to ``topic`` directly with confluent_kafka and return events/s and counts."""
    from confluent_kafka import Producer

    from payment_events.kafka.producer import producer_config

    config = producer_config(bootstrap)
    producer = Producer(config)
    acked = 0
    failed = 0

    def on_delivery(err: Any, msg: Any) -> None:
        nonlocal acked, failed
        if err is None:
            acked += 1
        else:
            failed += 1

    # Warm up metadata and the idempotent producer id so the timed loop measures steady state.
    producer.list_topics(topic, timeout=10)
    produce = producer.produce
    start = time.perf_counter()
    for event in events:
        while True:
            try:
                produce(topic, event.value, event.key, headers=list(event.headers), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
    left = producer.flush(120)
    elapsed = time.perf_counter() - start
    return {
        "events": len(events),
        "acked": acked,
        "failed": failed,
        "undelivered": left,
        "seconds": round(elapsed, 3),
        "events_per_second": round(acked / elapsed, 1) if elapsed > 0 else 0.0,
        "producer_config": {k: v for k, v in config.items() if k != "bootstrap.servers"},
    }


def ack_latency_baseline(
    bootstrap: str, topic: str, events: Sequence[EncodedEvent], rate: float, seconds: float
) -> dict[str, Any]:
    """The floor under commit-to-ack: produce-to-ack latency of the same producer settings at ``rate``
    messages/s with no database (one message every 1/rate s, delivery reports served continuously)."""
    from confluent_kafka import Producer

    from bench.stats import summary_ms
    from payment_events.kafka.producer import producer_config

    producer = Producer(producer_config(bootstrap))
    producer.list_topics(topic, timeout=10)
    latencies: list[float] = []
    count = max(1, int(rate * seconds))
    interval = 1.0 / rate

    def report(sent: float) -> Any:
        def on_delivery(err: Any, msg: Any) -> None:
            if err is None:
                latencies.append(time.perf_counter() - sent)

        return on_delivery

    start = time.perf_counter()
    for i in range(count):
        due = start + i * interval
        while (now := time.perf_counter()) < due:
            producer.poll(max(0.0, min(due - now, 0.001)))
        event = events[i % len(events)]
        producer.produce(topic, event.value, event.key, headers=list(event.headers), on_delivery=report(now))
        producer.poll(0)
    producer.flush(30)
    return {"rate": rate, "messages": count, "produce_to_ack_ms": summary_ms(latencies)}
