"""The claim stays index-ordered whatever the statistics say: a backlog that arrives before any ANALYZE.

Issue 16: with statistics of an empty outbox (a fresh deployment, or a table autovacuum has not analysed
since the backlog arrived) PostgreSQL planned the claim as a bitmap scan of *every* pending row plus a
sort (an external merge of ~110 MB for 100,000 rows: 500-800 ms per 2,000-row claim), for the custom and
the generic plan alike. These tests look at the plan the store's own connection runs, in the store's own
claim transaction, rather than at the clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from payment_events.outbox import migrate, postgres
from payment_events.outbox.ports import Fence
from payment_events.outbox.store import SqlOutboxStore

BACKLOG = 100_000

_BACKLOG_ROWS = (
    "INSERT INTO payment_events_outbox (event_id, event_type, schema_version, topic, key, payload, headers,"
    " shard, state, next_attempt_at, created_at)"
    " SELECT gen_random_uuid()::text, 'PaymentSucceeded', 1, 'payment.events',"
    " convert_to('k' || (g % 10000), 'UTF8'), convert_to(repeat('x', 1000), 'UTF8'), '[]', g % 64,"
    " 'pending', now(), now() FROM generate_series(1, :n) g"
)


@pytest.fixture
def warm_store(pg_url: str) -> Iterator[SqlOutboxStore]:
    """A store on one pooled connection that has claimed (and so prepared the claim) on an empty,
    analysed outbox, then a 100,000-row backlog committed with autovacuum off and no ANALYZE."""
    migrate.upgrade(pg_url)
    with SqlOutboxStore.from_url(
        pg_url, connect_args={"options": "-c statement_timeout=20000"}, pool_size=1, max_overflow=0
    ) as store:
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ALTER TABLE payment_events_outbox SET (autovacuum_enabled = false)"))
            conn.execute(text("VACUUM ANALYZE payment_events_outbox"))
        for _ in range(8):  # psycopg prepares on the fifth execution; the server then may go generic
            assert store.claim_excluding(None, 2000, datetime.now(UTC), ()) == []
            assert store.claim_excluding(range(32), 2000, datetime.now(UTC), (1, 2)) == []
        with store.engine.begin() as conn:
            conn.execute(text(_BACKLOG_ROWS), {"n": BACKLOG})
        yield store


_PARAM_TYPES = {
    "now": "timestamptz",
    "shards": "smallint[]",
    "busy": "bigint[]",
    "fence_shards": "smallint[]",
    "fence_generations": "bigint[]",
    "fence_namespace": "integer",
    "fence_owner": "text",
    "lease_pid": "integer",
}


def _literal(value: Any) -> str:
    if isinstance(value, datetime):
        return "now()"
    if isinstance(value, list | tuple | range):
        return "'{" + ",".join(str(int(v)) for v in value) + "}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(int(value))


def plans_of_the_claim(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record, for each claim the store runs, the plan of its statement on the claim's own connection
    (same session settings; in its transaction when it has one): custom, and generic as a prepared
    statement under ``force_generic_plan``."""
    plans: list[str] = []
    real = postgres.fetch_binary

    def explaining(conn: Connection, sql: str, params: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        rows = real(conn, sql, params, *args, **kwargs)  # runs the store's statements, pinning included
        driver: Any = conn.connection.driver_connection
        with driver.cursor() as cursor:
            cursor.execute("EXPLAIN " + sql, params)
            plans.append("custom:\n" + "\n".join(r[0] for r in cursor.fetchall()))
            types: list[str] = []
            values: list[str] = []
            body = sql
            for name, value in params.items():
                types.append(_PARAM_TYPES[name])
                values.append(_literal(value))
                body = body.replace(f"%({name})s", f"${len(types)}")
            cursor.execute("SET plan_cache_mode = force_generic_plan")  # session: autocommit has no LOCAL
            cursor.execute(f"PREPARE pinned_claim({', '.join(types)}) AS {body}")
            cursor.execute(f"EXPLAIN EXECUTE pinned_claim({', '.join(values)})")
            plans.append("generic:\n" + "\n".join(r[0] for r in cursor.fetchall()))
            cursor.execute("DEALLOCATE pinned_claim")
            cursor.execute("RESET plan_cache_mode")
        return rows

    monkeypatch.setattr(postgres, "fetch_binary", explaining)
    return plans


def assert_index_ordered(plans: list[str]) -> None:
    """Every plan walks the pending index in id order and probes the retry index: no sort, no bitmap
    scan, no sequential scan of the outbox."""
    assert len(plans) == 2
    for plan in plans:
        assert "Index Scan using ix_payment_events_outbox_pending on payment_events_outbox o" in plan, plan
        assert "ix_payment_events_outbox_retry on payment_events_outbox earlier" in plan, plan
        assert "Sort" not in plan, plan
        assert "Bitmap" not in plan, plan
        assert "Seq Scan on payment_events_outbox" not in plan, plan


@pytest.fixture(params=["hot", "transaction"])
def claiming_store(request: pytest.FixtureRequest, warm_store: SqlOutboxStore) -> Iterator[SqlOutboxStore]:
    """The warmed store as the relay builds it (claims as single autocommit statements on its pinned
    hot engine), or a store on the same engine without one (claims in a transaction after the pin)."""
    if request.param == "hot":
        assert warm_store.hot_engine is not None
        yield warm_store
    else:
        yield SqlOutboxStore(warm_store.engine)


@pytest.mark.parametrize(
    ("shards", "busy"), [(None, ()), (range(32), ()), (None, (1, 2, 3)), (range(32), (1, 2, 3))]
)
def test_claim_after_an_unanalysed_backlog_walks_the_pending_index_without_a_sort(
    claiming_store: SqlOutboxStore,
    monkeypatch: pytest.MonkeyPatch,
    shards: range | None,
    busy: tuple[int, ...],
) -> None:
    """After 100,000 rows arrive with no ANALYZE, the warmed store's next claim (custom and generic plan)
    is an index scan of the pending index in id order with the retry-index probe: no Sort, no bitmap
    scan, no sequential scan over the pending rows."""
    plans = plans_of_the_claim(monkeypatch)
    claimed = claiming_store.claim_excluding(shards, 2000, datetime.now(UTC), busy)
    assert len(claimed) == 2000
    assert [r.id for r in claimed] == sorted(r.id for r in claimed)
    assert_index_ordered(plans)


@pytest.mark.parametrize("lock_check", [False, True])
@pytest.mark.parametrize("busy", [(), (1, 2, 3)])
def test_fenced_claim_after_an_unanalysed_backlog_walks_the_pending_index_without_a_sort(
    claiming_store: SqlOutboxStore,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    lock_check: bool,
    busy: tuple[int, ...],
) -> None:
    """The fenced claim (lease check and claim in one statement) keeps the same index-ordered plan after
    the unanalysed backlog, with and without the advisory-lock check, and claims only held shards."""
    namespace, shards = 4242, range(0, 64, 2)
    taken = claiming_store.take_shards(namespace, "relay-a", shards)
    locker = create_engine(pg_url, poolclass=NullPool).connect()
    try:
        pid: int | None = None
        if lock_check:
            for shard in shards:
                locker.execute(text("SELECT pg_advisory_lock(:ns, :s)"), {"ns": namespace, "s": shard})
            pid = int(locker.execute(text("SELECT pg_backend_pid()")).scalar_one())
        fence = Fence(namespace, "relay-a", taken.generations, pid)
        plans = plans_of_the_claim(monkeypatch)
        claimed = claiming_store.claim_fenced(fence, 2000, datetime.now(UTC), busy)
    finally:
        locker.close()
    assert len(claimed) == 2000
    assert {r.shard for r in claimed} <= set(shards)
    assert [r.id for r in claimed] == sorted(r.id for r in claimed)
    assert_index_ordered(plans)
