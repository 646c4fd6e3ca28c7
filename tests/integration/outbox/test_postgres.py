"""SqlOutboxStore on the real PostgreSQL: plans, async marks, JIT, reconnects, concurrent writers."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text

from payment_events.errors import StoreError
from payment_events.events.codec import EncodedEvent
from payment_events.outbox import migrate, postgres
from payment_events.outbox.inserts import key_lock_id
from payment_events.outbox.ports import Fence, Published
from payment_events.outbox.postgres import pg_claim_sql
from payment_events.outbox.publisher import OutboxPublisher
from payment_events.outbox.store import SqlOutboxStore


def encoded(key: bytes) -> EncodedEvent:
    """A fabricated encoded event with a fresh id."""
    event_id = str(uuid.uuid4())
    return EncodedEvent(event_id, "PaymentSucceeded", 1, key, b"{}", (("ce_id", b"x"),), datetime.now(UTC))


@pytest.fixture
def store(pg_url: str) -> Iterator[SqlOutboxStore]:
    """A store with its own engine over a migrated fresh database."""
    migrate.upgrade(pg_url)
    with SqlOutboxStore.from_url(pg_url) as store:
        yield store


def statements_during(engine: Engine, action: Any) -> list[str]:
    """The SQL statements ``engine`` sends while ``action()`` runs."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_marks_commit_asynchronously_unless_turned_off(pg_url: str, store: SqlOutboxStore) -> None:
    """resolve() turns synchronous_commit off for its own transaction by default (inside its one
    statement on the hot engine; SET LOCAL in a transaction on the caller's engine), and not when
    disabled."""
    with store.engine.begin() as conn:
        OutboxPublisher(conn).publish_encoded([encoded(k) for k in (b"a", b"b", b"c", b"d")])
    a, b, c, d = store.claim(None, 10, datetime.now(UTC))
    hot = store.hot_engine
    assert hot is not None
    sent = statements_during(hot, lambda: store.resolve([Published(a.id, 0, 0)], [], []))
    assert len(sent) == 1
    assert "set_config('synchronous_commit', 'off', true)" in sent[0]
    strict = SqlOutboxStore(store.engine, async_marks=False, hot_engine=hot)
    sent = statements_during(hot, lambda: strict.resolve([Published(b.id, 0, 1)], [], []))
    assert len(sent) == 1
    assert "synchronous_commit" not in sent[0]
    on_callers_engine = SqlOutboxStore(store.engine)
    sent = statements_during(store.engine, lambda: on_callers_engine.resolve([Published(c.id, 0, 2)], [], []))
    assert any("SET LOCAL synchronous_commit = off" in s for s in sent)
    strict = SqlOutboxStore(store.engine, async_marks=False)
    sent = statements_during(store.engine, lambda: strict.resolve([Published(d.id, 0, 3)], [], []))
    assert not any("synchronous_commit" in s for s in sent)
    assert store.claim(None, 10, datetime.now(UTC)) == []


