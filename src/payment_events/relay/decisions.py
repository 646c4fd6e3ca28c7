"""The relay's decisions, as pure functions of rows and delivery outcomes: no database, no broker.

* :func:`backoff_delay`: exponential backoff with full jitter.
* :func:`resolve_batch`: given a produced batch and its delivery outcomes, which rows to mark published,
  which to retry, which to dead-letter, and which to leave untouched -- keeping per-key order.
* :func:`next_wait`: adaptive polling -- claim again at once after a full batch, otherwise wait.

The per-key rule (invariant 3 of the design) in one sentence: for each key, walk the batch's rows in id
order and resolve them until the first row that did not get through (a transient failure or no delivery
report at all); that row is retried, and every later row of the same key is left untouched (still
pending, no attempt counted), so it is produced again only after its head. That may re-send a later row
that already reached the topic (a duplicate, which consumers drop by ``eventId``) but the outbox never
marks a row published while an earlier row of its key is unresolved. A row moved to the dead-letter state
is resolved: the rows behind it continue.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from payment_events.outbox.ports import Dead, OutboxRecord, Published, Retry
from payment_events.relay.delivery import (
    MALFORMED_ROW,
    RETRY_BUDGET_EXHAUSTED,
    TOPIC_CODES,
    Delivered,
    DeliveryError,
    Outcome,
    is_permanent,
)


def backoff_delay(
    attempt: int, base_seconds: float, cap_seconds: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before attempt ``attempt + 1``, with full jitter.

    The delay is ``uniform(0, min(cap, base * 2 ** (attempt - 1)))``. ``attempt`` counts failed attempts
    so far (>= 1). Full jitter spreads retries of many rows that failed together (a broker
    restart) instead of sending them all back at the same instant.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    ceiling = min(cap_seconds, base_seconds * 2.0 ** min(attempt - 1, 62))
    return max(0.0, rand() * ceiling)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to back off and when to give up on transient failures.

    ``max_attempts`` counts failed attempts attributed to the event itself; ``None`` means never give up
    on a transient failure. A whole batch failing together is a broker outage, not the event's fault,
    and does not use up the budget (see :func:`resolve_batch`).
    """

    base_seconds: float = 0.5
    cap_seconds: float = 60.0
    max_attempts: int | None = 25

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """The backoff before the next attempt after ``attempt`` failures."""
        return backoff_delay(attempt, self.base_seconds, self.cap_seconds, rand)

    def exhausted(self, attempts_after_this_failure: int) -> bool:
        """True when a row that has now failed this many times should be dead-lettered."""
        return self.max_attempts is not None and attempts_after_this_failure >= self.max_attempts


@dataclass(slots=True)
class Resolution:
    """What to do with one produced batch. Every record of the batch is in exactly one list."""

    published: list[Published] = field(default_factory=list)
    retries: list[Retry] = field(default_factory=list)
    dead: list[Dead] = field(default_factory=list)
    untouched: list[int] = field(default_factory=list)
    """Ids left pending as they were (blocked behind a failed head of their key, or a broker outage)."""
    published_records: list[OutboxRecord] = field(default_factory=list)
    retried_records: list[tuple[OutboxRecord, DeliveryError]] = field(default_factory=list)
    dead_records: list[tuple[OutboxRecord, str, str]] = field(default_factory=list)
    """The dead rows with their error code and reason, for the dead-letter topic."""
    outage: bool = False
    """Nothing got through and the failures were transient: treat as a broker outage, count no attempt."""


def malformed(record: OutboxRecord) -> DeliveryError | None:
    """The permanent failure of a record with a ``defect`` (never produced), or ``None`` for a sound one.

    The reason names what is wrong with the row, never its content.
    """
    if record.defect is None:
        return None
    return DeliveryError(MALFORMED_ROW, f"malformed outbox row: {record.defect}", retriable=False)


def producible(records: Sequence[OutboxRecord]) -> Sequence[OutboxRecord]:
    """The records to hand to the producer: every record without a ``defect`` (``records`` itself in the
    common case where none has one)."""
    for record in records:
        if record.defect is not None:
            return [r for r in records if r.defect is None]
    return records


