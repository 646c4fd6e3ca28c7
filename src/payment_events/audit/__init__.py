"""Audit: reconcile what the outbox ledger says was committed and published with what Kafka really holds.

``audit(database_url, bootstrap_servers, topics)`` reads the topics with an independent consumer
(``isolation.level=read_committed``, explicit partition assignment, a throw-away group id, no offset
commits: no consumer-group side effects) from the beginning, or from a time range, up to the high
watermarks captured at the start, and reconciles them with the ``payment_events_outbox`` rows:

* **lost**: a row marked ``published`` whose event never appeared on its topic. Pending rows are not lost
  (not yet published; reported as ``pending``), dead rows went to the dead-letter topic (``dead``).
* **ledger mismatch**: a published row whose recorded partition/offset holds another event (or nothing).
* **duplicates**: an event seen more than once (at-least-once delivery; consumers deduplicate by eventId).
* **order violations**: for one key in one partition, the *first* appearances must follow outbox id order.
* **unknown**: an event on the topic that the outbox does not hold; ``purged`` when it is older than the
  oldest published row still in the ledger (retention deleted the row after publication).

The ledger is read first, then the high watermarks, then the topics: every row marked published before
the ledger was read has its message below the captured watermark, so a busy system never shows a false
"lost". Events committed after the ledger snapshot and already on the topic are looked up once, in
batches, and left out of the report (they belong to the next audit).

The reconciliation (:class:`Reconciler`) is pure and works on plain records; the readers around it are the
only I/O. Memory is a few hundred bytes per event: 200,000 events audit in seconds.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from payment_events.audit.ledger import engine_url, read_ledger
from payment_events.audit.reconcile import (
    PUBLISHED,
    LedgerRow,
    Reconciler,
    TopicMessage,
    message_identity,
    parse_instant,
)
from payment_events.audit.report import AuditReport
from payment_events.audit.topics import plan_ranges, scan_ranges
from payment_events.errors import AuditError

__all__ = [
    "AuditError",
    "AuditReport",
    "LedgerRow",
    "Reconciler",
    "TopicMessage",
    "audit",
    "message_identity",
    "parse_instant",
]


def audit(
    database_url: str,
    bootstrap_servers: str,
    topics: Sequence[str] | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    lookback: timedelta = timedelta(minutes=10),
    kafka_config: Mapping[str, Any] | None = None,
    detail_limit: int = 1000,
    timeout: float = 600.0,
    exactly_once: bool = False,
) -> AuditReport:
    """Reconcile the outbox ledger at ``database_url`` with ``topics`` on ``bootstrap_servers``.

    ``topics`` defaults to every topic the ledger names. ``since``/``until`` (aware) restrict the audit
    to rows created in that range; the topics are then read from ``since - lookback`` (a message's
    timestamp may precede its row's commit by the clock skew). ``kafka_config`` adds client settings
    (security). Raises :class:`AuditError` when a partition cannot be read within ``timeout`` seconds.
    ``exactly_once``: the relays run in exactly-once mode, so any duplicate (read, as always, with
    ``read_committed``: aborted records are invisible) makes the report fail.
    """
    import time

    import sqlalchemy as sa
    from confluent_kafka import Consumer

    from payment_events.outbox.table import outbox_table as t

    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")
    started = datetime.now(UTC)
    deadline = time.monotonic() + timeout
    reconciler = Reconciler(since=since, until=until, detail_limit=detail_limit)
    engine = sa.create_engine(engine_url(database_url))
    consumer = None
    try:
        with engine.connect() as conn:
            if topics is None:
                topics = sorted(conn.execute(sa.select(t.c.topic).distinct()).scalars())
            for row in read_ledger(conn, topics, since, until):
                reconciler.add_row(row)
            conn.rollback()
            horizon, first_id = conn.execute(sa.select(
                sa.select(sa.func.min(t.c.published_at)).where(t.c.state == PUBLISHED).scalar_subquery(),
                sa.select(sa.func.min(t.c.id)).scalar_subquery())).one()
            conn.rollback()
        if isinstance(horizon, datetime):
            reconciler.set_retention_horizon(horizon if horizon.tzinfo else horizon.replace(tzinfo=UTC))
        else:
            horizon = None
        client_log = _CountingLog()
        consumer = Consumer({
            "logger": client_log.logger,  # counted and summarised in the report, not printed line by line
            "socket.timeout.ms": max(1000, min(60_000, int(timeout * 1000))),
            **dict(kafka_config or {}),  # security settings; never the audit's own guarantees below
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"payment-events-audit-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        })
        start_at = None if since is None else since - lookback
        scanned, unreadable = plan_ranges(consumer, topics, start_at, deadline)
        scan_ranges(consumer, scanned, reconciler.add_message, deadline=deadline, clock=time.monotonic)
        elsewhere: set[str] = set()
        candidates = reconciler.unknown_candidates()
        with engine.connect() as conn:
            for i in range(0, len(candidates), 1000):
                chunk = candidates[i:i + 1000]
                elsewhere.update(conn.execute(sa.select(t.c.event_id).where(t.c.event_id.in_(chunk))).scalars())
    finally:
        if consumer is not None:
            consumer.close()
        engine.dispose()
    report = reconciler.report(
        topics=topics, started_at=started, finished_at=datetime.now(UTC), known_elsewhere=elsewhere,
        retention_horizon=horizon, scanned=scanned, unreadable_topics=unreadable, ledger_first_id=first_id,
        since=since, until=until)
    report.client_log_lines = client_log.count
    report.client_log_sample = client_log.first
    report.exactly_once = exactly_once
    return report


class _CountingLog:
    """A private logger for librdkafka's lines: counted (the report says how many and the first one),
    never printed one by one (an unreachable broker makes hundreds)."""

    def __init__(self) -> None:
        import logging

        self.count = 0
        self.first = ""
        self.logger = logging.Logger(f"payment_events.audit.librdkafka.{uuid.uuid4().hex[:8]}")
        self.logger.propagate = False
        outer = self

        class Counter(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                outer.count += 1
                if not outer.first:
                    outer.first = record.getMessage()[:200]

        self.logger.addHandler(Counter())