def test_hot_path_claims_are_one_autocommit_statement(
    store: SqlOutboxStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store built from a URL claims (fenced or not) with one statement in autocommit on its hot engine,
    whose session carries the claim's planner pin; a store on the caller's engine pins in a transaction."""
    calls: list[tuple[bool, tuple[str, ...], str]] = []
    real = postgres.fetch_binary

    def recording(conn: Any, sql: str, params: dict[str, Any], setup: Any = ()) -> Any:
        driver = conn.connection.driver_connection
        with driver.cursor() as cursor:
            cursor.execute("SHOW enable_sort")
            sort = cursor.fetchone()[0]
        calls.append((bool(driver.autocommit), tuple(setup), sort))
        return real(conn, sql, params, setup)

    monkeypatch.setattr(postgres, "fetch_binary", recording)
    with store.engine.begin() as conn:
        OutboxPublisher(conn).publish_encoded([encoded(b"a")])
    taken = store.take_shards(77, "relay-a", range(64))
    fence = Fence(77, "relay-a", taken.generations)
    assert len(store.claim(None, 10, datetime.now(UTC))) == 1
    assert len(store.claim_fenced(fence, 10, datetime.now(UTC))) == 1
    assert calls == [(True, (), "off"), (True, (), "off")]
    calls.clear()
    assert len(SqlOutboxStore(store.engine).claim_fenced(fence, 10, datetime.now(UTC))) == 1
    assert calls == [(False, (postgres.CLAIM_PLAN_PIN,), "on")]  # pinned by the setup statement


def test_publish_is_one_statement_including_the_notification(store: SqlOutboxStore) -> None:
    """On PostgreSQL a publish is one INSERT that also calls pg_notify: one round trip."""
    with store.engine.connect() as conn:
        publisher = OutboxPublisher(conn)
        publisher.publish_encoded([encoded(b"warm")])
        sent = statements_during(store.engine, lambda: publisher.publish_encoded([encoded(b"a")]))
        conn.rollback()
    assert len(sent) == 1
    assert sent[0].lstrip().startswith("INSERT INTO payment_events_outbox")
    assert "pg_notify" in sent[0]


def test_relay_engine_runs_without_jit(store: SqlOutboxStore) -> None:
    """The store's own engine turns JIT off (it only adds latency to short, index-driven statements)."""
    with store.engine.connect() as conn:
        assert conn.execute(text("SHOW jit")).scalar_one() == "off"


def test_claim_plan_reads_the_partial_indexes(store: SqlOutboxStore) -> None:
    """With published history and pending rows, the claim walks the pending index in id order and
    probes the retry index per row (no sort, no scan of published rows); skipping a batch still being
    marked adds one hashed lookup, not a scan per row."""
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO payment_events_outbox (event_id, event_type, schema_version, topic, key,"
                " payload, headers, shard, state, next_attempt_at, created_at, published_at, kafka_partition,"
                " kafka_offset) SELECT gen_random_uuid()::text, 'PaymentSucceeded', 1, 'payment.events',"
                " convert_to('k' || (g % 500), 'UTF8'), '\\x00', '[]', g % 64,"
                " CASE WHEN g <= 20000 THEN 'published' ELSE 'pending' END, now(), now(),"
                " CASE WHEN g <= 20000 THEN now() END, 0, g FROM generate_series(1, 25000) g"
            )
        )
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE payment_events_outbox"))
    busy = list(range(20_001, 22_001))  # the relay's overlapped marks: a batch still being marked
    for shard_filter, exclude in ((False, False), (True, False), (False, True), (True, True)):
        sql = pg_claim_sql(shard_filter, 500, exclude)
        params: dict[str, Any] = {"now": datetime.now(UTC), "shards": list(range(0, 64, 2)), "busy": busy}
        with store.engine.connect() as conn:
            plan = "\n".join(conn.exec_driver_sql("EXPLAIN " + sql, params).scalars())
        assert "Index Scan using ix_payment_events_outbox_pending" in plan
        assert "ix_payment_events_outbox_retry" in plan
        assert "Sort" not in plan
        assert "Seq Scan" not in plan
        assert ("hashed SubPlan" in plan) == exclude  # one hash of the busy ids, not a scan per row


def test_claim_probe_uses_the_retry_index_even_with_statistics_from_before_a_backlog(
    store: SqlOutboxStore,
) -> None:
    """Statistics taken while nothing was pending (a healthy outbox) and then a backlog: the per-row
    probe for keys in backoff still reads the retry index, never the pending index (which under these
    statistics used to be chosen: one scan of every earlier pending row per candidate)."""
    history = (
        "INSERT INTO payment_events_outbox (event_id, event_type, schema_version, topic, key, payload,"
        " headers, shard, state, next_attempt_at, created_at, published_at, kafka_partition, kafka_offset)"
        " SELECT gen_random_uuid()::text, 'PaymentSucceeded', 1, 'payment.events',"
        " convert_to('k' || (g % 500), 'UTF8'), '\\x00', '[]', g % 64, {state}, now(), now(),"
        " {published_at}, 0, g FROM generate_series(1, {count}) g"
    )
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE payment_events_outbox SET (autovacuum_enabled = false)"))
        conn.execute(text(history.format(state="'published'", published_at="now()", count=20000)))
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE payment_events_outbox"))
    with store.engine.begin() as conn:
        conn.execute(text(history.format(state="'pending'", published_at="NULL", count=5000)))
    for exclude in (False, True):
        for mode in ("force_custom_plan", "force_generic_plan"):
            with store.engine.connect() as conn:
                conn.execute(text(f"SET plan_cache_mode = {mode}"))
                types = "timestamptz, bigint[]" if exclude else "timestamptz"
                body = pg_claim_sql(False, 500, exclude).replace("%(now)s", "$1").replace("%(busy)s", "$2")
                conn.exec_driver_sql(f"PREPARE claim_plan({types}) AS {body}")
                args = "now(), '{1,2,3}'" if exclude else "now()"  # utility statements take no parameters
                plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN EXECUTE claim_plan({args})").scalars())
                conn.exec_driver_sql("DEALLOCATE claim_plan")
                conn.rollback()
            probe = plan[plan.index("SubPlan"):]
            assert "ix_payment_events_outbox_retry on payment_events_outbox earlier" in probe, plan
            assert "ix_payment_events_outbox_pending on payment_events_outbox earlier" not in plan


