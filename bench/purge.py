"""Retention purge throughput (issue 11, defect 7): can the purge keep up with twice the relay's highest
sustained publish rate?

A fresh PostgreSQL outbox is filled with ``rows`` published rows whose ``published_at`` is past retention
(plus pending rows, as a live outbox has), then ``Relay.purge()`` runs with the production settings
(``purge_batch_size`` 1,000, ``purge_budget`` 50 s every ``purge_interval`` 60 s, on the relay's purge
thread) until the table holds no expired row. The figure that matters is rows deleted per second while
purging, turned into what one purge run per interval can delete per second of wall clock:
``rows_per_second * budget / interval``, compared with twice the highest sustained publish rate measured
by workload 3 (5,000 events/s, docs/performance.md). Run: ``python -m bench.purge [--rows N]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from bench.infra import fresh_database

HIGHEST_SUSTAINED_RATE = 5_000.0
"""Events/s, docs/performance.md (workload 3, one relay)."""


def run_purge(database_url: str, rows: int) -> dict[str, Any]:
    """Fill, purge, measure."""
    from payment_events.outbox.migrate import upgrade
    from payment_events.outbox.store import SqlOutboxStore
    from payment_events.relay import Relay, RelayConfig
    from payment_events.relay.delivery import Outcome
    from payment_events.relay.ports import Producible

    class NoProducer:
        def produce_batch(self, messages: Sequence[Producible], timeout: float) -> list[Outcome]:
            return [None] * len(messages)

        def close(self, timeout: float) -> None:
            """Nothing to close."""

    upgrade(database_url)
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO payment_events_outbox (event_id, event_type, schema_version, topic, key, payload,"
            " headers, shard, state, attempts, next_attempt_at, created_at, published_at, kafka_partition,"
            " kafka_offset)"
            " SELECT 'e-' || g, 'PaymentSucceeded', 1, 'payment.events',"
            " convert_to('k' || (g %% 10000), 'UTF8'), convert_to(repeat('x', 500), 'UTF8'), '[]', g %% 64,"
            " 'published', 1, now() - interval '8 days', now() - interval '8 days',"
            " now() - interval '8 days' + g * interval '1 ms',"
            f" 0, g FROM generate_series(1, {rows}) AS g"
        )
        conn.exec_driver_sql(
            "INSERT INTO payment_events_outbox (event_id, event_type, schema_version, topic, key, payload,"
            " headers, shard, next_attempt_at, created_at)"
            " SELECT 'p-' || g, 'PaymentSucceeded', 1, 'payment.events', convert_to('k' || g, 'UTF8'),"
            " convert_to('{}', 'UTF8'), '[]', g %% 64, now(), now() FROM generate_series(1, 10000) AS g"
        )
        conn.exec_driver_sql("ANALYZE payment_events_outbox")
    engine.dispose()
    config = RelayConfig(dlq_topic=None, purge_budget_seconds=3600.0)
    store = SqlOutboxStore.from_url(database_url)
    relay = Relay(store, NoProducer(), config)
    try:
        started = time.perf_counter()
        deleted = relay.purge()
        elapsed = time.perf_counter() - started
    finally:
        relay.close()
        store.close()
    rate = deleted / elapsed
    defaults = RelayConfig()
    per_interval = min(
        rate * defaults.purge_budget_seconds, defaults.purge_batch_size * defaults.purge_max_batches
    )
    capacity = per_interval / defaults.purge_interval_seconds
    return {
        "rows_deleted": deleted,
        "seconds": round(elapsed, 2),
        "rows_per_second_while_purging": round(rate),
        "sustainable_purge_rate_with_defaults": round(capacity),
        "twice_highest_sustained_publish_rate": 2 * HIGHEST_SUSTAINED_RATE,
        "ratio": round(capacity / (2 * HIGHEST_SUSTAINED_RATE), 2),
        "settings": "purge_batch_size 1000, purge_budget 50 s, purge_interval 60 s, purge_max_batches 10000",
    }


def main() -> None:
    """``python -m bench.purge``."""
    parser = argparse.ArgumentParser(prog="python -m bench.purge")
    parser.add_argument("--rows", type=int, default=500_000)
    args = parser.parse_args()
    with fresh_database() as url:
        print(json.dumps(run_purge(url, args.rows), indent=1))


if __name__ == "__main__":
    main()
