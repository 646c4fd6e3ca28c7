"""``SqlOutboxStore``: the outbox store port on PostgreSQL and SQLite through SQLAlchemy Core.

Every method is one short transaction on a pooled connection:

* ``claim``: one set-based ``SELECT`` by state (never a cursor over ids, so a late-committing insert is
  still found) over the partial pending index, skipping keys whose head waits for a retry.
* ``resolve``: one transaction of batched ``UPDATE`` statements (``unnest`` arrays on PostgreSQL, a
  single ``executemany`` per kind on SQLite). A published row never changes again.
* ``backlog``: one ``SELECT`` of scalar subqueries, each answered by a partial index.
* ``purge_published``: deletes a small batch of old published rows.

Driver errors surface as :class:`~payment_events.errors.StoreError` (and
:class:`~payment_events.errors.MigrationRequiredError` when the table is missing or outdated).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.elements import BindParameter

from payment_events.outbox import admin
from payment_events.outbox.dberrors import translated
from payment_events.outbox.headers import parse_headers
from payment_events.outbox.leases import AllShards, PostgresShardLeases
from payment_events.outbox.ports import (
    DEAD,
    PUBLISHED,
    BacklogStats,
    Dead,
    OutboxRecord,
    Published,
    Retry,
    row_defect,
)
from payment_events.outbox.table import (
    IN_RETRY_INDEX,
    IS_DEAD,
    IS_PENDING,
    IS_PUBLISHED,
    LAST_ERROR_MAX_CHARS,
    NEVER_FAILED,
    UtcDateTime,
    outbox_table,
)
from payment_events.sharding import DEFAULT_SHARD_COUNT, validate_shard_count

__all__ = ["AllShards", "PostgresShardLeases", "SqlOutboxStore", "configure_sqlite", "truncate_error"]

SQLITE_BUSY_TIMEOUT_MS = 10_000
_RESOLVE_CHUNK = 5_000  # rows per statement: keeps every statement's parameters well under driver limits

_o = outbox_table
_p = outbox_table.alias("earlier")
_RECORD_COLUMNS = (
    _o.c.id,
    _o.c.event_id,
    _o.c.event_type,
    _o.c.schema_version,
    _o.c.topic,
    _o.c.key,
    _o.c.payload,
    _o.c.headers,
    _o.c.shard,
    _o.c.attempts,
    _o.c.created_at,
)


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def truncate_error(error: str) -> str:
    """``error`` cut to what the ``last_error`` column holds (a reason, not a log)."""
    if len(error) <= LAST_ERROR_MAX_CHARS:
        return error
    return error[: LAST_ERROR_MAX_CHARS - 3] + "..."


def configure_sqlite(engine: Engine) -> None:
    """Make every new SQLite connection of ``engine`` use WAL (readers never block the writer) and wait
    up to ``SQLITE_BUSY_TIMEOUT_MS`` for a lock instead of failing at once with "database is locked"."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()


