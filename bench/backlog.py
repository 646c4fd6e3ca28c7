"""Build an outbox backlog with the real publisher, park it, and release it in one commit.

``load_staging`` writes events through ``OutboxPublisher.publish_encoded`` (multi-row inserts, 5,000
events a transaction) and moves the rows into an unlogged ``bench_staging`` table, leaving the outbox
empty. ``seed_history`` gives the outbox the published past of a running system. ``release`` copies the
parked rows back into ``payment_events_outbox`` as pending in ONE transaction, with a fresh topic, and
notifies: the whole backlog becomes visible to the relays at one instant (the commit), so the relays can
be started, and their shards balanced, before the clock starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from payment_events.events.codec import EncodedEvent

LOAD_CHUNK = 5_000
_PENDING = sa.text("SELECT count(*) FROM payment_events_outbox WHERE state = 'pending'")
_RELEASE_COLUMNS = (
    "event_type, schema_version, key, payload, headers, shard, state, attempts, next_attempt_at,"
    " created_at"
)


def load_staging(engine: sa.Engine, events: Sequence[EncodedEvent], topic: str) -> float:
    """Write ``events`` with the real publisher, then park them in ``bench_staging``; return seconds."""
    from payment_events.outbox.publisher import OutboxPublisher

    started = time.perf_counter()
    for start in range(0, len(events), LOAD_CHUNK):
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            OutboxPublisher(conn, router=lambda _t: topic, notify=False).publish_encoded(
                events[start : start + LOAD_CHUNK]
            )
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_staging")
        conn.exec_driver_sql("CREATE UNLOGGED TABLE bench_staging AS SELECT * FROM payment_events_outbox")
        conn.exec_driver_sql("TRUNCATE payment_events_outbox")
    return time.perf_counter() - started


def seed_history(engine: sa.Engine, count: int) -> int:
    """Give the outbox the past of a running system: ``count`` rows already published (copies of the
    parked rows with fresh event ids), then ``VACUUM ANALYZE``. A relay's plans are then made against
    the statistics a production outbox has (mostly published rows, few pending), not an empty table's."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO payment_events_outbox (event_id, event_type, schema_version, topic, key, payload,"
            " headers, shard, state, attempts, next_attempt_at, created_at, published_at, kafka_partition,"
            " kafka_offset)"
            " SELECT gen_random_uuid()::text, event_type, schema_version, 'bench.history', key, payload,"
            " headers, shard, 'published', 0, next_attempt_at, created_at, now(), 0, id"
            f" FROM bench_staging ORDER BY id LIMIT {int(count)}"
        )
    vacuum_analyze(engine)
    return count


def vacuum_analyze(engine: sa.Engine) -> None:
    """``VACUUM ANALYZE`` the outbox (what autovacuum would have done by then)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE payment_events_outbox")


def clear_pending(engine: sa.Engine) -> float:
    """Delete rows a previous run left pending (their topic is gone), then ``VACUUM ANALYZE`` (what
    autovacuum does between bursts in production; without it each run would inherit the previous run's
    dead rows and index entries). Published rows stay: they are the outbox's history, as in production
    within the retention period. Returns the seconds spent."""
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM payment_events_outbox WHERE state = 'pending'")
    vacuum_analyze(engine)
    return time.perf_counter() - started


def release(
    engine: sa.Engine, topic: str, limit: int | None = None, before_commit: Callable[[], object] | None = None
) -> tuple[float, int]:
    """Copy the parked rows (up to ``limit``) into the outbox as pending, for ``topic``, in one
    transaction, then notify. Returns (wall-clock time just before COMMIT, rows released).
    ``before_commit`` is called just before the COMMIT (the copy's own cost is not the drain's)."""
    limit_sql = f" ORDER BY id LIMIT {int(limit)}" if limit is not None else ""
    with engine.connect() as conn:
        # Fresh ids (the identity) and event ids, so one parked backlog can be released several times.
        result = conn.execute(
            sa.text(
                f"INSERT INTO payment_events_outbox ({_RELEASE_COLUMNS}, event_id, topic)"
                f" SELECT {_RELEASE_COLUMNS}, gen_random_uuid()::text, :topic FROM bench_staging{limit_sql}"
            ),
            {"topic": topic},
        )
        rows = int(result.rowcount)
        conn.execute(sa.text("SELECT pg_notify('payment_events_outbox', '')"))
        if before_commit is not None:
            before_commit()
        committed_at = time.time()
        conn.commit()
    return committed_at, rows


def pending(engine: sa.Engine) -> int:
    """Rows still pending."""
    with engine.connect() as conn:
        return int(conn.execute(_PENDING).scalar_one())


def published_window(engine: sa.Engine, topic: str) -> tuple[datetime | None, datetime | None, int]:
    """(first published_at, last published_at, published rows) of the rows for ``topic``."""
    with engine.connect() as conn:
        first, last, count = conn.execute(
            sa.text(
                "SELECT min(published_at), max(published_at), count(*) FROM payment_events_outbox"
                " WHERE state = 'published' AND topic = :topic"
            ),
            {"topic": topic},
        ).one()
    return first, last, int(count)


def wait_drained(engine: sa.Engine, timeout: float, interval: float = 0.05) -> float | None:
    """Poll until no row is pending; return the wall-clock time it was seen empty (None: timed out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pending(engine) == 0:
            return time.time()
        time.sleep(interval)
    return None


def as_epoch(value: datetime | None) -> float:
    """A timestamptz as Unix seconds (NaN for None)."""
    if value is None:
        return float("nan")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()
