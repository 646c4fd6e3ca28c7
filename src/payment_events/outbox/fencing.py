"""Fenced shard ownership: a lease generation per shard that every claim and every mark must match.

Advisory locks decide who *may* take a shard, but a relay learns that it lost its lock connection only
at its next lease refresh (seconds later). Without a fence it keeps claiming and marking for shards
another relay already owns. So ownership is also written down, in ``payment_events_shard_leases``:

* taking a shard (while holding its advisory lock, on PostgreSQL) writes the taker's *owner token* and
  bumps the shard's *generation*: ``generation = generation + 1``;
* a claim returns rows only of shards whose lease row still carries the claimer's owner token and the
  generation it got when it took the shard (on PostgreSQL also: its lease connection still holds the
  shard's advisory lock, so a relay whose lock connection died claims nothing more, even before anybody
  took over);
* a mark share-locks the lease rows of the marker's shards (PostgreSQL: ``FOR SHARE``, so a takeover
  waits for marks in progress and no mark commits after a takeover) and updates only rows of shards
  still held with the same generation. Rows of a lost shard are left pending for the new owner, and
  :class:`~payment_events.errors.LeaseLostError` is raised after the other marks committed;
* releasing a shard (rebalance, shutdown) clears the owner, which fences the releaser as well.

A :class:`Fence` is what a relay holds: its namespace, owner token and ``shard -> generation``. Stores
that can check one implement :class:`FenceableStore`; :class:`FencedOutboxStore` binds the current
fence of the relay's leases to such a store, so the relay loop itself needs no fencing code.

Why this module is longer than the house's 400 lines: the lease table, the statements that take, settle
and release shards in it, and the fenced store that checks it on every claim and mark are one rule;
splitting them would put the rule's halves in two places.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    bindparam,
    select,
    text,
)
from sqlalchemy.engine import Connection

from payment_events.errors import LeaseLostError, StoreError
from payment_events.outbox.ports import (
    BacklogStats,
    Dead,
    Fence,
    OutboxRecord,
    PendingEvent,
    PreviousOwner,
    Published,
    Retry,
    Takeover,
    new_owner_token,
    utc_now,
)
from payment_events.outbox.sharding import DEFAULT_SHARD_COUNT, validate_shard_count
from payment_events.outbox.table import UtcDateTime, metadata

log = logging.getLogger("payment_events.outbox.fencing")

LEASES_TABLE_NAME = "payment_events_shard_leases"
DEFAULT_LEASE_NAMESPACE = 0x7065_7368  # "pesh"; also the first key of every advisory lock the relays take

shard_leases_table = Table(
    LEASES_TABLE_NAME,
    metadata,
    Column("namespace", Integer, nullable=False),
    Column("shard", SmallInteger, nullable=False),
    Column("owner", String(200), nullable=True),
    Column("generation", BigInteger, nullable=False),
    Column("transactional_id", String(249), nullable=True),
    Column("taken_at", UtcDateTime, nullable=False),
    Column("settled_at", UtcDateTime, nullable=True),
    PrimaryKeyConstraint("namespace", "shard", name="pk_payment_events_shard_leases"),
)
"""One row per (namespace, shard) ever taken (revision 0003)."""


# ------------------------------------------------------------------------------------ SQL (any engine)
_l = shard_leases_table
_PREVIOUS = select(_l.c.shard, _l.c.owner, _l.c.transactional_id, _l.c.settled_at).where(
    _l.c.namespace == bindparam("ns"), _l.c.shard.in_(bindparam("shards", expanding=True))
)
_GENERATIONS = select(_l.c.shard, _l.c.generation, _l.c.owner).where(
    _l.c.namespace == bindparam("ns"), _l.c.shard.in_(bindparam("shards", expanding=True))
)
# ON CONFLICT ... DO UPDATE is the same text on PostgreSQL and SQLite (3.24+).
_TAKE = text(
    f"INSERT INTO {LEASES_TABLE_NAME} (namespace, shard, owner, generation, transactional_id, taken_at)"
    " VALUES (:ns, :shard, :owner, 1, :txn, :now)"
    " ON CONFLICT (namespace, shard) DO UPDATE SET owner = excluded.owner,"
    f" generation = {LEASES_TABLE_NAME}.generation + 1,"
    " transactional_id = excluded.transactional_id, taken_at = excluded.taken_at"
).bindparams(bindparam("now", type_=UtcDateTime()))
_RELEASE = (
    _l.update()
    .where(
        _l.c.namespace == bindparam("ns"),
        _l.c.owner == bindparam("holder"),  # not "owner": that name is the SET column's own parameter
        _l.c.shard.in_(bindparam("shards", expanding=True)),
    )
    .values(owner=None)
)


def take_shards(
    conn: Connection,
    namespace: int,
    owner: str,
    shards: Collection[int],
    *,
    transactional_id: str | None = None,
    now: datetime | None = None,
) -> Takeover:
    """Write ``owner`` on ``shards`` and bump their generations; return the new generations and the
    previous owners. On PostgreSQL call it on the connection that holds the shards' advisory locks.

    Shards are written in shard order (so two takers of overlapping sets, which the advisory locks
    already prevent, could not deadlock either)."""
    wanted = sorted(set(shards))
    if not wanted:
        return Takeover({})
    previous = {
        int(row.shard): PreviousOwner(row.owner, row.transactional_id, row.settled_at)
        for row in conn.execute(_PREVIOUS, {"ns": namespace, "shards": wanted})
    }
    stamp = now or utc_now()
    conn.execute(
        _TAKE,
        [
            {"ns": namespace, "shard": s, "owner": owner, "txn": transactional_id, "now": stamp}
            for s in wanted
        ],
    )
    generations = {
        int(row.shard): int(row.generation)
        for row in conn.execute(_GENERATIONS, {"ns": namespace, "shards": wanted})
        if row.owner == owner
    }
    return Takeover(generations, previous)


def release_shards(conn: Connection, namespace: int, owner: str, shards: Collection[int]) -> None:
    """Clear ``owner`` from ``shards`` (a clean hand-over: the next owner has nothing to fence)."""
    wanted = sorted(set(shards))
    if wanted:
        conn.execute(_RELEASE, {"ns": namespace, "holder": owner, "shards": wanted})


_SETTLE = (
    _l.update()
    .where(
        _l.c.namespace == bindparam("ns"),
        _l.c.owner == bindparam("holder"),
        _l.c.shard.in_(bindparam("shards", expanding=True)),
    )
    .values(settled_at=bindparam("at", type_=UtcDateTime()))
)


def settle_shards(conn: Connection, fence: Fence, shards: Collection[int], at: datetime) -> None:
    """Record that every record of ``shards`` produced before ``at`` is marked (exactly-once mode: the
    owner reconciled them, or took them cleanly, before producing anything itself)."""
    wanted = sorted(set(shards) & fence.shards)
    if wanted:
        conn.execute(_SETTLE, {"ns": fence.namespace, "holder": fence.owner, "shards": wanted, "at": at})


def held_shards(conn: Connection, fence: Fence, *, lock: bool = False) -> set[int]:
    """The shards of ``fence`` whose lease rows still carry its owner and generation. ``lock``
    (PostgreSQL) share-locks those rows until the transaction ends, in shard order, so that nobody
    takes them meanwhile."""
    shards, _ = fence.pairs()
    if not shards:
        return set()
    statement = (
        select(_l.c.shard, _l.c.generation)
        .where(
            _l.c.namespace == bindparam("ns"),
            _l.c.owner == bindparam("owner"),
            _l.c.shard.in_(bindparam("shards", expanding=True)),
        )
        .order_by(_l.c.shard)
    )
    if lock and conn.dialect.name == "postgresql":
        statement = statement.with_for_update(read=True)
    rows = conn.execute(statement, {"ns": fence.namespace, "owner": fence.owner, "shards": shards})
    return {int(r.shard) for r in rows if fence.generations.get(int(r.shard)) == int(r.generation)}


# ------------------------------------------------------------------------------------ the store side
@runtime_checkable
class FenceableStore(Protocol):
    """An outbox store that can check a :class:`Fence` on its claims and marks."""

    def claim_fenced(
        self, fence: Fence, limit: int, now: datetime, busy: Collection[int] = ()
    ) -> list[OutboxRecord]:
        """:meth:`~payment_events.outbox.ports.OutboxStore.claim` over the fence's shards, returning rows
        only of shards the fence still holds (owner and generation match), skipping ``busy`` ids."""
        ...

    def resolve_fenced(
        self, fence: Fence, published: Sequence[Published], retries: Sequence[Retry], dead: Sequence[Dead]
    ) -> None:
        """:meth:`~payment_events.outbox.ports.OutboxStore.resolve` for rows of shards the fence still
        holds; rows of lost shards are left untouched and ``LeaseLostError`` is raised after the rest
        committed."""
        ...

    def take_shards(
        self, namespace: int, owner: str, shards: Collection[int], *, transactional_id: str | None = None
    ) -> Takeover:
        """Take ``shards`` for ``owner`` (bump their generations); see :func:`take_shards`."""
        ...

    def release_shards(self, namespace: int, owner: str, shards: Collection[int]) -> None:
        """Release ``shards`` held by ``owner``; see :func:`release_shards`."""
        ...

    def held_shards(self, fence: Fence) -> set[int]:
        """The shards of ``fence`` whose owner and generation still match; see :func:`held_shards`."""
        ...

    def pending_events(self, fence: Fence) -> list[PendingEvent]:
        """Every pending row of the shards the fence still holds (for exactly-once reconciliation)."""
        ...

    def settle_shards(self, fence: Fence, shards: Collection[int], at: datetime) -> None:
        """See :func:`settle_shards`."""
        ...

    def backlog(self, now: datetime) -> BacklogStats:
        """As the port."""
        ...

    def purge_published(self, older_than: datetime, batch_size: int) -> int:
        """As the port."""
        ...


class FencedLeases(Protocol):
    """Shard leases that expose the fence of what they own (``None``: nothing owned)."""

    @property
    def fence(self) -> Fence | None:
        """The fence of the shards owned after the last refresh."""
        ...


class FencedOutboxStore:
    """An :class:`~payment_events.outbox.ports.OutboxStore` whose every claim and mark is fenced by the
    current fence of ``leases`` (what the relay owned at its last lease refresh).

    The relay passes the shards it owns to ``claim``; the fence carries the same shards (both come from
    the same refresh) plus what the store checks. Other attributes are the wrapped store's.
    """

    def __init__(self, store: FenceableStore, leases: FencedLeases) -> None:
        self.store = store
        self._leases = leases

    def claim(self, shards: Collection[int] | None, limit: int, now: datetime) -> list[OutboxRecord]:
        """Claim only rows of shards the relay still holds."""
        return self.claim_excluding(shards, limit, now, ())

    def claim_excluding(
        self, shards: Collection[int] | None, limit: int, now: datetime, busy: Collection[int]
    ) -> list[OutboxRecord]:
        """:meth:`claim` skipping ``busy`` ids (the relay's overlapped marks)."""
        fence = self._leases.fence
        if fence is None or not fence.generations:
            return []
        if shards is not None and set(shards) != fence.shards:
            fence = Fence(
                fence.namespace,
                fence.owner,
                {s: g for s, g in fence.generations.items() if s in set(shards)},
                fence.lease_pid,
            )
        return self.store.claim_fenced(fence, limit, now, busy)

    def resolve(self, published: Sequence[Published], retries: Sequence[Retry], dead: Sequence[Dead]) -> None:
        """Mark only rows of shards the relay still holds (``LeaseLostError`` if some were not)."""
        if not (published or retries or dead):
            return
        fence = self._leases.fence
        if fence is None or not fence.generations:
            raise LeaseLostError(
                "this relay owns no shard any more: its marks were not written (the new owner publishes "
                "those rows)"
            )
        self.store.resolve_fenced(fence, published, retries, dead)

    def backlog(self, now: datetime) -> BacklogStats:
        """The wrapped store's backlog (not fenced: it is a global count)."""
        return self.store.backlog(now)

    def purge_published(self, older_than: datetime, batch_size: int) -> int:
        """The wrapped store's purge (not fenced: published rows never change again)."""
        return self.store.purge_published(older_than, batch_size)

    def close(self) -> None:
        """Close the wrapped store, if it can be closed."""
        close = getattr(self.store, "close", None)
        if close is not None:
            close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class TableShardLeases:
    """Every shard, fenced through the lease table only (no advisory locks): the single relay of an
    SQLite outbox, or a PostgreSQL relay run alone.

    The first refresh takes every shard (bumping the generations). If another holder later takes them
    (a second relay started by mistake), this one owns nothing from its next refresh on, and its claims
    and marks were fenced in the meantime: the newest taker wins, the older one stops.
    """

    def __init__(
        self,
        store: FenceableStore,
        shard_count: int = DEFAULT_SHARD_COUNT,
        namespace: int = DEFAULT_LEASE_NAMESPACE,
        *,
        transactional_id: str | None = None,
    ) -> None:
        self.shard_count = validate_shard_count(shard_count)
        self.namespace = namespace
        self.owner = new_owner_token()
        self.transactional_id = transactional_id
        self._store = store
        self._fence: Fence | None = None
        self._taken = False
        self.last_takeover: Takeover | None = None
        """What the last take returned (previous owners); exactly-once mode reads it."""

    @property
    def fence(self) -> Fence | None:
        """The fence of every shard once taken; ``None`` before, or after another holder took them."""
        return self._fence

    def refresh(self) -> frozenset[int]:
        """Take every shard the first time; afterwards check that nobody else took them."""
        try:
            if not self._taken:
                every = range(self.shard_count)
                txn = self.transactional_id
                takeover = self._store.take_shards(self.namespace, self.owner, every, transactional_id=txn)
                self._taken = True
                self.last_takeover = takeover
                self._fence = Fence(self.namespace, self.owner, dict(takeover.generations))
            elif self._fence is not None and self._fence.generations:
                held = self._store.held_shards(self._fence)
                if held != self._fence.shards:
                    log.error(
                        "another relay took this relay's shards; this relay stops publishing them",
                        extra={"event": "relay.leases_lost", "shards": len(self._fence.shards - held)},
                    )
                    self._fence = Fence(
                        self.namespace,
                        self.owner,
                        {s: g for s, g in self._fence.generations.items() if s in held},
                    )
        except StoreError as exc:
            log.warning(
                "taking the shards failed; retrying at the next refresh",
                extra={"event": "relay.leases_failed", "error": type(exc).__name__},
            )
        return self._fence.shards if self._fence is not None else frozenset()

    def pop_takeovers(self) -> list[Takeover]:
        """The take of the first refresh (once), for exactly-once reconciliation."""
        taken, self.last_takeover = self.last_takeover, None
        return [] if taken is None else [taken]

    def abandon(self) -> None:
        """Give up every shard without clearing the owner (the next holder reconciles)."""
        self._fence = None

    def release_all(self) -> None:
        """Release every shard (a clean hand-over)."""
        fence, self._fence = self._fence, None
        if fence is not None:
            try:
                self._store.release_shards(self.namespace, self.owner, fence.shards)
            except Exception:  # noqa: BLE001 - the next taker fences us anyway
                log.warning("releasing the shards failed", extra={"event": "relay.release_failed"})
