"""The benchmark harness works end to end with tiny counts (it asserts counts, never speed)."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from bench import backlog
from bench.ceiling import raw_producer_ceiling
from bench.drain import run_drain
from bench.events import EventFactory, size_record
from bench.naive import naive_relay
from bench.sustained import run_sustained
from bench.writepath import run_write_path

from payment_events.codec import decode
from payment_events.outbox.migrate import upgrade

RELAY = {"dlq_topic": None}


def test_bench_events_are_real_one_kilobyte_events() -> None:
    """The bench's events are valid contract events whose JSON value is about 1 KB."""
    event = EventFactory(3).encoded()
    size = size_record(event)
    assert 900 <= size["value_bytes"] <= 1200
    assert decode(event.value, event.headers).event_id.hex == event.event_id.replace("-", "")


def test_write_path_harness_counts_every_transaction(pg_url: str) -> None:
    """The write-path workload times each variant and writes one outbox row per outbox transaction."""
    result = run_write_path(pg_url, pairs=10, warmup=3)
    assert result["payment_alone_ms"]["count"] == 10
    assert result["payment_plus_outbox_ms"]["count"] == 10
    assert result["outbox_rows_written"] == 3 * (10 + 3)


def test_drain_harness_publishes_every_event(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """Raw ceiling, naive relay and a real relay drain each deliver exactly the events they were given."""
    events = EventFactory(20).batch(200)
    ceiling = raw_producer_ceiling(kafka_bootstrap, new_topic(partitions=3), events)
    assert ceiling["acked"] == 200
    engine = sa.create_engine(pg_url)
    try:
        upgrade(engine)
        backlog.load_staging(engine, events, "bench.unused")
        assert backlog.seed_history(engine, 50) == 50
        backlog.release(engine, new_topic(partitions=3), 20)
        naive = naive_relay(pg_url, kafka_bootstrap, 20)
        assert naive["published"] == 20
        drain = run_drain(
            engine, pg_url, kafka_bootstrap, instances=1, relay_config=RELAY, partitions=3, timeout=120
        )
        assert drain["events"] == 200
        assert drain["published"] == 200
        assert drain["finished"]
        assert drain["exit_codes"] == [0]
        assert backlog.pending(engine) == 0
    finally:
        engine.dispose()


def test_sustained_harness_matches_every_commit_to_its_ack(pg_url: str, kafka_bootstrap: str) -> None:
    """A short sustained run finds every written event on the topic and marked published."""
    engine = sa.create_engine(pg_url)
    try:
        upgrade(engine)
        backlog.load_staging(engine, EventFactory(5).batch(50), "bench.unused")
        backlog.seed_history(engine, 50)
        run = run_sustained(
            engine, pg_url, kafka_bootstrap, rate=100, duration=2, instances=1, relay_config=RELAY,
            partitions=3,
        )
    finally:
        engine.dispose()
    assert run["events_written"] == 200
    assert run["events_acked"] == 200
    assert run["events_marked"] == 200
    assert run["commit_to_ack_ms"]["count"] == 200
