"""``python -m bench.fence_cost``: what the lease fence adds to one claim and one mark transaction.

A fenced claim is two small queries (the lease rows ``FOR SHARE``, ``pg_locks`` of the lease backend)
before the usual claim; a fenced mark adds the lease rows ``FOR SHARE`` and a shard filter.

Alternates unfenced and fenced calls on the same PostgreSQL outbox (20,000 pending rows, 64 shards
owned through real advisory locks), so the shared machine's load hits both alike; prints medians.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

from bench.infra import fresh_database
from payment_events.events.codec import EncodedEvent
from payment_events.kafka.topics import TopicRouter
from payment_events.outbox.leases import PostgresShardLeases
from payment_events.outbox.migrate import upgrade
from payment_events.outbox.ports import Retry
from payment_events.outbox.publisher import OutboxPublisher
from payment_events.outbox.store import SqlOutboxStore


def _events(n: int) -> list[EncodedEvent]:
    now = datetime.now(UTC)
    return [
        EncodedEvent(
            str(uuid.uuid4()), "PaymentSucceeded", 1, f"pay-{i % 5000}".encode(), b"{}" * 200, (), now
        )
        for i in range(n)
    ]


def main() -> int:
    """Measure and print."""
    with fresh_database("pe_bench_fence") as url:
        upgrade(url)
        engine = sa.create_engine(url)
        for _start in range(0, 20_000, 2000):
            with engine.begin() as conn:
                OutboxPublisher(conn, router=TopicRouter("t"), notify=False).publish_encoded(_events(2000))
        store = SqlOutboxStore(engine)
        leases = PostgresShardLeases(url)
        try:
            shards = leases.refresh()
            fence = leases.fence
            assert fence is not None
            plain: list[float] = []
            fenced: list[float] = []
            marks_plain: list[float] = []
            marks_fenced: list[float] = []
            now = datetime.now(UTC)
            for _ in range(60):
                t = time.perf_counter()
                rows = store.claim(shards, 2000, now)
                plain.append(time.perf_counter() - t)
                t = time.perf_counter()
                store.claim_fenced(fence, 2000, now)
                fenced.append(time.perf_counter() - t)
                # A retry mark that changes nothing visible to the next claim (due in the past).
                retries = [Retry(r.id, now, "x") for r in rows[:2000]]
                t = time.perf_counter()
                store.resolve([], retries, [])
                marks_plain.append(time.perf_counter() - t)
                t = time.perf_counter()
                store.resolve_fenced(fence, [], retries, [])
                marks_fenced.append(time.perf_counter() - t)
        finally:
            leases.close()
            engine.dispose()
    for name, values in (
        ("claim 2000 of 20000 pending, unfenced", plain),
        ("claim 2000 of 20000 pending, fenced", fenced),
        ("mark 2000 rows, unfenced", marks_plain),
        ("mark 2000 rows, fenced", marks_fenced),
    ):
        print(
            f"{name:45s} median {statistics.median(values) * 1000:7.2f} ms  p90 "
            f"{statistics.quantiles(values, n=10)[-1] * 1000:7.2f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
