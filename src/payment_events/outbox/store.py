"""``SqlOutboxStore``: the outbox store port on PostgreSQL and SQLite through SQLAlchemy Core.

Every method is one short transaction on a pooled connection. The SQL that differs per database lives in
:mod:`~payment_events.outbox.postgres` and :mod:`~payment_events.outbox.sqlite`; this class holds what
is common:

* ``claim``: one set-based ``SELECT`` by state (never a cursor over ids, so a late-committing insert is
  still found) over the partial pending index, skipping keys whose head waits for a retry; on
  PostgreSQL one autocommit statement (:mod:`~payment_events.outbox.hot_path`).
* ``resolve``: batched ``UPDATE`` statements (``unnest`` arrays; ``executemany`` on SQLite); a published
  row never changes again.
* ``backlog``: one ``SELECT`` of scalar subqueries, each answered by a partial index.
* ``purge_published``: deletes a small batch of old published rows.

Driver errors surface as :class:`~payment_events.errors.StoreError` (and
:class:`~payment_events.errors.MigrationRequiredError` when the table is missing or outdated).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, create_engine, delete, func, select
from sqlalchemy.engine import Connection, Engine

from payment_events.errors import LeaseLostError
from payment_events.outbox import dead_letters, fencing, hot_path, postgres
from payment_events.outbox.dberrors import translated
from payment_events.outbox.ports import (
    BacklogStats,
    Dead,
    DeadFilter,
    DeadLetter,
    Fence,
    OutboxRecord,
    OutboxRow,
    PendingEvent,
    Published,
    Retry,
    Takeover,
    utc_now,
)
from payment_events.outbox.postgres import PostgresDialect
from payment_events.outbox.rows import records
from payment_events.outbox.sharding import DEFAULT_SHARD_COUNT, validate_shard_count
from payment_events.outbox.sqlite import SqliteDialect, configure_sqlite
from payment_events.outbox.table import (
    IN_RETRY_INDEX,
    IS_DEAD,
    IS_PENDING,
    IS_PUBLISHED,
    UtcDateTime,
    outbox_table,
)

__all__ = ["SqlOutboxStore"]

_o = outbox_table


def dialect_for(engine: Engine, *, async_marks: bool) -> PostgresDialect | SqliteDialect:
    """The database-specific half of the store for ``engine``."""
    name = engine.dialect.name
    if name == "postgresql":
        return PostgresDialect(async_marks=async_marks)
    if name == "sqlite":
        return SqliteDialect()
    raise ValueError(f"the outbox supports PostgreSQL and SQLite, not {name}")


def _pending_statement() -> Select[Any]:
    """Pending count and oldest pending row (both answered by the pending index) and the dead count (the
    dead index)."""
    count = func.count()
    return select(
        select(count).select_from(_o).where(IS_PENDING).scalar_subquery().label("pending"),
        select(count).select_from(_o).where(IS_DEAD).scalar_subquery().label("dead"),
        select(_o.c.created_at)
        .where(IS_PENDING)
        .order_by(_o.c.id)
        .limit(1)
        .scalar_subquery()
        .label("oldest"),
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


class SqlOutboxStore:
    """The :class:`~payment_events.outbox.ports.OutboxStore` on PostgreSQL or SQLite.

    ``shard_count`` must match the publishers' (a claim over every shard then skips the shard filter).
    ``async_marks`` (PostgreSQL, default on) commits ``resolve`` with ``SET LOCAL synchronous_commit =
    off``: the relay does not wait for the WAL flush of its marks. A mark lost in a database crash only
    means the row is published again (a duplicate, which consumers tolerate), never a lost event, because
    the row stays pending. Turn it off if duplicates after a database crash matter more than throughput.
    ``clock`` stamps ``published_at`` (and is replaceable in tests).

    ``hot_engine`` (PostgreSQL; :meth:`from_url` makes one): runs every claim and a published batch's
    marks as single autocommit statements (see :mod:`~payment_events.outbox.hot_path`).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        shard_count: int = DEFAULT_SHARD_COUNT,
        async_marks: bool = True,
        clock: Callable[[], datetime] = utc_now,
        dispose_engine: bool = False,
        hot_engine: Engine | None = None,
    ) -> None:
        self.engine = engine
        self.hot_engine = hot_engine if engine.dialect.name == "postgresql" else None
        self.shard_count = validate_shard_count(shard_count)
        self.async_marks = async_marks
        self._clock = clock
        self._dispose_engine = dispose_engine
        self._dialect = dialect_for(engine, async_marks=async_marks)
        self._backlog = _backlog_statement()
        self._pending = _pending_statement()

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
        """A store with its own engines for ``url`` (closed by :meth:`close`; PostgreSQL: also the hot
        engine). SQLite gets WAL and a busy timeout. With ``check_schema`` a missing or outdated table
        raises ``MigrationRequiredError`` now, not at the first claim; an async URL ``ConfigurationError``."""
        from payment_events.dburl import refuse_async_url

        refuse_async_url(url)
        hot_engine: Engine | None = None
        if url.startswith("postgresql"):
            hot_name = postgres.application_name(url, "hot path")
            hot = hot_path.hot_engine_options(engine_options, hot_name, asynchronous_commit=async_marks)
            hot_engine = create_engine(url, **hot)
            engine_options = postgres.engine_options(engine_options, postgres.application_name(url, "store"))
        engine = create_engine(url, **engine_options)
        if engine.dialect.name == "sqlite":
            configure_sqlite(engine)
        store = cls(engine, shard_count=shard_count, async_marks=async_marks, dispose_engine=True,
                    hot_engine=hot_engine)
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
            if self.hot_engine is not None:
                self.hot_engine.dispose()

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
        owned: list[int] | None = None
        if shards is not None:
            owned = sorted(set(shards))
            if not owned:
                return []
            if len(owned) == self.shard_count and owned[0] == 0 and owned[-1] == self.shard_count - 1:
                owned = None  # every shard: the filter would only cost time
        if isinstance(self._dialect, PostgresDialect):
            sql, params = postgres.claim_statement(owned, limit, now, busy)
            return records(hot_path.run_claim(self.hot_engine, self._begin, sql, params))
        with self._begin("claim") as conn:
            rows = self._dialect.claim(conn, owned, limit, now, busy)
        return records(rows)

    def resolve(self, published: Sequence[Published], retries: Sequence[Retry], dead: Sequence[Dead]) -> None:
        """Record delivery outcomes in one transaction (see the port); a published row never goes back."""
        if not (published or retries or dead):
            return
        now = self._clock()
        published = sorted(published, key=lambda p: p.id)
        retries = sorted(retries, key=lambda r: r.id)
        dead = sorted(dead, key=lambda d: d.id)
        if hot_path.marks_fit(self.hot_engine, published, retries, dead):
            assert self.hot_engine is not None
            hot_path.mark_published(self.hot_engine, now, published, None, asynchronous=self.async_marks)
            return
        with self._begin("resolve") as conn:
            self._dialect.resolve(conn, now, published, retries, dead)

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

    def pending_backlog(self, now: datetime) -> tuple[int, float, int]:
        """Pending rows and the oldest one's age: the part of :meth:`backlog` the relay reports (see
        :class:`~payment_events.outbox.ports.PendingBacklog`)."""
        with self._begin("backlog") as conn:
            row = conn.execute(self._pending).one()
        oldest: datetime | None = row.oldest
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        return int(row.pending), age, int(row.dead)

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
        victims = self._dialect.purge_victims(victims)
        with self._begin("purge") as conn:
            statement = delete(_o).where(_o.c.id.in_(victims.scalar_subquery()))
            result = conn.execute(statement, {"older": older_than})
        return int(result.rowcount)

    # ------------------------------------------------------------------------------------- fencing
    def claim_fenced(
        self, fence: Fence, limit: int, now: datetime, busy: Collection[int] = ()
    ) -> list[OutboxRecord]:
        """:meth:`claim` over the fence's shards, only those it still holds (see
        :mod:`~payment_events.outbox.fencing`)."""
        if limit <= 0 or not fence.generations:
            return []
        if isinstance(self._dialect, PostgresDialect):  # one statement: see hot_path.pg_fenced_claim_sql
            return hot_path.claim_fenced(self.hot_engine, self._begin, fence, limit=limit, now=now,
                                         busy=busy, shard_count=self.shard_count)
        with self._begin("claim") as conn:
            # Share-locks the lease rows until the claim commits: a takeover waits for it, so the claim
            # happens entirely before or entirely after it. Then the usual claim over what is held.
            held = fencing.held_shards(conn, fence, lock=True)
            if not held:
                return []
            owned = None if len(held) == self.shard_count else sorted(held)
            rows = self._dialect.claim(conn, owned, limit, now, busy)
        return records(rows)

    def resolve_fenced(
        self, fence: Fence, published: Sequence[Published], retries: Sequence[Retry], dead: Sequence[Dead]
    ) -> None:
        """:meth:`resolve` for rows of shards the fence still holds (their lease rows share-locked until
        the marks commit); raise ``LeaseLostError`` after the commit if some shards were lost."""
        if not (published or retries or dead):
            return
        now = self._clock()
        published = sorted(published, key=lambda p: p.id)
        retries = sorted(retries, key=lambda r: r.id)
        dead = sorted(dead, key=lambda d: d.id)
        if hot_path.marks_fit(self.hot_engine, published, retries, dead):
            assert self.hot_engine is not None
            held, touched = hot_path.mark_published(
                self.hot_engine, now, published, fence, asynchronous=self.async_marks
            )
            lost = touched - held  # only the shards of this batch's rows were checked
        else:
            with self._begin("resolve") as conn:
                held = fencing.held_shards(conn, fence, lock=True)
                if held:
                    self._dialect.resolve(conn, now, published, retries, dead, held=held)
            lost = set(fence.shards - held)
        if lost:
            raise LeaseLostError(
                f"{len(lost)} of this relay's shards were taken by another relay (or released): the marks "
                "of their rows were not written, the new owner publishes them; refreshing the leases"
            )

    def take_shards(
        self, namespace: int, owner: str, shards: Collection[int], *, transactional_id: str | None = None
    ) -> Takeover:
        """Take ``shards`` for ``owner`` in one transaction (see :func:`~payment_events.outbox.fencing.
        take_shards`). Without advisory locks: for a relay alone on its outbox (SQLite) and tests."""
        with self._begin("take shards") as conn:
            return fencing.take_shards(
                conn, namespace, owner, shards, transactional_id=transactional_id, now=self._clock()
            )

    def release_shards(self, namespace: int, owner: str, shards: Collection[int]) -> None:
        """Clear ``owner`` from ``shards``."""
        with self._begin("release shards") as conn:
            fencing.release_shards(conn, namespace, owner, shards)

    def held_shards(self, fence: Fence) -> set[int]:
        """The shards of ``fence`` still held (owner and generation match)."""
        with self._begin("check shards") as conn:
            return fencing.held_shards(conn, fence)

    def settle_shards(self, fence: Fence, shards: Collection[int], at: datetime) -> None:
        """Record the instant before which every record of ``shards`` is marked (exactly-once mode)."""
        with self._begin("settle shards") as conn:
            fencing.settle_shards(conn, fence, shards, at)

    def pending_events(self, fence: Fence) -> list[PendingEvent]:
        """Every pending row of the shards ``fence`` still holds, in id order (reconciliation)."""
        with self._begin("list pending") as conn:
            held = sorted(fencing.held_shards(conn, fence))
            if not held:
                return []
            query = (
                select(_o.c.id, _o.c.event_id, _o.c.topic, _o.c.created_at)
                .where(IS_PENDING, _o.c.shard.in_(bindparam("held", expanding=True)))
                .order_by(_o.c.id)
            )
            rows = conn.execute(query, {"held": held}).all()
        return [PendingEvent(int(r.id), r.event_id, r.topic, r.created_at) for r in rows]

    # ----------------------------------------------------------------------------- dead-letter admin
    def list_dead(
        self, limit: int = 100, event_type: str | None = None, *, filters: DeadFilter | None = None
    ) -> list[DeadLetter]:
        """Dead rows, oldest first; see :func:`payment_events.outbox.dead_letters.list_dead`."""
        return dead_letters.list_dead(self.engine, limit, event_type=event_type, filters=filters)

    def count_dead(
        self, filters: DeadFilter | None = None, ids: Collection[int] | None = None
    ) -> int:
        """How many dead rows match; see :func:`payment_events.outbox.dead_letters.count_dead`."""
        return dead_letters.count_dead(self.engine, filters, ids)

    def get(self, row_id: int) -> OutboxRow | None:
        """One row by id, any state, or ``None``; see :func:`payment_events.outbox.dead_letters.get`."""
        return dead_letters.get(self.engine, row_id)

    def replay(
        self, ids: Collection[int] | None = None, *, event_type: str | None = None, all_dead: bool = False
    ) -> int:
        """Move dead rows back to pending; see :func:`payment_events.outbox.dead_letters.replay`."""
        return dead_letters.replay(
            self.engine, ids, event_type=event_type, all_dead=all_dead, now=self._clock()
        )
