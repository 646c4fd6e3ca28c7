"""Exactly-once mode on the relay side: fence the previous owner, reconcile, then produce.

Kafka transactions alone do not stop duplicates from an outbox relay: a relay can commit a batch and
die before marking its rows, and whoever claims them next sends them again. So before a relay produces
for a shard it took over from an owner that did not release it cleanly (crashed, lost its lease
connection), :class:`ExactlyOnceLeases`:

1. fences the previous owner's ``transactional.id`` (the broker aborts its open transaction and refuses
   its later ones; a transaction it was committing completes first);
2. reconciles: lists the shard's pending rows, reads the topics with ``read_committed`` from just
   before the oldest of them was written, and marks the rows whose events are already there (by event
   id, the ``ce_id`` header) as published with their partition and offset instead of sending them
   again;
3. only then returns the shard as owned (a shard whose reconciliation failed is not used and is
   retried at the next refresh).

The same reconciliation runs for every owned shard when this relay itself does not know whether a
transaction committed (a commit that timed out) or whether its marks were written (a failed resolve):
:class:`ExactlyOnceStore` does it before the next claim.

Kafka and the database are reached through injected functions, so this module imports neither.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from payment_events.outbox.fencing import FenceableStore, FencedOutboxStore
from payment_events.outbox.ports import (
    Dead,
    Fence,
    OutboxRecord,
    PendingEvent,
    Published,
    Retry,
    Takeover,
    utc_now,
)

log = logging.getLogger("payment_events.relay.exactly_once")

FindCommitted = Callable[[Mapping[str, tuple[int, str]], datetime], dict[int, tuple[int, int]]]
"""``(event_id -> (row id, topic), since) -> row id -> (partition, offset)`` of committed records."""


class TakeoverLeases(Protocol):
    """Fenced shard leases that also report what they took (PostgreSQL or table leases)."""

    @property
    def fence(self) -> Fence | None:
        """The fence of the owned shards."""
        ...

    def refresh(self) -> frozenset[int]:
        """Rebalance and return the owned shards."""
        ...

    def release_all(self) -> None:
        """Release every shard."""
        ...

    def pop_takeovers(self) -> list[Takeover]:
        """The takes since the last call."""
        ...

    def abandon(self) -> None:
        """Give up every shard without a clean hand-over."""
        ...


class UncertainProducer(Protocol):
    """The transactional producer's flag: a commit whose outcome is unknown."""

    uncertain: bool


