"""The simulated world around the real relay: a broker, a topic catalog, shard leases, a clock, writers.

Nothing here decides anything for the relay: :class:`payment_events.relay.loop.Relay` with its real
decisions, the real :class:`~payment_events.kafka.guard.GuardedProducer` and
:class:`~payment_events.relay.dead_letter_copies.DeadLetterCopier` run against these fakes. The broker
behaves the way librdkafka and Kafka do where it matters for order and loss:

* per partition, the messages of one call that reached the log are a prefix of that partition's
  messages (idempotent producer; the relay purges everything outstanding at its deadline), and a failed
  report may still have been persisted (``_PURGE_INFLIGHT``: on the log, reported as a failure);
* messages are grouped per partition into record batches up to the producer's ``batch.size``; a record
  batch larger than the topic's ``max.message.bytes`` is refused as a whole (``MSG_SIZE_TOO_LARGE``)
  while later batches of the same partition are accepted -- the broker's real behaviour;
* a message for a topic absent from the metadata fails with ``UNKNOWN_TOPIC_OR_PART`` after the
  metadata propagation wait, which the call costs in simulated time.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from payment_events.relay.delivery import Delivered, DeliveryError, Outcome
from payment_events.relay.ports import Producible

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CALL_SECONDS = 0.02
"""Simulated time a healthy produce call takes."""


class Crash(Exception):
    """The relay process dies here (raised from inside a cycle)."""


class SimClock:
    """Simulated wall clock (for the relay) and monotonic clock (for backoffs), advanced by the sim."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> datetime:
        """The relay's ``clock``."""
        return T0 + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        """The dead-letter copier's and the guard's clock."""
        return self.seconds

    def advance(self, seconds: float) -> None:
        """Let time pass."""
        self.seconds += seconds


@dataclass
class Topic:
    """One topic of the simulated cluster."""

    exists: bool = True
    limit: int = 4096
    partitions: int = 2
    down: bool = False
    """Every produce fails transiently (a dead-letter topic whose partitions have no leader)."""


@dataclass
class Plan:
    """What the broker does to the next live produce call (chosen by the sim before each cycle)."""

    kind: str = "clean"
    """clean | outage | cut | fatal | crash"""
    cut_fraction: float = 0.5
    crash_after: int = 0


@dataclass
class Appended:
    """One message on a partition's log."""

    event_id: str
    key: bytes


TRANSIENT = ("NOT_LEADER_FOR_PARTITION", "_MSG_TIMED_OUT", "REQUEST_TIMED_OUT", "NOT_ENOUGH_REPLICAS",
             "_TRANSPORT", "_PURGE_QUEUE")


@dataclass
class SimBroker:
    """The cluster: topics, partition logs, and the fault plan of the next call."""

    clock: SimClock
    rng: random.Random
    topics: dict[str, Topic] = field(default_factory=dict)
    logs: dict[tuple[str, int], list[Appended]] = field(default_factory=dict)
    plan: Plan = field(default_factory=Plan)
    propagation_seconds: float = 5.0
    """How long librdkafka waits for a topic absent from the metadata before failing its messages."""
    on_append: list[object] = field(default_factory=list)

    def partition(self, topic: str, key: bytes) -> int:
        """Kafka's key partitioning (stable, any hash does)."""
        return sum(key) % self.topics[topic].partitions

    def produce(  # noqa: PLR0912 - one place that reads like the broker's rules, in their order
        self, messages: Sequence[Producible], timeout: float, batch_bytes: int, plan: Plan
    ) -> tuple[list[Outcome], float]:
        """Produce like librdkafka and Kafka (see the module docstring); return outcomes and the
        simulated seconds the call took."""
        outcomes: list[Outcome] = [None] * len(messages)
        cost = CALL_SECONDS
        if plan.kind == "outage":
            for i in range(len(messages)):
                outcomes[i] = None if self.rng.random() < 0.3 else _transient(self.rng.choice(TRANSIENT))
            return outcomes, max(cost, timeout)
        by_partition: dict[tuple[str, int], list[int]] = {}
        for i, message in enumerate(messages):
            topic = self.topics.get(message.topic)
            if topic is None or not topic.exists:
                outcomes[i] = DeliveryError("UNKNOWN_TOPIC_OR_PART", "unknown topic", retriable=True)
                cost = max(cost, min(timeout, self.propagation_seconds))
                continue
            if topic.down:
                outcomes[i] = None
                cost = max(cost, timeout)
                continue
            by_partition.setdefault((message.topic, self.partition(message.topic, message.key)), []).append(i)
        sent = 0
        for (name, number), indices in by_partition.items():
            topic = self.topics[name]
            cut = len(indices)
            if plan.kind in ("cut", "fatal") and self.rng.random() < 0.7:
                cut = int(len(indices) * self.rng.random())
            persisted = cut + (self.rng.randint(0, len(indices) - cut) if cut < len(indices) else 0)
            log = self.logs.setdefault((name, number), [])
            for batch in _record_batches(messages, indices[:cut], batch_bytes):
                size = sum(_size(messages[i]) for i in batch)
                if size > topic.limit:
                    for i in batch:
                        outcomes[i] = DeliveryError("MSG_SIZE_TOO_LARGE", "too large", retriable=False)
                    continue
                for i in batch:
                    if plan.kind == "crash" and sent >= plan.crash_after:
                        raise Crash("the relay died with messages in flight")
                    sent += 1
                    log.append(Appended(_event_id(messages[i]), messages[i].key))
                    outcomes[i] = Delivered(number, len(log) - 1)
            for n, i in enumerate(indices[cut:]):
                if n < persisted - cut:  # reached the log, but the report says it failed
                    log.append(Appended(_event_id(messages[i]), messages[i].key))
                    outcomes[i] = DeliveryError("_PURGE_INFLIGHT", "purged in flight", retriable=True)
                elif plan.kind == "fatal":
                    outcomes[i] = DeliveryError("_FATAL", "fatal", fatal=True)
                else:
                    outcomes[i] = None if self.rng.random() < 0.3 else _transient(self.rng.choice(TRANSIENT))
        if plan.kind == "crash":
            raise Crash("the relay died after producing")
        return outcomes, cost


