"""Baseline (b): the naive relay -- one row per transaction: claim, produce, flush, mark, commit.

This is the loop many hand-written outbox relays start as. It is correct (the row is marked only after
its ack) but pays a database round trip, a broker round trip and a commit per event. It runs over a
sample of rows from a real outbox table (same schema, same bytes) and is extrapolated as events/s.
"""

from __future__ import annotations

import time
from typing import Any

from bench.infra import libpq_dsn

_CLAIM = """
SELECT id, topic, key, payload, headers FROM payment_events_outbox
WHERE state = 'pending' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
"""
_MARK = """
UPDATE payment_events_outbox
SET state = 'published', published_at = now(), kafka_partition = %s, kafka_offset = %s
WHERE id = %s
"""


def naive_relay(database_url: str, bootstrap: str, sample: int) -> dict[str, Any]:
    """Publish up to ``sample`` pending rows one by one; return events/s over the sample."""
    import psycopg
    from confluent_kafka import Producer

    from payment_events.kafka.producer import producer_config
    from payment_events.outbox.headers import load_headers

    producer = Producer(producer_config(bootstrap))
    published = 0
    failures = 0
    report: list[tuple[Any, Any]] = []

    def on_delivery(err: Any, msg: Any) -> None:
        report.append((err, msg))

    with psycopg.connect(libpq_dsn(database_url)) as conn:
        start = time.perf_counter()
        while published + failures < sample:
            with conn.transaction():
                row = conn.execute(_CLAIM).fetchone()
                if row is None:
                    break
                row_id, topic, key, payload, headers = row
                report.clear()
                producer.produce(
                    topic,
                    bytes(payload),
                    bytes(key),
                    headers=list(load_headers(headers)),
                    on_delivery=on_delivery,
                )
                producer.flush(30)
                err, msg = report[0] if report else (RuntimeError("no report"), None)
                if err is not None or msg is None:
                    failures += 1
                    raise RuntimeError(f"naive relay: delivery failed: {err}")
                conn.execute(_MARK, (msg.partition(), msg.offset(), row_id))
                published += 1
        elapsed = time.perf_counter() - start
    producer.flush(10)
    return {
        "sample": sample,
        "published": published,
        "seconds": round(elapsed, 3),
        "events_per_second": round(published / elapsed, 1) if elapsed > 0 else 0.0,
        "per_event_ms": round(elapsed / published * 1000, 3) if published else None,
    }