def _sqlite_claim_statement(shard_filter: bool) -> Select[Any]:
    """The claim on SQLite: pending, due, in the owned shards, no earlier row of the key in backoff.

    SQLite runs the NOT EXISTS as a correlated lookup in the retry index for each candidate row.
    """
    now = bindparam("now", type_=UtcDateTime())
    earlier_in_backoff = exists().where(
        _p.c.state != literal_column("'published'"),
        _p.c.state != literal_column("'dead'"),
        _p.c.attempts > literal_column("0"),
        _p.c.key == _o.c.key,
        _p.c.id < _o.c.id,
        _p.c.next_attempt_at > now,
    )
    conditions = [IS_PENDING, or_(NEVER_FAILED, _o.c.next_attempt_at <= now), ~earlier_in_backoff]
    if shard_filter:
        conditions.append(_o.c.shard.in_(bindparam("shards", expanding=True)))
    limit: BindParameter[int] = bindparam("limit", type_=Integer())
    return select(*_RECORD_COLUMNS).where(and_(*conditions)).order_by(_o.c.id).limit(limit)


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
    * The probe's ``state <> 'published' AND state <> 'dead'`` (not ``state = 'pending'``) is the retry
      index's predicate and does not imply the pending index's: only the retry index can answer it,
      whatever the statistics say (see :mod:`payment_events.outbox.table`).
    * The shards are one array parameter: the same text for any shard set.
    * ``exclude``: rows whose ids are in the ``busy`` array parameter are skipped (a batch whose marks
      are still being written; see :meth:`SqlOutboxStore.claim_excluding`).
    """
    shard_clause = "  AND o.shard = ANY(CAST(%(shards)s AS SMALLINT[]))\n" if shard_filter else ""
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
        "    WHERE earlier.state <> 'published' AND earlier.state <> 'dead' AND earlier.attempts > 0\n"
        "      AND earlier.key = o.key AND earlier.id < o.id AND earlier.next_attempt_at > %(now)s\n"
        "    OFFSET 0)\n"
        f"ORDER BY o.id\nLIMIT {int(limit)}"
    )


_PG_MARK_PUBLISHED = text(
    "UPDATE payment_events_outbox AS o"
    " SET state = 'published', published_at = :now, kafka_partition = v.part, kafka_offset = v.off"
    " FROM unnest(CAST(:ids AS BIGINT[]), CAST(:parts AS INTEGER[]), CAST(:offs AS BIGINT[]))"
    " AS v(id, part, off)"
    " WHERE o.id = v.id AND o.state <> 'published'"
).bindparams(bindparam("now", type_=UtcDateTime()))
_PG_MARK_RETRY = text(
    "UPDATE payment_events_outbox AS o"
    " SET attempts = o.attempts + 1, next_attempt_at = v.at, last_error = v.err"
    " FROM unnest(CAST(:ids AS BIGINT[]), CAST(:ats AS TIMESTAMPTZ[]), CAST(:errs AS TEXT[]))"
    " AS v(id, at, err)"
    " WHERE o.id = v.id AND o.state = 'pending'"
)
_PG_MARK_DEAD = text(
    "UPDATE payment_events_outbox AS o"
    " SET state = 'dead', attempts = o.attempts + 1, last_error = v.err"
    " FROM unnest(CAST(:ids AS BIGINT[]), CAST(:errs AS TEXT[])) AS v(id, err)"
    " WHERE o.id = v.id AND o.state = 'pending'"
)

_SQLITE_MARK_PUBLISHED = (
    update(_o)
    .where(_o.c.id == bindparam("row_id"), _o.c.state != literal_column("'published'"))
    .values(
        state=PUBLISHED,
        published_at=bindparam("now", type_=UtcDateTime()),
        kafka_partition=bindparam("part"),
        kafka_offset=bindparam("off"),
    )
)
_SQLITE_MARK_RETRY = (
    update(_o)
    .where(_o.c.id == bindparam("row_id"), IS_PENDING)
    .values(
        attempts=_o.c.attempts + 1,
        next_attempt_at=bindparam("at", type_=UtcDateTime()),
        last_error=bindparam("err"),
    )
)
_SQLITE_MARK_DEAD = (
    update(_o)
    .where(_o.c.id == bindparam("row_id"), IS_PENDING)
    .values(state=DEAD, attempts=_o.c.attempts + 1, last_error=bindparam("err"))
)


def _backlog_statement() -> Select[Any]:
    now = bindparam("now", type_=UtcDateTime())
    minute_ago = bindparam("minute_ago", type_=UtcDateTime())
    count = func.count()
    return select(
        select(count).select_from(_o).where(IS_PENDING).scalar_subquery().label("pending"),
        select(count)
        .select_from(_o)
        .where(IN_RETRY_INDEX, _o.c.next_attempt_at > now)
        .scalar_subquery()
        .label("in_retry"),
        select(count).select_from(_o).where(IS_DEAD).scalar_subquery().label("dead"),
        select(_o.c.created_at)
        .where(IS_PENDING)
        .order_by(_o.c.id)
        .limit(1)
        .scalar_subquery()
        .label("oldest"),
        select(count)
        .select_from(_o)
        .where(IS_PUBLISHED, _o.c.published_at >= minute_ago)
        .scalar_subquery()
        .label("published_last_minute"),
    )


def _chunks(items: Sequence[Any], size: int = _RESOLVE_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqlOutboxStore:
    """The :class:`~payment_events.outbox.ports.OutboxStore` on PostgreSQL or SQLite.

    ``shard_count`` must match the publishers' (a claim over every shard then skips the shard filter).
    ``async_marks`` (PostgreSQL, default on) commits ``resolve`` with ``SET LOCAL synchronous_commit =
    off``: the relay does not wait for the WAL flush of its marks. A mark lost in a database crash only
    means the row is published again (a duplicate, which consumers tolerate), never a lost event, because
    the row stays pending. Turn it off if duplicates after a database crash matter more than throughput.
    ``clock`` stamps ``published_at`` (and is replaceable in tests).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        shard_count: int = DEFAULT_SHARD_COUNT,
        async_marks: bool = True,
        clock: Callable[[], datetime] = utc_now,
        dispose_engine: bool = False,
    ) -> None:
        self.engine = engine
        self.shard_count = validate_shard_count(shard_count)
        self.async_marks = async_marks
        self._clock = clock
        self._dispose_engine = dispose_engine
        self._dialect = engine.dialect.name
        if self._dialect not in ("postgresql", "sqlite"):
            raise ValueError(f"the outbox supports PostgreSQL and SQLite, not {self._dialect}")
        self._claim_all = _sqlite_claim_statement(shard_filter=False)
        self._claim_shards = _sqlite_claim_statement(shard_filter=True)
        self._backlog = _backlog_statement()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        shard_count: int = DEFAULT_SHARD_COUNT,
        async_marks: bool = True,
        check_schema: bool = True,
        **engine_options: Any,
    ) -> SqlOutboxStore:
        """A store with its own engine for ``url`` (closed by :meth:`close`). SQLite gets WAL and a busy
        timeout. With ``check_schema`` a missing or outdated table raises ``MigrationRequiredError`` now
        rather than at the first claim. An async driver URL raises ``ConfigurationError``."""
        from payment_events.dburl import refuse_async_url

        refuse_async_url(url)
        if url.startswith("postgresql"):
            # The relay's statements are short and index-driven: JIT compilation only adds latency.
            connect_args = dict(engine_options.pop("connect_args", {}))
            connect_args["options"] = (connect_args.get("options", "") + " -c jit=off").strip()
            engine_options["connect_args"] = connect_args
        engine = create_engine(url, **engine_options)
        if engine.dialect.name == "sqlite":
            configure_sqlite(engine)
        store = cls(engine, shard_count=shard_count, async_marks=async_marks, dispose_engine=True)
        if check_schema:
            from payment_events.outbox.migrate import check

            try:
                check(engine)
            except BaseException:
                store.close()
                raise
        return store

    def close(self) -> None:
        """Dispose of the engine if this store created it."""
        if self._dispose_engine:
            self.engine.dispose()

    def __enter__(self) -> SqlOutboxStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _begin(self, operation: str) -> Iterator[Connection]:
        with translated(operation), self.engine.begin() as conn:
            yield conn

    # ---------------------------------------------------------------------------------------- the port
    def claim(self, shards: Collection[int] | None, limit: int, now: datetime) -> list[OutboxRecord]:
        """Pending rows that may be produced now, in id order, at most ``limit`` (see the port)."""
        return self.claim_excluding(shards, limit, now, ())

    def claim_excluding(
        self, shards: Collection[int] | None, limit: int, now: datetime, busy: Collection[int]
    ) -> list[OutboxRecord]:
        """:meth:`claim` as if the rows with ids in ``busy`` were not there (see
        :class:`~payment_events.outbox.ports.ExcludingClaim`)."""
        if limit <= 0:
            return []
        if busy and self._dialect != "postgresql":
            # SQLite (one relay, modest volumes): claim past the busy rows and drop them here.
            skip = set(busy)
            wider = self.claim_excluding(shards, limit + len(skip), now, ())
            return [r for r in wider if r.id not in skip][:limit]
        owned: list[int] | None = None
        if shards is not None:
            owned = sorted(set(shards))
            if not owned:
                return []
            if len(owned) == self.shard_count and owned[0] == 0 and owned[-1] == self.shard_count - 1:
                owned = None  # every shard: the filter would only cost time
        rows: Sequence[Any]
        with self._begin("claim") as conn:
            if self._dialect == "postgresql":
                params: dict[str, Any] = {"now": now}
                if owned is not None:
                    params["shards"] = owned
                if busy:
                    params["busy"] = list(busy)
                rows = _pg_fetch_binary(conn, pg_claim_sql(owned is not None, limit, bool(busy)), params)
            else:
                statement = self._claim_all if owned is None else self._claim_shards
                params = {"now": now, "limit": limit}
                if owned is not None:
                    params["shards"] = owned
                rows = conn.execute(statement, params).all()
        return _records(rows)

    def resolve(self, published: Sequence[Published], retries: Sequence[Retry], dead: Sequence[Dead]) -> None:
        """Record delivery outcomes in one transaction (see the port); a published row never goes back."""
        if not (published or retries or dead):
            return
        now = self._clock()
        published = sorted(published, key=lambda p: p.id)
        retries = sorted(retries, key=lambda r: r.id)
        dead = sorted(dead, key=lambda d: d.id)
        with self._begin("resolve") as conn:
            if self._dialect == "postgresql":
                self._resolve_postgres(conn, now, published, retries, dead)
            else:
                self._resolve_sqlite(conn, now, published, retries, dead)

    def _resolve_postgres(
        self,
        conn: Connection,
        now: datetime,
        published: Sequence[Published],
        retries: Sequence[Retry],
        dead: Sequence[Dead],
    ) -> None:
        if self.async_marks:
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        for chunk in _chunks(published):
            conn.execute(
                _PG_MARK_PUBLISHED,
                {
                    "now": now,
                    "ids": [p.id for p in chunk],
                    "parts": [p.partition for p in chunk],
                    "offs": [p.offset for p in chunk],
                },
            )
        for chunk in _chunks(retries):
            conn.execute(
                _PG_MARK_RETRY,
                {
                    "ids": [r.id for r in chunk],
                    "ats": [r.next_attempt_at.astimezone(UTC) for r in chunk],
                    "errs": [truncate_error(r.error) for r in chunk],
                },
            )
        for chunk in _chunks(dead):
            errors = [truncate_error(d.reason) for d in chunk]
            conn.execute(_PG_MARK_DEAD, {"ids": [d.id for d in chunk], "errs": errors})

    @staticmethod
    def _resolve_sqlite(
        conn: Connection,
        now: datetime,
        published: Sequence[Published],
        retries: Sequence[Retry],
        dead: Sequence[Dead],
    ) -> None:
        if published:
            conn.execute(
                _SQLITE_MARK_PUBLISHED,
                [{"row_id": p.id, "now": now, "part": p.partition, "off": p.offset} for p in published],
            )
        if retries:
            conn.execute(
                _SQLITE_MARK_RETRY,
                [{"row_id": r.id, "at": r.next_attempt_at, "err": truncate_error(r.error)} for r in retries],
            )
        if dead:
            conn.execute(_SQLITE_MARK_DEAD, [{"row_id": d.id, "err": truncate_error(d.reason)} for d in dead])

    def backlog(self, now: datetime) -> BacklogStats:
        """Counts for metrics, alerts and ``outbox status``; each answered by a partial index."""
        with self._begin("backlog") as conn:
            row = conn.execute(self._backlog, {"now": now, "minute_ago": now - timedelta(minutes=1)}).one()
        oldest: datetime | None = row.oldest
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        return BacklogStats(
            pending=int(row.pending),
            in_retry=int(row.in_retry),
            dead=int(row.dead),
            oldest_pending_age_seconds=age,
            published_last_minute=int(row.published_last_minute),
        )

    def purge_published(self, older_than: datetime, batch_size: int) -> int:
        """Delete up to ``batch_size`` rows published before ``older_than``; return how many."""
        if batch_size <= 0:
            return 0
        victims = (
            select(_o.c.id)
            .where(IS_PUBLISHED, _o.c.published_at < bindparam("older", type_=UtcDateTime()))
            .order_by(_o.c.published_at)
            .limit(batch_size)
        )
        if self._dialect == "postgresql":
            victims = victims.with_for_update(skip_locked=True)  # two purging relays never wait on each other
        with self._begin("purge") as conn:
            statement = delete(_o).where(_o.c.id.in_(victims.scalar_subquery()))
            result = conn.execute(statement, {"older": older_than})
        return int(result.rowcount)

    # ----------------------------------------------------------------------------- dead-letter admin
    def list_dead(self, limit: int = 100, event_type: str | None = None) -> list[admin.DeadLetter]:
        """Dead rows, oldest first; see :func:`payment_events.outbox.admin.list_dead`."""
        return admin.list_dead(self.engine, limit, event_type=event_type)

    def get(self, row_id: int) -> admin.OutboxRow | None:
        """One row by id, any state, or ``None``; see :func:`payment_events.outbox.admin.get`."""
        return admin.get(self.engine, row_id)

    def replay(
        self, ids: Collection[int] | None = None, *, event_type: str | None = None, all_dead: bool = False
    ) -> int:
        """Move dead rows back to pending; see :func:`payment_events.outbox.admin.replay`."""
        return admin.replay(self.engine, ids, event_type=event_type, all_dead=all_dead, now=self._clock())


