"""An experiment, not the product: the claim the benchmark recommends, to measure its gain in the same run.

``payment_events.outbox.store.SqlOutboxStore.claim`` answers "pending rows, in id order, skipping keys whose
earlier row waits for a retry" with one statement whose NOT EXISTS runs as a correlated subplan. Which
index that subplan uses, and whether the outer scan is index-ordered, is left to the planner, and psycopg
prepares the statement after five executions: a generic plan made while the outbox was empty or healthy
(every estimate "1 row") is kept when a backlog arrives. Measured here: the subplan then walks the
*pending* index (``id < o.id``) instead of the retry index, ~1.8 s per 2,000-row claim with 20,000 rows
pending; with statistics from an empty table it is a sequential scan per candidate row (minutes).

:class:`TwoStepClaimStore` claims in two statements of one transaction whose plans cannot go wrong:

1. ``SET LOCAL plan_cache_mode = force_custom_plan`` and ``enable_seqscan/bitmapscan/sort = off``:
   the only plans left are the index-ordered ones;
2. the keys in backoff: ``SELECT DISTINCT ON (key) key, id ... WHERE state = 'pending' AND attempts > 0
   AND next_attempt_at > now ORDER BY key, id`` (only the retry index gives that order: tiny);
3. the candidates: ``... WHERE state = 'pending' AND (attempts = 0 OR next_attempt_at <= now) [AND shard
   = ANY(...)] ORDER BY id LIMIT n`` (the pending index, in order);
4. in Python, drop a candidate whose key has a row in backoff with a smaller id (same rule as the SQL).

It is used only inside ``bench.relay_proc --patch two-step-claim`` processes, through the composition
root's store seam (``store_factory``).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from payment_events.outbox.ports import OutboxRecord
from payment_events.outbox.postgres import fetch_binary
from payment_events.outbox.rows import records
from payment_events.outbox.store import SqlOutboxStore
from payment_events.relay.settings import RelayConfig

_PIN = (
    "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL enable_seqscan = off;"
    " SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off"
)
_BLOCKED = (
    "SELECT DISTINCT ON (key) key, id FROM payment_events_outbox"
    " WHERE state = 'pending' AND attempts > 0 AND next_attempt_at > %(now)s ORDER BY key, id"
)
_CANDIDATES = (
    "SELECT o.id, o.event_id, o.event_type, o.schema_version, o.topic, o.key, o.payload, o.headers,"
    " o.shard, o.attempts, o.created_at FROM payment_events_outbox AS o"
    " WHERE o.state = 'pending' AND (o.attempts = 0 OR o.next_attempt_at <= %(now)s){shards}"
    " ORDER BY o.id LIMIT {limit}"
)


class TwoStepClaimStore(SqlOutboxStore):
    """``SqlOutboxStore`` with the two-step claim on PostgreSQL (SQLite keeps the shipped claim)."""

    def claim_excluding(
        self, shards: Collection[int] | None, limit: int, now: datetime, busy: Collection[int]
    ) -> list[OutboxRecord]:
        """Pending, due rows in id order, not in ``busy``, skipping keys whose earlier row is in backoff."""
        if self.engine.dialect.name != "postgresql" or limit <= 0:
            return super().claim_excluding(shards, limit, now, busy)
        owned: list[int] | None = None
        if shards is not None:
            owned = sorted(set(shards))
            if not owned:
                return []
            if len(owned) == self.shard_count:
                owned = None
        params: dict[str, Any] = {"now": now}
        extra = ""
        if owned is not None:
            params["shards"] = owned
            extra += " AND o.shard = ANY(CAST(%(shards)s AS SMALLINT[]))"
        if busy:
            params["busy"] = list(busy)
            extra += " AND o.id <> ALL(CAST(%(busy)s AS BIGINT[]))"
        with self._begin("claim") as conn:
            conn.exec_driver_sql(_PIN)
            blocked = {bytes(k): i for k, i in conn.exec_driver_sql(_BLOCKED, {"now": now}).all()}
            rows = fetch_binary(conn, _CANDIDATES.format(shards=extra, limit=int(limit)), params)
        if blocked:
            rows = [r for r in rows if not (bytes(r[5]) in blocked and blocked[bytes(r[5])] < r[0])]
        return records(rows)


def two_step_store(database_url: str, config: RelayConfig) -> TwoStepClaimStore:
    """The relay's store for ``--patch two-step-claim`` (a ``StoreFactory`` for ``build_relay``)."""
    store = TwoStepClaimStore.from_url(database_url, shard_count=config.shard_count)
    assert isinstance(store, TwoStepClaimStore)
    return store


def unpin_claim() -> None:
    """The shipped claim as it was before issue 16: the same statement without
    :data:`~payment_events.outbox.postgres.CLAIM_PLAN_PIN`, so the planner may sort every pending row.
    Only for the warm-start comparison in the same run (``bench.relay_proc --patch unpinned-claim``)."""
    from payment_events.outbox import postgres

    real = postgres.fetch_binary

    def unpinned(conn: Any, sql: str, params: dict[str, Any], setup: Any = ()) -> list[Any]:
        return real(conn, sql, params, tuple(s for s in setup if s != postgres.CLAIM_PLAN_PIN))

    postgres.fetch_binary = unpinned


def sort_only_pin() -> None:
    """The shipped claim pinned with ``enable_sort = off`` only (sequential scans left to the planner):
    an experiment (``bench.relay_proc --patch sort-only-pin``)."""
    from payment_events.outbox import postgres

    postgres.CLAIM_PLAN_PIN = "SELECT set_config('enable_sort', 'off', true)"


def explain_claims(path: str) -> None:
    """Diagnostics for the warm-start workload (``PE_BENCH_EXPLAIN=<file>`` in a ``bench.relay_proc``):
    time every claim statement and append, for every claim, its duration and the top of the plan the
    claim's own transaction would use (``EXPLAIN`` with the same settings and parameters)."""
    import time

    from payment_events.outbox import postgres

    real = postgres.fetch_binary

    def explained(conn: Any, sql: str, params: dict[str, Any], setup: Any = ()) -> list[Any]:
        started = time.perf_counter()
        rows = real(conn, sql, params, setup)
        took = time.perf_counter() - started
        driver: Any = conn.connection.driver_connection
        with driver.cursor() as cursor:
            cursor.execute("EXPLAIN " + sql, params)
            plan = " / ".join(str(r[0]).strip().split("  (")[0] for r in cursor.fetchall()[:3])
        with open(path, "a") as out:
            out.write(f"{took * 1000:.1f} ms {len(rows)} rows | {plan}\n")
        return rows

    postgres.fetch_binary = explained
