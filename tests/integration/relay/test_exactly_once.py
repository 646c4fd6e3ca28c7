"""Exactly-once mode with real PostgreSQL and Kafka: transactions, fencing of a previous owner and
reconciliation of rows committed to Kafka but never marked."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from payment_events.errors import StoreError
from payment_events.relay.exactly_once import ExactlyOnceLeases
from tests.conftest import KcatMessage
from tests.integration.relay_support import (
    make_relay,
    migrated_engine,
    payment_event,
    state_counts,
    write,
)

Consume = Callable[..., list[KcatMessage]]


def _ids(messages: list[KcatMessage]) -> Counter[str]:
    return Counter(m.headers["ce_id"].decode() for m in messages)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_an_exactly_once_relay_publishes_every_event_once(
    backend: str,
    *,
    request: pytest.FixtureRequest,
    tmp_path: Any,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    kcat_consume: Consume,
) -> None:
    """Drained in transactions, every event is on the topic once (kcat reads read_committed) and marked
    with the offset kcat saw."""
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path}/o.db"
    topic = new_topic(partitions=3)
    engine = migrated_engine(url)
    try:
        ids = write(engine, topic, [payment_event(f"pay-{i % 37}", i) for i in range(600)])
        relay = make_relay(url, kafka_bootstrap, batch_size=200, delivery="exactly-once")
        try:
            assert relay.drain() == 600
        finally:
            relay.close()
        assert state_counts(engine) == {"published": 600}
    finally:
        engine.dispose()
    seen = _ids(kcat_consume(topic, 600, timeout=60))
    assert set(seen) == set(ids)
    assert max(seen.values()) == 1


def test_rows_committed_but_not_marked_are_reconciled_not_sent_again(
    pg_url: str, kafka_bootstrap: str, new_topic: Callable[..., str], kcat_consume: Consume
) -> None:
    """Relay A commits a transaction and 'dies' before its marks; relay B takes over, fences A and finds
    A's events in Kafka: it marks them with their offsets and sends nothing twice."""
    topic = new_topic(partitions=3)
    engine = migrated_engine(pg_url)
    try:
        ids = write(engine, topic, [payment_event(f"pay-{i % 11}", i) for i in range(300)])
        relay_a = make_relay(
            pg_url, kafka_bootstrap, batch_size=100, delivery="exactly-once", overlap_marks=False
        )

        def crash(*args: object, **kwargs: object) -> None:
            raise StoreError("simulated crash before the marks")

        relay_a._store.store.resolve_fenced = crash  # type: ignore[attr-defined]
        with pytest.raises(StoreError):
            relay_a.run_once()  # 100 events committed in Kafka, none marked
        assert state_counts(engine) == {"pending": 300}
        # A dies without releasing: its lease connection closes, its owner stays in the lease table.
        relay_a._leases._leases._drop_connection()  # type: ignore[union-attr]
        relay_b = make_relay(pg_url, kafka_bootstrap, batch_size=100, delivery="exactly-once")
        try:
            assert relay_b.drain() == 200  # 100 were found in Kafka by the reconciliation
            leases = relay_b._leases
            assert isinstance(leases, ExactlyOnceLeases)
            assert leases.reconciled_rows == 100
        finally:
            relay_b.close()
            relay_a.close()
        assert state_counts(engine) == {"published": 300}
    finally:
        engine.dispose()
    seen = _ids(kcat_consume(topic, 300, timeout=60))
    assert set(seen) == set(ids)
    assert max(seen.values()) == 1, "an event was published twice"


@pytest.mark.parametrize(("delivery", "asynchronous"), [("exactly-once", False), ("at-least-once", True)])
def test_an_exactly_once_relays_marks_survive_a_database_crash(
    delivery: str, asynchronous: bool, *, pg_url: str, kafka_bootstrap: str
) -> None:
    """An exactly-once relay commits its marks (and claims) synchronously: an asynchronous mark lost in
    a database crash left a row pending whose event Kafka had committed, and the chaos scenario
    pg-restart-immediate saw it sent again (10-20 read_committed duplicates a run). At-least-once keeps
    asynchronous marks (a duplicate there is within its contract)."""
    from sqlalchemy import text

    migrated_engine(pg_url).dispose()
    relay = make_relay(pg_url, kafka_bootstrap, delivery=delivery)
    try:
        store: Any = relay._store
        sql_store = store.store
        assert sql_store.async_marks is asynchronous
        with sql_store.hot_engine.connect() as conn:
            setting = conn.execute(text("SHOW synchronous_commit")).scalar_one()
        assert setting == ("off" if asynchronous else "on")
    finally:
        relay.close()
