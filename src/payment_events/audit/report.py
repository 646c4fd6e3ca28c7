"""The result of an audit: what the outbox ledger promised against what the Kafka topics actually hold.

Pure data and rendering (text and JSON); :mod:`payment_events.audit` computes it. Every count is exact;
the detail lists (which event ids were lost, duplicated, reordered ...) are capped at the audit's
``detail_limit`` so a report over millions of events stays small. Event ids and keys appear in the
details because finance and operations need them to act; payloads never do.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

#: Exit status of ``payment-events audit``: clean.
EXIT_CLEAN = 0
#: Exit status of ``payment-events audit``: an event was lost or a key's order was broken.
EXIT_FAILED = 1
#: Exit status of ``payment-events audit``: nothing found wrong, but some topics or partitions could not
#: be read (broker unreachable, topic missing, timeout), so the rows recorded there are unverified.
EXIT_UNVERIFIED = 3


@dataclass(slots=True)
class Tally:
    """Counts for one event type (or all of them).

    ``committed`` = ledger rows in scope (``published + pending + dead``). ``delivered`` = distinct
    ledger events seen at least once on the topics. ``lost`` = published rows never seen on the topics
    (pending rows are not lost: they are not yet due; dead rows went to the dead-letter topic).
    ``expired`` = published rows not seen whose recorded offset lies before the first offset that could
    be read (Kafka's retention already deleted the message, or a time range started after it): unchecked.
    ``duplicates`` = extra copies beyond the first; ``duplicated_events`` = events with more than one copy.
    ``order_violations`` = events whose first appearance came after a later event (by outbox id) of the
    same key. ``unverified`` = published rows whose topic or partition could not be read (broker
    unreachable, timeout): neither confirmed nor lost (a topic the brokers say does not exist makes its
    published rows lost). ``unknown`` = messages whose event id the ledger does not hold, of which
    ``purged`` look older than the retention horizon (probably deleted from the outbox after
    publication).
    """

    committed: int = 0
    published: int = 0
    pending: int = 0
    pending_delivered: int = 0
    dead: int = 0
    dead_delivered: int = 0
    delivered: int = 0
    lost: int = 0
    expired: int = 0
    duplicates: int = 0
    duplicated_events: int = 0
    order_violations: int = 0
    ledger_mismatches: int = 0
    unknown: int = 0
    purged: int = 0
    unverified: int = 0

    def add(self, other: Tally) -> None:
        """Add ``other``'s counts into this tally."""
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class LostEvent:
    """A committed, published row whose event never appeared on its topic."""

    outbox_id: int
    event_id: str
    event_type: str
    topic: str
    key: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    """An event seen ``count`` times (count >= 2)."""

    event_id: str
    event_type: str
    count: int


@dataclass(frozen=True, slots=True)
class OrderViolation:
    """For ``key`` on ``topic``, event ``event_id`` (outbox id ``outbox_id``) first appeared at
    ``partition``/``offset``, after the later event ``after_event_id`` (outbox id ``after_outbox_id``)."""

    topic: str
    key: str
    event_id: str
    outbox_id: int
    after_event_id: str
    after_outbox_id: int
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class LedgerMismatch:
    """A published row whose recorded partition/offset does not hold its event.

    ``found_event_id`` is what that position holds (``None``: no message there, e.g. beyond the end).
    """

    outbox_id: int
    event_id: str
    topic: str
    partition: int
    offset: int
    found_event_id: str | None


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """A message on the topic whose event id the outbox ledger does not hold."""

    event_id: str | None
    event_type: str
    topic: str
    partition: int
    offset: int
    purged: bool


@dataclass(frozen=True, slots=True)
class PartitionRange:
    """The offsets ``[start, end)`` read from one partition (``end`` = the high watermark at start)."""

    topic: str
    partition: int
    start: int
    end: int


@dataclass(slots=True)
class AuditReport:
    """The audit's verdict. ``ok`` is false when an event was lost or a key's order was broken."""

    topics: list[str]
    since: datetime | None
    until: datetime | None
    started_at: datetime
    finished_at: datetime
    messages_read: int
    overall: Tally
    by_type: dict[str, Tally]
    lost: list[LostEvent] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    order_violations: list[OrderViolation] = field(default_factory=list)
    ledger_mismatches: list[LedgerMismatch] = field(default_factory=list)
    unknown: list[UnknownEvent] = field(default_factory=list)
    pending_event_ids: list[str] = field(default_factory=list)
    dead_event_ids: list[str] = field(default_factory=list)
    partitions: list[PartitionRange] = field(default_factory=list)
    unreadable_topics: dict[str, str] = field(default_factory=dict)
    undecodable_messages: int = 0
    ledger_first_id: int | None = None
    retention_horizon: datetime | None = None
    detail_limit: int = 1000
    client_log_lines: int = 0
    """Lines the Kafka client logged during the audit (summarised, not printed one by one)."""
    client_log_sample: str = ""
    exactly_once: bool = False
    """Audited as an exactly-once relay's output: any duplicate a read_committed reader sees fails it."""

    @property
    def ok(self) -> bool:
        """True when nothing committed-and-published is missing and every key kept its order (and, for
        an exactly-once audit, no event was seen twice)."""
        if self.exactly_once and self.overall.duplicates:
            return False
        return self.overall.lost == 0 and self.overall.order_violations == 0

    @property
    def verified(self) -> bool:
        """True when every topic (and every partition a published row names) was read."""
        return not self.unreadable_topics and self.overall.unverified == 0

    @property
    def exit_code(self) -> int:
        """What ``payment-events audit`` exits with: 0 clean, 1 lost or reordered, 3 could not verify
        (nothing found wrong in what could be read, but something could not be read)."""
        if not self.ok:
            return EXIT_FAILED
        return EXIT_CLEAN if self.verified else EXIT_UNVERIFIED

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (timestamps as ISO 8601 strings)."""
        doc = asdict(self)
        for name in ("since", "until", "started_at", "finished_at", "retention_horizon"):
            value = doc[name]
            doc[name] = value.isoformat() if isinstance(value, datetime) else None
        doc["ok"] = self.ok
        doc["verified"] = self.verified
        doc["exit_code"] = self.exit_code
        return doc

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON (what ``payment-events audit --json`` prints)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    def render_text(self) -> str:
        """A human-readable report: verdict, a table per event type, then the first details."""
        verdict = "FAILED" if not self.ok else "OK" if self.verified else "COULD NOT VERIFY"
        lines = [
            f"audit of {', '.join(self.topics) or '(no topics)'}: {verdict}",
            f"  window: since={_iso(self.since)} until={_iso(self.until)}; {self.messages_read} messages "
            f"read in {(self.finished_at - self.started_at).total_seconds():.1f}s",
        ]
        cols = ("committed", "delivered", "lost", "unverified", "expired", "pending", "dead",
                "duplicates", "order_violations", "ledger_mismatches", "unknown", "purged")
        # Each column is at least two wider than its title, so titles never run into each other.
        widths = [max(12, len(c) + 2) for c in cols]
        header = f"  {'event type':<28}" + "".join(
            f"{c.replace('_', ' '):>{w}}" for c, w in zip(cols, widths, strict=True)
        )
        lines.append(header)
        rows = [*sorted(self.by_type.items()), ("TOTAL", self.overall)]
        for name, tally in rows:
            cells = "".join(f"{getattr(tally, c):>{w}}" for c, w in zip(cols, widths, strict=True))
            lines.append(f"  {name:<28}{cells}")
        for topic, why in sorted(self.unreadable_topics.items()):
            lines.append(f"  topic {topic} could not be read: {why}")
        if self.client_log_lines:
            lines.append(
                f"  the Kafka client logged {self.client_log_lines} lines (first: {self.client_log_sample})"
            )
        if self.undecodable_messages:
            lines.append(f"  {self.undecodable_messages} messages had no readable event id")
        lines.extend(_details("lost", [f"{e.event_id} (outbox id {e.outbox_id}, {e.event_type}, topic "
                                        f"{e.topic})" for e in self.lost], self.overall.lost))
        lines.extend(_details("order violations", [
            f"key {v.key!r} on {v.topic}: {v.event_id} (id {v.outbox_id}) first at {v.partition}/{v.offset}, "
            f"after {v.after_event_id} (id {v.after_outbox_id})" for v in self.order_violations
        ], self.overall.order_violations))
        lines.extend(_details("duplicates", [f"{d.event_id} x{d.count}" for d in self.duplicates],
                              self.overall.duplicated_events))
        lines.extend(_details("ledger mismatches", [
            f"{m.event_id} (id {m.outbox_id}) recorded at {m.topic}/{m.partition}/{m.offset}, found "
            f"{m.found_event_id or 'nothing'}" for m in self.ledger_mismatches
        ], self.overall.ledger_mismatches))
        lines.extend(_details("unknown", [
            f"{u.event_id or '?'} ({u.event_type}) at {u.topic}/{u.partition}/{u.offset}"
            f"{' (older than retention horizon: probably purged)' if u.purged else ''}" for u in self.unknown
        ], self.overall.unknown))
        return "\n".join(lines)


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else "-"


def _details(title: str, items: list[str], total: int, shown: int = 20) -> list[str]:
    if not total:
        return []
    out = [f"  {title} ({total}):"]
    out.extend(f"    {item}" for item in items[:shown])
    if total > min(shown, len(items)):
        out.append(f"    ... {total - min(shown, len(items))} more (see --json)")
    return out
