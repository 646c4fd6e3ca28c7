"""The PostgreSQL half of the outbox store: the claim as SQL text, ``unnest`` marks, binary fetch.

Everything PostgreSQL-specific that :class:`~payment_events.outbox.store.SqlOutboxStore` runs lives
here, so a change to the hot path's SQL touches one file.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, bindparam, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from payment_events.outbox.ports import Dead, Published, Retry, truncate_error
from payment_events.outbox.rows import chunks
from payment_events.outbox.table import UtcDateTime, retry_index_predicate


def engine_options(options: dict[str, Any], application_name: str | None = None) -> dict[str, Any]:
    """``options`` for ``create_engine`` with JIT off: the relay's statements are short and
    index-driven, so JIT compilation only adds latency. ``application_name`` names the connections in
    ``pg_stat_activity`` (unless the caller's ``connect_args`` already do)."""
    connect_args = dict(options.pop("connect_args", {}))
    connect_args["options"] = (connect_args.get("options", "") + " -c jit=off").strip()
    if application_name is not None:
        connect_args.setdefault("application_name", application_name)
    return {**options, "connect_args": connect_args}


def application_name(url: str, role: str) -> str | None:
    """``payment-events <role>`` for the connections of ``url``, or ``None`` when the URL names them
    itself (``?application_name=``): operators and the benchmark tell the relay's sessions apart by it."""
    from sqlalchemy.engine import make_url

    if "application_name" in make_url(url).query:
        return None
    return f"payment-events {role}"


@lru_cache(maxsize=32)
def pg_claim_sql(shard_filter: bool, limit: int, exclude: bool = False) -> str:
    """The claim on PostgreSQL, as SQL text sent through the driver (no per-row type processing).

    * State tests are literals, never parameters, so prepared (generic) plans still match the partial
      indexes' ``WHERE`` clauses.
    * The limit is inline: with ``LIMIT $n`` a generic plan is costed as if it returned a tenth of the
      table, which can cross ``jit_above_cost`` and spend tens of milliseconds compiling every claim.
      The relay uses one batch size, so the text stays stable.
    * ``OFFSET 0`` keeps PostgreSQL from turning NOT EXISTS into an anti-join. As a join it is planned
      from a row estimate of the tiny, fast-changing retry set and can become a nested loop over claim x
      retry rows, which explodes during a broker outage when thousands of keys wait. As a correlated
      subplan it is one probe of the retry index per candidate row, whatever its size.
    * The probe uses the retry index's own predicate (:func:`retry_index_predicate`), which does not
      imply the pending index's: only the retry index can answer it, whatever the statistics say (see
      :mod:`payment_events.outbox.table`).
    * The shards are one array parameter: the same text for any shard set.
    * ``exclude``: rows whose ids are in the ``busy`` array parameter are skipped (a batch whose marks
      are still being written; see :meth:`SqlOutboxStore.claim_excluding`).
    """
    shard_clause = "  AND o.shard = ANY(CAST(%(shards)s AS SMALLINT[]))\n" if shard_filter else ""
    return claim_body(shard_clause, limit, exclude)


def claim_body(shard_clause: str, limit: int, exclude: bool) -> str:
    if exclude:
        # A hashed subplan, built once per execution, also in a generic plan (``<> ALL($1)`` would
        # compare every candidate with the whole array there).
        shard_clause += "  AND o.id NOT IN (SELECT unnest(CAST(%(busy)s AS BIGINT[])))\n"
    return (
        "SELECT o.id, o.event_id, o.event_type, o.schema_version, o.topic, o.key, o.payload, o.headers,"
        " o.shard, o.attempts, o.created_at\n"
        "FROM payment_events_outbox AS o\n"
        "WHERE o.state = 'pending'\n"
        "  AND (o.attempts = 0 OR o.next_attempt_at <= %(now)s)\n"
        + shard_clause
        + "  AND NOT EXISTS (\n"
        "    SELECT 1 FROM payment_events_outbox AS earlier\n"
        f"    WHERE {retry_index_predicate('earlier')}\n"
        "      AND earlier.key = o.key AND earlier.id < o.id AND earlier.next_attempt_at > %(now)s\n"
        "    OFFSET 0)\n"
        f"ORDER BY o.id\nLIMIT {int(limit)}"
    )


CLAIM_PLAN_PIN = "SELECT set_config('enable_sort', 'off', true), set_config('enable_seqscan', 'off', true)"
"""Planner settings for the claim's own transaction: only an index-ordered plan is left (issue 16).

The claim asks for ``ORDER BY o.id LIMIT n`` over the pending rows. With statistics that say few rows
are pending (an empty or healthy outbox analysed before a backlog arrived, and no ANALYZE since) the
planner preferred a bitmap scan of *every* pending row plus a sort, for the custom and the generic plan
alike: an external merge of ~110 MB and 500-800 ms per 2,000-row claim with 100,000 rows pending. With
sorting and sequential scans priced out, the only plan left walks the pending index in id order and
stops after ``n`` rows, and the per-row probe reads the retry index, whatever the statistics. The
settings are transaction-local (``set_config(..., true)`` is ``SET LOCAL``): they end with the claim's
transaction, nothing else on the connection is affected. One statement, one more round trip per claim
(~50 us here; a psycopg pipeline measured slower, a multi-statement ``SET`` cannot be prepared). A
generic plan cached by the server is made under these settings too, because every claim runs under
them."""

MARK_PUBLISHED_SQL = (
    "UPDATE payment_events_outbox AS o"
    " SET state = 'published', published_at = :now, kafka_partition = v.part, kafka_offset = v.off"
    " FROM unnest(CAST(:ids AS BIGINT[]), CAST(:parts AS INTEGER[]), CAST(:offs AS BIGINT[]))"
    " AS v(id, part, off)"
    " WHERE o.id = v.id AND o.state <> 'published'"
)
_MARK_RETRY_SQL = (
    "UPDATE payment_events_outbox AS o"
    " SET attempts = o.attempts + 1, next_attempt_at = v.at, last_error = v.err"
    " FROM unnest(CAST(:ids AS BIGINT[]), CAST(:ats AS TIMESTAMPTZ[]), CAST(:errs AS TEXT[]))"
    " AS v(id, at, err)"
    " WHERE o.id = v.id AND o.state = 'pending'"
)
_MARK_DEAD_SQL = (
    "UPDATE payment_events_outbox AS o"
    " SET state = 'dead', attempts = o.attempts + 1, last_error = v.err"
    " FROM unnest(CAST(:ids AS BIGINT[]), CAST(:errs AS TEXT[])) AS v(id, err)"
    " WHERE o.id = v.id AND o.state = 'pending'"
)
_SHARDS_HELD = " AND o.shard = ANY(CAST(:held AS SMALLINT[]))"
"""Appended to a mark when fenced: only rows of the shards the fence still holds."""


def _marks(fenced: bool) -> tuple[Any, Any, Any]:
    tail = _SHARDS_HELD if fenced else ""
    return (
        text(MARK_PUBLISHED_SQL + tail).bindparams(bindparam("now", type_=UtcDateTime())),
        text(_MARK_RETRY_SQL + tail),
        text(_MARK_DEAD_SQL + tail),
    )


_MARKS = _marks(fenced=False)
_FENCED_MARKS = _marks(fenced=True)


def claim_statement(
    owned: list[int] | None, limit: int, now: datetime, busy: Collection[int]
) -> tuple[str, dict[str, Any]]:
    """The unfenced claim's SQL text and parameters (``owned``: ``None`` for every shard)."""
    params: dict[str, Any] = {"now": now}
    if owned is not None:
        params["shards"] = owned
    if busy:
        params["busy"] = list(busy)
    return pg_claim_sql(owned is not None, limit, bool(busy)), params


class PostgresDialect:
    """How the store marks (on the transaction path) and purges on PostgreSQL; every claim goes through
    :mod:`~payment_events.outbox.hot_path`.

    ``async_marks`` commits the marks with ``SET LOCAL synchronous_commit = off`` (see
    :class:`~payment_events.outbox.store.SqlOutboxStore`).
    """

    name = "postgresql"

    def __init__(self, *, async_marks: bool) -> None:
        self.async_marks = async_marks

    @staticmethod
    def configure(engine: Engine) -> None:
        """Nothing to set per connection (JIT is turned off through :func:`engine_options`)."""

    def resolve(
        self,
        conn: Connection,
        now: datetime,
        published: Sequence[Published],
        retries: Sequence[Retry],
        dead: Sequence[Dead],
        *,
        held: Collection[int] | None = None,
    ) -> None:
        """Mark every outcome with one ``unnest`` UPDATE per kind (and chunk); with ``held``, only rows of
        those shards (a fenced resolve)."""
        if self.async_marks:
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        mark_published, mark_retry, mark_dead = _MARKS if held is None else _FENCED_MARKS
        extra: dict[str, Any] = {} if held is None else {"held": sorted(held)}
        for chunk in chunks(published):
            conn.execute(
                mark_published,
                {
                    **extra,
                    "now": now,
                    "ids": [p.id for p in chunk],
                    "parts": [p.partition for p in chunk],
                    "offs": [p.offset for p in chunk],
                },
            )
        for chunk in chunks(retries):
            conn.execute(
                mark_retry,
                {
                    **extra,
                    "ids": [r.id for r in chunk],
                    "ats": [r.next_attempt_at.astimezone(UTC) for r in chunk],
                    "errs": [truncate_error(r.error) for r in chunk],
                },
            )
        for chunk in chunks(dead):
            errors = [truncate_error(d.reason) for d in chunk]
            conn.execute(mark_dead, {**extra, "ids": [d.id for d in chunk], "errs": errors})

    @staticmethod
    def purge_victims(victims: Select[Any]) -> Select[Any]:
        """Two purging relays never wait on each other."""
        return victims.with_for_update(skip_locked=True)


def fetch_binary(
    conn: Connection, sql: str, params: dict[str, Any], setup: Sequence[str] = ()
) -> list[Any]:
    """Run ``sql`` on the psycopg connection under ``conn`` and fetch every row in the *binary* format.

    ``setup`` statements (no parameters, e.g. :data:`CLAIM_PLAN_PIN`) run first, in the same transaction.

    The relay's hot path: rows come back as plain tuples with ``bytea`` as ``bytes`` (the text format
    doubles them as hex and decodes that in Python), and no SQLAlchemy result processing. Driver errors
    are re-raised as SQLAlchemy's ``DBAPIError`` (a broken connection also invalidates ``conn``), so the
    caller's error translation and the pool's reconnection work as for any other statement.
    """
    import psycopg

    driver: Any = conn.connection.driver_connection
    try:
        with driver.cursor(binary=True) as cursor:
            for statement in setup:
                cursor.execute(statement)
            cursor.execute(sql, params)
            rows: list[Any] = cursor.fetchall()
            return rows
    except psycopg.Error as exc:
        lost = bool(driver.closed or driver.broken)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            sql, None, exc, psycopg.Error, hide_parameters=True, connection_invalidated=lost
        ) from exc
