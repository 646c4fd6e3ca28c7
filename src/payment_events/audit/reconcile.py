"""The pure reconciliation of ledger rows against topic messages: no database, no Kafka client."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from payment_events.audit.report import (
    AuditReport,
    Duplicate,
    LedgerMismatch,
    LostEvent,
    OrderViolation,
    PartitionRange,
    Tally,
    UnknownEvent,
)

__all__ = ["LedgerRow", "Reconciler", "TopicMessage", "message_identity", "parse_instant"]

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


ABSENT = "does not exist"
"""How an unreadable topic's reason starts when the brokers answered that it does not exist: its
published rows are lost (their messages are gone), not merely unverified."""


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
                if entry.first is None:
                    self._missing(report, t, event_id, row, starts)
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

    def _missing(
        self,
        report: AuditReport,
        t: Tally,
        event_id: str,
        row: LedgerRow,
        starts: Mapping[tuple[str, int], int],
    ) -> None:
        """A published row whose event was not seen: expired, unverified or lost."""
        if _before_read(row, starts):
            t.expired += 1
        elif not _was_read(row, starts, report.unreadable_topics):
            t.unverified += 1  # its topic or partition could not be read: not evidence of a loss
        else:
            t.lost += 1
            if len(report.lost) < self._limit:
                report.lost.append(LostEvent(row.id, event_id, row.event_type, row.topic, _text(row.key)))

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


def _was_read(row: LedgerRow, starts: Mapping[tuple[str, int], int], unreadable: Mapping[str, str]) -> bool:
    """True when the partition the row's message should be in was read, or its topic is known not to
    exist (either way its absence means a loss); False when it could not be read (unverified)."""
    if row.topic in unreadable:
        return unreadable[row.topic].startswith(ABSENT)
    if not starts or row.kafka_partition is None:
        return True  # no partition plan given (a caller that read everything itself)
    return (row.topic, row.kafka_partition) in starts or not any(t == row.topic for t, _ in starts)


def _text(key: bytes | None) -> str:
    return "" if key is None else key.decode("utf-8", errors="replace")
