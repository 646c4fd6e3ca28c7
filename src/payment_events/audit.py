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

import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from payment_events.audit_report import (
    AuditReport,
    Duplicate,
    LedgerMismatch,
    LostEvent,
    OrderViolation,
    PartitionRange,
    Tally,
    UnknownEvent,
)
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

PUBLISHED = "published"
PENDING = "pending"
DEAD = "dead"
UNKNOWN_TYPE = "(unknown)"

#: (topic, partition, key) -> first appearances as (offset, outbox id, event id).
_Groups = dict[tuple[str, int, bytes | None], list[tuple[int, int, str]]]


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One outbox row as the audit needs it (no payload)."""

    id: int
    event_id: str
    event_type: str
    topic: str
    key: bytes
    state: str
    kafka_partition: int | None = None
    kafka_offset: int | None = None
    created_at: datetime | None = None
    published_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TopicMessage:
    """One message read from a topic: its position, key and the two envelope fields the audit needs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    event_id: str | None
    event_type: str | None
    timestamp_ms: int | None = None


class _Entry:
    """Mutable per-event state during a reconciliation (slots: 200k of these stay small)."""

    __slots__ = ("first", "row", "seen")

    def __init__(self, row: LedgerRow) -> None:
        self.row = row
        self.seen = 0
        self.first: tuple[str, int, int, bytes | None] | None = None


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant for ``--since``/``--until`` (``2026-01-31``, ``2026-01-31T12:00:00Z``,
    ``...+02:00``); without an offset it is taken as UTC. Raises ``ValueError`` naming the expected form."""
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date or time (e.g. 2026-01-31T12:00:00Z)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def message_identity(
    headers: Sequence[tuple[str, bytes | str | None]] | None, value: bytes | None
) -> tuple[str | None, str | None]:
    """``(event_id, event_type)`` of a message, from the CloudEvents headers ``ce_id``/``ce_type``, or
    else from the JSON value's ``eventId``/``eventType``. ``None`` where neither says."""
    found = dict(headers) if headers else {}  # built in C: cheaper than a Python loop over the pairs
    raw_id, raw_type = found.get("ce_id"), found.get("ce_type")
    event_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
    event_type = raw_type.decode() if isinstance(raw_type, bytes) else raw_type
    if event_id is None or event_type is None:
        try:
            doc = json.loads(value) if value else None
        except (ValueError, UnicodeDecodeError):
            doc = None
        if isinstance(doc, dict):
            if event_id is None and isinstance(doc.get("eventId"), str):
                event_id = doc["eventId"]
            if event_type is None and isinstance(doc.get("eventType"), str):
                event_type = doc["eventType"]
    return event_id, event_type


class Reconciler:
    """Pure reconciliation of ledger rows against topic messages. Feed rows, then messages, then report.

    ``since``/``until`` (aware datetimes) bound a time-range audit: the rows fed are those created in the
    range, and messages outside it whose event the rows do not know are ignored rather than unknown.
    """

    def __init__(
        self, *, since: datetime | None = None, until: datetime | None = None, detail_limit: int = 1000
    ) -> None:
        self._since_ms = None if since is None else int(since.timestamp() * 1000)
        self._until_ms = None if until is None else int(until.timestamp() * 1000)
        self._limit = detail_limit
        self._entries: dict[str, _Entry] = {}
        self._expected: dict[tuple[str, int, int], str] = {}
        self._mismatches: list[tuple[_Entry, str | None]] = []
        self._candidates: list[TopicMessage] = []
        self._purged: list[TopicMessage] = []
        self._purged_by_type: dict[str, int] = {}
        self._horizon: datetime | None = None
        self._horizon_ms: int | None = None
        self._messages = 0
        self._undecodable = 0

    def set_retention_horizon(self, horizon: datetime | None) -> None:
        """The oldest ``published_at`` still in the outbox: an unknown message older than that is counted
        as purged at once (no database lookup, no memory per message: retention may have deleted
        millions of rows whose events are still on the topic)."""
        self._horizon = horizon
        self._horizon_ms = None if horizon is None else int(horizon.timestamp() * 1000)

    @property
    def rows(self) -> int:
        """How many ledger rows were fed."""
        return len(self._entries)

    def add_row(self, row: LedgerRow) -> None:
        """Feed one ledger row."""
        entry = _Entry(row)
        self._entries[row.event_id] = entry
        if row.state == PUBLISHED and row.kafka_partition is not None and row.kafka_offset is not None:
            self._expected[(row.topic, row.kafka_partition, row.kafka_offset)] = row.event_id

    def add_message(self, msg: TopicMessage) -> None:
        """Feed one message read from a topic (any order across partitions, offset order within one)."""
        self._messages += 1
        position = (msg.topic, msg.partition, msg.offset)
        expected = self._expected.pop(position, None)
        if expected is not None and expected != msg.event_id:
            self._mismatches.append((self._entries[expected], msg.event_id))
        if msg.event_id is None:
            self._undecodable += 1
            return
        entry = self._entries.get(msg.event_id)
        if entry is None:
            ts = msg.timestamp_ms
            after_start = self._since_ms is None or (ts is not None and ts >= self._since_ms)
            before_end = self._until_ms is None or (ts is not None and ts < self._until_ms)
            if ts is not None and not (after_start and before_end):
                return
            if self._horizon_ms is not None and ts is not None and ts < self._horizon_ms:
                event_type = msg.event_type or UNKNOWN_TYPE
                self._purged_by_type[event_type] = self._purged_by_type.get(event_type, 0) + 1
                if len(self._purged) < self._limit:
                    self._purged.append(msg)
                return
            self._candidates.append(msg)
            return
        entry.seen += 1
        if entry.first is None:
            entry.first = (msg.topic, msg.partition, msg.offset, msg.key)

    def unknown_candidates(self) -> list[str]:
        """Event ids seen on the topics that the fed rows do not hold (look them up once, in batches)."""
        return sorted({m.event_id for m in self._candidates if m.event_id is not None})

    def report(
        self,
        *,
        topics: Sequence[str],
        started_at: datetime,
        finished_at: datetime,
        known_elsewhere: Iterable[str] = (),
        retention_horizon: datetime | None = None,
        scanned: Sequence[PartitionRange] = (),
        unreadable_topics: Mapping[str, str] | None = None,
        ledger_first_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> AuditReport:
        """The verdict. ``known_elsewhere``: candidate ids the database holds outside the fed snapshot
        (committed after it, or outside the time range): not unknown. ``scanned``: the offset ranges read,
        to tell a recorded position that holds nothing from one that was not read."""
        report = AuditReport(
            topics=list(topics), since=since, until=until, started_at=started_at, finished_at=finished_at,
            messages_read=self._messages, overall=Tally(), by_type={}, partitions=list(scanned),
            unreadable_topics=dict(unreadable_topics or {}), undecodable_messages=self._undecodable,
            ledger_first_id=ledger_first_id, retention_horizon=retention_horizon or self._horizon,
            detail_limit=self._limit,
        )
        groups = self._ledger_pass(report, scanned)
        self._order_pass(report, groups)
        self._mismatch_pass(report, scanned)
        self._unknown_pass(report, set(known_elsewhere), retention_horizon or self._horizon)
        for t in report.by_type.values():
            report.overall.add(t)
        return report

    @staticmethod
    def _tally(report: AuditReport, event_type: str) -> Tally:
        found = report.by_type.get(event_type)
        if found is None:
            found = report.by_type[event_type] = Tally()
        return found

    def _ledger_pass(self, report: AuditReport, scanned: Sequence[PartitionRange]) -> _Groups:
        """Count every row by state and delivery; collect each key's first appearances per partition."""
        limit = self._limit
        groups: _Groups = {}
        starts = {(r.topic, r.partition): r.start for r in scanned}
        for event_id, entry in self._entries.items():
            row = entry.row
            t = self._tally(report, row.event_type)
            t.committed += 1
            if entry.first is not None:
                t.delivered += 1
                if entry.seen > 1:
                    t.duplicated_events += 1
                    t.duplicates += entry.seen - 1
                    if len(report.duplicates) < limit:
                        report.duplicates.append(Duplicate(event_id, row.event_type, entry.seen))
                topic, partition, offset, key = entry.first
                groups.setdefault((topic, partition, key), []).append((offset, row.id, event_id))
            if row.state == PUBLISHED:
                t.published += 1
                if entry.first is None and _before_read(row, starts):
                    t.expired += 1
                elif entry.first is None:
                    t.lost += 1
                    if len(report.lost) < limit:
                        report.lost.append(
                            LostEvent(row.id, event_id, row.event_type, row.topic, _text(row.key)))
            elif row.state == PENDING:
                t.pending += 1
                t.pending_delivered += entry.first is not None
                if len(report.pending_event_ids) < limit:
                    report.pending_event_ids.append(event_id)
            elif row.state == DEAD:
                t.dead += 1
                t.dead_delivered += entry.first is not None
                if len(report.dead_event_ids) < limit:
                    report.dead_event_ids.append(event_id)
        return groups

    def _order_pass(
        self, report: AuditReport, groups: _Groups
    ) -> None:
        """Per key and partition, first appearances in offset order must have increasing outbox ids."""
        for (topic, partition, key), firsts in groups.items():
            firsts.sort()
            max_id, max_event = -1, ""
            for offset, outbox_id, event_id in firsts:
                if outbox_id > max_id:
                    max_id, max_event = outbox_id, event_id
                    continue
                self._tally(report, self._entries[event_id].row.event_type).order_violations += 1
                if len(report.order_violations) < self._limit:
                    report.order_violations.append(OrderViolation(
                        topic, _text(key), event_id, outbox_id, max_event, max_id, partition, offset))

    def _mismatch_pass(self, report: AuditReport, scanned: Sequence[PartitionRange]) -> None:
        """Recorded positions that held another event, or nothing although their range was read."""
        ranges = {(r.topic, r.partition): (r.start, r.end) for r in scanned}
        missing: list[tuple[_Entry, str | None]] = []
        for (topic, partition, offset), event_id in self._expected.items():
            start, end = ranges.get((topic, partition), (0, 0))
            if start <= offset < end:
                missing.append((self._entries[event_id], None))
        for entry, found in [*self._mismatches, *missing]:
            row = entry.row
            self._tally(report, row.event_type).ledger_mismatches += 1
            if len(report.ledger_mismatches) < self._limit:
                report.ledger_mismatches.append(LedgerMismatch(
                    row.id, row.event_id, row.topic, row.kafka_partition or 0, row.kafka_offset or 0, found))

    def _unknown_pass(self, report: AuditReport, elsewhere: set[str], horizon: datetime | None) -> None:
        """Messages the ledger does not hold; older than the retention horizon means probably purged."""
        horizon_ms = None if horizon is None else int(horizon.timestamp() * 1000)
        for event_type, count in self._purged_by_type.items():
            t = self._tally(report, event_type)
            t.unknown += count
            t.purged += count
        for msg in self._purged:
            if len(report.unknown) < self._limit:
                report.unknown.append(UnknownEvent(msg.event_id, msg.event_type or UNKNOWN_TYPE, msg.topic,
                                                   msg.partition, msg.offset, True))
        for msg in self._candidates:
            if msg.event_id in elsewhere:
                continue
            purged = horizon_ms is not None and msg.timestamp_ms is not None and msg.timestamp_ms < horizon_ms
            event_type = msg.event_type or UNKNOWN_TYPE
            t = self._tally(report, event_type)
            t.unknown += 1
            t.purged += purged
            if len(report.unknown) < self._limit:
                report.unknown.append(
                    UnknownEvent(msg.event_id, event_type, msg.topic, msg.partition, msg.offset, purged))


def _before_read(row: LedgerRow, starts: Mapping[tuple[str, int], int]) -> bool:
    """True when the row's recorded offset lies before the first offset read from its partition: Kafka's
    retention deleted it (or a time-range audit started later), so its absence proves nothing."""
    if row.kafka_partition is None or row.kafka_offset is None:
        return False
    start = starts.get((row.topic, row.kafka_partition))
    return start is not None and row.kafka_offset < start


def _text(key: bytes | None) -> str:
    return "" if key is None else key.decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------- I/O


def _engine_url(database_url: str) -> str:
    """Accept plain ``postgresql://`` URLs: this project's driver is psycopg 3."""
    from payment_events.dburl import refuse_async_url

    refuse_async_url(database_url)
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix):]
    return database_url