def merge_outcomes(records: Sequence[OutboxRecord], produced: Sequence[Outcome]) -> list[Outcome]:
    """One outcome per record: the producer's for the :func:`producible` ones (``produced``, same order),
    the ``MALFORMED_ROW`` failure for the others."""
    if len(produced) == len(records):
        return list(produced)
    reports = iter(produced)
    merged: list[Outcome] = [malformed(r) if r.defect is not None else next(reports) for r in records]
    if next(reports, reports) is not reports:
        raise ValueError("more outcomes than producible records")
    return merged


def is_outage(outcomes: Sequence[Outcome]) -> bool:
    """True when no message of a batch was acknowledged and at least one failed transiently.

    Then the failure belongs to the broker or the network, not to the events: the relay backs off as a
    whole instead of spending every row's retry budget. A missing topic (:data:`TOPIC_CODES`) is not
    evidence of an outage: it is that topic's trouble, attributed to its rows.
    """
    saw_transient = False
    for outcome in outcomes:
        if isinstance(outcome, Delivered):
            return False
        if outcome is None or (outcome.code not in TOPIC_CODES and not is_permanent(outcome)):
            saw_transient = True
    return saw_transient


def resolve_batch(
    records: Sequence[OutboxRecord],
    outcomes: Sequence[Outcome],
    *,
    now: datetime,
    policy: RetryPolicy,
    rand: Callable[[], float] = random.random,
) -> Resolution:
    """Decide the fate of every record of a produced batch from its delivery outcome (same index).

    Per key, in id order: a delivered record is published, a permanently failed one (or one whose retry
    budget is spent) is dead, and the first record that did not get through transiently -- a failure or
    a missing report -- is retried with backoff (a missing report counts no attempt: it stays untouched);
    every later record of that key is left untouched. A record with a ``defect`` is dead
    (``MALFORMED_ROW``) whatever its outcome says: it must never be published. During an outage
    (:func:`is_outage`) transient failures count no attempt either: those records stay untouched and
    the relay backs off.
    """
    if len(records) != len(outcomes):
        raise ValueError(f"{len(records)} records but {len(outcomes)} outcomes")
    result = Resolution(outage=is_outage(outcomes))
    order = sorted(range(len(records)), key=lambda i: records[i].id)
    blocked: set[bytes] = set()
    for i in order:
        record = records[i]
        outcome = outcomes[i] if record.defect is None else malformed(record)
        if record.key in blocked:
            result.untouched.append(record.id)
            continue
        if isinstance(outcome, Delivered):
            result.published.append(Published(record.id, outcome.partition, outcome.offset))
            result.published_records.append(record)
            continue
        if outcome is None:
            blocked.add(record.key)
            result.untouched.append(record.id)
            continue
        attempts = record.attempts + 1
        code = outcome.code
        if is_permanent(outcome):
            reason = outcome.reason()
        elif result.outage:
            blocked.add(record.key)
            result.untouched.append(record.id)
            continue
        elif policy.exhausted(attempts):
            code = RETRY_BUDGET_EXHAUSTED
            reason = f"retry budget exhausted after {attempts} attempts; last error {outcome.reason()}"
        else:
            delay = policy.delay(attempts, rand)
            result.retries.append(Retry(record.id, now + timedelta(seconds=delay), outcome.reason()))
            result.retried_records.append((record, outcome))
            blocked.add(record.key)
            continue
        result.dead.append(Dead(record.id, reason))
        result.dead_records.append((record, code, reason))
    return result


def next_wait(claimed: int, batch_size: int, poll_interval: float) -> float:
    """Adaptive polling: after a full batch claim again at once (a backlog is draining); otherwise wait
    up to ``poll_interval`` (a notification may end the wait earlier)."""
    return 0.0 if claimed >= batch_size else poll_interval


def group_counts(items: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], int]:
    """Count ``(event_type, topic, reason)`` triples: observer calls are per group, never per event."""
    counts: dict[tuple[str, str, str], int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts
