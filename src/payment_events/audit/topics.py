"""Reading the topics for the audit: offset ranges up to the high watermarks, then every message in them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from payment_events.audit.reconcile import ABSENT, TopicMessage, message_identity
from payment_events.audit.report import PartitionRange
from payment_events.errors import AuditError


def plan_ranges(
    consumer: Any,
    topics: Sequence[str],
    start_at: datetime | None,
    deadline: float | None = None,
) -> tuple[list[PartitionRange], dict[str, str]]:
    """The offsets to read per partition: from the start (or the first offset at/after ``start_at``) to
    the high watermark now. Also the topics that could not be read, with why. Every call is bounded by
    ``deadline`` (a ``time.monotonic()`` value): a topic not planned by then is unreadable."""
    import time

    from confluent_kafka import TopicPartition

    def left() -> float:
        return 10.0 if deadline is None else max(0.1, min(10.0, deadline - time.monotonic()))

    ranges: list[PartitionRange] = []
    unreadable: dict[str, str] = {}
    for topic in topics:
        if deadline is not None and time.monotonic() >= deadline:
            unreadable[topic] = "timed out before it could be read"
            continue
        try:
            meta = consumer.list_topics(topic=topic, timeout=left()).topics.get(topic)
        except Exception as exc:  # noqa: BLE001 - an illegal or unreachable topic is reported, not fatal
            reason = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else type(exc).__name__
            unreadable[topic] = f"the brokers could not be reached ({reason})"
            continue
        if meta is None or meta.error is not None or not meta.partitions:
            error = meta.error if meta is not None else None
            if error is not None and error.name() in ("UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC"):
                unreadable[topic] = f"{ABSENT} on the brokers ({error.str()})"
            else:
                unreadable[topic] = str(error.str() if error is not None else "no partitions")
            continue
        try:
            for partition in sorted(meta.partitions):
                low, high = _retrying(consumer.get_watermark_offsets, TopicPartition(topic, partition),
                                      deadline=deadline, timeout=left(), cached=False)
                start = low
                if start_at is not None:
                    at_ms = int(start_at.timestamp() * 1000)
                    found = _retrying(consumer.offsets_for_times, [TopicPartition(topic, partition, at_ms)],
                                      deadline=deadline, timeout=left())
                    start = high if found[0].offset < 0 else max(low, found[0].offset)
                ranges.append(PartitionRange(topic, partition, start, high))
        except Exception as exc:  # noqa: BLE001 - reported as unreadable, never as lost
            unreadable[topic] = f"watermarks could not be read ({type(exc).__name__})"
            ranges = [r for r in ranges if r.topic != topic]
    return ranges, unreadable


def _retrying(call: Callable[..., Any], *args: Any, deadline: float | None = None, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, retried for a while on Kafka errors (a leader election or a reconnect in
    progress must not fail an audit), never past ``deadline``."""
    import time

    from confluent_kafka import KafkaException

    attempts = 8
    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except KafkaException:
            if attempt == attempts - 1 or (deadline is not None and time.monotonic() + 1.0 >= deadline):
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def scan_ranges(
    consumer: Any,
    ranges: Sequence[PartitionRange],
    on_message: Callable[[TopicMessage], None],
    *,
    deadline: float,
    clock: Callable[[], float],
) -> None:
    """Read every range with explicit assignment (no group, no commits), handing each message over."""
    from confluent_kafka import KafkaError, TopicPartition

    todo = {(r.topic, r.partition): r.end for r in ranges if r.start < r.end}
    if not todo:
        return
    consumer.assign([TopicPartition(r.topic, r.partition, r.start) for r in ranges if r.start < r.end])
    while todo:
        if clock() > deadline:
            raise AuditError(f"timed out reading {len(todo)} partition(s); raise the audit timeout")
        for msg in consumer.consume(num_messages=5000, timeout=0.5):
            err = msg.error()
            topic, partition = msg.topic() or "", msg.partition() or 0
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    todo.pop((topic, partition), None)
                elif err.fatal():
                    raise AuditError(f"reading {topic}: {err.str()}")
                continue
            end = todo.get((topic, partition))
            offset = msg.offset() or 0
            if end is None or offset >= end:
                continue
            event_id, event_type = message_identity(msg.headers(), msg.value())
            ts_type, ts = msg.timestamp()
            on_message(TopicMessage(topic, partition, offset, msg.key(), event_id, event_type,
                                    ts if ts_type else None))
            if offset >= end - 1:
                del todo[(topic, partition)]