def read_ledger(
    conn: Any, topics: Sequence[str], since: datetime | None, until: datetime | None
) -> Iterator[LedgerRow]:
    """Stream the outbox rows of ``topics`` (created in ``[since, until)`` if given), in one snapshot."""
    import sqlalchemy as sa

    from payment_events.outbox.table import outbox_table as t

    # Timestamps are not selected: converting two datetimes per row would double the cost of the read.
    query = sa.select(t.c.id, t.c.event_id, t.c.event_type, t.c.topic, t.c.key, t.c.state,
                      t.c.kafka_partition, t.c.kafka_offset)
    query = query.where(t.c.topic.in_(list(topics)))
    if since is not None:
        query = query.where(t.c.created_at >= since)
    if until is not None:
        query = query.where(t.c.created_at < until)
    for r in conn.execution_options(yield_per=20_000).execute(query):
        key = r[4] if type(r[4]) is bytes else bytes(r[4])  # memoryview on some drivers
        yield LedgerRow(r[0], r[1], r[2], r[3], key, r[5], r[6], r[7])


def plan_ranges(
    consumer: Any, topics: Sequence[str], start_at: datetime | None
) -> tuple[list[PartitionRange], dict[str, str]]:
    """The offsets to read per partition: from the start (or the first offset at/after ``start_at``) to
    the high watermark now. Also the topics that could not be read, with why."""
    from confluent_kafka import TopicPartition

    ranges: list[PartitionRange] = []
    unreadable: dict[str, str] = {}
    for topic in topics:
        try:
            meta = consumer.list_topics(topic=topic, timeout=10).topics.get(topic)
        except Exception as exc:  # noqa: BLE001 - an illegal or unreachable topic is reported, not fatal
            unreadable[topic] = type(exc).__name__
            continue
        if meta is None or meta.error is not None or not meta.partitions:
            unreadable[topic] = str(meta.error.str() if meta is not None and meta.error else "no partitions")
            continue
        for partition in sorted(meta.partitions):
            low, high = _retrying(consumer.get_watermark_offsets, TopicPartition(topic, partition),
                                  timeout=10, cached=False)
            start = low
            if start_at is not None:
                at_ms = int(start_at.timestamp() * 1000)
                found = _retrying(consumer.offsets_for_times, [TopicPartition(topic, partition, at_ms)],
                                  timeout=10)
                start = high if found[0].offset < 0 else max(low, found[0].offset)
            ranges.append(PartitionRange(topic, partition, start, high))
    return ranges, unreadable


def _retrying(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, retried for a while on Kafka errors (a leader election or a reconnect in
    progress must not fail an audit)."""
    import time

    from confluent_kafka import KafkaException

    attempts = 8
    for attempt in range(attempts):
        try:
            return call(*args, **kwargs)
        except KafkaException:
            if attempt == attempts - 1:
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
) -> AuditReport:
    """Reconcile the outbox ledger at ``database_url`` with ``topics`` on ``bootstrap_servers``.

    ``topics`` defaults to every topic the ledger names. ``since``/``until`` (aware) restrict the audit
    to rows created in that range; the topics are then read from ``since - lookback`` (a message's
    timestamp may precede its row's commit by the clock skew). ``kafka_config`` adds client settings
    (security). Raises :class:`AuditError` when a partition cannot be read within ``timeout`` seconds.
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
    engine = sa.create_engine(_engine_url(database_url))
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
        consumer = Consumer({
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
        scanned, unreadable = plan_ranges(consumer, topics, start_at)
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
    return reconciler.report(
        topics=topics, started_at=started, finished_at=datetime.now(UTC), known_elsewhere=elsewhere,
        retention_horizon=horizon, scanned=scanned, unreadable_topics=unreadable, ledger_first_id=first_id,
        since=since, until=until)
