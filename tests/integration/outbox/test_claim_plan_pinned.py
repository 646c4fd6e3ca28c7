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
from sqlalchemy import text
from sqlalchemy.engine import Connection

from payment_events.outbox import migrate, postgres
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


def plans_of_the_claim(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record, for each claim the store runs, the plan of its statement in the claim's own transaction
    (same connection, same session and transaction settings): custom, and generic as a prepared
    statement under ``force_generic_plan``."""
    plans: list[str] = []
    real = postgres.fetch_binary

    def explaining(conn: Connection, sql: str, params: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        rows = real(conn, sql, params, *args, **kwargs)  # runs the store's statements, pinning included
        driver: Any = conn.connection.driver_connection
        with driver.cursor() as cursor:
            cursor.execute("EXPLAIN " + sql, params)
            plans.append("custom:\n" + "\n".join(r[0] for r in cursor.fetchall()))
            types, values = ["timestamptz"], ["now()"]
            body = sql.replace("%(now)s", "$1")
            for name, cast in (("shards", "smallint[]"), ("busy", "bigint[]")):
                if name in params:
                    types.append(cast)
                    body = body.replace(f"%({name})s", f"${len(types)}")
                    values.append("'{" + ",".join(str(int(v)) for v in params[name]) + "}'")
            cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            cursor.execute(f"PREPARE pinned_claim({', '.join(types)}) AS {body}")
            cursor.execute(f"EXPLAIN EXECUTE pinned_claim({', '.join(values)})")
            plans.append("generic:\n" + "\n".join(r[0] for r in cursor.fetchall()))
            cursor.execute("DEALLOCATE pinned_claim")
        return rows

    monkeypatch.setattr(postgres, "fetch_binary", explaining)
    return plans


@pytest.mark.parametrize(
    ("shards", "busy"), [(None, ()), (range(32), ()), (None, (1, 2, 3)), (range(32), (1, 2, 3))]
)
def test_claim_after_an_unanalysed_backlog_walks_the_pending_index_without_a_sort(
    warm_store: SqlOutboxStore,
    monkeypatch: pytest.MonkeyPatch,
    shards: range | None,
    busy: tuple[int, ...],
) -> None:
    """After 100,000 rows arrive with no ANALYZE, the warmed store's next claim (custom and generic plan)
    is an index scan of the pending index in id order with the retry-index probe: no Sort, no bitmap
    scan, no sequential scan over the pending rows."""
    plans = plans_of_the_claim(monkeypatch)
    claimed = warm_store.claim_excluding(shards, 2000, datetime.now(UTC), busy)
    assert len(claimed) == 2000
    assert [r.id for r in claimed] == sorted(r.id for r in claimed)
    assert len(plans) == 2
    for plan in plans:
        assert "Index Scan using ix_payment_events_outbox_pending on payment_events_outbox o" in plan, plan
        assert "ix_payment_events_outbox_retry on payment_events_outbox earlier" in plan, plan
        assert "Sort" not in plan, plan
        assert "Bitmap" not in plan, plan
        assert "Seq Scan" not in plan, plan
