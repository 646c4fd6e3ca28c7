"""What the relay does with a resolved batch besides marking it: dead-letter copies, observer, logs.

Observer calls are grouped per (event type, topic, reason), never per event; logs carry ids and codes,
never keys or payloads.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from payment_events.outbox.ports import OutboxRecord
from payment_events.relay.dead_letter_copies import Copy
from payment_events.relay.decisions import Resolution, group_counts
from payment_events.relay.observer import RelayObserver
from payment_events.relay.ports import OutgoingMessage

log = logging.getLogger("payment_events.relay.reporting")


def dead_letter_copies(topic: str | None, resolution: Resolution) -> list[Copy]:
    """Log the batch's dead rows and return each one's copy for the dead-letter ``topic`` (none when
    ``topic`` is ``None``). The rows are marked dead before the copies are sent: the database state is the
    truth, a copy is sent (and retried) by the relay's ``DeadLetterCopier``.

    One WARNING line per batch (``relay.dead_lettered``: count, counts by reason code and by topic, the
    first and last outbox id): 20,000 dead events write a few lines, not 20,000. Each row's ids are
    logged at DEBUG (``relay.dead_lettered_row``).
    """
    records = resolution.dead_records
    copies: list[Copy] = []
    debug = log.isEnabledFor(logging.DEBUG)
    for record, code, reason in records:
        if debug:
            log.debug(
                "event dead-lettered",
                extra={
                    "event": "relay.dead_lettered_row",
                    "outbox_id": record.id,
                    "event_id": record.event_id,
                    "topic": record.topic,
                    "attempt": record.attempts + 1,
                    "code": code,
                },
            )
        if topic:
            copies.append(Copy(dlq_message(topic, record, code, reason), record.id, record.event_id))
    if records:
        reasons = Counter(code for _, code, _ in records)
        ids = [record.id for record, _, _ in records]
        log.warning(
            f"{len(records)} event(s) dead-lettered ("
            + ", ".join(f"{code}: {n}" for code, n in sorted(reasons.items()))
            + "); `payment-events dlq list` shows them",
            extra={
                "event": "relay.dead_lettered",
                "count": len(records),
                "reasons": dict(sorted(reasons.items())),
                "topics": dict(sorted(Counter(record.topic for record, _, _ in records).items())),
                "first_outbox_id": min(ids),
                "last_outbox_id": max(ids),
            },
        )
    return copies


def report(observer: RelayObserver, resolution: Resolution, now: datetime) -> None:
    """Tell the observer (grouped, low-cardinality) and log summaries (no keys, no payloads)."""
    if resolution.published_records:
        latencies: dict[tuple[str, str], list[float]] = {}
        for record in resolution.published_records:
            latencies.setdefault((record.event_type, record.topic), []).append(
                (now - record.created_at).total_seconds()
            )
        for (event_type, topic), values in latencies.items():
            observer.published(event_type, topic, values)
        observer.broker_reachable(True)
        log.debug(
            "batch published",
            extra={"event": "relay.published", "count": len(resolution.published_records)},
        )
    if resolution.retried_records:
        for (event_type, topic, code), count in group_counts(
            (r.event_type, r.topic, e.code) for r, e in resolution.retried_records
        ).items():
            observer.retried(event_type, topic, code, count)
        first, error = resolution.retried_records[0]
        log.info(
            "events scheduled for retry",
            extra={
                "event": "relay.retry_scheduled",
                "count": len(resolution.retried_records),
                "outbox_id": first.id,
                "event_id": first.event_id,
                "topic": first.topic,
                "attempt": first.attempts + 1,
                "code": error.code,
            },
        )
    if resolution.dead_records:
        for (event_type, topic, code), count in group_counts(
            (r.event_type, r.topic, code) for r, code, _ in resolution.dead_records
        ).items():
            observer.dead_lettered(event_type, topic, code, count)
    if resolution.outage:
        observer.broker_reachable(False)


def dlq_message(topic: str, record: OutboxRecord, code: str, reason: str) -> OutgoingMessage:
    """The dead-letter copy: same key, payload and headers plus the reason (a copy the dead-letter topic
    refuses as too large is sent again without the payload, see ``DeadLetterCopier``)."""
    headers = (
        *record.headers,
        ("dlq-reason", reason.encode()),
        ("dlq-error-code", code.encode()),
        ("dlq-original-topic", record.topic.encode()),
        ("dlq-attempts", str(record.attempts + 1).encode()),
        ("dlq-outbox-id", str(record.id).encode()),
    )
    return OutgoingMessage(topic=topic, key=record.key, payload=record.payload, headers=headers)
