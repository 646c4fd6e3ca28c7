"""The SQLite half of the outbox store: connection pragmas, the claim and the marks.

SQLite is the embedded default: one relay (a file lock enforces it), modest volumes, one writer at a
time. Everything SQLite-specific that :class:`~payment_events.outbox.store.SqlOutboxStore` runs lives
here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Integer,
    Select,
    and_,
    bindparam,
    event,
    exists,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.elements import BindParameter

from payment_events.outbox.ports import DEAD, PUBLISHED, Dead, Published, Retry, truncate_error
from payment_events.outbox.rows import RECORD_COLUMNS
from payment_events.outbox.table import (
    IS_PENDING,
    NEVER_FAILED,
    UtcDateTime,
    outbox_table,
    retry_index_predicate,
)

SQLITE_BUSY_TIMEOUT_MS = 10_000

_o = outbox_table
_earlier = outbox_table.alias("earlier")


def configure_sqlite(engine: Engine) -> None:
    """Make every new SQLite connection of ``engine`` use WAL (readers never block the writer), wait up
    to ``SQLITE_BUSY_TIMEOUT_MS`` for a lock instead of failing at once with "database is locked", and
    commit with ``synchronous = FULL``.

    FULL, not NORMAL: in WAL mode with NORMAL a commit is visible to the relay (and published to Kafka)
    before it is on disk, and a power loss can then roll back a transaction whose event consumers already
    have. With FULL every commit syncs the WAL before it returns, so the relay can only publish what is
    durable. Every writer of the outbox file must keep it so (FULL is SQLite's own default; never set
    ``synchronous`` to NORMAL or OFF on an outbox database)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
        finally:
            cursor.close()


def _claim_statement(shard_filter: bool) -> Select[Any]:
    """The claim on SQLite: pending, due, in the owned shards, no earlier row of the key in backoff.

    SQLite runs the NOT EXISTS as a correlated lookup in the retry index for each candidate row.
    """
    now = bindparam("now", type_=UtcDateTime())
    earlier_in_backoff = exists().where(
        text(retry_index_predicate("earlier")),
        _earlier.c.key == _o.c.key,
        _earlier.c.id < _o.c.id,
        _earlier.c.next_attempt_at > now,
    )
    conditions = [IS_PENDING, or_(NEVER_FAILED, _o.c.next_attempt_at <= now), ~earlier_in_backoff]
    if shard_filter:
        conditions.append(_o.c.shard.in_(bindparam("shards", expanding=True)))
    limit: BindParameter[int] = bindparam("limit", type_=Integer())
    return select(*RECORD_COLUMNS).where(and_(*conditions)).order_by(_o.c.id).limit(limit)


_CLAIM_ALL = _claim_statement(shard_filter=False)
_CLAIM_SHARDS = _claim_statement(shard_filter=True)
_MARK_PUBLISHED = (
    update(_o)
    .where(_o.c.id == bindparam("row_id"), _o.c.state != literal_column("'published'"))
    .values(
        state=PUBLISHED,
        published_at=bindparam("now", type_=UtcDateTime()),
        kafka_partition=bindparam("part"),
        kafka_offset=bindparam("off"),
    )
)
_MARK_RETRY = (
    update(_o)
    .where(_o.c.id == bindparam("row_id"), IS_PENDING)
    .values(
        attempts=_o.c.attempts + 1,
        next_attempt_at=bindparam("at", type_=UtcDateTime()),
        last_error=bindparam("err"),
    )
)
_MARK_DEAD = (
    update(_o)
    .where(_o.c.id == bindparam("row_id"), IS_PENDING)
    .values(state=DEAD, attempts=_o.c.attempts + 1, last_error=bindparam("err"))
)


_SHARDS_OF = select(_o.c.id, _o.c.shard).where(_o.c.id.in_(bindparam("ids", expanding=True)))


def _ids_in_shards(conn: Connection, ids: Sequence[int], shards: set[int]) -> set[int]:
    """Which of ``ids`` belong to one of ``shards``."""
    keep: set[int] = set()
    for start in range(0, len(ids), 500):
        rows = conn.execute(_SHARDS_OF, {"ids": list(ids[start : start + 500])})
        keep.update(int(r.id) for r in rows if int(r.shard) in shards)
    return keep


class SqliteDialect:
    """How the store claims, marks and purges on SQLite."""

    name = "sqlite"

    @staticmethod
    def configure(engine: Engine) -> None:
        """WAL and a busy timeout on every connection."""
        configure_sqlite(engine)

    @staticmethod
    def claim(
        conn: Connection, owned: list[int] | None, limit: int, now: datetime, busy: Collection[int]
    ) -> list[Any]:
        """The claimed rows; ``busy`` rows are claimed past and dropped here (one relay, modest volumes)."""
        statement = _CLAIM_ALL if owned is None else _CLAIM_SHARDS
        params: dict[str, Any] = {"now": now, "limit": limit + len(busy)}
        if owned is not None:
            params["shards"] = owned
        rows = conn.execute(statement, params).all()
        if busy:
            skip = set(busy)
            rows = [r for r in rows if r[0] not in skip][:limit]
        return list(rows)

    @staticmethod
    def resolve(
        conn: Connection,
        now: datetime,
        published: Sequence[Published],
        retries: Sequence[Retry],
        dead: Sequence[Dead],
        *,
        held: Collection[int] | None = None,
    ) -> None:
        """Mark every outcome with one ``executemany`` per kind; with ``held``, only rows of those shards
        (a fenced resolve: the other rows are dropped from the marks here)."""
        if held is not None:
            ids = [p.id for p in published] + [r.id for r in retries] + [d.id for d in dead]
            keep = _ids_in_shards(conn, ids, set(held))
            published = [p for p in published if p.id in keep]
            retries = [r for r in retries if r.id in keep]
            dead = [d for d in dead if d.id in keep]
        if published:
            conn.execute(
                _MARK_PUBLISHED,
                [{"row_id": p.id, "now": now, "part": p.partition, "off": p.offset} for p in published],
            )
        if retries:
            conn.execute(
                _MARK_RETRY,
                [{"row_id": r.id, "at": r.next_attempt_at, "err": truncate_error(r.error)} for r in retries],
            )
        if dead:
            conn.execute(_MARK_DEAD, [{"row_id": d.id, "err": truncate_error(d.reason)} for d in dead])

    @staticmethod
    def purge_victims(victims: Select[Any]) -> Select[Any]:
        """SQLite has one writer: no row locks to skip."""
        return victims
