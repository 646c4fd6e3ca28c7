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

from payment_events.events.codec import decode
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
    assert result["outbox_rows_written"] == 4 * (10 + 3)  # B, BU, C and RB each write one row


def test_drain_harness_publishes_every_event(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """Raw ceiling, naive relay and a real relay drain each deliver exactly the events they were given,
    and the drain accounts the relay's CPU."""
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
        assert drain["cpu"]["events"] == 200
        assert drain["cpu"]["components"]["relay"]["cpu_seconds"] > 0
        assert backlog.pending(engine) == 0
    finally:
        engine.dispose()


def test_sustained_harness_matches_every_commit_to_its_ack(pg_url: str, kafka_bootstrap: str) -> None:
    """A short sustained run finds every written event on the topic and marked published, and measures
    the CPU of the run's PostgreSQL backends and of each component."""
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
    assert run["pg_backend_cpu_seconds"] > 0
    assert run["pg_backend_cpu_us_per_event"] > 0
    assert run["cpu"]["components"]["writers"]["cpu_seconds"] > 0
    assert run["cpu"]["components"]["postgresql"]["us_per_event"] > 0


def test_two_step_claim_experiment_claims_what_the_shipped_claim_claims(pg_url: str) -> None:
    """The benchmark's two-step claim returns the same rows as the shipped one, keys in backoff skipped."""
    from datetime import UTC, datetime, timedelta

    from bench.claim_fix import TwoStepClaimStore

    from payment_events.outbox.publisher import OutboxPublisher
    from payment_events.outbox.store import SqlOutboxStore

    engine = sa.create_engine(pg_url)
    try:
        upgrade(engine)
        events = EventFactory(4).batch(12)  # keys k0..k3, three events each, round robin
        with engine.begin() as conn:
            OutboxPublisher(conn, notify=False).publish_encoded(events)
            first_of_k0 = conn.execute(sa.text("SELECT min(id) FROM payment_events_outbox")).scalar_one()
            conn.execute(
                sa.text(
                    "UPDATE payment_events_outbox SET attempts = 1, next_attempt_at = :later WHERE id = :id"
                ),
                {"later": datetime.now(UTC) + timedelta(hours=1), "id": first_of_k0},
            )
        now = datetime.now(UTC)
        shipped = SqlOutboxStore(engine).claim(None, 100, now)
        two_step = TwoStepClaimStore(engine).claim(None, 100, now)
        some_shards = TwoStepClaimStore(engine).claim(list(range(32)), 100, now)
    finally:
        engine.dispose()
    assert [r.id for r in two_step] == [r.id for r in shipped]
    assert len(two_step) == 9  # the three rows of the key in backoff are skipped
    assert events[0].key not in {r.key for r in two_step}
    assert {r.id for r in some_shards} <= {r.id for r in two_step}


def test_warm_start_harness_drains_with_the_shipped_and_the_unpinned_claim(kafka_bootstrap: str) -> None:
    """The warm-start workload drains every event once with each claim variant, in its own database."""
    from bench.warmstart import UNPINNED, run_warm_start

    result = run_warm_start(
        EventFactory(20).batch(300), kafka_bootstrap, relay_config=RELAY, partitions=3, rounds=1,
        timeout=120, warm_seconds=1.0,
    )
    assert [r["patch"] for r in result["runs"]] == [None, UNPINNED]
    assert all(r["finished"] and r["published"] == 300 for r in result["runs"])


def test_sqlite_latency_harness_measures_every_event_of_both_variants(kafka_bootstrap: str) -> None:
    """The SQLite latency workload gets a commit-to-ack figure for every written event, polled and shipped."""
    from bench.sqlite_latency import run_sqlite_latency

    result = run_sqlite_latency(kafka_bootstrap, rate=100.0, duration=2.0, rounds=1, partitions=3)
    assert [r["variant"] for r in result["runs"]] == ["polled", "shipped"]
    for run in result["runs"]:
        assert run["events_written"] > 0
        assert run["events_acked"] == run["events_written"]


def test_scaling_step_accounts_every_written_event_and_each_components_cpu(
    pg_url: str, kafka_bootstrap: str
) -> None:
    """A closed-loop scaling step writes events, the relay publishes them within the window, and the step
    reports writer, relay and PostgreSQL CPU with a verdict."""
    from bench.scaling import run_step

    engine = sa.create_engine(pg_url)
    try:
        upgrade(engine)
        step = run_step(
            engine, pg_url, kafka_bootstrap, writers=1, seconds=2.0, relay_config=RELAY, partitions=3,
            per_txn=5,
        )
    finally:
        engine.dispose()
    assert step["events_written"] > 0
    assert step["events_written"] == 5 * step["transactions"]
    assert 0 < step["published_in_window"] <= step["events_written"]
    parts = step["cpu"]["components"]
    assert parts["writers"]["cpu_seconds"] > 0
    assert parts["relay"]["cpu_seconds"] > 0
    assert parts["postgresql"]["cpu_seconds"] > 0
    assert "most CPU" in step["verdict"]


def test_soak_samples_rss_backlog_and_table_size_and_publishes_what_was_written(
    pg_url: str, kafka_bootstrap: str
) -> None:
    """A short soak records one sample every interval with the relay's RSS and a growing table, and
    publishes the events written."""
    from bench.soak import run_soak

    engine = sa.create_engine(pg_url)
    try:
        upgrade(engine)
        soak = run_soak(
            engine, pg_url, kafka_bootstrap, minutes=0.1, rate=100.0, relay_config=RELAY, partitions=3,
            interval=2.0,
        )
    finally:
        engine.dispose()
    series = soak["series"]
    assert len(series) == 3
    assert all(point["relay_rss_mb"] > 0 for point in series)
    assert series[-1]["table_total_mb"] >= series[0]["table_total_mb"]
    assert series[-1]["published_total"] > 0
    assert soak["summary"]["samples"] == 3
    assert soak["settings"]["retention_seconds"] > 0
