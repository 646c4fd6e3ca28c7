"""The relay's hot path on PostgreSQL as single statements: every claim and a published batch's marks.

At low rates the relay runs many small cycles, and each cycle's claim and marks were transactions of
several statements (``BEGIN``, the lease check, the lock check, the planner pin, the claim, ``COMMIT``;
then ``BEGIN``, the lease check, ``SET LOCAL``, the update, ``COMMIT``): eleven round trips and most of
the relay's database CPU (issue 16). Here each is ONE statement: the lease check is a CTE of the claim
and of the marks, ``synchronous_commit`` is set inside the marks' statement, and the planner pin is a
session setting of the store's *hot engine*, whose connections run in autocommit and run nothing else.
:class:`~payment_events.outbox.store.SqlOutboxStore` uses these statements; without a hot engine (a store
on the caller's engine) the claims run in a transaction after the pin and the marks keep their
transaction of the lease check and the updates, as do marks with retries or dead rows.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine

from payment_events.outbox import postgres
from payment_events.outbox.dberrors import translated
from payment_events.outbox.ports import Fence, OutboxRecord, Published
from payment_events.outbox.postgres import MARK_PUBLISHED_SQL, claim_body, engine_options
from payment_events.outbox.rows import RESOLVE_CHUNK, records
from payment_events.outbox.table import UtcDateTime

HOT_PATH_SETTINGS = "-c enable_sort=off -c enable_seqscan=off"
"""The claim's planner pin (:data:`~payment_events.outbox.postgres.CLAIM_PLAN_PIN`) as session
settings of the store's hot-path connections, which run nothing but claims and marks (both
index-driven; see :func:`hot_engine_options`)."""


def hot_engine_options(
    options: dict[str, Any], application_name: str | None = None, *, asynchronous_commit: bool = False
) -> dict[str, Any]:
    """``create_engine`` options for a store's hot-path engine: its connections run only the claim and
    the published marks, each one statement in autocommit (one round trip, no ``BEGIN``/``COMMIT``),
    with the claim's planner pin set once per session instead of once per claim.

    ``asynchronous_commit`` (the store's ``async_marks``): ``synchronous_commit = off`` for these
    sessions. The claim share-locks lease rows, which gives its transaction WAL to flush at commit: with
    the default, every claim waited for an fsync (a few hundred a second at low rates) for locks that a
    crash releases anyway. Nothing a claim commits can be lost.
    """
    options = engine_options(dict(options), application_name)
    connect_args = dict(options.pop("connect_args", {}))
    settings = HOT_PATH_SETTINGS + (" -c synchronous_commit=off" if asynchronous_commit else "")
    connect_args["options"] = (connect_args.get("options", "") + " " + settings).strip()
    return {**options, "connect_args": connect_args, "isolation_level": "AUTOCOMMIT"}


@lru_cache(maxsize=32)
def pg_fenced_claim_sql(
    limit: int, exclude: bool = False, check_locks: bool = False, shard_filter: bool = True
) -> str:
    """The fenced claim as ONE statement: :func:`pg_claim_sql` over the fence's shards, then the lease
    check of the shards the claimed rows belong to.

    ``candidates`` is the claim (``shards``: the fence's shards, unless ``shard_filter`` is off because
    the fence covers every shard). ``held`` then share-locks the lease rows of the shards among the
    candidates (``FOR SHARE``, in shard order, like :func:`~payment_events.outbox.fencing.held_shards`)
    and keeps those whose owner and generation still match the fence (``fence_namespace``,
    ``fence_owner``, and ``fence_generations``: the generation of shard ``s`` at index ``s + 1``, -1
    where the fence has none); with ``check_locks`` also only shards whose advisory lock the relay's lease
    backend (``lease_pid``) holds now. Only candidates of held shards are returned, in id order.

    Why this is safe as one statement: a takeover that committed before the lease rows are locked has
    changed their generation, and PostgreSQL re-checks a row it locks against its newest version (so
    that shard drops out); a takeover that comes later waits for the lock, which ends with the claim's
    transaction. Rows a takeover's new owner might publish are therefore never returned to the old one.
    Locking only the candidates' shards (none for an empty claim) instead of all 64 lease rows, and
    looking generations up by index instead of joining an array, is what made the statement cheap: the
    lease check had cost ~2 ms of server CPU per statement. Sent alone in autocommit on the store's
    hot-path connections (:func:`hot_engine_options`) it is one round trip; the lease check, the lock
    check, the planner pin and the claim in one transaction were six with ``BEGIN`` and ``COMMIT``.
    """
    shard_clause = "  AND o.shard = ANY(CAST(%(shards)s AS SMALLINT[]))\n" if shard_filter else ""
    candidates = claim_body(shard_clause, limit, exclude)
    held = _held_leases_cte(_psycopg_param, "SELECT shard FROM candidates", check_locks)
    return (
        f"WITH candidates AS MATERIALIZED (\n{candidates}),\n{held}\n"
        "SELECT * FROM candidates WHERE shard IN (SELECT shard FROM held)"
    )


def _psycopg_param(name: str) -> str:
    return f"%({name})s"


def _sqlalchemy_param(name: str) -> str:
    return f":{name}"


def _held_leases_cte(param: Callable[[str], str], shards_query: str, check_locks: bool) -> str:
    """``held AS (...)``: which of the shards ``shards_query`` returns the fence still holds (owner and
    generation match), their lease rows share-locked until the statement's transaction ends (see
    :func:`pg_fenced_claim_sql`)."""
    locks = ""
    if check_locks:
        locks = (
            "\n    AND l.shard IN (SELECT objid::integer FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted AND objsubid = 2"
            f" AND pid = {param('lease_pid')}"
            f" AND classid = CAST({param('fence_namespace')} AS bigint)::oid"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
        )
    return (
        "held AS MATERIALIZED (\n"
        "  SELECT l.shard FROM payment_events_shard_leases AS l\n"
        f"  WHERE l.namespace = CAST({param('fence_namespace')} AS INTEGER)"
        f" AND l.owner = {param('fence_owner')}\n"
        f"    AND l.shard = ANY(ARRAY({shards_query}))\n"
        f"    AND l.generation = (CAST({param('fence_generations')} AS BIGINT[]))[l.shard + 1]{locks}\n"
        "  ORDER BY l.shard FOR SHARE OF l)"
    )


def fence_parameters(fence: Fence) -> dict[str, Any]:
    """The parameters of the fenced statements for ``fence`` (``fence_generations`` by shard index)."""
    by_shard = [-1] * (max(fence.generations, default=-1) + 1)
    for shard, generation in fence.generations.items():
        by_shard[shard] = generation
    params: dict[str, Any] = {
        "fence_namespace": fence.namespace,
        "fence_owner": fence.owner,
        "fence_generations": by_shard,
    }
    if fence.lease_pid is not None:
        params["lease_pid"] = fence.lease_pid
    return params


@lru_cache(maxsize=8)
def pg_mark_published_sql(fenced: bool, asynchronous: bool) -> str:
    """Mark a batch published as ONE statement (SQLAlchemy ``:name`` parameters), for autocommit.

    ``fenced``: only rows of shards the fence still holds (the ``held`` CTE of
    :func:`pg_fenced_claim_sql` over the shards of the batch's rows, share-locking their lease rows until
    the commit, so no takeover commits in between); the statement returns the shards held and the shards
    the batch touched, so the caller can tell which marks were not written. ``asynchronous``:
    ``synchronous_commit`` off for this statement's own transaction (``set_config(..., true)`` is read
    at its commit), as ``SET LOCAL`` does for the transaction path. One round trip instead of five
    (``BEGIN``, the lease check, ``SET LOCAL``, the update, ``COMMIT``).
    """
    ctes = []
    if asynchronous:
        ctes.append("sync AS (SELECT set_config('synchronous_commit', 'off', true) AS done)")
    values = "unnest(CAST(:ids AS BIGINT[]), CAST(:parts AS INTEGER[]), CAST(:offs AS BIGINT[]))"
    values += " AS v(id, part, off)"
    if fenced:
        ctes.append(
            "batch AS MATERIALIZED (SELECT v.id, v.part, v.off, b.shard"
            f" FROM {values} JOIN payment_events_outbox AS b ON b.id = v.id)"
        )
        ctes.append(_held_leases_cte(_sqlalchemy_param, "SELECT shard FROM batch", check_locks=False))
        update = (
            "UPDATE payment_events_outbox AS o"
            " SET state = 'published', published_at = :now, kafka_partition = v.part, kafka_offset = v.off"
            " FROM batch AS v"
            " WHERE o.id = v.id AND o.state <> 'published' AND v.shard IN (SELECT shard FROM held)"
        )
    else:
        update = MARK_PUBLISHED_SQL
    ctes.append(f"marked AS ({update} RETURNING 1)")
    columns = ["(SELECT count(*) FROM marked) AS marked"]
    if asynchronous:
        columns.append("(SELECT count(*) FROM sync) AS sync")
    if fenced:
        columns.append("ARRAY(SELECT shard FROM held) AS held")
        columns.append("ARRAY(SELECT DISTINCT shard FROM batch) AS touched")
    else:
        columns.append("NULL AS held, NULL AS touched")
    return "WITH " + ",\n".join(ctes) + "\nSELECT " + ", ".join(columns)


@lru_cache(maxsize=8)
def mark_published_statement(fenced: bool, asynchronous: bool) -> Any:
    """:func:`pg_mark_published_sql` as a SQLAlchemy statement (``now`` bound as an aware UTC stamp)."""
    return text(pg_mark_published_sql(fenced, asynchronous)).bindparams(bindparam("now", type_=UtcDateTime()))


def run_claim(
    hot_engine: Engine | None, begin: Callable[[str], Any], sql: str, params: dict[str, Any]
) -> list[Any]:
    """Run a claim statement: alone in autocommit on ``hot_engine`` (its sessions carry the planner pin),
    or else in a transaction (``begin``, the store's) after :data:`~payment_events.outbox.postgres.
    CLAIM_PLAN_PIN`. ``postgres.fetch_binary`` is looked up at each call (tests wrap it)."""
    if hot_engine is not None:
        with translated("claim"), hot_engine.connect() as conn:
            return postgres.fetch_binary(conn, sql, params)
    with begin("claim") as conn:
        return postgres.fetch_binary(conn, sql, params, (postgres.CLAIM_PLAN_PIN,))


def claim_fenced(
    hot_engine: Engine | None,
    begin: Callable[[str], Any],
    fence: Fence,
    *,
    limit: int,
    now: datetime,
    busy: Collection[int],
    shard_count: int,
) -> list[OutboxRecord]:
    """The fenced claim (:func:`pg_fenced_claim_sql`) for ``fence``, as records in id order."""
    every_shard = len(fence.generations) == shard_count
    sql = pg_fenced_claim_sql(limit, bool(busy), fence.lease_pid is not None, not every_shard)
    params: dict[str, Any] = {"now": now, **fence_parameters(fence)}
    if not every_shard:
        params["shards"] = sorted(fence.generations)
    if busy:
        params["busy"] = list(busy)
    claimed = records(run_claim(hot_engine, begin, sql, params))
    # The statement filters its id-ordered candidates; sorting here (linear on sorted input) makes the id
    # order explicit instead of relying on how PostgreSQL scans a CTE.
    claimed.sort(key=_record_id)
    return claimed


def _record_id(record: OutboxRecord) -> int:
    return record.id


def marks_fit(
    hot_engine: Engine | None, published: Sequence[Any], retries: Sequence[Any], dead: Sequence[Any]
) -> bool:
    """Whether a batch's marks go as one statement on the hot engine: only publications, in one chunk."""
    return hot_engine is not None and not (retries or dead) and 0 < len(published) <= RESOLVE_CHUNK


def mark_published(
    hot_engine: Engine,
    now: datetime,
    published: Sequence[Published],
    fence: Fence | None,
    *,
    asynchronous: bool,
) -> tuple[set[int], set[int]]:
    """Mark ``published`` with one autocommit statement on ``hot_engine``; with ``fence``, only rows of
    shards it still holds. Returns (the shards held, the shards the rows belong to), both among the
    batch's shards (empty without a fence)."""
    params: dict[str, Any] = {
        "now": now,
        "ids": [p.id for p in published],
        "parts": [p.partition for p in published],
        "offs": [p.offset for p in published],
    }
    if fence is not None:
        params.update(fence_parameters(fence))
        params.pop("lease_pid", None)
    statement = mark_published_statement(fence is not None, asynchronous)
    with translated("resolve"), hot_engine.connect() as conn:
        row = conn.execute(statement, params).one()
    return {int(s) for s in (row.held or ())}, {int(s) for s in (row.touched or ())}