@pytest.mark.parametrize("engine_name", ["hot_engine", "engine"])
def test_terminated_connection_is_a_store_error_then_recovers(
    pg_url: str, store: SqlOutboxStore, engine_name: str
) -> None:
    """If the database kills one of the store's connections (the hot path's: claims; the other: the
    backlog), the next call on it fails with StoreError and the one after that works on a fresh one."""
    engine = getattr(store, engine_name)
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    admin = create_engine(pg_url)
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    finally:
        admin.dispose()
    time.sleep(0.2)

    def call() -> object:
        if engine_name == "hot_engine":
            return store.claim(None, 10, datetime.now(UTC))
        return store.backlog(datetime.now(UTC)).pending

    with pytest.raises(StoreError):
        call()
    assert call() in ([], 0)


def test_concurrent_writers_lose_nothing_and_keep_per_key_order(store: SqlOutboxStore) -> None:
    """Four writers commit out of id order while a claimer publishes: every row is claimed exactly once
    (no gap is skipped), and each key's rows are claimed in id order. Each writer owns its keys, as a
    payment transaction that locks its payment row before publishing does."""
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        keys = [f"w{seed}-pay_{i}".encode() for i in range(5)]
        try:
            for _ in range(40):
                with store.engine.begin() as conn:
                    OutboxPublisher(conn).publish_encoded([encoded(rng.choice(keys))])
                    time.sleep(rng.random() * 0.005)  # hold the id uncommitted for a while
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    claimed: dict[bytes, list[int]] = defaultdict(list)
    all_ids: list[int] = []

    def drain() -> None:
        while batch := store.claim(None, 25, datetime.now(UTC)):
            for record in batch:
                claimed[record.key].append(record.id)
                all_ids.append(record.id)
            store.resolve([Published(r.id, 0, r.id) for r in batch], [], [])

    while any(t.is_alive() for t in threads):
        drain()
        time.sleep(0.002)
    for thread in threads:
        thread.join()
    drain()
    assert not errors
    assert len(all_ids) == len(set(all_ids)) == 160
    assert all(ids == sorted(ids) for ids in claimed.values())


def test_timestamps_come_back_in_utc_whatever_the_session_time_zone(pg_url: str) -> None:
    """With a database whose time zone is not UTC, claimed rows still carry the exact instant, in UTC."""
    migrate.upgrade(pg_url)
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            name = conn.execute(text("SELECT current_database()")).scalar_one()
            conn.execute(text(f"ALTER DATABASE \"{name}\" SET timezone TO 'Asia/Tokyo'"))
    finally:
        admin.dispose()
    moment = datetime(2026, 5, 1, 12, 3, 7, 120, tzinfo=UTC)
    with SqlOutboxStore.from_url(pg_url) as store:
        with store.engine.connect() as conn:
            assert conn.execute(text("SHOW timezone")).scalar_one() == "Asia/Tokyo"
        with store.engine.begin() as conn:
            OutboxPublisher(conn, clock=lambda: moment).publish_encoded([encoded(b"a")])
        [record] = store.claim(None, 10, datetime.now(UTC))
        assert record.created_at == moment
        assert record.created_at.tzinfo is UTC
        assert store.backlog(moment).oldest_pending_age_seconds == 0.0


