"""In-memory fakes of the relay's other ports, for your own tests: a producer over in-memory topics,
shard leases shared by several relays, and a clock you move by hand.

Each is checked by the same contract suite as the real adapter (``tests/contracts/``): the producer
partitions a key like librdkafka's default partitioner (CRC-32 of the key modulo the partition count)
and acknowledges in produce order; the leases share shards fairly like
:class:`~payment_events.outbox.leases.PostgresShardLeases`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from payment_events.outbox.sharding import DEFAULT_SHARD_COUNT, validate_shard_count
from payment_events.relay.delivery import Delivered, DeliveryError, Outcome
from payment_events.relay.ports import Producible

__all__ = ["InMemoryLeaseTable", "InMemoryProducer", "InMemoryShardLeases", "ManualClock", "ProducedMessage"]


@dataclass(frozen=True, slots=True)
class ProducedMessage:
    """One message as it landed on an in-memory topic."""

    topic: str
    partition: int
    offset: int
    key: bytes
    payload: bytes
    headers: tuple[tuple[str, bytes], ...]


class InMemoryProducer:
    """The relay's :class:`~payment_events.relay.ports.BatchProducer` over in-memory topics.

    ``partitions``: partitions per topic. ``topics``: the topics that exist (``None``: any); a message
    for another topic fails with ``UNKNOWN_TOPIC_OR_PART`` (transient, as librdkafka reports it).
    ``fail``: return a :class:`~payment_events.relay.delivery.DeliveryError` to fail a message (it is
    not stored), or ``None`` to deliver it.
    """

    def __init__(
        self,
        partitions: int = 6,
        *,
        topics: Collection[str] | None = None,
        fail: Callable[[Producible], DeliveryError | None] | None = None,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.partitions = partitions
        self._topics = None if topics is None else frozenset(topics)
        self._fail = fail
        self._log: dict[tuple[str, int], list[ProducedMessage]] = {}
        self.closed = False

    def partition_for(self, key: bytes) -> int:
        """librdkafka's default (``consistent_random``) choice for a non-empty key."""
        return zlib.crc32(key) % self.partitions

    def produce_batch(self, messages: Sequence[Producible], timeout: float) -> list[Outcome]:
        """Append every message to its partition and acknowledge it with its offset (or fail it)."""
        if self.closed:
            raise RuntimeError("the producer is closed")
        outcomes: list[Outcome] = []
        for message in messages:
            error = self._fail(message) if self._fail is not None else None
            if error is None and self._topics is not None and message.topic not in self._topics:
                error = DeliveryError("UNKNOWN_TOPIC_OR_PART", "unknown topic", retriable=True)
            if error is not None:
                outcomes.append(error)
                continue
            partition = self.partition_for(message.key)
            queue = self._log.setdefault((message.topic, partition), [])
            queue.append(
                ProducedMessage(
                    message.topic, partition, len(queue), message.key, message.payload, tuple(message.headers)
                )
            )
            outcomes.append(Delivered(partition, len(queue) - 1))
        return outcomes

    def close(self, timeout: float) -> None:
        """Nothing is ever queued: closing only refuses later batches."""
        self.closed = True

    def messages(self, topic: str) -> list[ProducedMessage]:
        """Every message of ``topic``, partition by partition, in offset order."""
        return [m for (t, _), queue in sorted(self._log.items()) if t == topic for m in queue]


class InMemoryLeaseTable:
    """The shared state several :class:`InMemoryShardLeases` divide shards through (what PostgreSQL's
    advisory locks are for the real leases). :meth:`vanish` drops an instance as a dead connection would."""

    def __init__(self, shard_count: int = DEFAULT_SHARD_COUNT) -> None:
        self.shard_count = validate_shard_count(shard_count)
        self.members: set[str] = set()
        self.owners: dict[int, str] = {}

    def vanish(self, member: str) -> None:
        """``member`` is gone (its process died): it is no member and owns nothing any more."""
        self.members.discard(member)
        for shard in [s for s, owner in self.owners.items() if owner == member]:
            del self.owners[shard]


class InMemoryShardLeases:
    """The :class:`~payment_events.outbox.ports.ShardLeases` port over an :class:`InMemoryLeaseTable`:
    each refresh takes free shards up to the fair share ``ceil(shard_count / members)`` and releases
    what is above it, like the PostgreSQL leases."""

    def __init__(self, table: InMemoryLeaseTable, member: str) -> None:
        self._table = table
        self.member = member

    def owned(self) -> frozenset[int]:
        """The shards this member owns now."""
        return frozenset(s for s, owner in self._table.owners.items() if owner == self.member)

    def refresh(self) -> frozenset[int]:
        """Join, rebalance to the fair share, and return the shards owned now."""
        table = self._table
        table.members.add(self.member)
        share = math.ceil(table.shard_count / len(table.members))
        mine = sorted(self.owned())
        for shard in mine[share:]:
            del table.owners[shard]
        free = [s for s in range(table.shard_count) if s not in table.owners]
        for shard in free[: max(0, share - len(mine))]:
            table.owners[shard] = self.member
        return self.owned()

    def release_all(self) -> None:
        """Leave: every shard is free for the others' next refresh."""
        self._table.vanish(self.member)


class ManualClock:
    """A clock (``Callable[[], datetime]``, aware UTC) that moves only when told: pass it as ``clock=``
    to the relay, the store or the publisher."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 1, 1, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("the clock's start must be timezone-aware")
        self._now = start.astimezone(UTC)

    def __call__(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds`` (never backwards)."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += timedelta(seconds=seconds)
