"""The demo's read-back: a plain confluent-kafka consumer and the tally of what it saw."""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from payment_events.demo.service import Ledger

# ------------------------------------------------------------------------------------------ consumer


@dataclass
class Arrival:
    """One message as the consumer read it."""

    event_id: str
    event_type: str
    key: str
    received: float


@dataclass
class Tally:
    """Everything the consumer read, in arrival order. Matching against the ledger happens at the end:
    a message can arrive before its writer thread has recorded the commit, so nothing is judged early."""

    arrivals: list[Arrival] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    undecodable: int = 0


@dataclass
class Summary:
    """The consumer's view matched with the ledger."""

    delivered: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    order_by_key: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    first_seen: set[str] = field(default_factory=set)
    foreign: int = 0


def summarize(tally: Tally, ledger: Ledger) -> Summary:
    """Per-type delivered and duplicate counts, commit-to-consumed latencies and per-key arrival order."""
    summary = Summary()
    with ledger.lock:
        committed = dict(ledger.committed_at)
    for arrival in tally.arrivals:
        at = committed.get(arrival.event_id)
        if at is None:
            summary.foreign += 1
        elif arrival.event_id in summary.first_seen:
            summary.duplicates[arrival.event_type] += 1
        else:
            summary.first_seen.add(arrival.event_id)
            summary.delivered[arrival.event_type] += 1
            summary.order_by_key[arrival.key].append(arrival.event_id)
            summary.latencies.append(max(0.0, arrival.received - at))
    return summary


class TopicReader:
    """A confluent-kafka consumer assigned to every partition of ``topics`` at their current end, so it
    reads exactly what this demo run produces (and nothing from earlier runs)."""

    def __init__(self, kafka_config: dict[str, Any], topics: Iterable[str]) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer(
            {
                **kafka_config,
                "group.id": f"payment-events-demo-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        metadata = self._consumer.list_topics(timeout=10)
        assignment = []
        for topic in topics:
            for partition in metadata.topics[topic].partitions:
                high = self._end_offset(TopicPartition(topic, partition))
                assignment.append(TopicPartition(topic, partition, high))
        self._consumer.assign(assignment)

    def _end_offset(self, partition: Any, attempts: int = 40) -> int:
        """The partition's high watermark; a just-created topic may need a moment to elect its leader."""
        from confluent_kafka import KafkaException

        for attempt in range(attempts):
            try:
                _, high = self._consumer.get_watermark_offsets(partition, timeout=10)
                return int(high)
            except KafkaException:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.25)
        raise AssertionError("unreachable")

    def poll_into(self, tally: Tally, seconds: float) -> None:
        """Read for up to ``seconds`` and record what arrived."""
        from payment_events.events.codec import decode

        for message in self._consumer.consume(num_messages=500, timeout=seconds):
            if message.error() is not None:
                continue
            received = time.time()
            try:
                event = decode(message.value() or b"", message.headers())
            except Exception:  # noqa: BLE001 -- a foreign message on a shared topic is counted, not fatal
                tally.undecodable += 1
                continue
            event_id = str(event.event_id)
            tally.arrivals.append(Arrival(event_id, event.event_type, event.partition_key, received))
            tally.seen.add(event_id)

    def close(self) -> None:
        """Leave the assignment and close the client."""
        self._consumer.close()
