"""What the relay does with a resolved batch besides marking it: dead-letter copies, observer, logs.

Observer calls are grouped per (event type, topic, reason), never per event; logs carry ids and codes,
never keys or payloads.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from payment_events.outbox.ports import OutboxRecord
from payment_events.relay.decisions import Resolution, group_counts
from payment_events.relay.delivery import SIZE_CODES, Delivered
from payment_events.relay.observer import RelayObserver
from payment_events.relay.ports import BatchProducer, OutgoingMessage

log = logging.getLogger("payment_events.relay.reporting")


def dead_letter(producer: BatchProducer, topic: str, resolution: Resolution, timeout: float) -> None:
    """Copy dead rows to the dead-letter ``topic``; the database state stays the source of truth, so a
    failed copy is logged (``relay.dlq_failed``) and the row is still marked dead.

    One WARNING line per batch (``relay.dead_lettered``: count, counts by reason code and by topic, the
    first and last outbox id) and at most one ERROR line for failed copies: 20,000 dead events write a
    few lines, not 20,000. Each row's ids are logged at DEBUG (``relay.dead_lettered_row``).
    """
    messages = [dlq_message(topic, rec, code, reason) for rec, code, reason in resolution.dead_records]
    outcomes = producer.produce_batch(messages, timeout)
    failed_codes: list[str] = []
    failed_ids: list[int] = []
    debug = log.isEnabledFor(logging.DEBUG)
    for (record, code, _), outcome in zip(resolution.dead_records, outcomes, strict=True):
        failed = not isinstance(outcome, Delivered)
        if failed:
            failed_codes.append(str(getattr(outcome, "code", "NO_REPORT")))
            failed_ids.append(record.id)
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
                    "dlq_produced": not failed,
                },
            )
    records = resolution.dead_records
    if not records:
        return
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
            "dlq_produced": len(records) - len(failed_ids),
        },
    )
    if failed_ids:
        log.error(
            f"could not copy {len(failed_ids)} dead event(s) to the dead-letter topic; they are dead in "
            "the database",
            extra={
                "event": "relay.dlq_failed",
                "count": len(failed_ids),
                "topic": topic,
                "codes": dict(sorted(Counter(failed_codes).items())),
                "first_outbox_id": min(failed_ids),
                "last_outbox_id": max(failed_ids),
            },
        )


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
    """The dead-letter copy: same key and headers plus the reason; a too-large payload is left out."""
    headers = (
        *record.headers,
        ("dlq-reason", reason.encode()),
        ("dlq-error-code", code.encode()),
        ("dlq-original-topic", record.topic.encode()),
        ("dlq-attempts", str(record.attempts + 1).encode()),
        ("dlq-outbox-id", str(record.id).encode()),
    )
    payload = record.payload
    if code in SIZE_CODES:
        payload = b""
        headers = (*headers, ("dlq-payload-omitted", b"too-large"))
    return OutgoingMessage(topic=topic, key=record.key, payload=payload, headers=headers)