def _transient(code: str) -> DeliveryError:
    return DeliveryError(code, "injected", retriable=True)


def _size(message: Producible) -> int:
    return len(message.payload) + len(message.key) + 64


def _event_id(message: Producible) -> str:
    return dict(message.headers).get("ce_id", b"").decode()


def _record_batches(messages: Sequence[Producible], indices: Sequence[int], cap: int) -> list[list[int]]:
    """librdkafka's batching of one partition's messages: consecutive messages up to ``cap`` bytes."""
    batches: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i in indices:
        s = _size(messages[i])
        if current and size + s > cap:
            batches.append(current)
            current, size = [], 0
        current.append(i)
        size += s
    if current:
        batches.append(current)
    return batches


class SimProducer:
    """One relay's producer client over the shared broker (``batch.size`` is per client)."""

    def __init__(self, broker: SimBroker, *, dead_letter: bool = False) -> None:
        self.broker = broker
        self.batch_bytes = 1_000_000  # librdkafka's default in the relay's config
        self.dead_letter = dead_letter
        self.charged = 0.0

    def produce_batch(self, messages: Sequence[Producible], timeout: float) -> list[Outcome]:
        """Produce through the broker with its current plan (dead-letter producers see no live plan)."""
        plan = Plan() if self.dead_letter else self.broker.plan
        outcomes, cost = self.broker.produce(messages, timeout, self.batch_bytes, plan)
        self.charged += cost
        self.broker.clock.advance(cost)
        return outcomes

    def limit_batch_bytes(self, limit: int) -> bool:
        """What ``KafkaBatchProducer.limit_batch_bytes`` does: cap the record batches."""
        if limit >= self.batch_bytes:
            return False
        self.batch_bytes = limit
        return True

    def close(self, timeout: float) -> None:
        """Nothing to release."""


class SimCatalog:
    """The admin API's view of the cluster (always answers: the metadata is the broker's)."""

    def __init__(self, broker: SimBroker) -> None:
        self.broker = broker

    def exists(self, topic: str) -> bool | None:
        """Whether the topic exists now."""
        found = self.broker.topics.get(topic)
        return found is not None and found.exists

    def max_message_bytes(self, topic: str) -> int | None:
        """The topic's limit."""
        found = self.broker.topics.get(topic)
        return found.limit if found is not None else None


class SimLeases:
    """One relay instance's view of the shared shard table (session locks: freed when it dies)."""

    def __init__(self, table: dict[int, int], slot: int) -> None:
        self.table = table
        self.slot = slot

    def refresh(self) -> frozenset[int]:
        """The shards the table gives this slot."""
        return frozenset(s for s, owner in self.table.items() if owner == self.slot)

    def release_all(self) -> None:
        """Nothing to do: the sim reassigns shards itself."""