class ExactlyOnceLeases:
    """Leases whose newly taken shards are used only after fencing and reconciliation (module doc)."""

    def __init__(
        self,
        leases: TakeoverLeases,
        store: FenceableStore,
        *,
        own_transactional_id: str,
        fence_producer: Callable[[str], None],
        find_committed: FindCommitted,
    ) -> None:
        self._leases = leases
        self._store = store
        self._own = own_transactional_id
        self._fence_producer = fence_producer
        self._find_committed = find_committed
        self._unreconciled: set[int] = set()
        self._pending_fences: set[str] = set()
        self._floors: dict[int, datetime | None] = {}
        self.unsettled: Callable[[], bool] = lambda: False
        """Set by :class:`ExactlyOnceStore`: True while a commit or marks await reconciliation; then a
        shutdown must not release the shards cleanly (the next owner must reconcile)."""
        """Previous owners' transactional ids whose fencing failed: fenced before any reconciliation."""
        self.reconciled_rows = 0
        """Rows marked published by reconciliation (found in Kafka instead of sent again)."""

    @property
    def fence(self) -> Fence | None:
        """The inner fence without the shards still waiting for reconciliation."""
        fence = self._leases.fence
        if fence is None or not self._unreconciled:
            return fence
        generations = {s: g for s, g in fence.generations.items() if s not in self._unreconciled}
        return Fence(fence.namespace, fence.owner, generations, fence.lease_pid) if generations else None

    def refresh(self) -> frozenset[int]:
        """Refresh the leases; fence and reconcile newly taken shards; return the usable shards.

        Per taken shard, by its previous lease row: none (never taken: anything may be in the topic)
        or another producer that did not release it -> fence that producer, reconcile from the
        shard's ``settled_at`` (or the oldest pending row), then settle; released cleanly -> settle
        at once; held by our own producer (our lease session was lost and came back) -> nothing: our
        commits are marked or flagged for reconciliation by :class:`ExactlyOnceStore`."""
        started = utc_now()  # before the take: nothing we produce for these shards is older
        owned = self._leases.refresh()
        clean: set[int] = set()
        for takeover in self._leases.pop_takeovers():
            for shard in takeover.generations:
                prev = takeover.previous.get(shard)
                if prev is None or (prev.owner is not None and prev.transactional_id != self._own):
                    self._unreconciled.add(shard)
                    self._floors[shard] = None if prev is None else prev.settled_at
                elif prev.owner is None:
                    clean.add(shard)
            for txn in sorted(
                {
                    prev.transactional_id
                    for prev in takeover.previous.values()
                    if prev.owner is not None and prev.transactional_id not in (None, self._own)
                }
            ):
                assert txn is not None
                self._fence_or_keep(txn, set(takeover.generations))
        self._unreconciled &= set(owned)
        if self._unreconciled:
            try:
                floors = {s: self._floors.get(s) for s in self._unreconciled}
                self.reconcile(self._unreconciled, floors)
                clean |= self._unreconciled
                self._unreconciled.clear()
            except Exception as exc:  # noqa: BLE001 - those shards wait; the others go on
                log.error(
                    "reconciling taken shards failed; they are not used until it succeeds",
                    extra={
                        "event": "relay.reconcile_failed",
                        "error": type(exc).__name__,
                        "shards": len(self._unreconciled),
                    },
                )
        self._settle(clean & set(owned), started)
        return frozenset(owned - self._unreconciled)

    def _settle(self, shards: set[int], at: datetime) -> None:
        fence = self._leases.fence
        if not shards or fence is None:
            return
        try:
            self._store.settle_shards(fence, shards, at)
        except Exception as exc:  # noqa: BLE001 - only an optimisation for the next owner's reading
            log.warning(
                "recording settled shards failed",
                extra={"event": "relay.settle_failed", "error": type(exc).__name__},
            )

    def _fence_or_keep(self, transactional_id: str, shards: set[int]) -> None:
        try:
            self._fence_producer(transactional_id)
        except Exception as exc:  # noqa: BLE001 - not fenced: do not produce for these shards yet
            log.error(
                "fencing the previous owner's producer failed; its shards wait",
                extra={"event": "relay.fence_failed", "error": type(exc).__name__},
            )
            self._unreconciled |= shards
            self._pending_fences.add(transactional_id)

    def reconcile(self, shards: Collection[int], floors: Mapping[int, datetime | None] | None = None) -> int:
        """Mark the pending rows of ``shards`` whose events are already committed in Kafka; return how
        many. Reads from the oldest pending row's creation, or from the shards' ``settled_at`` when every
        one of them has one and it is later (``floors``). Raises if anything fails (the caller must
        then not produce for those shards)."""
        for txn in sorted(self._pending_fences):
            self._fence_producer(txn)  # a fence that failed earlier must succeed first
        self._pending_fences = set()
        fence = self._leases.fence
        if fence is None:
            return 0
        wanted_shards = set(shards)
        sub = Fence(
            fence.namespace,
            fence.owner,
            {s: g for s, g in fence.generations.items() if s in wanted_shards},
            fence.lease_pid,
        )
        if not sub.generations:
            return 0
        pending: list[PendingEvent] = self._store.pending_events(sub)
        if not pending:
            return 0
        since = min(p.created_at for p in pending)
        known = [floors.get(s) for s in sub.generations] if floors else []
        if known and all(f is not None for f in known):
            since = max(since, min(f for f in known if f is not None))
        found = self._find_committed({p.event_id: (p.id, p.topic) for p in pending}, since)
        published = [Published(row_id, part, off) for row_id, (part, off) in sorted(found.items())]
        if published:
            self._store.resolve_fenced(sub, published, [], [])
        self.reconciled_rows += len(published)
        log.info(
            "reconciled taken shards",
            extra={
                "event": "relay.reconciled",
                "shards": len(sub.generations),
                "pending": len(pending),
                "already_committed": len(published),
            },
        )
        return len(published)

    def release_all(self) -> None:
        """Release every shard cleanly, unless something awaits reconciliation: then abandon them (the
        next owner fences and reconciles, as after a crash)."""
        if self.unsettled():
            log.warning(
                "stopping with commits or marks not reconciled; the next owner reconciles",
                extra={"event": "relay.abandon_shards"},
            )
            self._leases.abandon()
        else:
            self._leases.release_all()

    def pop_takeovers(self) -> list[Takeover]:
        """Takeovers are consumed here; nothing is passed on."""
        return []


class ExactlyOnceStore(FencedOutboxStore):
    """The fenced store of an exactly-once relay: when a commit's outcome is unknown or marks failed,
    every owned shard is reconciled before the next claim (the rows may already be in Kafka)."""

    def __init__(self, store: FenceableStore, leases: ExactlyOnceLeases, producer: UncertainProducer) -> None:
        super().__init__(store, leases)
        self._eo_leases = leases
        self._producer = producer
        self._dirty = False
        leases.unsettled = lambda: self._dirty or self._producer.uncertain

    def claim_excluding(
        self, shards: Collection[int] | None, limit: int, now: datetime, busy: Collection[int]
    ) -> list[OutboxRecord]:
        """Reconcile first if needed (raising if that fails), then claim."""
        if self._dirty or self._producer.uncertain:
            fence = self._eo_leases.fence
            if fence is None:
                return []  # nothing owned: stay dirty until there is something to reconcile
            self._eo_leases.reconcile(fence.shards)
            self._dirty = False
            self._producer.uncertain = False
        return super().claim_excluding(shards, limit, now, busy)

    def resolve(self, published: Sequence[Published], retries: Sequence[Retry], dead: Sequence[Dead]) -> None:
        """Mark; if the marks may not have been written, reconcile before the next claim."""
        try:
            super().resolve(published, retries, dead)
        except BaseException:
            self._dirty = True
            raise