@pytest.mark.parametrize(
    ("shards", "busy"), [(None, ()), (range(32), ()), (None, (1, 2, 3)), (range(32), (1, 2, 3))]
)
def test_claim_stays_index_ordered_after_statistics_of_an_empty_outbox(
    pg_url: str, shards: range | None, busy: tuple[int, ...]
) -> None:
    """A fresh deployment: statistics say the outbox is empty and the relay's connection has cached the
    claim's plan; then a 20,000-row backlog arrives. The next claim still walks the indexes (here: it
    finishes within a 10 s statement timeout; the old generic plan scanned the table once per row)."""
    migrate.upgrade(pg_url)
    with SqlOutboxStore.from_url(
        pg_url, connect_args={"options": "-c statement_timeout=10000"}, pool_size=1, max_overflow=0
    ) as store:
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ALTER TABLE payment_events_outbox SET (autovacuum_enabled = false)"))
            conn.execute(text("VACUUM ANALYZE payment_events_outbox"))
        for _ in range(8):  # psycopg prepares a statement on its fifth execution on one connection
            assert store.claim_excluding(shards, 2000, datetime.now(UTC), busy) == []
        with store.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO payment_events_outbox (event_id, event_type, schema_version, topic, key,"
                    " payload, headers, shard, state, next_attempt_at, created_at)"
                    " SELECT gen_random_uuid()::text, 'PaymentSucceeded', 1, 'payment.events',"
                    " convert_to('k' || (g % 5000), 'UTF8'), '\\x7b7d', '[]', g % 64, 'pending', now(),"
                    " now() FROM generate_series(1, 20000) g"
                )
            )
        claimed = store.claim_excluding(shards, 2000, datetime.now(UTC), busy)
        assert len(claimed) == 2000
        assert [r.id for r in claimed] == sorted(r.id for r in claimed)


def test_the_relays_sessions_are_named_in_pg_stat_activity(pg_url: str) -> None:
    """The store's two engines, the lease connection and the LISTEN connection carry an application_name
    an operator can find in pg_stat_activity; a URL that names its sessions keeps its own name."""
    from payment_events.outbox.leases import PostgresShardLeases
    from payment_events.relay.wakeup import PostgresNotifyWaker

    migrate.upgrade(pg_url)
    store = SqlOutboxStore.from_url(pg_url)
    leases = PostgresShardLeases(pg_url, shard_count=4)
    waker = PostgresNotifyWaker(pg_url, "payment_events_outbox")
    named = SqlOutboxStore.from_url(pg_url + ("&" if "?" in pg_url else "?") + "application_name=billing")
    try:
        store.claim(None, 1, datetime.now(UTC))
        store.backlog(datetime.now(UTC))
        leases.refresh()
        with named.engine.connect() as conn:
            own = conn.execute(text("SELECT current_setting('application_name')")).scalar_one()
        with store.engine.connect() as conn:
            names = set(
                conn.execute(
                    text("SELECT application_name FROM pg_stat_activity WHERE datname = current_database()")
                ).scalars()
            )
        assert own == "billing"
        assert {
            "payment-events store",
            "payment-events hot path",
            "payment-events leases",
            "payment-events listen",
        } <= names
    finally:
        waker.close()
        leases.close()
        store.close()
        named.close()


@pytest.mark.parametrize(("async_marks", "expected"), [(True, "off"), (False, "on")])
def test_hot_path_sessions_commit_asynchronously_with_async_marks(
    pg_url: str, async_marks: bool, expected: str
) -> None:
    """The hot engine's sessions (claims with their lease locks, published marks) commit without waiting
    for the WAL flush when the store's marks are asynchronous, and synchronously when they are not."""
    migrate.upgrade(pg_url)
    with SqlOutboxStore.from_url(pg_url, async_marks=async_marks) as store:
        assert store.hot_engine is not None
        with store.hot_engine.connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == expected
            assert conn.execute(text("SHOW enable_sort")).scalar_one() == "off"
        with store.engine.connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "on"
            assert conn.execute(text("SHOW enable_sort")).scalar_one() == "on"


def test_publishing_many_events_is_one_statement_in_order(store: SqlOutboxStore) -> None:
    """Several events (publish_many) are one INSERT with their keys' locks and the notification: one round
    trip whatever the count, and the ids follow the events' order."""
    events = [encoded(f"pay_{i % 7}".encode()) for i in range(300)]
    with store.engine.connect() as conn:
        publisher = OutboxPublisher(conn)
        publisher.publish_encoded([encoded(b"warm-1"), encoded(b"warm-2")])
        sent = statements_during(store.engine, lambda: publisher.publish_encoded(events))
        rows = conn.execute(
            text("SELECT event_id FROM payment_events_outbox WHERE event_id = ANY(:ids) ORDER BY id"),
            {"ids": [e.event_id for e in events]},
        ).scalars().all()
        held = conn.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        ).scalar_one()
        conn.commit()
    assert len(sent) == 1
    assert "pg_advisory_xact_lock" in sent[0]
    assert "pg_notify" in sent[0]
    assert rows == [e.event_id for e in events]
    keys = {key_lock_id(e.key) for e in events} | {key_lock_id(b"warm-1"), key_lock_id(b"warm-2")}
    assert held == len(keys)