def _pg_fetch_binary(conn: Connection, sql: str, params: dict[str, Any]) -> list[Any]:
    """Run ``sql`` on the psycopg connection under ``conn`` and fetch every row in the *binary* format.

    The relay's hot path: rows come back as plain tuples with ``bytea`` as ``bytes`` (the text format
    doubles them as hex and decodes that in Python), and no SQLAlchemy result processing. Driver errors
    are re-raised as SQLAlchemy's ``DBAPIError`` (a broken connection also invalidates ``conn``), so the
    caller's error translation and the pool's reconnection work as for any other statement.
    """
    import psycopg

    driver: Any = conn.connection.driver_connection
    try:
        with driver.cursor(binary=True) as cursor:
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


def _records(rows: Sequence[Any]) -> list[OutboxRecord]:
    """Claimed rows as records. Unpacked positionally: this runs for every row the relay publishes.

    A row that cannot be produced as stored (headers not valid JSON, an empty payload or key) becomes a
    record with a ``defect`` instead of an exception: the relay dead-letters it, and one bad row never
    blocks the claim of every other row.
    """
    out: list[OutboxRecord] = []
    append = out.append
    for row_id, event_id, event_type, version, topic, k, p, headers, shard, attempts, stamp in rows:
        created = stamp if stamp.tzinfo is UTC else _as_utc(stamp)  # PostgreSQL answers in its session zone
        parsed, problem = parse_headers(headers)
        key = b"" if k is None else bytes(k)
        payload = b"" if p is None else bytes(p)
        append(
            OutboxRecord(
                row_id,
                event_id,
                event_type,
                version,
                topic,
                key,
                payload,
                parsed,
                shard,
                attempts,
                created,
                row_defect(key, payload, problem),
            )
        )
    return out


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
